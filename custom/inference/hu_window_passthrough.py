"""Keep the input HU wherever the input lies outside the model's intensity window.

The network sees HU clipped to [hu_min, hu_max]: below -1024 HU (padding, air outside the reconstruction circle)
and above 3072 HU (metal) its output says nothing about the true value, so those voxels pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor


class RestoreOutsideWindowd(MapTransform):
    """Replace `keys` by `source_key` wherever `source_key` is below `hu_min` or above `hu_max` (both in HU)."""

    def __init__(
        self,
        keys: Sequence[str] | str,
        source_key: str,
        hu_min: float,
        hu_max: float,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.hu_min = hu_min
        self.hu_max = hu_max

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        source = convert_to_tensor(d[self.source_key], track_meta=False)
        outside = (source < self.hu_min) | (source > self.hu_max)
        for key in self.key_iterator(d):
            prediction = d[key]
            d[key] = prediction.where(~outside.to(prediction.device), source.to(prediction))
        return d
