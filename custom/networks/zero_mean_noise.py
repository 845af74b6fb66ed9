"""Remove the local mean of the predicted noise, so the denoiser cannot move the mean HU of a region.

Noise in a filtered back-projection has no power at zero frequency (the ramp filter removes it) and little just
above it, so the true noise of a low-dose slice averages out over any region a couple of centimetres wide. A
residual denoiser whose noise estimate has a local mean shifts whole organs by that much: a bias a reader takes for
another tissue, and one that L1 on patches does not see. Subtracting a wide Gaussian local mean from the estimate
rules that out by construction, in training and inference alike, at the price of the estimate's power below about
1 / (2 pi sigma) cycles/pixel, where CT noise has almost none.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TRUNCATE_SIGMAS = 3.0


class LocalMeanRemoval(nn.Module):
    """``x`` (N, ``channels``, H, W) minus its Gaussian-weighted local mean (sigma in pixels), per channel.

    Borders are replicated, so a constant or linear field is removed exactly and inputs of any size work, smaller
    than the kernel included. State dicts are those of a network without this layer.
    """

    def __init__(self, sigma_px: float, channels: int = 1) -> None:
        super().__init__()
        if not sigma_px > 0:
            raise ValueError(f"the noise-mean sigma must be positive (pixels), got {sigma_px}")
        self.sigma_px = float(sigma_px)
        self.channels = channels
        self.radius = math.ceil(TRUNCATE_SIGMAS * sigma_px)
        offsets = torch.arange(-self.radius, self.radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets / sigma_px) ** 2)
        kernel = (kernel / kernel.sum()).expand(channels, 1, -1)
        # plain tensor attributes, not buffers: no state-dict entries, and TorchScript/ONNX keep them as constants
        self.row_kernel = kernel[..., None].contiguous()
        self.column_kernel = kernel[:, :, None, :].contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, [self.radius, self.radius, self.radius, self.radius], mode="replicate")
        mean = F.conv2d(padded, self.row_kernel.to(device=x.device, dtype=x.dtype), groups=self.channels)
        mean = F.conv2d(mean, self.column_kernel.to(device=x.device, dtype=x.dtype), groups=self.channels)
        return x - mean

    def extra_repr(self) -> str:
        return f"sigma_px={self.sigma_px:g}, channels={self.channels}"
