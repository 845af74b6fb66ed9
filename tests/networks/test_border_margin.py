"""Whole slices are denoised with a replicated border margin (evaluation mode only): the slice's own border lies
inside the network's field, not at its edge, where a network trained on body patches produced bands of error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from builders import TINY_BACKBONE, perturbed_tiny_generator

from custom.networks.generator import EfficientNetV2Denoiser


def noise_input_shapes(network: EfficientNetV2Denoiser, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """The output, and the shapes the noise predictor saw."""
    shapes: list[tuple[int, ...]] = []
    original = network.predict_noise

    def recording(padded: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(padded.shape))
        return original(padded)

    network.predict_noise = recording  # type: ignore[method-assign]
    try:
        with torch.no_grad():
            return network(x), shapes
    finally:
        del network.predict_noise


def test_evaluation_pads_a_margin_and_training_does_not() -> None:
    network = perturbed_tiny_generator()
    x = torch.rand(1, 1, 70, 100)
    evaluated, shapes = noise_input_shapes(network.eval(), x)
    assert shapes == [(1, 1, 70 + 64 + 26, 100 + 64 + 28)]  # 32 each side, then up to a multiple of 32
    # equal to the network run by hand on the replicate-padded slice, cropped back
    padded = F.pad(x, (32, 32 + 28, 32, 32 + 26), mode="replicate")
    with torch.no_grad():
        noise = network.predict_noise(padded)[..., 32:102, 32:132]
        expected = x - network.noise_mean_removal(noise)
    torch.testing.assert_close(evaluated, expected)
    _, shapes = noise_input_shapes(network.train(), x)
    assert shapes == [(1, 1, 96, 128)]  # patches keep their borders in the loss


def test_a_margin_the_network_cannot_take_is_refused() -> None:
    with pytest.raises(ValueError, match="border_margin must be a non-negative multiple of 16"):
        EfficientNetV2Denoiser(backbone=TINY_BACKBONE, border_margin=20)
