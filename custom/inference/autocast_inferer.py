"""Slice-by-slice inference with mixed precision on CUDA and CPU alike.

MONAI's evaluators autocast only on CUDA; this inferer autocasts on the device the data is on (float16 on CUDA,
bfloat16 on CPU), takes single slices too, so one bundle config serves volumes and 2D images, and can average the
network over flipped views of each slice (`custom.inference.self_ensemble`), so MONAI Deploy and MONAI Label, which
run the bundle's inferer, get the same output as `inference.json`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import torch
from monai.inferers import SliceInferer, SlidingWindowInferer

from custom.inference.self_ensemble import check_self_ensemble, self_ensemble

AUTOCAST_DTYPES = {"cuda": torch.float16, "cpu": torch.bfloat16}


class AutocastSliceInferer(SliceInferer):
    """`SliceInferer` (2D network over the slices of a 3D volume) under optional `torch.autocast`.

    Args:
        amp: run the network under autocast (float16 on CUDA, bfloat16 on CPU); outputs keep the input dtype.
        self_ensemble: average the network over this many dihedral views of each slice or tile (1, 2, 4 or 8; 1:
            the network alone); the time per slice grows in proportion.
        args, kwargs: `SliceInferer` arguments (`spatial_dim`, `roi_size`, `sw_batch_size`, ...).
    """

    def __init__(self, *args: Any, amp: bool = False, self_ensemble: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.amp = amp
        self.self_ensemble = check_self_ensemble(self_ensemble)

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        device_type = inputs.device.type
        network = partial(self_ensemble, network, size=self.self_ensemble)
        with torch.autocast(device_type, dtype=AUTOCAST_DTYPES.get(device_type), enabled=self.amp):
            if inputs.ndim == 4:  # (batch, channel, height, width): already slices, tile them like the volume's
                # typed Tensor | tuple | dict for networks with several outputs; the denoiser returns one tensor
                outputs = cast(torch.Tensor, SlidingWindowInferer.__call__(self, inputs, network, *args, **kwargs))
                return outputs.to(inputs.dtype)
            return super().__call__(inputs, network, *args, **kwargs)
