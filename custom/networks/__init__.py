"""Networks: the EfficientNetV2 denoising generator, the WGAN critic, the RED-CNN baseline, timm weight loading."""

from custom.networks.critic import WGANCritic
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.red_cnn import REDCNN

__all__ = ["REDCNN", "EfficientNetV2Denoiser", "WGANCritic"]
