"""Measure how far simulated quarter dose sits from full dose on real CT slices, and how fast the projector is.

Prints one JSON object: PSNR / SSIM / RMSE of simulated low dose against full dose (mean and std over slices)
in the abdominal window [-160, 240] HU (data range 400) and in [-1000, 1000] HU (data range 2000), the seconds
per slice of the torch simulation and, for comparison, of scikit-image radon + iradon, and the settings used.
``--calibrate-to-psnr`` first searches the incident flux that gives that abdominal-window PSNR; it is how
``custom.simulation.low_dose.DEFAULT_INCIDENT_FLUX`` was chosen (Mayo quarter dose: about 29 dB).

Example: python scripts/benchmark_simulation.py --data-dir ../shared/data/ct/totalsegmentator_abdomen_siemens
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.metrics import PSNRMetric, SSIMMetric

from custom.conventions import EVALUATION_WINDOWS, PRIMARY_WINDOW, SHARED_CT_DIR
from custom.io.dicom_series import read_header, read_slice_hu
from custom.simulation.low_dose import (
    SimulateLowDose,
    line_integrals_of_hu,
    reconstructed_noise_hu,
)
from custom.simulation.projector import ParallelBeamProjector

DEFAULT_DATA_DIR = SHARED_CT_DIR / "totalsegmentator_abdomen_siemens"
WINDOWS = {window.name: (window.low, window.high) for window in EVALUATION_WINDOWS}
CALIBRATION_WINDOW = PRIMARY_WINDOW.name
CALIBRATION_ROUNDS = 4


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
            "psnr_db": float(PSNRMetric(max_val=data_range)(prediction, target).mean()),
            "ssim": float(SSIMMetric(spatial_dims=2, data_range=data_range)(prediction, target).mean()),
            "rmse_hu": float(torch.sqrt(((prediction - target) ** 2).mean())),
        }
    return results


def simulate_all(slices: list[MetaTensor], settings: dict, seed: int) -> tuple[list[dict], float]:
    """Metrics per slice and the mean seconds per slice of the torch simulation."""
    simulator = SimulateLowDose(seed=seed, **settings)
    per_slice, start = [], time.perf_counter()
    low_doses = [simulator(full_dose) for full_dose in slices]
    seconds = (time.perf_counter() - start) / len(slices)
    for low_dose, full_dose in zip(low_doses, slices):
        per_slice.append(window_metrics(low_dose.as_tensor(), full_dose.as_tensor()))
    return per_slice, seconds


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


def calibrate_flux(slices: list[MetaTensor], settings: dict, seed: int, target_psnr_db: float) -> tuple[float, list]:
    """Incident flux giving ``target_psnr_db`` in the abdominal window.

    The inserted noise variance is about proportional to 1 / flux, so PSNR rises by 10 log10 of the flux
    ratio; a few rounds absorb what clipping and electronic noise change in that relation. Each slice is
    forward-projected once and only the noise is redrawn per round.
    """
    projectors = [ParallelBeamProjector(tuple(full_dose.shape[1:]), settings["num_views"], settings["filter_name"]) for full_dose in slices]
    spacings = [float(full_dose.pixdim[0]) for full_dose in slices]
    line_integrals = [
        line_integrals_of_hu(full_dose.as_tensor()[None], projector, spacing)
        for full_dose, projector, spacing in zip(slices, projectors, spacings)
    ]
    noise_settings = {key: settings[key] for key in ("dose_fraction", "electronic_noise_var")}
    flux, history = settings["incident_flux"], []
    for _ in range(CALIBRATION_ROUNDS):
        generator = torch.Generator().manual_seed(seed)
        per_slice = []
        for full_dose, projector, spacing, integrals in zip(slices, projectors, spacings, line_integrals):
            noise = reconstructed_noise_hu(integrals, projector, spacing, generator, incident_flux=flux, **noise_settings)
            per_slice.append(window_metrics(full_dose.as_tensor() + noise[0], full_dose.as_tensor()))
        psnr = summarise(per_slice)[CALIBRATION_WINDOW]["psnr_db"]["mean"]
        history.append({"incident_flux": flux, "psnr_db": psnr})
        flux *= 10 ** ((target_psnr_db - psnr) / 10)
    return flux, history


def skimage_seconds_per_slice(image: np.ndarray, num_views: int, filter_name: str, repeats: int) -> float:
    """Seconds for scikit-image radon + iradon of one slice with the same views and filter."""
    from skimage.transform import iradon, radon

    angles = np.arange(num_views) * 180.0 / num_views
    start = time.perf_counter()
    for _ in range(repeats):
        sinogram = radon(image, theta=angles, circle=False)
        iradon(sinogram, theta=angles, circle=False, filter_name=None if filter_name == "ramp" else filter_name, output_size=image.shape[0])
    return (time.perf_counter() - start) / repeats


def run(args: argparse.Namespace) -> int:
    if not args.data_dir.is_dir():
        print(f"skipping the simulation benchmark: data folder {args.data_dir} not found (use --data-dir)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    slices = load_slices(args.data_dir, args.max_slices)
    settings = {
        "dose_fraction": args.dose_fraction,
        "incident_flux": args.incident_flux,
        "electronic_noise_var": args.electronic_noise_var,
        "num_views": args.num_views,
        "filter_name": args.filter_name,
    }
    report: dict = {
        "data_dir": str(args.data_dir),
        "slices": len(slices),
        "shapes": sorted({tuple(full_dose.shape[1:]) for full_dose in slices}),
        "pixel_spacings_mm": sorted({round(float(full_dose.pixdim[0]), 4) for full_dose in slices}),
    }
    if args.calibrate_to_psnr is not None:
        settings["incident_flux"], report["calibration"] = calibrate_flux(slices, settings, args.seed, args.calibrate_to_psnr)
    per_slice, seconds = simulate_all(slices, settings, args.seed)
    report.update(
        settings={**settings, "seed": args.seed},
        metrics_vs_full_dose=summarise(per_slice),
        seconds_per_slice={"torch_simulation": seconds, "torch_device": "cpu", "torch_threads": torch.get_num_threads()},
    )
    if args.skimage_repeats > 0:
        report["seconds_per_slice"]["skimage_radon_iradon_single_thread"] = skimage_seconds_per_slice(
            slices[0].numpy()[0], args.num_views, args.filter_name, args.skimage_repeats
        )
    print(json.dumps(report, indent=2))
    return 0

