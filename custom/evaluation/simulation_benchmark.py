"""Measure what the low-dose simulation does to real CT slices, and how fast it is.

Prints one JSON object: PSNR / SSIM / RMSE of simulated low dose against full dose (mean and std over slices)
in the abdominal window [-160, 240] HU (data range 400) and in [-1000, 1000] HU (data range 2000); the level and
NPS of the inserted noise in soft tissue (custom.simulation.noise_texture, the calibration's measure) and that
level scaled to quarter dose; the seconds per slice of the torch simulation and, for comparison, of scikit-image
radon + iradon; and the settings used. The default flux and kernel were calibrated against real Mayo quarter dose
with scripts/calibrate_simulation.py, not here.

Example: python scripts/benchmark_simulation.py --data-dir ../shared/data/ct/totalsegmentator_abdomen_siemens
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from monai.data import MetaTensor
from monai.metrics import PSNRMetric, SSIMMetric
from tqdm import tqdm

from custom.conventions import EVALUATION_WINDOWS, SHARED_CT_DIR
from custom.io.dicom_series import read_header, read_slice_hu
from custom.simulation.low_dose import SimulateLowDose
from custom.simulation.noise_texture import measure_series
from custom.simulation.options import simulation_settings

DEFAULT_DATA_DIR = SHARED_CT_DIR / "totalsegmentator_abdomen_siemens"
WINDOWS = {window.name: (window.low, window.high) for window in EVALUATION_WINDOWS}
NOISE_SUMMARY_KEYS = (
    "method",
    "local_noise_hu_p10",
    "noise_std_hu",
    "peak_cycles_per_pixel",
    "peak_cycles_per_mm",
    "nyquist_share_of_peak",
    "num_rois",
)


def load_slices(data_dir: Path, max_slices: int | None) -> list[MetaTensor]:
    """DICOM slices of a folder as (1, H, W) HU MetaTensors whose affine carries the pixel spacing."""
    slices = []
    for path in sorted(p for p in data_dir.iterdir() if p.is_file()):
        header = read_header(path)
        if header is None or header.get("Modality") != "CT":
            continue
        row_spacing, column_spacing = (float(v) for v in header.PixelSpacing)
        affine = torch.diag(torch.tensor([row_spacing, column_spacing, 1.0, 1.0], dtype=torch.float64))
        slices.append(MetaTensor(torch.from_numpy(read_slice_hu(path)).float()[None], affine=affine))
        if max_slices and len(slices) == max_slices:
            break
    if not slices:
        raise FileNotFoundError(f"{data_dir}: no CT DICOM slices found")
    return slices


def window_metrics(low_dose: torch.Tensor, full_dose: torch.Tensor) -> dict[str, dict[str, float]]:
    """PSNR, SSIM and RMSE after clipping both images to each window, with the window width as data range."""
    results = {}
    for name, (lower, upper) in WINDOWS.items():
        data_range = upper - lower
        prediction, target = (image.clamp(lower, upper)[None] for image in (low_dose, full_dose))
        results[name] = {
            "psnr_db": float(cast(torch.Tensor, PSNRMetric(max_val=data_range)(prediction, target)).mean()),
            "ssim": float(cast(torch.Tensor, SSIMMetric(spatial_dims=2, data_range=data_range)(prediction, target)).mean()),
            "rmse_hu": float(torch.sqrt(((prediction - target) ** 2).mean())),
        }
    return results


def simulate_all(slices: list[MetaTensor], settings: dict, seed: int) -> tuple[list[dict], list[torch.Tensor], float]:
    """Metrics per slice, the simulated slices and the mean seconds per slice of the torch simulation."""
    simulator = SimulateLowDose(seed=seed, **settings)
    per_slice, start = [], time.perf_counter()
    low_doses = [torch.as_tensor(simulator(full_dose)) for full_dose in tqdm(slices, desc="simulating", unit="slice")]
    seconds = (time.perf_counter() - start) / len(slices)
    for low_dose, full_dose in zip(low_doses, slices):
        per_slice.append(window_metrics(low_dose, full_dose.as_tensor()))
    return per_slice, low_doses, seconds


def summarise(per_slice: list[dict]) -> dict:
    """Mean and standard deviation over slices of every metric in every window."""
    return {
        window: {
            metric: {
                "mean": float(np.mean([item[window][metric] for item in per_slice])),
                "std": float(np.std([item[window][metric] for item in per_slice])),
            }
            for metric in per_slice[0][window]
        }
        for window in WINDOWS
    }


def inserted_noise(slices: list[MetaTensor], low_doses: list[torch.Tensor]) -> dict[str, Any]:
    """Level and texture of the inserted noise (simulated minus full dose) in soft tissue, by the same measure
    as the calibration (custom.simulation.noise_texture), and its level per unit dose, i.e. scaled to quarter dose:
    the inserted variance grows as (1 - d) / d, so noise x sqrt(3 d / (1 - d)) compares inputs simulated at any d."""
    shapes = {(tuple(image.shape), round(float(image.pixdim[0]), 4)) for image in slices}
    if len(shapes) != 1:
        return {"skipped": f"slices differ in shape or pixel spacing ({sorted(shapes)}); measure subsets separately"}
    full = np.stack([image.numpy()[0] for image in slices])
    low = np.stack([image.numpy()[0] for image in low_doses])
    measure = measure_series(low, float(slices[0].pixdim[0]), range(len(slices)), full_dose_hu=full)
    return {key: measure[key] for key in NOISE_SUMMARY_KEYS}


SKIMAGE_FILTERS = ("shepp-logan", "cosine", "hamming", "hann")


def skimage_seconds_per_slice(image: np.ndarray, num_views: int, filter_name: str, repeats: int) -> float:
    """Seconds for scikit-image radon + iradon of one slice with the same views and filter (the ramp filter where
    scikit-image lacks ours, e.g. b30f: filtering is a negligible part of the time)."""
    from skimage.transform import iradon, radon

    angles = np.arange(num_views) * 180.0 / num_views
    start = time.perf_counter()
    for _ in range(repeats):
        sinogram = radon(image, theta=angles, circle=False)
        iradon(
            sinogram,
            theta=angles,
            circle=False,
            filter_name=filter_name if filter_name in SKIMAGE_FILTERS else "ramp",
            output_size=image.shape[0],
        )
    return (time.perf_counter() - start) / repeats


def run(args: argparse.Namespace) -> int:
    if not args.data_dir.is_dir():
        print(f"skipping the simulation benchmark: data folder {args.data_dir} not found (use --data-dir)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    slices = load_slices(args.data_dir, args.max_slices)
    settings = simulation_settings(args)
    report: dict = {
        "data_dir": str(args.data_dir),
        "slices": len(slices),
        "shapes": sorted({tuple(full_dose.shape[1:]) for full_dose in slices}),
        "pixel_spacings_mm": sorted({round(float(full_dose.pixdim[0]), 4) for full_dose in slices}),
    }
    per_slice, low_doses, seconds = simulate_all(slices, settings, args.seed)
    noise = inserted_noise(slices, low_doses)
    if "local_noise_hu_p10" in noise:
        dose = settings["dose_fraction"]
        noise["local_noise_hu_p10_at_quarter_dose"] = (
            noise["local_noise_hu_p10"] * math.sqrt(3 * dose / (1 - dose)) if dose < 1 else 0.0
        )
    report.update(
        settings={**settings, "seed": args.seed},
        metrics_vs_full_dose=summarise(per_slice),
        inserted_noise=noise,
        seconds_per_slice={"torch_simulation": seconds, "torch_device": "cpu", "torch_threads": torch.get_num_threads()},
    )
    if args.skimage_repeats > 0:
        report["seconds_per_slice"]["skimage_radon_iradon_single_thread"] = skimage_seconds_per_slice(
            slices[0].numpy()[0], args.num_views, args.filter_name, args.skimage_repeats
        )
    print(json.dumps(report, indent=2))
    return 0
