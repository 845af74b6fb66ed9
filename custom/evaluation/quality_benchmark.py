"""Train and score every denoiser on the same data, split and budget, through the bundle's own train.json.

Methods (`--methods`, default all):
  ours          EfficientNetV2 generator, WGAN-GP, adversarial + L1 + perceptual (train.json as shipped)
  ours_no_adv   the same without the critic (lambda_adv 0, n_critic 0): L1 + perceptual
  ours_l1       L1 only (also lambda_perceptual 0)
  red_cnn       RED-CNN (custom.networks.red_cnn.REDCNN) with its original MSE loss, same trainer, data and budget
  bm3d, nlm, tv classical denoisers (BM3D, scikit-image non-local means and total variation), no training;
                their strength is chosen on the validation split from a small grid, never on the test split
  ldct          the low-dose input itself (always scored: it is the reference of the deltas)

Learned methods run `monai.bundle.ConfigWorkflow` on bundle/configs/train.json with overrides only (the users'
code path), one run per method and seed; the generator the bundle saves as best on validation PSNR
(`models/model.pt`) is then scored on the test split. Every method is scored the same way: the bundle's
`validate#preprocessing` loads a pair, the method denoises the normalised low-dose slice, the bundle's
`validate#postprocessing` maps it back to HU and windows it, and MONAI's PSNR / SSIM / RMSE score each test slice
in [-160, 240] HU (data range 400, the literature's convention) and [-1000, 1000] HU (data range 2000).
Results are mean ± std over test slices (pooled over seeds) and, with `--seeds` > 1, the std of the per-seed means.

Every run (learned, classical, LDCT) is an MLflow run in one experiment (`--experiment`) of one SQLite store
(`--tracking-uri`, default <output>/mlruns.db), so `mlflow ui --backend-store-uri <uri>` or
`scripts/compare_runs.py` compares them. A Markdown table goes to stdout and <output>/quality.md, the full record
(per-slice scores included) to <output>/quality.json, the learned runs' validation PSNR/SSIM over training
to <output>/validation_curves.png, and their training terms (the critic's Wasserstein estimate and gradient
penalty, the L1 loss; running means) to <output>/training_curves.png.

Data: `--datalist` takes any paired datalist: real Mayo pairs from scripts/prepare_mayo.py, or one full-dose volume
(e.g. ../shared/data/mayo/L067_full_3mm.nii.gz) cut by scripts/prepare_volume.py into contiguous z-blocks for training,
validation and test (unused slabs between them, so no anatomy is shared) with simulated low dose. Without it, the
developers' real CT slices (`--data-dir`, default ../shared/data/ct) get simulated low dose
(custom.simulation.low_dose) and are split by series, so no patient is in two splits:
  test        totalsegmentator_abdomen_siemens (20 Siemens abdominal slices, 3 mm: the Mayo-like task)
  validation  dcmqi_ct3slice_GE_liver (3 GE abdominal slices)
  training    dcm_qa_ct_GE_head (28 slices) and dcm_qa_ct_Philips_headphantom (4 phantom slices)
The NIfTI volume totalsegmentator_example_ct_3mm.nii.gz is left out: it is TotalSegmentator's example subject,
very likely the same patient as the test series. Every series is simulated at the dose that gives it the
noise of real Mayo quarter dose (SERIES_DOSE_FRACTIONS: the simulation has no exposure control, so a larger body
needs a larger dose fraction; the report prints each split's noise level).

No reference (`--real-low-dose`, repeatable): a real low-dose series without a full-dose partner (a DICOM folder or
a NIfTI volume, e.g. the Mayo quarter dose ../shared/data/mayo/L109_quarter_3mm) cannot be scored by PSNR/SSIM, but it
shows what each method does to real, not simulated, low-dose noise. Every scored method (LDCT, the classical ones at
the strength chosen on validation, every trained model and seed) denoises `--real-low-dose-slices` evenly spaced
slices through the same HU window as the test split, and custom.evaluation.no_reference compares output with input:
soft-tissue noise (HU and ratio), soft-tissue mean shift (HU; target at most 1 HU on every slice) and the 10-90 %
width of strong soft-tissue edges (mm; a denoiser that blurs widens them). The series are read and checked (CT
images, known pixel spacing; custom.evaluation.noise_measurement's reader) when the arguments are parsed, before
any training. Results go to quality.json under
"no_reference" (mean over seeds; each run keeps its own), one table per series to quality.md, and each run's
numbers to MLflow as `real_<series>_<measure>`.

Example (the reduced CPU budget documented in the model card, about 50 minutes on 2 cores):
    python scripts/benchmark_quality.py --iterations 120 --val-every 20 --batch-size 16 --patch-size 64 \\
        --learning-rate 1e-4 --seeds 2 --max-test-slices 10

Equal training time for methods of unequal cost: `--set METHOD.KEY=VALUE` overrides any train.json id for one
learned method, and `METHOD.iterations=N` gives it its own run length; the report's "training budget" table shows
each run's iterations and seconds spent in training iterations (validation excluded). The Mayo-domain comparison of
the model card (L067 z-blocks with calibrated simulated quarter dose; prepared by scripts/prepare_volume.py):
    python scripts/benchmark_quality.py --datalist /data/l067_zblocks/datalist.json --methods ours red_cnn bm3d tv \\
        --seeds 3 --backbone tf_efficientnetv2_b0 --batch-size 16 --learning-rate 3e-4 --iterations 310 \\
        --val-every 155 --adversarial-warmup 155 --set ours.n_critic=1 ours.lambda_perceptual=0 red_cnn.iterations=155 \\
        --max-test-slices 14 --max-tuning-slices 7 --real-low-dose ../shared/data/mayo/L109_quarter_3mm \\
        --real-low-dose-slices 8

Sweeps (issue 11's choice of settings): `--sweep METHOD.KEY=V1,V2,...` (repeatable) adds one learned run per value
and seed, named METHOD[KEY=VALUE]: the method as `--set` defines it with only that key changed (one factor at a
time, not a grid). quality.md lists each key's values, the centre included, with the best validation PSNR the run
kept its model.pt for and marks the best as chosen, and quality.json records the choice under "sweep"; the test
PSNR stands beside it but chooses nothing. Every variant is a run of the MLflow experiment, with its settings as
params. On the Mayo-domain split, the sweep of the model card (bundle/docs/benchmarks.md, section 5; the
perceptual term compared as random VGG19 features, CT features of a saved generator's encoder, or none):
    python scripts/benchmark_quality.py --datalist /data/l067_zblocks/datalist.json --methods ours --seeds 1 \\
        --backbone tf_efficientnetv2_b0 --batch-size 16 --patch-size 64 --learning-rate 3e-4 --iterations 320 \\
        --val-every 32 --adversarial-warmup 160 --max-test-slices 14 --experiment ldct_l067_sweep \\
        --set ours.n_critic=1 ours.lambda_perceptual=0 ours.perceptual_network=bundle/models/shipped/model.pt \\
        --sweep ours.lambda_perceptual=0.1 ours.lambda_adv=0,0.01 ours.n_critic=5 ours.adversarial_warmup=64,256 \\
        ours.patch_size=96 ours.backbone=tf_efficientnetv2_s ours.whole_slice_fraction=0.2
    python scripts/benchmark_quality.py ... --set ours.n_critic=1 ours.lambda_perceptual=0.1  # random VGG19

Classical methods only, with the no-reference report on real Mayo quarter dose (minutes on 2 cores):
    python scripts/benchmark_quality.py --methods bm3d --quick --max-test-slices 4 \\
        --real-low-dose ../shared/data/mayo/L109_quarter_3mm --real-low-dose-slices 8
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import numpy as np
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.metrics import PSNRMetric, RMSEMetric, SSIMMetric
from tqdm import tqdm

from custom.conventions import (
    DATALIST_NAME,
    EVALUATION_WINDOWS,
    FULL_DOSE_KEY,
    HEADLINE_METRIC,
    META_FILE,
    PATIENT_KEY,
    RUNS_DIR,
    SHARED_CT_DIR,
    SOFT_TISSUE_HU,
    TRAIN_CONFIG,
)
from custom.data.datalist import load_paired_datalist
from custom.data.series_dose import SERIES_DOSE_FRACTIONS
from custom.data.simulated_pairs import is_image_file, simulate_dataset
from custom.evaluation import run_comparison as compare_runs
from custom.evaluation.no_reference import MEAN_SHIFT_TARGET_HU, summarise_series
from custom.evaluation.noise_measurement import CTVolume
from custom.evaluation.subsets import evenly_spaced
from custom.io.atomic_output import write_text_atomically
from custom.io.ct_series_loader import relative_name
from custom.io.dicom_series import candidate_files
from custom.networks.model_file import load_weights, read_model_file
from custom.simulation.low_dose import DEFAULT_ELECTRONIC_NOISE_VAR, DEFAULT_INCIDENT_FLUX, SimulateLowDose

DEFAULT_DATA_DIR = SHARED_CT_DIR
DEFAULT_OUTPUT = RUNS_DIR / "benchmark_quality"
DEFAULT_EXPERIMENT = "ldct_benchmark_quality"
SERIES_SPLITS = {
    "training": ("dcm_qa_ct_GE_head", "dcm_qa_ct_Philips_headphantom"),
    "validation": ("dcmqi_ct3slice_GE_liver",),
    "test": ("totalsegmentator_abdomen_siemens",),
}
QUARTER_DOSE = 0.25

# train.json overrides that turn the shipped recipe into each learned method
LEARNED_METHODS: dict[str, dict[str, Any]] = {
    "ours": {},
    "ours_no_adv": {"lambda_adv": 0.0, "n_critic": 0},
    "ours_l1": {"lambda_adv": 0.0, "n_critic": 0, "lambda_perceptual": 0.0},
    "red_cnn": {
        "network_def": {"_target_": "custom.networks.red_cnn.REDCNN"},
        "n_critic": 0,
        "lambda_adv": 0.0,
        "lambda_perceptual": 0.0,
        "lambda_mse": 1.0,
        "lambda_l1": 0.0,
        # its receptive field is about 40 pixels: whole slices give it nothing a patch does not, at 4x the cost
        "whole_slice_fraction": 0.0,
    },
}
LABELS = {
    "ours": "ours: EfficientNetV2 + WGAN-GP (train.json's losses)",
    "ours_no_adv": "ours without adversarial term (L1 + perceptual)",
    "ours_l1": "ours, L1 only",
    "red_cnn": "RED-CNN (MSE), same trainer",
    "bm3d": "BM3D",
    "nlm": "non-local means",
    "tv": "total variation (Chambolle)",
    "ldct": "low-dose input (LDCT)",
}
REFERENCE_METHOD = "ldct"
BASELINE_METHOD = "red_cnn"
METRICS = ("psnr", "ssim", "rmse")
HEADLINE = HEADLINE_METRIC
WINDOW_NAMES = tuple(window.name for window in EVALUATION_WINDOWS)
TARGET_MARGIN_DB = 0.3
VARIANT_OPEN = "["  # a sweep variant is named METHOD[KEY=VALUE]
TRAINING_CURVES = ("train_wasserstein_distance", "train_gradient_penalty", "train_loss_l1")
DEFAULT_REAL_LOW_DOSE_SLICES = 16
# no-reference measures logged to MLflow per run (as real_<series>_<measure>) and shown in quality.md
NO_REFERENCE_COLUMNS = {
    "noise_output_hu": ("soft-tissue noise (HU)", 1),
    "noise_ratio": ("noise ratio", 3),
    "mean_shift_hu": ("mean shift (HU)", 2),
    "max_abs_slice_shift_hu": ("max slice abs shift (HU)", 2),
    "edge_width_output_mm": ("edge width 10-90 % (mm)", 2),
    "edge_width_ratio": ("edge width ratio", 3),
    "edge_profiles": ("edge profiles", 0),
}

Denoiser = Callable[[torch.Tensor], torch.Tensor]  # normalised (1, H, W) low dose in, same out


@dataclass(frozen=True)
class ClassicalMethod:
    """A training-free denoiser of HU images with one strength parameter (in HU) tuned on validation."""

    parameter: str
    grid: tuple[float, ...]
    quick_grid: tuple[float, ...]
    denoise: Callable[[np.ndarray, float], np.ndarray]


def _bm3d(hu: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return bm3d.bm3d(hu, sigma_psd=sigma)


def _nlm(hu: np.ndarray, h: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(hu, h=h, patch_size=5, patch_distance=6, fast_mode=True)


def _tv(hu: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(hu, weight=weight)


# grids span weak to strong smoothing around quarter-dose noise (about 10-35 HU std); a choice at either end of
# its grid is flagged in the JSON (`chosen_at_grid_edge`). On the L067 Mayo-domain split (validation noise 32 HU)
# BM3D and TV chose the strongest value of grids that ended at 60 and 40: the grids now reach further.
CLASSICAL_METHODS = {
    "bm3d": ClassicalMethod("sigma_psd_hu", (10.0, 20.0, 30.0, 45.0, 60.0, 80.0, 100.0), (20.0, 40.0), _bm3d),
    "nlm": ClassicalMethod("h_hu", (3.0, 6.0, 10.0, 20.0, 40.0), (20.0, 40.0), _nlm),
    "tv": ClassicalMethod("weight_hu", (2.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0), (20.0, 40.0), _tv),
}
ALL_METHODS = (*LEARNED_METHODS, *CLASSICAL_METHODS, REFERENCE_METHOD)


# ---------------------------------------------------------------------------------------------------------------
# data


def build_default_datalist(
    data_dir: Path,
    output_dir: Path,
    seed: int,
    series_splits: dict[str, tuple[str, ...]] = SERIES_SPLITS,
    dose_fractions: dict[str, float] = SERIES_DOSE_FRACTIONS,
) -> Path:
    """Simulated low-dose pairs of the shared real CT, split by series, at matched noise (see the module docstring).

    scripts/simulate_low_dose.py simulates each dose group from a datalist of full-dose files that carries the split;
    the merged output is reused while the sources and the simulation settings stay the same (a 512x512 slice takes
    seconds to simulate on a CPU).
    """
    missing = [series for names in series_splits.values() for series in names if not (data_dir / series).is_dir()]
    if missing:
        raise FileNotFoundError(f"{data_dir}: missing CT series {missing}; pass --datalist or --data-dir")
    sources: dict[str, list[dict[str, str | float]]] = {
        split: [
            {FULL_DOSE_KEY: str(path.resolve()), PATIENT_KEY: series, "dose_fraction": dose_fractions.get(series, QUARTER_DOSE)}
            for series in names
            for path in candidate_files(data_dir / series)
            if is_image_file(path)
        ]
        for split, names in series_splits.items()
    }
    data_folder = output_dir / "data"
    datalist = data_folder / DATALIST_NAME
    # the simulator's calibration is part of the recipe: recalibrating it must not reuse stale pairs
    simulation = {"incident_flux": DEFAULT_INCIDENT_FLUX, "electronic_noise_var": DEFAULT_ELECTRONIC_NOISE_VAR, "seed": seed}
    recipe = json.dumps({"sources": sources, "simulation": simulation}, indent=1)
    recipe_file = data_folder / "sources.json"
    if datalist.is_file() and recipe_file.is_file() and recipe_file.read_text() == recipe:
        return datalist
    merged: dict[str, list[dict[str, str | float]]] = {split: [] for split in sources}
    dose_fractions_used = {cast(float, entry["dose_fraction"]) for entries in sources.values() for entry in entries}
    for dose_fraction in sorted(dose_fractions_used):
        group = {
            split: [entry for entry in entries if entry["dose_fraction"] == dose_fraction] for split, entries in sources.items()
        }
        group_source = output_dir / f"full_dose_datalist_dose_{dose_fraction:g}.json"
        group_folder = data_folder / f"dose_{dose_fraction:g}"
        write_text_atomically(group_source, json.dumps(group, indent=1))
        simulator = SimulateLowDose(
            dose_fraction=dose_fraction,
            incident_flux=DEFAULT_INCIDENT_FLUX,
            electronic_noise_var=DEFAULT_ELECTRONIC_NOISE_VAR,
            seed=seed,
        )
        simulated = simulate_dataset(group_source, group_folder, simulator, seed=seed)
        for split in merged:
            merged[split] += [{**entry, "dose_fraction": dose_fraction} for entry in simulated.get(split, [])]
    write_text_atomically(datalist, json.dumps(merged, indent=2))
    write_text_atomically(recipe_file, recipe)
    return datalist


@dataclass(frozen=True)
class RealSlices:
    """The slices of a real low-dose series every method denoises, in HU as the model sees them (its window)."""

    name: str
    path: Path
    num_slices: int
    pixel_spacing_mm: float
    indices: list[int]
    inputs_hu: list[np.ndarray]


class BundleScoring:
    """The bundle's own loading and HU windowing (validate#pre/postprocessing), and per-slice metrics."""

    def __init__(self, datalist: Path) -> None:
        parser = ConfigParser()
        parser.read_config(str(TRAIN_CONFIG))
        parser.update({"datalist": str(datalist)})
        self.preprocessing = parser.get_parsed_content("validate#preprocessing")
        self.postprocessing = parser.get_parsed_content("validate#postprocessing")
        self.hu_min = float(parser.get_parsed_content("hu_min"))
        self.hu_span = float(parser.get_parsed_content("hu_max")) - self.hu_min
        self.metrics = {
            window: {
                "psnr": PSNRMetric(max_val=data_range),
                "ssim": SSIMMetric(spatial_dims=2, data_range=data_range),
                "rmse": RMSEMetric(),
            }
            for window, data_range in ((w.name, w.data_range) for w in EVALUATION_WINDOWS)
        }

    def score(self, items: Sequence[dict], denoise: Denoiser, desc: str) -> dict[str, list[float]]:
        """Per-slice scores {"psnr_w400": [...], ...} of `denoise` (normalised (1, H, W) in, same out)."""
        scores: dict[str, list[float]] = {f"{metric}_{window}": [] for window in WINDOW_NAMES for metric in METRICS}
        for item in tqdm(items, desc=desc, file=sys.stderr, leave=False):
            sample = self.preprocessing(dict(item))
            with torch.inference_mode():
                prediction = denoise(sample["image"]).detach().cpu()
            windowed = self.postprocessing({"image": sample["image"], "label": sample["label"], "pred": prediction})
            for window, metrics in self.metrics.items():
                prediction_w = torch.as_tensor(windowed[f"pred_{window}"]).float()[None]
                label_w = torch.as_tensor(windowed[f"label_{window}"]).float()[None]
                for name, metric in metrics.items():
                    # CumulativeIterationMetric.__call__ is typed for sequences too; tensors in, tensor out
                    value = cast(torch.Tensor, metric(prediction_w, label_w))
                    scores[f"{name}_{window}"].append(float(value.mean()))
        return scores

    def noise_std_hu(self, items: Sequence[dict]) -> float:
        """Mean over slices of the low-dose noise std (low minus full dose) where the full dose is in SOFT_TISSUE_HU.

        It shows whether the splits carry the same noise level, which training and tuning on one split and scoring
        on another assume.
        """
        stds = []
        for item in items:
            sample = self.preprocessing(dict(item))
            full_dose_hu = sample["label"] * self.hu_span + self.hu_min
            soft_tissue = (full_dose_hu > SOFT_TISSUE_HU[0]) & (full_dose_hu < SOFT_TISSUE_HU[1])
            stds.append(float(((sample["image"] - sample["label"]) * self.hu_span)[soft_tissue].std()))
        return float(np.mean(stds))

    def hu_denoiser(self, method: ClassicalMethod, strength: float) -> Denoiser:
        """Run a HU-domain classical denoiser on the bundle's normalised slices."""

        def denoise(image: torch.Tensor) -> torch.Tensor:
            hu = image[0].double().numpy() * self.hu_span + self.hu_min
            result = (method.denoise(hu, strength) - self.hu_min) / self.hu_span
            return torch.from_numpy(np.ascontiguousarray(result, dtype=np.float32))[None]

        return denoise

    def apply_hu(self, denoise: Denoiser, hu: np.ndarray) -> np.ndarray:
        """Run `denoise` on a HU slice presented as validate#preprocessing presents test slices (clipped to the
        model's window and normalised), and return HU; the identity gives the input as every method sees it."""
        image = torch.from_numpy(np.clip((hu - self.hu_min) / self.hu_span, 0.0, 1.0).astype(np.float32))[None]
        with torch.inference_mode():
            prediction = denoise(image).detach().cpu()
        return prediction[0].double().numpy() * self.hu_span + self.hu_min


def real_series_name(volume: CTVolume) -> str:
    """The key of a real series in the results: its folder or file name."""
    return relative_name(volume.path, volume.path)


def select_real_slices(volume: CTVolume, limit: int, scoring: BundleScoring) -> RealSlices:
    """`limit` evenly spaced slices of a real low-dose series, in the model's window."""
    indices = evenly_spaced(list(range(len(volume.hu))), limit)
    inputs = [scoring.apply_hu(lambda image: image, volume.hu[k]) for k in indices]
    return RealSlices(real_series_name(volume), volume.path, len(volume.hu), volume.pixel_spacing_mm, indices, inputs)


NoReference = dict[str, dict[str, float | int | None]]  # real series name -> no-reference measures


def score_no_reference(real: Sequence[RealSlices], denoise: Denoiser, scoring: BundleScoring, desc: str) -> NoReference:
    """Each real series' measures of `denoise` against its own input (custom.evaluation.no_reference)."""
    measures = {}
    for item in real:
        slices = tqdm(item.inputs_hu, desc=f"{desc} on {item.name}", file=sys.stderr, leave=False)
        outputs = [scoring.apply_hu(denoise, hu) for hu in slices]
        measures[item.name] = summarise_series(item.inputs_hu, outputs, (item.pixel_spacing_mm, item.pixel_spacing_mm))
    return measures


# ---------------------------------------------------------------------------------------------------------------
# MLflow


class Tracker:
    """One MLflow experiment in one store; learned runs are created by the bundle, the rest here."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_dir: Path) -> None:
        from mlflow import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(experiment, artifact_location=artifact_dir.resolve().as_uri())
        )
        self.experiment = experiment
        self.started_ms = int(time.time() * 1000)

    def find_run(self, run_name: str) -> str | None:
        """The id of this benchmark's run of that name (the bundle's MLflow handler created it)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.runName` = '{run_name}' and attributes.start_time >= {self.started_ms}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def create_run(self, run_name: str) -> str:
        return self.client.create_run(self.experiment_id, run_name=run_name).info.run_id

    def record(
        self, run_id: str, params: dict[str, Any], scores: dict[str, list[float]], no_reference: NoReference, finish: bool
    ) -> None:
        existing = self.client.get_run(run_id).data.params
        for name, value in params.items():
            if name not in existing:
                self.client.log_param(run_id, name, value)
        for name, values in scores.items():
            self.client.log_metric(run_id, f"test_{name}", float(np.mean(values)))
            self.client.log_metric(run_id, f"test_{name}_std", float(np.std(values)))
        for series, measures in no_reference.items():
            for name, value in measures.items():
                if value is not None:
                    self.client.log_metric(run_id, f"real_{series}_{name}", float(value))
        if finish:
            self.client.set_terminated(run_id)


# ---------------------------------------------------------------------------------------------------------------
# methods


@dataclass
class Budget:
    iterations: int
    val_every: int
    batch_size: int
    patch_size: int
    backbone: str
    learning_rate: float | None
    adversarial_warmup: int | None
    train_seconds: float | None
    perceptual_pretrained: str
    num_workers: int
    device: str | None
    late_patch_size: int | None = None
    # per learned method: train.json overrides on top of the shared budget (`--set METHOD.KEY=VALUE`); the key
    # "iterations" changes that method's run length, so methods of unequal cost can get equal training time
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def iterations_of(self, method: str) -> int:
        return int(self.method_settings.get(method, {}).get("iterations", self.iterations))

    def overrides(self, method: str) -> dict[str, Any]:
        values: dict[str, Any] = {
            "from_scratch": True,  # every method trains from its initialisation, not from the shipped model
            "backbone": self.backbone,
            "batch_size": self.batch_size,
            "patch_size": self.patch_size,
            "epoch_length": self.val_every,
            "max_epochs": math.ceil(self.iterations_of(method) / self.val_every),
            "val_interval": 1,
            "num_workers": self.num_workers,
            "perceptual_pretrained": {"true": True, "false": False}.get(
                self.perceptual_pretrained.lower(), self.perceptual_pretrained
            ),
        }
        if self.learning_rate is not None:
            values["learning_rate"] = self.learning_rate
        if self.adversarial_warmup is not None:
            values["adversarial_warmup"] = self.adversarial_warmup
        if self.late_patch_size is not None:
            values["late_patch_size"] = self.late_patch_size
        if self.device:
            values["device"] = f"$torch.device('{self.device}')"
        values.update({key: value for key, value in own_settings(method, self.method_settings).items() if key != "iterations"})
        return values


def base_method(name: str) -> str:
    """The method a sweep variant changes ("ours" for "ours[lambda_adv=0.01]"); a method's own name otherwise."""
    return name.split(VARIANT_OPEN, 1)[0]


def is_learned(name: str) -> bool:
    return base_method(name) in LEARNED_METHODS


def label_of(name: str) -> str:
    base = base_method(name)
    return f"{LABELS[base]} {name[len(base) :]}".rstrip()


def variant_name(method: str, key: str, value: Any) -> str:
    return f"{method}{VARIANT_OPEN}{key}={json.dumps(value) if not isinstance(value, str) else value}]"


def own_settings(method: str, method_settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What sets a learned method (or sweep variant) apart from the shared budget: its LEARNED_METHODS overrides,
    then its `--set` values (which may hold "iterations", the run length, not a train.json id)."""
    return {**LEARNED_METHODS[base_method(method)], **method_settings.get(method, {})}


@functools.cache
def train_config() -> MappingProxyType[str, Any]:
    """train.json as written (read once): its ids check `--set`/`--sweep` keys and give a sweep centre's defaults."""
    return MappingProxyType(ConfigParser.load_config_file(str(TRAIN_CONFIG)))


def train_config_ids() -> frozenset[str]:
    return frozenset(train_config())


def parse_method_setting(text: str) -> tuple[str, str, Any]:
    """`METHOD.KEY=VALUE` -> (method, key, value); VALUE is read as JSON where it parses (numbers, true, lists),
    else kept as a string. The key must be a train.json id or "iterations", so a typo fails before any training."""
    target, separator, raw = text.partition("=")
    method, dot, key = target.partition(".")
    if not separator or not dot or not key:
        raise ValueError(f"{text!r}: expected METHOD.KEY=VALUE, e.g. red_cnn.learning_rate=1e-4")
    if method not in LEARNED_METHODS:
        raise ValueError(f"{text!r}: {method!r} is not a learned method ({', '.join(LEARNED_METHODS)})")
    if key != "iterations" and key not in train_config_ids():
        raise ValueError(f"{text!r}: {key!r} is not an id of {TRAIN_CONFIG.name} (nor 'iterations')")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return method, key, value


def parse_sweep(text: str) -> tuple[str, str, list[Any]]:
    """`METHOD.KEY=V1,V2,...` -> (method, key, values), each value read and checked as `--set` reads it."""
    target, _, raw = text.partition("=")
    parsed = [parse_method_setting(f"{target}={item}") for item in raw.split(",") if item.strip()]
    if not parsed:
        raise ValueError(f"{text!r}: expected METHOD.KEY=V1,V2,..., e.g. ours.lambda_adv=0,0.001,0.01")
    method, key, _ = parsed[0]
    return method, key, [value for _, _, value in parsed]


def add_sweep_variants(sweeps: Sequence[tuple[str, str, list[Any]]], method_settings: dict[str, dict[str, Any]]) -> list[str]:
    """Register one variant per swept value, each the method's settings with that one key changed (one factor at a
    time around the method as `--set` defines it); returns the variant names in order."""
    names = []
    for method, key, values in sweeps:
        for value in values:
            name = variant_name(method, key, value)
            method_settings[name] = {**method_settings.get(method, {}), key: value}
            names.append(name)
    return names


def sweep_report(result: dict[str, Any]) -> list[str]:
    """Per swept key: the centre method and each value with its best validation PSNR, the best marked as chosen
    (the choice is made on validation, never on the test split); test PSNR beside it."""
    lines: list[str] = []
    methods = result["methods"]
    for key, entry in result.get("sweep", {}).items():
        lines += [
            f"**Sweep of {key}** around {label_of(entry['centre'])} (chosen on validation PSNR {HEADLINE}; mean over seeds)",
            "",
            "| value | best validation PSNR (dB) | test PSNR [-160, 240] | test PSNR [-1000, 1000] | training s |",
            "|---|---|---|---|---|",
        ]
        for name, value in entry["candidates"].items():
            runs = methods[name]["runs"]
            validation = entry["best_validation"][name]
            test = [float(np.mean([np.mean(run["scores"][f"psnr_{w}"]) for run in runs])) for w in WINDOW_NAMES]
            seconds = _mean_or_none([run.get("train_seconds") for run in runs])
            chosen = " (chosen)" if name == entry["chosen"] else ""
            lines.append(
                f"| {value}{chosen} | {'' if validation is None else f'{validation:.3f}'} | {test[0]:.2f} | {test[1]:.2f} | "
                f"{'' if seconds is None else f'{seconds:.0f}'} |"
            )
        lines.append("")
    return lines


def summarise_sweep(
    sweeps: Sequence[tuple[str, str, list[Any]]], runs_by_method: dict[str, list[dict[str, Any]]], budget: Budget
) -> dict[str, Any]:
    """quality.json's "sweep": per swept key, the candidates (the centre method, if it ran, and each variant) and
    the one with the best mean best-validation PSNR."""
    summary: dict[str, Any] = {}
    for method, key, values in sweeps:
        candidates: dict[str, Any] = {}
        if method in runs_by_method:
            centre = {"iterations": budget.iterations_of(method), **budget.overrides(method)}
            candidates[method] = centre.get(key, train_config().get(key))
        candidates.update({variant_name(method, key, value): value for value in values})
        validation = {name: _mean_or_none([run.get("best_validation") for run in runs_by_method[name]]) for name in candidates}
        measured = {name: value for name, value in validation.items() if value is not None}
        summary[f"{method}.{key}"] = {
            "centre": method,
            "candidates": candidates,
            "best_validation": validation,
            "chosen": max(measured, key=measured.__getitem__) if measured else None,
        }
    return summary


def train_and_score(
    method: str,
    seed: int,
    budget: Budget,
    datalist: Path,
    test_items: list[dict],
    scoring: BundleScoring,
    tracker: Tracker,
    output_dir: Path,
    real: Sequence[RealSlices],
) -> dict[str, Any]:
    """Train one learned method through the bundle, then score its best-on-validation generator on the test split
    (and on the real low-dose series, without reference)."""
    from ignite.engine import Events

    run_name = re.sub(r"[^\w.-]+", "_", method).strip("_") + f"_seed{seed}"  # a folder name: variants hold [ = ]
    bundle_root = output_dir / "runs" / run_name
    # logging.conf and the bundle's StatsHandlers log to whatever sys.stdout is when they are set up: keep stdout
    # for the table
    with contextlib.redirect_stdout(sys.stderr):
        workflow = ConfigWorkflow(
            config_file=str(TRAIN_CONFIG),
            meta_file=str(META_FILE),
            workflow_type="train",
            tracking="mlflow",
            **budget.overrides(method),
            seed=seed,
            datalist=str(datalist),
            bundle_root=str(bundle_root),
            tracking_uri=tracker.uri,
            experiment_name=tracker.experiment,
            run_name=run_name,
        )
        workflow.initialize()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        iteration_seconds = [0.0]  # time in training iterations, without validation and checkpoints: the budget

        @trainer.on(Events.EPOCH_COMPLETED)
        def _count_and_stop(engine: Any) -> None:  # runs after the epoch's validation, so model.pt is current
            iteration_seconds[0] += engine.state.times[Events.EPOCH_COMPLETED.name]
            if budget.train_seconds and iteration_seconds[0] >= budget.train_seconds:
                engine.terminate()

        start = time.perf_counter()
        try:
            workflow.run()  # raises NonFiniteLossError if a loss went NaN/Inf
        finally:
            workflow.finalize()
        wall_seconds = time.perf_counter() - start

    validation_state = workflow.parser.get_parsed_content("validate#evaluator").state
    network = workflow.parser.get_parsed_content("network")
    inferer = workflow.parser.get_parsed_content("validate#inferer")
    device = workflow.parser.get_parsed_content("device")
    load_weights(network, read_model_file(bundle_root / "models" / "model.pt"))
    network.eval()
    start = time.perf_counter()

    def denoise(image: torch.Tensor) -> torch.Tensor:
        return inferer(image[None].to(device), network)[0]

    scores = scoring.score(test_items, denoise, f"test {run_name}")
    record = {
        "seed": seed,
        "scores": scores,
        "train_seconds": round(iteration_seconds[0], 1),
        "wall_seconds": round(wall_seconds, 1),
        "iterations": trainer.state.iteration,
        # the validation score model.pt was kept for: what a sweep chooses by
        "best_validation": None if validation_state.best_metric_epoch == -1 else round(float(validation_state.best_metric), 4),
        "test_seconds": round(time.perf_counter() - start, 1),
        "parameters_m": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
        "no_reference": score_no_reference(real, denoise, scoring, run_name),
    }
    run_id = tracker.find_run(run_name)
    if run_id:
        params = {"method": method, "epoch_length": budget.val_every, "iterations": record["iterations"]}
        tracker.record(run_id, params, scores, record["no_reference"], finish=False)
    record["mlflow_run_id"] = run_id
    return record


def tune_and_score(
    method: str,
    validation_items: list[dict],
    test_items: list[dict],
    scoring: BundleScoring,
    tracker: Tracker,
    quick: bool,
    real: Sequence[RealSlices],
) -> dict[str, Any]:
    """Pick the strength with the best validation PSNR (w400), then score the test split (and the real low-dose
    series, without reference) with it."""
    classical = CLASSICAL_METHODS[method]
    grid = classical.quick_grid if quick else classical.grid
    validation = {
        strength: float(
            np.mean(
                scoring.score(
                    validation_items,
                    scoring.hu_denoiser(classical, strength),
                    f"validate {method} {classical.parameter}={strength}",
                )[HEADLINE]
            )
        )
        for strength in grid
    }
    chosen = max(validation, key=validation.__getitem__)
    denoise = scoring.hu_denoiser(classical, chosen)
    start = time.perf_counter()
    scores = scoring.score(test_items, denoise, f"test {method}")
    test_seconds = time.perf_counter() - start
    no_reference = score_no_reference(real, denoise, scoring, method)
    run_id = tracker.create_run(method)
    params = {"method": method, classical.parameter: chosen, "grid": list(grid)}
    tracker.record(run_id, params, scores, no_reference, finish=True)
    return {
        "seed": None,
        "scores": scores,
        "no_reference": no_reference,
        "test_seconds": round(test_seconds, 1),
        "parameter": classical.parameter,
        "chosen": chosen,
        "validation_psnr_w400": {str(k): round(v, 3) for k, v in validation.items()},
        "chosen_at_grid_edge": chosen in (grid[0], grid[-1]) and len(grid) > 1,
        "mlflow_run_id": run_id,
    }


def score_input(test_items: list[dict], scoring: BundleScoring, tracker: Tracker, real: Sequence[RealSlices]) -> dict[str, Any]:
    """Score the low-dose input itself; on the real series it is the identity (noise ratio 1, no shift)."""
    scores = scoring.score(test_items, lambda image: image, "test ldct")
    no_reference = score_no_reference(real, lambda image: image, scoring, REFERENCE_METHOD)
    run_id = tracker.create_run(REFERENCE_METHOD)
    tracker.record(run_id, {"method": REFERENCE_METHOD}, scores, no_reference, finish=True)
    return {"seed": None, "scores": scores, "no_reference": no_reference, "mlflow_run_id": run_id}


# ---------------------------------------------------------------------------------------------------------------
# aggregation and report


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per metric: mean over slices and seeds, std over slices (pooled), std of the per-seed means."""
    summary = {}
    for name in runs[0]["scores"]:
        values = np.array([run["scores"][name] for run in runs], dtype=np.float64)  # (seeds, slices)
        seed_means = values.mean(axis=1)
        summary[name] = {
            "mean": float(values.mean()),
            "std_slices": float(values.std(axis=1, ddof=1).mean()) if values.shape[1] > 1 else None,
            "std_seeds": float(seed_means.std(ddof=1)) if len(seed_means) > 1 else None,
        }
    return summary


def paired_difference(runs: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]], name: str) -> dict[str, float]:
    """Slice-wise difference of `name` against a reference method.

    Runs pair with the reference's runs seed by seed when both have as many; otherwise (a classical method against
    the learned baseline, or the reverse) each run is compared with the reference's per-slice mean over its runs.
    """
    reference_scores = np.array([run["scores"][name] for run in reference])
    if len(reference) != len(runs):
        reference_scores = reference_scores.mean(axis=0, keepdims=True).repeat(len(runs), axis=0)
    differences = np.array([run["scores"][name] for run in runs]) - reference_scores
    return {"mean": float(differences.mean()), "std_slices": float(differences.std(axis=1).mean())}


def _cell(stats: dict[str, float | None], digits: int) -> str:
    text = f"{stats['mean']:.{digits}f}"
    if stats["std_slices"] is not None:
        text += f" ± {stats['std_slices']:.{digits}f}"
    if stats["std_seeds"] is not None:
        text += f" (seeds ± {stats['std_seeds']:.{digits}f})"
    return text


def markdown_report(result: dict[str, Any]) -> str:
    """One table per HU convention; deltas are paired over the same test slices."""
    noise = ", ".join(f"{split} {std:.1f}" for split, std in result["soft_tissue_noise_std_hu"].items())
    low, high = SOFT_TISSUE_HU
    lines = [f"Low-dose noise (std of low minus full dose where the full dose is in [{low:g}, {high:g}] HU): {noise} HU", ""]
    methods = result["methods"]
    for window, hu_range, data_range in ((w.name, f"[{w.low:g}, {w.high:g}] HU", w.data_range) for w in EVALUATION_WINDOWS):
        lines += [
            f"**{hu_range}, data range {data_range:g}** — mean ± std over test slices (seeds ± std of per-seed means)",
            "",
            "| method | runs | PSNR (dB) | SSIM | RMSE (HU) | ΔPSNR vs LDCT | ΔPSNR vs RED-CNN |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, record in methods.items():
            stats = record["summary"]
            deltas = [
                record.get("delta_vs_ldct", {}).get(f"psnr_{window}"),
                record.get("delta_vs_red_cnn", {}).get(f"psnr_{window}"),
            ]
            delta_cells = [f"{d['mean']:+.2f} ± {d['std_slices']:.2f}" if d else "" for d in deltas]
            lines.append(
                f"| {label_of(method)} | {len(record['runs'])} | {_cell(stats[f'psnr_{window}'], 2)} | "
                f"{_cell(stats[f'ssim_{window}'], 4)} | {_cell(stats[f'rmse_{window}'], 2)} | " + " | ".join(delta_cells) + " |"
            )
        lines.append("")
    lines += training_budget_report(methods, result["budget"]["method_settings"])
    lines += sweep_report(result)
    if "no_reference" in result:
        lines += no_reference_report(result)
    return "\n".join(lines)


def training_budget_report(methods: dict[str, Any], settings: dict[str, dict[str, Any]]) -> list[str]:
    """What each learned method got: its own settings (`--set`), iterations and time in training iterations
    (validation and checkpoints not counted), per seed, so "the same budget" can be checked."""
    learned = {method: record["runs"] for method, record in methods.items() if is_learned(method)}
    if not learned:
        return []
    lines = ["**Training budget** (per seed; seconds in training iterations, without validation)", ""]
    lines += ["| method | own settings | iterations | training s | wall s (with validation) |", "|---|---|---|---|---|"]
    for method, runs in learned.items():
        own = ", ".join(
            f"{key} {value['_target_'].rsplit('.', 1)[-1] if isinstance(value, dict) else value}"
            for key, value in own_settings(method, settings).items()
        )
        cells = [" / ".join(str(run.get(key, "")) for run in runs) for key in ("iterations", "train_seconds", "wall_seconds")]
        lines.append(f"| {label_of(method)} | {own} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _mean_or_none(values: Sequence[float | int | None]) -> float | int | None:
    """Mean over runs (counts stay integers, rounded); None if any run could not measure it."""
    numbers = [value for value in values if value is not None]
    if not numbers or len(numbers) < len(values):
        return None
    mean = float(np.mean(numbers))
    return round(mean) if all(isinstance(number, int) for number in numbers) else mean


def summarise_no_reference(runs_by_method: dict[str, list[dict[str, Any]]], real: Sequence[RealSlices]) -> dict[str, Any]:
    """quality.json's "no_reference": the slices measured and, per method and series, each measure's mean over the
    method's runs (seeds), with the mean-shift target checked."""
    methods: dict[str, NoReference] = {}
    for method, runs in runs_by_method.items():
        methods[method] = {}
        for name in (item.name for item in real):
            per_run = [run["no_reference"][name] for run in runs]
            merged: dict[str, float | int | None] = {key: _mean_or_none([m[key] for m in per_run]) for key in per_run[0]}
            largest = merged["max_abs_slice_shift_hu"]
            merged["mean_shift_within_target"] = largest is not None and largest <= MEAN_SHIFT_TARGET_HU
            methods[method][name] = merged
    series = {
        item.name: {
            "path": str(item.path),
            "num_slices": item.num_slices,
            "slice_indices": item.indices,
            "pixel_spacing_mm": item.pixel_spacing_mm,
        }
        for item in real
    }
    return {"mean_shift_target_hu": MEAN_SHIFT_TARGET_HU, "series": series, "methods": methods}


def no_reference_report(result: dict[str, Any]) -> list[str]:
    """One Markdown table per real low-dose series: every method's output against its own input."""
    no_reference = result["no_reference"]
    lines = []
    for name, info in no_reference["series"].items():
        lines += [
            f"**Real low dose, no reference: {name}** ({len(info['slice_indices'])} of {info['num_slices']} slices, "
            f"pixels {info['pixel_spacing_mm']:g} mm) — each method's output against its own input",
            "",
            "| method | runs | " + " | ".join(label for label, _ in NO_REFERENCE_COLUMNS.values()) + " |",
            "|---|---|" + "---|" * len(NO_REFERENCE_COLUMNS),
        ]
        for method, by_series in no_reference["methods"].items():
            measures = by_series[name]
            cells = [
                "" if measures[key] is None else f"{measures[key]:.{digits}f}"
                for key, (_, digits) in NO_REFERENCE_COLUMNS.items()
            ]
            if not measures["mean_shift_within_target"]:
                cells[list(NO_REFERENCE_COLUMNS).index("max_abs_slice_shift_hu")] += f" (> {MEAN_SHIFT_TARGET_HU:g})"
            lines.append(f"| {label_of(method)} | {len(result['methods'][method]['runs'])} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Noise: 10th percentile of the 15x15 local std in soft tissue (custom.simulation.noise_texture); shift: "
            f"output minus input there, target at most {MEAN_SHIFT_TARGET_HU:g} HU on every slice; edge width: median "
            "10-90 % rise of error-function fits across strong soft-tissue edges of the input "
            "(custom.evaluation.no_reference). Ratios are output over input.",
            "",
        ]
    return lines


def summarise(runs_by_method: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method, runs in runs_by_method.items():
        record: dict[str, Any] = {"label": label_of(method), "summary": aggregate(runs), "runs": runs}
        for reference_name, key in ((REFERENCE_METHOD, "delta_vs_ldct"), (BASELINE_METHOD, "delta_vs_red_cnn")):
            if reference_name in runs_by_method and method != reference_name:
                reference = runs_by_method[reference_name]
                record[key] = {f"psnr_{w}": paired_difference(runs, reference, f"psnr_{w}") for w in WINDOW_NAMES}
        methods[method] = record
    targets = {}
    if "ours" in methods and BASELINE_METHOD in methods:
        margin = methods["ours"]["delta_vs_red_cnn"][HEADLINE]["mean"]
        targets["ours_minus_red_cnn_psnr_w400_db"] = round(margin, 3)
        targets[f"ours_at_least_{TARGET_MARGIN_DB}_db_above_red_cnn"] = margin >= TARGET_MARGIN_DB
    return {"methods": methods, "targets": targets}


# ---------------------------------------------------------------------------------------------------------------
# command line


def run(args: argparse.Namespace) -> dict[str, Any]:
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or f"sqlite:///{output_dir / 'mlruns.db'}"
    datalist = args.datalist.resolve() if args.datalist else build_default_datalist(args.data_dir, output_dir, seed=0)
    validation_items = load_paired_datalist(datalist, "validation")
    test_items = evenly_spaced(load_paired_datalist(datalist, "test"), args.max_test_slices)
    scoring = BundleScoring(datalist)
    tracker = Tracker(tracking_uri, args.experiment, output_dir / "mlartifacts")
    budget = Budget(
        args.iterations,
        args.val_every,
        args.batch_size,
        args.patch_size,
        args.backbone,
        args.learning_rate,
        args.adversarial_warmup,
        args.train_seconds,
        args.perceptual_pretrained,
        args.num_workers,
        args.device,
        args.late_patch_size,
        args.method_settings,
    )
    methods = [m for m in ALL_METHODS if m in args.methods or m == REFERENCE_METHOD]
    variants = add_sweep_variants(args.sweeps, budget.method_settings)
    methods = [*[m for m in methods if m in LEARNED_METHODS], *variants, *[m for m in methods if m not in LEARNED_METHODS]]
    if "bm3d" in methods and importlib.util.find_spec("bm3d") is None:
        raise SystemExit(
            "bm3d is not installed (non-commercial licence, so not a runtime requirement): pip install -e '.[benchmark]', "
            "or leave it out with --methods"
        )
    real = [select_real_slices(volume, args.real_low_dose_slices, scoring) for volume in args.real_low_dose]

    runs_by_method: dict[str, list[dict[str, Any]]] = {}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs: list[tuple[str, int | None]] = [(m, s) for m in methods if is_learned(m) for s in seeds]
    jobs += [(m, None) for m in methods if not is_learned(m)]
    for method, seed in tqdm(jobs, desc="benchmark", file=sys.stderr):
        if is_learned(method):
            assert seed is not None  # learned methods are the ones queued with a seed
            run = train_and_score(method, seed, budget, datalist, test_items, scoring, tracker, output_dir, real)
        elif method in CLASSICAL_METHODS:
            tuning_items = evenly_spaced(validation_items, args.max_tuning_slices)
            run = tune_and_score(method, tuning_items, test_items, scoring, tracker, args.quick, real)
        else:
            run = score_input(test_items, scoring, tracker, real)
        runs_by_method.setdefault(method, []).append(run)

    noise = {
        split: round(scoring.noise_std_hu(items), 2)
        for split, items in (
            ("training", load_paired_datalist(datalist, "training")),
            ("validation", validation_items),
            ("test", test_items),
        )
    }
    result = {
        "datalist": str(datalist),
        "test_slices": len(test_items),
        "validation_slices": len(validation_items),
        "soft_tissue_noise_std_hu": noise,
        "budget": {
            **vars(budget),
            "max_epochs": math.ceil(args.iterations / args.val_every),
            "seeds": list(seeds),
            "quick": args.quick,
        },
        "tracking_uri": tracking_uri,
        "experiment": args.experiment,
        "hardware": {
            "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            "torch_threads": torch.get_num_threads(),
        },
        **summarise(runs_by_method),
    }
    if args.sweeps:
        result["sweep"] = summarise_sweep(args.sweeps, runs_by_method, budget)
    if real:
        result["no_reference"] = summarise_no_reference(runs_by_method, real)
    run_ids = [run["mlflow_run_id"] for runs in runs_by_method.values() for run in runs if run.get("mlflow_run_id")]
    tracked = [
        compare_runs.TrackedRun(tracker.client, run, compare_runs.run_label(run))
        for run in (tracker.client.get_run(run_id) for run_id in run_ids)
    ]
    compare_runs.plot_curves(tracked, compare_runs.DEFAULT_CURVES, output_dir / "validation_curves.png")
    learned = [run for run in tracked if is_learned(run.run.data.params.get("method", ""))]
    if learned:  # is the adversarial game stable: critic's Wasserstein estimate, its gradient penalty, the L1 term
        compare_runs.plot_curves(learned, TRAINING_CURVES, output_dir / "training_curves.png")
    table = markdown_report(result)
    print(table)
    if result["targets"]:
        print(json.dumps(result["targets"]))
    write_text_atomically(output_dir / "quality.md", table)
    write_text_atomically(output_dir / "quality.json", json.dumps(result, indent=2) + "\n")
    return result
