"""No-reference measures of a denoiser on a real low-dose series that has no full-dose partner.

Without a reference, PSNR/SSIM cannot be computed; what can be checked is what the denoiser did to its own input,
slice by slice, in HU:

* noise reduction: the noise level of custom.simulation.noise_texture (10th percentile of the 15x15 local standard
  deviation inside its soft-tissue mask, i.e. the flattest patches, where anatomy adds least) of output and input,
  with the mask taken from the input so both are measured on the same pixels;
* mean shift: the mean of output minus input over that mask. Smoothing zero-mean noise leaves the mean where it
  was, so a shift is a bias of the denoiser (a HU error a radiologist would read), whatever the noise did;
* edge width: how far a denoiser widens soft-tissue edges (`custom.evaluation.edge_width`). Noise reduction is
  cheap if edges pay for it; the two numbers together tell smoothing from denoising. Measured against the noisy
  input, the ratio includes the fit's noise bias: a perfect denoiser reads about 1.06-1.09 at quarter-dose noise
  (`edge_width` says how that was measured).

Everything takes HU arrays (H, W) and the pixel spacing (row, column) in mm; numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from custom.evaluation.edge_width import edge_widths_mm
from custom.simulation.noise_texture import local_noise_hu, soft_tissue_mask

MEAN_SHIFT_TARGET_HU = 1.0  # a denoiser should not move the soft-tissue mean by more, on any slice


def noise_levels_hu(input_hu: np.ndarray, output_hu: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Soft-tissue noise level (noise_texture.local_noise_hu) of input and output over the same mask; nan if the
    mask holds no whole 15x15 window."""
    return local_noise_hu(input_hu, mask), local_noise_hu(output_hu, mask)


def mean_shift_hu(input_hu: np.ndarray, output_hu: np.ndarray, mask: np.ndarray) -> float:
    """Mean of output minus input over `mask` (HU); nan for an empty mask."""
    if not mask.any():
        return float("nan")
    return float(np.mean(np.asarray(output_hu, np.float64)[mask] - np.asarray(input_hu, np.float64)[mask]))


def summarise_series(
    inputs_hu: Sequence[np.ndarray], outputs_hu: Sequence[np.ndarray], pixel_spacing_mm: tuple[float, float]
) -> dict[str, float | int | None]:
    """The three measures over the slices of one series, output against input; None where nothing was measurable.

    Noise levels are medians over slices (as noise_texture.measure_series does), their ratio is output over
    input; the mean shift is pooled over every mask pixel of every slice, next to the largest per-slice |shift|;
    edge widths are medians over all paired profiles of all slices.
    """
    noise_in, noise_out, shifts, pixels, widths_in, widths_out = [], [], [], [], [], []
    for input_hu, output_hu in zip(inputs_hu, outputs_hu, strict=True):
        mask = soft_tissue_mask(input_hu)
        levels = noise_levels_hu(input_hu, output_hu, mask)
        noise_in.append(levels[0])
        noise_out.append(levels[1])
        if mask.any():
            shifts.append(mean_shift_hu(input_hu, output_hu, mask))
            pixels.append(int(mask.sum()))
        slice_in, slice_out = edge_widths_mm(input_hu, output_hu, pixel_spacing_mm)
        widths_in.append(slice_in)
        widths_out.append(slice_out)
    paired_in, paired_out = np.concatenate(widths_in), np.concatenate(widths_out)
    measured = [(a, b) for a, b in zip(noise_in, noise_out) if np.isfinite(a) and np.isfinite(b)]
    noise_input = float(np.median([a for a, _ in measured])) if measured else None
    noise_output = float(np.median([b for _, b in measured])) if measured else None
    width_input = float(np.median(paired_in)) if len(paired_in) else None
    width_output = float(np.median(paired_out)) if len(paired_out) else None
    return {
        "noise_input_hu": noise_input,
        "noise_output_hu": noise_output,
        "noise_ratio": noise_output / noise_input if noise_input and noise_output is not None else None,
        "noise_slices": len(measured),
        "mean_shift_hu": float(np.average(shifts, weights=pixels)) if shifts else None,
        "max_abs_slice_shift_hu": float(np.max(np.abs(shifts))) if shifts else None,
        "edge_width_input_mm": width_input,
        "edge_width_output_mm": width_output,
        "edge_width_ratio": width_output / width_input if width_input and width_output is not None else None,
        "edge_profiles": len(paired_in),
    }
