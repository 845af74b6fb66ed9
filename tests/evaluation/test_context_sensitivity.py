"""Central-region PSNR by context size: flat for a local denoiser, drifting for one that uses far context."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from custom.evaluation.context_sensitivity import central_region_psnr


def phantom_pair(size: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Air around a soft-tissue disc (40 HU), and the same with 30 HU of white noise."""
    yy, xx = np.mgrid[:size, :size]
    full = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2, 40.0, -1000.0).astype(np.float32)
    noisy = full + np.random.default_rng(seed).normal(0.0, 30.0, full.shape).astype(np.float32)
    return noisy, full


def test_a_local_filter_scores_the_same_at_every_context_size() -> None:
    noisy, full = phantom_pair()

    # crops at least the region plus the filter's reach on each side: the region's pixels see the same input
    def local_filter(hu: np.ndarray) -> np.ndarray:
        return uniform_filter(hu, 5, mode="nearest")

    scores = central_region_psnr(local_filter, noisy, local_filter(noisy), full, [160, 192, 256])
    assert set(scores) == {"context_160", "context_192", "context_256", "whole"}
    assert max(scores.values()) - min(scores.values()) < 1e-6
    assert scores["whole"] > central_region_psnr(lambda hu: hu, noisy, noisy, full, [128])["whole"] + 5, "it denoises"


def test_a_denoiser_that_uses_the_whole_input_drifts_as_the_context_grows() -> None:
    noisy, full = phantom_pair()

    def global_mean_shift(hu: np.ndarray) -> np.ndarray:  # moves every pixel by a tenth of the input's mean
        return uniform_filter(hu, 5, mode="nearest") - 0.1 * float(hu.mean() - 40.0)

    scores = central_region_psnr(global_mean_shift, noisy, global_mean_shift(noisy), full, [128, 256])
    assert scores["context_128"] - scores["whole"] > 3, "the air around the body moves the organ's HU"


def test_context_sizes_outside_the_region_and_the_slice_are_refused() -> None:
    noisy, full = phantom_pair(256)
    with pytest.raises(ValueError, match="between the region"):
        central_region_psnr(lambda hu: hu, noisy, noisy, full, [512])
    with pytest.raises(ValueError, match="between the region"):
        central_region_psnr(lambda hu: hu, noisy, noisy, full, [64])
