"""The denoising generator: a timm EfficientNetV2 encoder with a U-Net style decoder that predicts the noise.

The paper taps EfficientNetV2-M at stages 3, 5 and 7 (strides 8, 16, 32). Those taps alone lose the fine
texture a denoiser must keep, so the decoder also fuses the stride-2 and stride-4 backbone features and a small
full-resolution stem. The output is residual: the network predicts the noise and subtracts it from the input, and
the last convolution starts at zero, so an untrained generator is the identity (PSNR of the low-dose input).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from timm.models import FeatureInfo
from torch import nn

from custom.networks.local_squeeze_excite import localise_squeeze_excite
from custom.networks.pretrained_weights import PretrainedSetting, create_timm_model
from custom.networks.zero_mean_noise import LocalMeanRemoval

# timm `features_only` indices at strides 2, 4, 8, 16, 32; 2, 3, 4 are the paper's stages 3, 5, 7 for efficientnetv2_m
BACKBONE_OUT_INDICES = (0, 1, 2, 3, 4)
# the grey-level mean and std of ImageNet, so pretrained stems see inputs on the scale they were trained on
IMAGENET_GREY_MEAN = 0.449
IMAGENET_GREY_STD = 0.226
# the paper's training patch size: squeeze-excitation pools over this many input pixels at every position
DEFAULT_SQUEEZE_EXCITE_WINDOW = 64
# width of the local mean taken out of the noise estimate (about 10-16 mm at CT pixel sizes): a region larger than
# this keeps its mean HU (see custom.networks.zero_mean_noise)
DEFAULT_NOISE_MEAN_SIGMA = 16.0
DEFAULT_BORDER_MARGIN = 32  # pixels; see EfficientNetV2Denoiser's border_margin


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions with batch norm and ReLU: the decoder's unit of work at one scale."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpFuse(nn.Module):
    """Upsample the coarser map to the skip's size, concatenate the skip, and convolve."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.block(torch.cat([x, skip], dim=1))


class EfficientNetV2Denoiser(nn.Module):
    """Residual denoiser for single-channel CT slices of any size, intensities normalised to about [0, 1].

    Args:
        backbone: timm model name of an EfficientNetV2 variant (`efficientnetv2_m` as in the paper,
            `tf_efficientnetv2_m` for ImageNet weights, `tf_efficientnetv2_b0` for quick runs).
        pretrained: False, True (timm hub) or a local weights file; see `custom.networks.pretrained_weights`.
        in_channels: input channels (1 for CT).
        decoder_channels: output channels of the decoder stages at strides 16, 8, 4, 2 and 1.
        stem_channels: channels of the full-resolution stem that feeds the last decoder stage.
        squeeze_excite_window: input pixels each squeeze-excitation block pools over (the training patch size), so
            a whole slice is denoised as its patches were in training (see `custom.networks.local_squeeze_excite`);
            None keeps timm's global pooling, which makes the output depend on the input's size.
        noise_mean_sigma: sigma in pixels of the Gaussian local mean removed from the noise estimate, so the
            denoiser cannot shift the mean HU of a region (see `custom.networks.zero_mean_noise`); None keeps it.
        border_margin: pixels of replicated border added on every side of the input in evaluation mode (validation,
            inference, exports) and cropped off again. Training patches have their borders inside the loss; a whole
            slice's border (table, field-of-view edge, air) is where a network trained on body patches has never
            been asked anything, and the encoder's asymmetric "same" padding of stride-2 convolutions makes the
            right and bottom borders worst: short CPU trainings on the L067 split lost 1.5-2 dB of [-1000, 1000]
            HU PSNR there, which a 32-pixel margin gave back. A multiple of half the network's size multiple.
    """

    def __init__(
        self,
        backbone: str = "efficientnetv2_m",
        pretrained: PretrainedSetting = False,
        in_channels: int = 1,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 32),
        stem_channels: int = 32,
        squeeze_excite_window: int | None = DEFAULT_SQUEEZE_EXCITE_WINDOW,
        noise_mean_sigma: float | None = DEFAULT_NOISE_MEAN_SIGMA,
        border_margin: int = DEFAULT_BORDER_MARGIN,
    ) -> None:
        super().__init__()
        # what a saved model must record to be rebuilt (custom.networks.model_file)
        self.settings = dict(
            backbone=backbone,
            in_channels=in_channels,
            decoder_channels=list(decoder_channels),
            stem_channels=stem_channels,
            squeeze_excite_window=squeeze_excite_window,
            noise_mean_sigma=noise_mean_sigma,
            border_margin=border_margin,
        )
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 entries (strides 16, 8, 4, 2, 1), got {list(decoder_channels)}")
        self.encoder = create_timm_model(
            backbone,
            pretrained,
            what="generator backbone",
            option="pretrained",
            features_only=True,
            out_indices=BACKBONE_OUT_INDICES,
            in_chans=in_channels,
        )
        if squeeze_excite_window is not None:
            localise_squeeze_excite(self.encoder, squeeze_excite_window)
        # nn.Module.__getattr__ is typed Tensor | Module; a timm features_only model's feature_info is a FeatureInfo
        feature_info = cast(FeatureInfo, self.encoder.feature_info)
        encoder_channels: list[int] = feature_info.channels()
        self.size_multiple: int = max(feature_info.reduction())
        if border_margin < 0 or (2 * border_margin) % self.size_multiple:
            raise ValueError(
                f"border_margin must be a non-negative multiple of {self.size_multiple // 2} pixels, got {border_margin}"
            )
        self.border_margin = border_margin
        self.stem = ConvBlock(in_channels, stem_channels)
        skip_channels = [*encoder_channels[-2::-1], stem_channels]  # strides 16, 8, 4, 2, 1
        coarse_channels = [encoder_channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            UpFuse(coarse, skip, out) for coarse, skip, out in zip(coarse_channels, skip_channels, decoder_channels)
        )
        self.noise_head = nn.Conv2d(decoder_channels[-1], in_channels, 3, padding=1)
        self.noise_mean_removal: nn.Module = (
            nn.Identity() if noise_mean_sigma is None else LocalMeanRemoval(noise_mean_sigma, in_channels)
        )
        self.input_mean = IMAGENET_GREY_MEAN
        self.input_std = IMAGENET_GREY_STD
        nn.init.zeros_(self.noise_head.weight)
        assert self.noise_head.bias is not None  # nn.Conv2d has a bias unless bias=False
        nn.init.zeros_(self.noise_head.bias)

    def predict_noise(self, x: torch.Tensor) -> torch.Tensor:
        """The noise estimate for an input whose height and width are multiples of `size_multiple`."""
        features: list[torch.Tensor] = self.encoder((x - self.input_mean) / self.input_std)
        skips = features[-2::-1] + [self.stem(x)]  # strides 16, 8, 4, 2, 1
        y = features[-1]
        for index, stage in enumerate(self.decoder):
            y = stage(y, skips[index])
        return self.noise_head(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        margin = 0 if self.training else self.border_margin  # see `border_margin`
        # always padded (by zero rows and columns for multiples), never branched on the size: an ONNX trace records
        # the padding as operations on the input's shape, so the exported graph pads every size it is given
        multiple = self.size_multiple  # 2 * margin is a multiple of it (checked in __init__)
        padded = F.pad(x, (margin, margin + -width % multiple, margin, margin + -height % multiple), mode="replicate")
        noise = self.predict_noise(padded)[..., margin : margin + height, margin : margin + width]
        return x - self.noise_mean_removal(noise).to(x.dtype)
