"""Score one saved model as a user would run it: paired slices with a reference, and real low-dose series without.

With a reference (a paired datalist split): PSNR and SSIM in every evaluation window of the model's output and of
the low-dose input, for whole-slice inference (the default everywhere) and, to check that whole slices lose
nothing, for Gaussian-blended tiles; the soft-tissue mean shift of the output against the input; the edge width of
every image against the full dose at the same edge points (`custom.evaluation.edge_width`), the widening a
no-reference ratio can only estimate; the RMSE within each band of the full dose's HU (air, lung, soft tissue,
bone: `custom.evaluation.tissue_error`), which shows where the wide window's error lives; on request, how the
whole-slice output of the slice's centre depends on the context around it
(`custom.evaluation.context_sensitivity`).
Without a reference (a real low-dose series such as Mayo L109 quarter dose): the no-reference measures of
`custom.evaluation.no_reference` (noise reduction, mean shift, edge widening) of whole-slice outputs.
Denoising strengths below 1 (`custom.inference.denoising_strength`) are scored from the same whole-slice outputs,
blended with the input as inference.json's `--strength` does; with a self-ensemble size above 1, every output is the
mean over that many flipped views (`custom.inference.self_ensemble`), as inference.json's `--self_ensemble` gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.transforms import LoadImage
from torch import nn
from tqdm import tqdm

from custom.conventions import CHANNELS_LAST, EVALUATION_WINDOWS
from custom.data.datalist import load_paired_datalist
from custom.evaluation.context_sensitivity import central_region_psnr
from custom.evaluation.edge_width import edge_widths_against_reference
from custom.evaluation.no_reference import summarise_series
from custom.evaluation.noise_measurement import read_series
from custom.evaluation.subsets import evenly_spaced
from custom.evaluation.tissue_error import TissueErrors
from custom.evaluation.windowed_metrics import slice_scores
from custom.inference.denoising_strength import (
    NoiseStrengthRamp,
    Strength,
    blend_with_source,
    check_strength,
    slice_strength,
)
from custom.inference.self_ensemble import check_self_ensemble, self_ensemble
from custom.networks.memory_format import use_channels_last
from custom.networks.model_file import ModelFile, build_generator, load_weights
from custom.simulation.noise_texture import soft_tissue_mask

TILE_OVERLAP = 0.25
Denoiser = Callable[[np.ndarray], np.ndarray]


def load_denoisers(
    model: ModelFile, tile_sizes: Sequence[int], device: str | torch.device = "cpu", self_ensemble_size: int = 1
) -> dict[str, Denoiser]:
    """HU -> HU functions of the saved model: "whole" slice, and "tiled_<size>" for each tile size.

    As inference.json runs it: in float32 and channels-last on `device`, averaged over `self_ensemble_size` flipped
    views of its input; NumPy arrays go in and come out.
    """
    loaded: nn.Module = use_channels_last(load_weights(build_generator(model), model).eval().to(device), CHANNELS_LAST)
    network = partial(self_ensemble, loaded, size=check_self_ensemble(self_ensemble_size))
    low, high = model.hu_window

    def run(hu: np.ndarray, inferer: SlidingWindowInferer | None) -> np.ndarray:
        image = torch.from_numpy(np.clip((np.asarray(hu, np.float32) - low) / (high - low), 0.0, 1.0))[None, None]
        image = image.to(device)
        with torch.no_grad():
            # the inferer's result is typed for networks with several outputs; the denoiser has one
            output = network(image) if inferer is None else cast(torch.Tensor, inferer(image, network))
        denoised = output.float().cpu().numpy()[0, 0] * (high - low) + low
        outside = (hu < low) | (hu > high)  # as inference.json does: HU outside the model's window pass through
        return np.where(outside, hu, denoised).astype(np.float32)

    def denoiser(inferer: SlidingWindowInferer | None) -> Denoiser:
        return lambda hu: run(hu, inferer)

    denoisers = {"whole": denoiser(None)}
    for size in tile_sizes:
        denoisers[f"tiled_{size}"] = denoiser(
            SlidingWindowInferer((size, size), sw_batch_size=16, overlap=TILE_OVERLAP, mode="gaussian")
        )
    return denoisers


def strength_label(strength: Strength) -> str:
    return strength if isinstance(strength, str) else f"{strength:g}"


def strength_name(strength: Strength) -> str:
    return f"whole_strength_{strength_label(strength)}"


def blended(output: np.ndarray, low_dose: np.ndarray, strength: Strength, ramp: NoiseStrengthRamp | None) -> np.ndarray:
    """A whole-slice output blended with its input at `strength` ("auto": the ramp at the input's measured noise)."""
    return blend_with_source(output, low_dose, slice_strength(check_strength(strength), low_dose, ramp))


def with_strengths(
    outputs: dict[str, np.ndarray],
    low_dose: np.ndarray,
    strengths: Sequence[Strength],
    ramp: NoiseStrengthRamp | None = None,
) -> dict[str, np.ndarray]:
    """`outputs` plus the whole-slice output blended with the input at each strength (no second network run)."""
    return {**outputs, **{strength_name(s): blended(outputs["whole"], low_dose, s, ramp) for s in strengths}}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def score_pairs(
    denoisers: dict[str, Denoiser],
    datalist: Path,
    split: str,
    max_slices: int | None,
    strengths: Sequence[Strength] = (),
    context_sizes: Sequence[int] = (),
    ramp: NoiseStrengthRamp | None = None,
) -> dict[str, Any]:
    """Metrics of every denoiser (and whole slices at each strength; "auto" needs `ramp`) and of the low-dose input
    on `max_slices` evenly spaced pairs of `split`; with `context_sizes`, the "whole" denoiser's central-region PSNR
    at each context size (`custom.evaluation.context_sensitivity`)."""
    entries = load_paired_datalist(datalist, split)
    entries = evenly_spaced(entries, max_slices)
    load = LoadImage(image_only=True)
    names = ("low_dose", *denoisers, *map(strength_name, strengths))
    values: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    edges: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {name: ([], []) for name in names}
    seconds = dict.fromkeys(denoisers, 0.0)
    context: dict[str, list[float]] = {}
    tissue_errors = TissueErrors()
    for entry in tqdm(entries, desc=f"scoring {split} pairs", unit="slice"):
        low_image, full_image = (load(entry[key]) for key in ("image", "label"))
        spacing = (float(low_image.pixdim[0]), float(low_image.pixdim[1]))
        low_dose, full_dose = (np.asarray(image, np.float32).squeeze() for image in (low_image, full_image))
        outputs = {"low_dose": low_dose}
        for name, denoise in denoisers.items():
            start = time.perf_counter()
            outputs[name] = denoise(low_dose)
            seconds[name] += time.perf_counter() - start
        outputs = with_strengths(outputs, low_dose, strengths, ramp)
        mask = soft_tissue_mask(full_dose)
        tissue_errors.add(full_dose, outputs)
        for name, output in outputs.items():
            for window in EVALUATION_WINDOWS:
                psnr, ssim = slice_scores(torch.from_numpy(output), torch.from_numpy(full_dose), window)
                values[name].setdefault(f"psnr_{window.name}", []).append(psnr)
                values[name].setdefault(f"ssim_{window.name}", []).append(ssim)
            if name != "low_dose" and mask.any():
                values[name].setdefault("soft_tissue_shift_hu", []).append(float((output - low_dose)[mask].mean()))
        if context_sizes:
            try:
                region_scores = central_region_psnr(denoisers["whole"], low_dose, outputs["whole"], full_dose, context_sizes)
            except ValueError as error:
                raise ValueError(f"{entry['image']}: {error}") from error
            for size, psnr in region_scores.items():
                context.setdefault(size, []).append(psnr)
        for name, (reference_widths, widths) in edge_widths_against_reference(low_dose, full_dose, outputs, spacing).items():
            edges[name][0].append(reference_widths)
            edges[name][1].append(widths)
    report: dict[str, Any] = {
        "datalist": str(datalist),
        "split": split,
        "slices": len(entries),
        "windows": {window.name: window.label for window in EVALUATION_WINDOWS},
    }
    for name, metrics in values.items():
        report[name] = {metric: mean_std(samples) for metric, samples in metrics.items()}
        report[name].update(edge_width_summary(*edges[name]))
        report[name]["error_by_tissue"] = tissue_errors.report(name)
        if name in seconds:
            report[name]["seconds_per_slice"] = seconds[name] / len(entries)
    if context:
        report["whole"]["central_region_psnr_by_context"] = {size: mean_std(samples) for size, samples in context.items()}
    return report


def edge_width_summary(reference_widths: list[np.ndarray], widths: list[np.ndarray]) -> dict[str, float | int | None]:
    """Median edge width (mm) of an image and its ratio to the full dose's, over all paired profiles of all slices
    (1.0: edges as sharp as the reference; the noisy input reads below 1)."""
    reference, image = np.concatenate(reference_widths), np.concatenate(widths)
    if not len(image):
        return {"edge_width_mm": None, "edge_width_ratio_to_reference": None, "edge_profiles": 0}
    width = float(np.median(image))
    return {
        "edge_width_mm": width,
        "edge_width_ratio_to_reference": width / float(np.median(reference)),
        "edge_profiles": len(image),
    }


def score_real_series(
    denoisers: dict[str, Denoiser],
    series: Path,
    slices: int,
    strengths: Sequence[Strength] = (),
    ramp: NoiseStrengthRamp | None = None,
) -> dict[str, Any]:
    """No-reference measures of whole-slice outputs on `slices` evenly spaced slices of a real low-dose series, and
    under "strengths" of the outputs blended with the input at each strength."""
    volume = read_series(series)
    margin = min(8, len(volume.hu) // 4)
    indices = np.unique(np.linspace(margin, len(volume.hu) - 1 - margin, slices).round().astype(int))
    inputs = [volume.hu[index].astype(np.float32) for index in indices]
    outputs = [denoisers["whole"](hu) for hu in tqdm(inputs, desc=f"denoising {series.name}", unit="slice")]
    spacing = (volume.pixel_spacing_mm, volume.pixel_spacing_mm)
    report: dict[str, Any] = {
        "series": str(series),
        "slices": [int(i) for i in indices],
        **summarise_series(inputs, outputs, spacing),
    }
    if strengths:
        report["strengths"] = {
            strength_label(s): summarise_series(
                inputs, [blended(output, hu, s, ramp) for hu, output in zip(inputs, outputs, strict=True)], spacing
            )
            for s in strengths
        }
    return report
