"""The WGAN-GP critic: a plain strided CNN that gives one unbounded score per image.

Batch normalisation is left out on purpose: the gradient penalty is defined per sample, and batch statistics
would couple the samples (Gulrajani et al. 2017, section 4). Global average pooling makes the critic accept
any patch size.
"""

from __future__ import annotations

import torch
from torch import nn


class WGANCritic(nn.Module):
    """Scores images; higher means "more like full dose".

    Args:
        in_channels: image channels (1 for CT).
        base_channels: channels of the first layer; each further layer doubles them, capped at 8x.
        num_layers: strided 4x4 convolutions, each halving the resolution.
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 64, num_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index in range(num_layers):
            out_channels = base_channels * min(2**index, 8)
            layers += [nn.Conv2d(channels, out_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x).mean(dim=(-2, -1))).squeeze(-1)
