"""The test-set evaluation (train.json + evaluate.json) checked against an independent metric computation.

A smooth phantom is the full dose and the phantom plus Gaussian noise of known sigma the low dose. The generator is
untrained, and its zero-initialised noise head makes it the identity, so the model's metrics must equal the low-dose
input's, and both must equal scikit-image / numpy on the same HU windows. MONAI's SSIM is an 11x11 Gaussian window
with sigma 1.5 and the biased covariance, which is `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`. Tolerances cover float32 against float64 and the HU -> [0, 1] -> HU round trip:
1e-4 dB PSNR, 1e-5 SSIM, 1e-4 HU RMSE (observed: about 2e-6 for each).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from custom.conventions import INFERENCE_SELF_ENSEMBLE, INFERENCE_STRENGTH, NOISE_STRENGTH_RAMP_HU
from custom.networks.generator import EfficientNetV2Denoiser

pytestmark = pytest.mark.slow  # one evaluation run through python -m monai.bundle serves every test here

SIZE = 64
NOISE_SIGMA_HU = 40.0
NUM_SLICES = 3
NUM_FIGURES = 2
WINDOWS = {"w400": (-160.0, 240.0), "w2000": (-1000.0, 1000.0)}
METRICS = ("psnr", "ssim", "rmse")
TOLERANCE = {"psnr": 1e-4, "ssim": 1e-5, "rmse": 1e-4}


def smooth_phantom(variant: int) -> np.ndarray:
    """A water disc in air with a low-frequency soft-tissue pattern, in HU."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    disc = (x - SIZE / 2) ** 2 + (y - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2
    pattern = 60 * np.sin(x / (5 + variant)) * np.cos(y / 7) + 40 * variant
    return np.where(disc, pattern, -1000.0)


def save_nifti(array: np.ndarray, path: Path) -> None:
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), path)


def independent_metrics(low: np.ndarray, full: np.ndarray, window: tuple[float, float]) -> dict[str, float]:
    """PSNR, SSIM and RMSE of `low` against `full` after clipping both to `window`, with scikit-image and numpy."""
    data_range = window[1] - window[0]
    low, full = (np.clip(image.astype(np.float64), *window) for image in (low, full))
    return {
        "psnr": peak_signal_noise_ratio(full, low, data_range=data_range),
        "ssim": structural_similarity(
            full, low, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        ),
        "rmse": float(np.sqrt(np.mean((low - full) ** 2))),
    }


def read_raw_csv(path: Path) -> dict[str, float]:
    """MetricsSaver's `<metric>_raw.csv`: input file name -> per-slice value."""
    with open(path) as file:
        return {Path(row["filename"]).name: float(row["mean"]) for row in csv.DictReader(file)}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    """Run the evaluation bundle once, with MLflow tracking, on noisy phantoms and an identity generator."""
    root = tmp_path_factory.mktemp("evaluation")
    rng = np.random.default_rng(0)
    entries, slices = [], {}
    for index in range(NUM_SLICES):
        full = smooth_phantom(index)
        low = (full + rng.normal(0.0, NOISE_SIGMA_HU, full.shape)).astype(np.float32)
        save_nifti(full, root / f"full_{index}.nii.gz")
        save_nifti(low, root / f"low_{index}.nii.gz")
        entries.append({"low_dose": f"low_{index}.nii.gz", "full_dose": f"full_{index}.nii.gz", "patient": str(index)})
        slices[f"low_{index}.nii.gz"] = (low, full.astype(np.float32))
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"training": entries[:1], "validation": entries[:1], "test": entries}))
    model_path = root / "model.pt"
    torch.save(EfficientNetV2Denoiser(backbone="tf_efficientnetv2_b0").state_dict(), model_path)
    output_dir = root / "eval"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "evaluating",
        "--meta_file", "bundle/configs/metadata.json",
        "--config_file", "['bundle/configs/train.json','bundle/configs/evaluate.json']",
        "--datalist", str(datalist),
        "--model_path", str(model_path),
        "--output_dir", str(output_dir),
        "--backbone", "tf_efficientnetv2_b0",
        "--num_workers", "0",
        "--num_figures", str(NUM_FIGURES),
        "--tracking", "mlflow",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"dir": output_dir / "evaluation", "output_dir": output_dir, "slices": slices, "log": result.stdout}


def test_per_slice_metrics_match_scikit_image_and_numpy(evaluation: dict) -> None:
    for window_name, window in WINDOWS.items():
        for metric in METRICS:
            model = read_raw_csv(evaluation["dir"] / f"{metric}_{window_name}_raw.csv")
            ldct = read_raw_csv(evaluation["dir"] / f"ldct_{metric}_{window_name}_raw.csv")
            assert set(model) == set(ldct) == set(evaluation["slices"])
            for name, (low, full) in evaluation["slices"].items():
                expected = independent_metrics(low, full, window)[metric]
                assert ldct[name] == pytest.approx(expected, abs=TOLERANCE[metric]), (metric, window_name, name)
                # Gaussian-blended tiles of an identity generator reproduce the input up to float32 rounding
                assert model[name] == pytest.approx(ldct[name], rel=1e-6), (
                    f"the identity generator changed {metric}_{window_name} of {name}"
                )


def test_noise_of_known_sigma_is_measured(evaluation: dict) -> None:
    """Inside [-160, 240] HU almost nothing is clipped, so RMSE there is the noise sigma (within sampling error)."""
    rmse = read_raw_csv(evaluation["dir"] / "ldct_rmse_w400_raw.csv")
    for name, (low, full) in evaluation["slices"].items():
        body = (full > -160) & (full < 240)
        body_rmse = float(np.sqrt(np.mean((low[body] - full[body]) ** 2)))
        assert body_rmse == pytest.approx(NOISE_SIGMA_HU, rel=0.05)
        assert rmse[name] == pytest.approx(np.sqrt(body.mean()) * body_rmse, rel=0.05)


def test_mean_and_std_summary(evaluation: dict) -> None:
    with open(evaluation["dir"] / "metrics_mean_std.csv") as file:
        summary = {row["metric"]: row for row in csv.DictReader(file)}
    expected_names = {f"{prefix}{metric}_{window}" for prefix in ("", "ldct_") for metric in METRICS for window in WINDOWS}
    assert set(summary) == expected_names
    for name, row in summary.items():
        values = np.array(list(read_raw_csv(evaluation["dir"] / f"{name}_raw.csv").values()))
        assert float(row["mean"]) == pytest.approx(values.mean(), abs=1e-5)
        assert float(row["std"]) == pytest.approx(values.std(), abs=1e-5)
        assert int(row["slices"]) == NUM_SLICES
    assert "psnr_w400" in evaluation["log"] and "±" in evaluation["log"]


def test_comparison_figures(evaluation: dict) -> None:
    figures = sorted((evaluation["dir"] / "figures").glob("*.png"))
    assert len(figures) == NUM_FIGURES
    for figure in figures:
        with Image.open(figure) as image:
            assert image.width > 3 * image.height  # four panels side by side


def test_everything_is_logged_to_mlflow(evaluation: dict) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{evaluation['output_dir'] / 'mlruns.db'}")
    runs = [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]
    assert len(runs) == 1
    run = runs[0]
    model_csv = read_raw_csv(evaluation["dir"] / "psnr_w400_raw.csv")
    assert run.data.metrics["psnr_w400"] == pytest.approx(np.mean(list(model_csv.values())), abs=1e-5)
    assert {"ldct_ssim_w2000", "rmse_w400_std"} <= set(run.data.metrics)
    assert run.data.params["backbone"] == "tf_efficientnetv2_b0"
    assert run.data.params["self_ensemble"] == str(INFERENCE_SELF_ENSEMBLE)  # scored as inference.json runs it
    assert run.data.params["strength"] == INFERENCE_STRENGTH
    assert run.data.params["noise_ramp_hu"] == str(list(NOISE_STRENGTH_RAMP_HU))  # a bare state_dict: the default ramp
    artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert {"metrics_mean_std.csv", "psnr_w400_raw.csv", "metrics.csv"} <= artifacts
    assert sum(path.endswith(".png") for path in artifacts) == NUM_FIGURES
