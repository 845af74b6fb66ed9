"""Denoising strength, fixed and "auto" (each slice's strength from its measured noise), as inference.json applies it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from builders import abdomen_phantom

from custom.conventions import NOISE_STRENGTH_RAMP_HU
from custom.inference.denoising_strength import (
    AUTO_STRENGTH,
    DenoisingStrengthd,
    NoiseStrengthRamp,
    check_strength,
    measured_noise_hu,
    strength_description,
)


def test_the_ramp_runs_from_0_to_1_between_its_levels_and_keeps_the_network_where_nothing_is_measured() -> None:
    ramp = NoiseStrengthRamp(16.0, 28.0)
    assert [ramp.strength(noise) for noise in (5.0, 16.0, 22.0, 28.0, 45.0)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert ramp.strength(math.nan) == 1.0
    with pytest.raises(ValueError, match="zero_at_hu < full_at_hu"):
        NoiseStrengthRamp(28.0, 16.0)


@pytest.mark.parametrize(("given", "expected"), [(0.5, 0.5), ("0.7", 0.7), (1, 1.0), ("auto", AUTO_STRENGTH)])
def test_strengths_are_numbers_in_0_1_or_auto(given: float | str, expected: float | str) -> None:
    assert check_strength(given) == expected


@pytest.mark.parametrize(("given", "problem"), [(1.2, "must be in"), ("strong", "a number in \\[0, 1\\] or 'auto'")])
def test_other_strengths_are_refused_in_one_line(given: float | str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_strength(given)


def test_the_measured_noise_is_the_phantoms_white_noise() -> None:
    for noise in (10.0, 30.0):
        assert measured_noise_hu(abdomen_phantom(seed=0, size=256, noise_hu=noise)) == pytest.approx(noise, rel=0.15)


def test_auto_keeps_the_quiet_slice_and_denoises_the_noisy_one() -> None:
    """A volume of a quiet (10 HU, a high dose) and a noisy (40 HU, quarter dose) slice, the 'network' a constant
    image: the quiet slice comes back as it was, the noisy one as the network's output."""
    source = torch.from_numpy(np.stack([abdomen_phantom(0, 256, 10.0), abdomen_phantom(1, 256, 40.0)], axis=-1))[None]
    denoised = torch.full_like(source, 40.0)
    transform = DenoisingStrengthd("pred", source_key="image_hu", strength="auto", noise_ramp_hu=NOISE_STRENGTH_RAMP_HU)
    blended = transform({"pred": denoised, "image_hu": source})["pred"]
    torch.testing.assert_close(blended[..., 0], source[..., 0])
    torch.testing.assert_close(blended[..., 1], denoised[..., 1])
    fixed = DenoisingStrengthd("pred", source_key="image_hu", strength=0.5)({"pred": denoised, "image_hu": source})["pred"]
    torch.testing.assert_close(fixed, (source + denoised) / 2)


def test_auto_needs_a_ramp_and_the_derived_series_says_what_was_done() -> None:
    with pytest.raises(ValueError, match="needs a noise ramp"):
        DenoisingStrengthd("pred", source_key="image_hu", strength="auto")
    assert strength_description(1.0, (16, 28)) == ""
    assert strength_description(0.5, (16, 28)) == "; denoising strength 0.5"
    assert "measured noise (auto: 0 at 16 HU, 1 at 28 HU)" in strength_description("auto", (16, 28))
