"""Does a denoiser carry far context into the organs? The same central region, denoised with more and more around it.

A generator trained on patches meets, on a whole slice, context it never saw: air, table and the body outline
hundreds of pixels away. A convolutional network whose receptive field exceeds its training patches may let that
context change its output anywhere, and whether it does is left to training (of three seeds of one recipe, one
lost 1.4 dB in the middle of the body). Whole-slice-against-tiles PSNR shows that something is wrong; this shows
where it comes from: the central `region` x `region` pixels of a slice are denoised from centred crops of growing
size and from the whole slice, and scored against the full dose in the same pixels. A denoiser that uses only local
context scores the same at every size; one that carries far context drifts as the crop grows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from custom.conventions import PRIMARY_WINDOW, EvaluationWindow
from custom.evaluation.windowed_metrics import slice_scores

DEFAULT_REGION = 128  # pixels: a few centimetres of organ at CT pixel sizes


def central_region_psnr(
    denoise: Callable[[np.ndarray], np.ndarray],
    low_dose: np.ndarray,
    whole_output: np.ndarray,
    full_dose: np.ndarray,
    context_sizes: Sequence[int],
    region: int = DEFAULT_REGION,
    window: EvaluationWindow = PRIMARY_WINDOW,
) -> dict[str, float]:
    """PSNR in `window` of the central `region` pixels, denoised within centred crops of each size and whole.

    Keys "context_<size>" for each crop size and "whole" for `whole_output` (`denoise` of the whole slice, which a
    caller scoring whole slices already has). Sizes must lie between `region` and the slice's smaller side.
    """
    height, width = low_dose.shape
    for size in context_sizes:
        if not region <= size <= min(height, width):
            raise ValueError(
                f"context size {size} must lie between the region ({region}) and the slice's side ({min(height, width)})"
            )
    top, left = (height - region) // 2, (width - region) // 2
    reference = torch.from_numpy(np.ascontiguousarray(full_dose[top : top + region, left : left + region]))

    def score(output: np.ndarray, offset_top: int, offset_left: int) -> float:
        crop = output[top - offset_top : top - offset_top + region, left - offset_left : left - offset_left + region]
        return slice_scores(torch.from_numpy(np.ascontiguousarray(crop)), reference, window)[0]

    scores = {}
    for size in context_sizes:
        crop_top, crop_left = (height - size) // 2, (width - size) // 2
        output = denoise(low_dose[crop_top : crop_top + size, crop_left : crop_left + size])
        scores[f"context_{size}"] = score(output, crop_top, crop_left)
    scores["whole"] = score(whole_output, 0, 0)
    return scores
