"""Losses: the WGAN-GP terms (critic loss, gradient penalty, generator loss with L1/MSE/perceptual) and the perceptual loss."""

from custom.losses.perceptual import PerceptualLoss
from custom.losses.wgan_gp import GeneratorLoss, gradient_penalty, random_interpolates, wasserstein_estimate

__all__ = ["GeneratorLoss", "PerceptualLoss", "gradient_penalty", "random_interpolates", "wasserstein_estimate"]
