"""Denoising strength: how much of the network's change to the input is kept.

`source + strength * (denoised - source)`: 1 is the network's output, 0 the input unchanged. Scanner vendors offer
the same control (a blend of filtered and original reconstruction) because readers often prefer some of the
original noise texture; it also narrows the edge widening any denoiser brings (model card: the measured trade-off
of noise, edge width and PSNR). The mean HU of a region is kept at any strength.

"auto" chooses the strength of each slice from the noise measured in it (`NoiseStrengthRamp`): a network trained on
one noise level (quarter dose) removes about that much from any input, so on a quieter slice (a higher dose, a thin
body part) it also removes anatomy; measured noise, not the nominal dose, says how much of its change to keep.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

from custom.simulation.noise_texture import local_noise_hu, soft_tissue_mask

Image = TypeVar("Image", np.ndarray, torch.Tensor)
AUTO_STRENGTH = "auto"
Strength = float | str  # a number in [0, 1], or AUTO_STRENGTH


@dataclass(frozen=True)
class NoiseStrengthRamp:
    """Strength from a slice's measured noise (HU): 0 at or below `zero_at_hu`, 1 at or above `full_at_hu`, linear
    between; 1 where no noise can be measured (no soft tissue), as the network was trained."""

    zero_at_hu: float
    full_at_hu: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.zero_at_hu < self.full_at_hu:
            raise ValueError(f"noise ramp {self.zero_at_hu:g}-{self.full_at_hu:g} HU: needs 0 <= zero_at_hu < full_at_hu")

    def strength(self, noise_hu: float) -> float:
        if not math.isfinite(noise_hu):
            return 1.0
        return min(max((noise_hu - self.zero_at_hu) / (self.full_at_hu - self.zero_at_hu), 0.0), 1.0)

    @property
    def description(self) -> str:
        return f"from each slice's measured noise ({AUTO_STRENGTH}: 0 at {self.zero_at_hu:g} HU, 1 at {self.full_at_hu:g} HU)"


def measured_noise_hu(hu_slice: np.ndarray) -> float:
    """The slice's noise level: noise_texture.local_noise_hu in its soft tissue (the flattest 15x15 windows); nan
    without soft tissue. The same measure as the no-reference noise of score_model.py."""
    hu_slice = np.asarray(hu_slice, np.float32)
    return local_noise_hu(hu_slice, soft_tissue_mask(hu_slice))


def check_strength(strength: Strength) -> Strength:
    """A strength in [0, 1] as a float, or AUTO_STRENGTH; ValueError otherwise."""
    if strength == AUTO_STRENGTH:
        return AUTO_STRENGTH
    if isinstance(strength, str):
        try:
            strength = float(strength)
        except ValueError:
            raise ValueError(f"denoising strength {strength!r}: must be a number in [0, 1] or {AUTO_STRENGTH!r}") from None
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"denoising strength {strength}: must be in [0, 1] (1: the network's output, 0: the input unchanged)")
    return float(strength)


def check_ramp(strength: Strength, ramp: NoiseStrengthRamp | None) -> None:
    """ValueError when `strength` is AUTO_STRENGTH and there is no ramp to apply."""
    if strength == AUTO_STRENGTH and ramp is None:
        raise ValueError(f"denoising strength {AUTO_STRENGTH!r} needs a noise ramp")


def slice_strength(strength: Strength, source_slice: np.ndarray, ramp: NoiseStrengthRamp | None) -> float:
    """The strength for one (H, W) HU slice: `strength` itself, or, for AUTO_STRENGTH, `ramp` at its measured noise."""
    check_ramp(strength, ramp)
    if ramp is None or strength != AUTO_STRENGTH:
        return float(strength)
    return ramp.strength(measured_noise_hu(source_slice))


def blend_with_source(denoised: Image, source: Image, strength: float | Image) -> Image:
    """`source + strength * (denoised - source)`; at strength 1 `denoised` itself, untouched. `strength` may be an
    array that broadcasts (one value per slice)."""
    if isinstance(strength, float | int) and strength == 1.0:
        return denoised
    return source + strength * (denoised - source)


def strength_description(strength: Strength, noise_ramp_hu: Sequence[float]) -> str:
    """What a derived series says of its strength ("" at 1: the network's output)."""
    if check_strength(strength) == AUTO_STRENGTH:
        return f"; denoising strength {NoiseStrengthRamp(*noise_ramp_hu).description}"
    return "" if strength == 1.0 else f"; denoising strength {strength}"


class DenoisingStrengthd(MapTransform):
    """Blend `keys` (denoised HU) with `source_key` (the input HU) at `strength` in [0, 1], or, for "auto", at the
    strength `noise_ramp_hu` (zero_at_hu, full_at_hu) gives each slice's measured noise.

    Images are (C, H, W) slices or (C, H, W, D) volumes, slices along the last axis (as the slice inferer runs them).
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        source_key: str,
        strength: Strength,
        noise_ramp_hu: Sequence[float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.strength = check_strength(strength)
        self.ramp = NoiseStrengthRamp(*noise_ramp_hu) if noise_ramp_hu is not None else None
        check_ramp(self.strength, self.ramp)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.strength == 1.0:
            return d
        source = convert_to_tensor(d[self.source_key], track_meta=False)
        strength = self.slice_strengths(source) if self.strength == AUTO_STRENGTH else torch.tensor(float(self.strength))
        for key in self.key_iterator(d):
            denoised = d[key]
            d[key] = blend_with_source(denoised, source.to(denoised), strength.to(denoised))
        return d

    def slice_strengths(self, source: torch.Tensor) -> torch.Tensor:
        """The strength of each slice from its measured noise, shaped to broadcast over `source` (C, H, W) or
        (C, H, W, D); only "auto" measures."""
        hu = source.detach().float().cpu().numpy()
        slices = [hu[0]] if hu.ndim == 3 else [hu[0, ..., index] for index in range(hu.shape[-1])]
        values = torch.tensor([slice_strength(self.strength, hu_slice, self.ramp) for hu_slice in slices])
        return values.reshape((1, 1, 1) if hu.ndim == 3 else (1, 1, 1, -1))
