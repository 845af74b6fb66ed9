"""The noise estimate loses its local mean, so the generator keeps the mean HU of a region (no bias)."""

from __future__ import annotations

import pytest
import torch
from builders import HU_SPAN, TINY_BACKBONE, to_model_scale

from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.zero_mean_noise import LocalMeanRemoval

TISSUE_HU = 40.0


def test_constant_and_smooth_fields_are_removed_white_noise_is_kept() -> None:
    removal = LocalMeanRemoval(sigma_px=8.0)
    torch.manual_seed(0)
    constant = torch.full((1, 1, 40, 50), 3.0)
    torch.testing.assert_close(removal(constant), torch.zeros_like(constant), atol=1e-5, rtol=0)
    ramp = torch.linspace(-1, 1, 128).expand(1, 1, 40, 128).clone()
    assert removal(ramp)[..., 24:-24].abs().max() < 1e-5  # a linear field is its own Gaussian mean
    white = torch.randn(1, 1, 128, 128)
    assert removal(white).std() / white.std() > 0.98
    small = torch.randn(2, 1, 5, 7)  # smaller than the kernel: still defined
    assert removal(small).shape == small.shape
    per_channel = LocalMeanRemoval(sigma_px=4.0, channels=3)(torch.arange(3.0).view(1, 3, 1, 1).expand(2, 3, 9, 9))
    torch.testing.assert_close(per_channel, torch.zeros(2, 3, 9, 9), atol=1e-5, rtol=0)
    assert removal.state_dict() == {}


def test_sigma_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sigma must be positive"):
        LocalMeanRemoval(0.0)


def briefly_trained_generator(noise_mean_sigma: float | None) -> EfficientNetV2Denoiser:
    """A generator after a few L1 steps on noisy constant patches, where a bias is easy to pick up."""
    torch.manual_seed(0)
    generator = EfficientNetV2Denoiser(TINY_BACKBONE, noise_mean_sigma=noise_mean_sigma)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    target = torch.full((4, 1, 64, 64), to_model_scale(TISSUE_HU))
    for _ in range(5):
        noisy = target + torch.randn_like(target) * 30.0 / HU_SPAN
        loss = torch.nn.functional.l1_loss(generator(noisy), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return generator.eval()


def mean_shift_hu(generator: EfficientNetV2Denoiser) -> float:
    """Mean output minus input in HU over a whole noisy constant-HU slice larger than the training patches."""
    torch.manual_seed(1)
    slice_hu = TISSUE_HU + 30.0 * torch.randn(1, 1, 192, 192)
    with torch.no_grad():
        output = generator(to_model_scale(slice_hu))
    return float((output - to_model_scale(slice_hu)).mean()) * HU_SPAN


def test_briefly_trained_generator_keeps_the_mean_of_a_constant_input() -> None:
    assert abs(mean_shift_hu(briefly_trained_generator(noise_mean_sigma=16.0))) <= 1.0
    # the same training without the removal moves the mean by several HU (-7 HU when written)
    assert abs(mean_shift_hu(briefly_trained_generator(noise_mean_sigma=None))) > 2.0
