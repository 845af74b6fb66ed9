"""Denoising strength: how much of the network's change to the input is kept.

`source + strength * (denoised - source)`: 1 is the network's output, 0 the input unchanged. Scanner vendors offer
the same control (a blend of filtered and original reconstruction) because readers often prefer some of the
original noise texture; it also narrows the edge widening any denoiser brings (model card: the measured trade-off
of noise, edge width and PSNR). The mean HU of a region is kept at any strength.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import torch
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

Image = TypeVar("Image", np.ndarray, torch.Tensor)


def check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"denoising strength {strength}: must be in [0, 1] (1: the network's output, 0: the input unchanged)")
    return float(strength)


def blend_with_source(denoised: Image, source: Image, strength: float) -> Image:
    """`source + strength * (denoised - source)`; at strength 1 `denoised` itself, untouched."""
    return denoised if strength == 1.0 else source + strength * (denoised - source)


class DenoisingStrengthd(MapTransform):
    """Blend `keys` (denoised HU) with `source_key` (the input HU) at `strength` in [0, 1]."""

    def __init__(self, keys: Sequence[str] | str, source_key: str, strength: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.strength = check_strength(strength)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.strength == 1.0:
            return d
        source = convert_to_tensor(d[self.source_key], track_meta=False)
        for key in self.key_iterator(d):
            d[key] = blend_with_source(d[key], source.to(d[key]), self.strength)
        return d
