"""RED-CNN: the paper's architecture, any image size, the bundle's I/O convention, and that it learns."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from custom.networks.red_cnn import REDCNN


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 1, 45, 61), (2, 1, 21, 64)])
def test_output_has_the_input_shape_without_padding(shape: tuple[int, ...]) -> None:
    model = REDCNN()
    assert model(torch.rand(shape)).shape == shape


def test_architecture_matches_the_paper() -> None:
    model = REDCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    deconvs = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == len(deconvs) == 5
    for layer in convs + deconvs:
        assert layer.kernel_size == (5, 5) and layer.stride == (1, 1) and layer.padding == (0, 0)
    assert [c.out_channels for c in convs] == [96] * 5
    assert [d.out_channels for d in deconvs] == [96] * 4 + [1]
    # Chen et al. report 1.85 M parameters
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(1.85e6, rel=0.01)


def test_input_shortcut_and_final_relu() -> None:
    """With every weight and bias at zero only the input shortcut is left: the output is ReLU(input)."""
    model = REDCNN()
    for parameter in model.parameters():
        nn.init.zeros_(parameter)
    x = torch.randn(1, 1, 30, 30)
    torch.testing.assert_close(model(x), torch.relu(x))


def test_forward_matches_the_papers_layer_sequence() -> None:
    """Spelled out as in Chen et al., Fig. 2: shortcuts from the inputs of conv1, conv3, conv5 to deconv5, 3, 1."""
    torch.manual_seed(0)
    model = REDCNN(channels=8)
    for parameter in model.parameters():
        nn.init.normal_(parameter, std=0.2)  # large enough that every path visibly matters
    conv, deconv, relu = model.encoder, model.decoder, torch.relu
    x = torch.rand(2, 1, 40, 36)
    out = relu(conv[1](relu(conv[0](x))))
    shortcut_2 = out
    out = relu(conv[3](relu(conv[2](out))))
    shortcut_3 = out
    out = relu(conv[4](out))
    out = relu(deconv[0](out) + shortcut_3)
    out = relu(deconv[2](relu(deconv[1](out))) + shortcut_2)
    expected = relu(deconv[4](relu(deconv[3](out))) + x)
    torch.testing.assert_close(model(x), expected)


def test_starts_close_to_identity_with_the_papers_initialisation() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 48, 48)
    assert (REDCNN()(x) - x).abs().max() < 0.01


def test_too_small_input_names_the_minimum() -> None:
    with pytest.raises(ValueError, match="at least 21x21"):
        REDCNN()(torch.rand(1, 1, 20, 64))


def test_mse_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = REDCNN(channels=16)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    clean = torch.rand(2, 1, 32, 32)
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    losses = []
    for _ in range(5):
        optimiser.zero_grad()
        loss = nn.functional.mse_loss(model(noisy), clean)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_torchscript_matches_eager() -> None:
    model = REDCNN(channels=8).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
    x = torch.rand(2, 1, 33, 27)
    torch.testing.assert_close(scripted(x), model(x))
