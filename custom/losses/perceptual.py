"""Perceptual loss on frozen ImageNet features (VGG19 as in WGAN-VGG, or a timm backbone).

MONAI's `PerceptualLoss` fetches its networks from torch.hub at construction and offers no VGG19 tap or local
file, so this small module covers what the paper's recipe needs and works offline with an explicit choice.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from custom.networks.pretrained_weights import (
    PretrainedSetting,
    create_timm_model,
    load_failure_message,
    load_state_dict_file,
    parse_pretrained,
)

# ImageNet statistics: the frozen networks expect RGB inputs normalised this way
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg19.features index of relu5_4, the layer WGAN-VGG (Yang et al. 2018) compares
VGG19_RELU5_4 = 36
OPTION = "perceptual_pretrained"


def vgg19_features(pretrained: PretrainedSetting, last_layer: int = VGG19_RELU5_4) -> nn.Module:
    """torchvision VGG19 convolutional features up to `last_layer`, with hub, local or random weights."""
    setting = parse_pretrained(pretrained)
    if setting is True:
        try:
            model = torchvision.models.vgg19(weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1)
        except (RuntimeError, OSError, ValueError) as error:
            raise RuntimeError(load_failure_message("perceptual network", "vgg19", OPTION, error)) from error
    else:
        model = torchvision.models.vgg19(weights=None)
        if setting:
            load_state_dict_file(model, setting, "perceptual network", OPTION)
    return model.features[:last_layer]


class TimmFeatures(nn.Module):
    """One feature map of a timm model (default: the stride-8 tap), as the perceptual feature extractor."""

    def __init__(self, name: str, pretrained: PretrainedSetting, out_index: int = 2) -> None:
        super().__init__()
        self.model = create_timm_model(
            name, pretrained, what="perceptual network", option=OPTION, features_only=True, out_indices=(out_index,)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


class PerceptualLoss(nn.Module):
    """Mean squared distance between frozen features of the prediction and of the target.

    Args:
        network: "vgg19" (torchvision) or any timm model name (e.g. the generator's backbone).
        pretrained: True (hub), a local weights file, or False for random features (warns: such a loss only
            regularises, it carries no ImageNet perception).
    """

    # buffers registered in __init__
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, network: str = "vgg19", pretrained: PretrainedSetting = True) -> None:
        super().__init__()
        if not parse_pretrained(pretrained):
            warnings.warn(
                f"perceptual network '{network}' uses random features ({OPTION}=false): "
                "the perceptual term then regularises but does not measure ImageNet-perceptual similarity",
                stacklevel=2,
            )
        self.features = vgg19_features(pretrained) if network == "vgg19" else TimmFeatures(network, pretrained)
        self.features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Keep the frozen features in eval mode whatever the trainer asks."""
        super().train(mode)
        self.features.eval()
        return self

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return self.features((rgb - self.mean) / self.std)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self._embed(target)
        return F.mse_loss(self._embed(prediction), target_features)
