"""Slice-by-slice inference with mixed precision on CUDA and CPU alike.

MONAI's evaluators autocast only on CUDA; this inferer autocasts on the device the data is on (float16 on CUDA,
bfloat16 on CPU) and also takes single slices, so one bundle config serves volumes and 2D images.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from monai.inferers import SliceInferer, SlidingWindowInferer

AUTOCAST_DTYPES = {"cuda": torch.float16, "cpu": torch.bfloat16}


class AutocastSliceInferer(SliceInferer):
    """`SliceInferer` (2D network over the slices of a 3D volume) under optional `torch.autocast`.

    Args:
        amp: run the network under autocast (float16 on CUDA, bfloat16 on CPU); outputs keep the input dtype.
        args, kwargs: `SliceInferer` arguments (`spatial_dim`, `roi_size`, `sw_batch_size`, ...).
    """

    def __init__(self, *args: Any, amp: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.amp = amp

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        device_type = inputs.device.type
        with torch.autocast(device_type, dtype=AUTOCAST_DTYPES.get(device_type), enabled=self.amp):
            if inputs.ndim == 4:  # (batch, channel, height, width): already slices, tile them like the volume's
                # typed Tensor | tuple | dict for networks with several outputs; the denoiser returns one tensor
                outputs = cast(torch.Tensor, SlidingWindowInferer.__call__(self, inputs, network, *args, **kwargs))
                return outputs.to(inputs.dtype)
            return super().__call__(inputs, network, *args, **kwargs)
