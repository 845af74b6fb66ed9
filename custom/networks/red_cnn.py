"""RED-CNN (Chen et al., "Low-Dose CT with a Residual Encoder-Decoder Convolutional Neural Network", IEEE TMI 2017).

The literature's standard LDCT baseline, implemented here so benchmarks compare against it on the same data, budget
and trainer as our generator. Five 5x5 unpadded convolutions shrink the image by 4 pixels each; five transposed
convolutions grow it back, so the output has the input's size without any padding or cropping. Shortcuts add the
input of the first, third and fifth encoder layers to the outputs of the matching decoder layers (the last one is
the image itself), each followed by a ReLU, as in the paper's Fig. 2.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_ENCODER_LAYERS = 5
INIT_STD = 0.01  # the paper's weight initialisation


class REDCNN(nn.Module):
    """Residual encoder-decoder CNN for (B, C, H, W) slices normalised to [0, 1], any H, W of at least 21 pixels.

    Args:
        in_channels: image channels (1 for CT); the output has the same channels.
        channels: feature maps of every hidden layer (96 in the paper).
        kernel_size: convolution size (5 in the paper); each layer shrinks or grows the image by kernel_size - 1.
    """

    def __init__(self, in_channels: int = 1, channels: int = 96, kernel_size: int = 5) -> None:
        super().__init__()
        # what a saved model records to be rebuilt (custom.networks.model_file)
        self.settings = dict(in_channels=in_channels, channels=channels, kernel_size=kernel_size)
        encoder_in = [in_channels] + [channels] * (NUM_ENCODER_LAYERS - 1)
        decoder_out = [channels] * (NUM_ENCODER_LAYERS - 1) + [in_channels]
        self.encoder = nn.ModuleList(nn.Conv2d(c_in, channels, kernel_size) for c_in in encoder_in)
        self.decoder = nn.ModuleList(nn.ConvTranspose2d(channels, c_out, kernel_size) for c_out in decoder_out)
        self.min_size = NUM_ENCODER_LAYERS * (kernel_size - 1) + 1
        self.relu = nn.ReLU()
        for layer in [*self.encoder, *self.decoder]:
            nn.init.normal_(layer.weight, std=INIT_STD)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height < self.min_size or width < self.min_size:
            raise ValueError(f"RED-CNN needs images of at least {self.min_size}x{self.min_size} pixels, got {height}x{width}")
        # the inputs of encoder layers 1, 3, 5 are added back after decoder layers 5, 3, 1 (innermost first)
        shortcuts: list[torch.Tensor] = []
        y = x
        for index, conv in enumerate(self.encoder):
            if index % 2 == 0:
                shortcuts.append(y)
            y = self.relu(conv(y))
        for index, deconv in enumerate(self.decoder):
            y = deconv(y)
            if index % 2 == 0:
                y = y + shortcuts.pop()
            y = self.relu(y)
        return y
