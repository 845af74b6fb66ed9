"""Perceptual loss on frozen features: ImageNet networks (VGG19 as in WGAN-VGG, or a timm backbone), or CT
features from a denoiser this bundle trained.

MONAI's `PerceptualLoss` fetches its networks from torch.hub at construction and offers no VGG19 tap or local
file, so this small module covers what the paper's recipe needs and works offline with an explicit choice.
Offline, ImageNet weights are often missing, and random VGG features only regularise; the encoder of a generator
trained on CT (a model file, e.g. the shipped model) gives features that were learned on CT, with no download.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.model_file import build_generator, load_weights, read_model_file
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


class ImageNetInput(nn.Module):
    """Grey [0, 1] slices as the RGB, ImageNet-normalised input that ImageNet feature networks expect."""

    # buffers registered in __init__
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return (rgb - self.mean) / self.std


class DenoiserEncoderFeatures(nn.Module):
    """One feature map (default: stride 8) of the encoder of a generator saved by this bundle: features learned on
    CT. The generator's own input scaling is applied, so inputs are the bundle's normalised slices."""

    def __init__(self, model_path: str | Path, out_index: int = 2) -> None:
        super().__init__()
        model_file = read_model_file(model_path)
        generator = load_weights(build_generator(model_file), model_file)
        if not isinstance(generator, EfficientNetV2Denoiser):
            raise ValueError(f"perceptual network {model_path}: {type(generator).__name__} has no encoder to take features from")
        self.encoder = generator.encoder
        self.input_mean, self.input_std = generator.input_mean, generator.input_std
        self.out_index = out_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.input_mean) / self.input_std)[self.out_index]


def is_model_file(network: str) -> bool:
    """A perceptual network given as a path (a model file of this bundle) rather than a network name."""
    return network.endswith((".pt", ".pth")) or "/" in network


class PerceptualLoss(nn.Module):
    """Mean squared distance between frozen features of the prediction and of the target.

    Args:
        network: "vgg19" (torchvision), any timm model name (e.g. the generator's backbone), or the path of a model
            file of this bundle (e.g. bundle/models/shipped/model.pt): its encoder's stride-8 features, learned on CT.
        pretrained: for "vgg19" and timm names: True (hub), a local weights file, or False for random features
            (warns: such a loss only regularises, it carries no perception). Ignored for a model file.
    """

    def __init__(self, network: str = "vgg19", pretrained: PretrainedSetting = True) -> None:
        super().__init__()
        features: nn.Module
        if is_model_file(network):
            features = DenoiserEncoderFeatures(network)
        else:
            if not parse_pretrained(pretrained):
                warnings.warn(
                    f"perceptual network '{network}' uses random features ({OPTION}=false): "
                    "the perceptual term then regularises but does not measure perceptual similarity",
                    stacklevel=2,
                )
            extractor = vgg19_features(pretrained) if network == "vgg19" else TimmFeatures(network, pretrained)
            features = nn.Sequential(ImageNetInput(), extractor)
        self.features = features
        self.features.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Keep the frozen features in eval mode whatever the trainer asks."""
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.features(target)
        return F.mse_loss(self.features(prediction), target_features)
