"""Local squeeze-excitation: the gate a training patch saw, at every position of a whole slice."""

from __future__ import annotations

import copy

import pytest
import torch
from builders import TINY_BACKBONE
from timm.models._efficientnet_blocks import SqueezeExcite

from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.local_squeeze_excite import LocalSqueezeExcite, localise_squeeze_excite


def timm_squeeze_excite_block(channels: int = 8) -> torch.nn.Module:
    """The SE block EfficientNetV2 uses (timm's efficientnet blocks), in eval mode."""
    torch.manual_seed(0)
    return SqueezeExcite(channels, rd_ratio=0.25).eval()


def test_local_gate_at_the_centre_of_a_window_sized_input_equals_the_global_gate() -> None:
    block = timm_squeeze_excite_block()
    local = LocalSqueezeExcite(copy.deepcopy(block), window=9)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(local(x)[..., 4, 4], block(x)[..., 4, 4])
        # on a larger input the local gate follows the neighbourhood, the global one the whole image
        big = torch.randn(1, 8, 40, 40)
        big[..., :, 20:] += 5.0
        assert not torch.allclose(local(big)[..., 5, 5], block(big)[..., 5, 5])


def test_generator_blocks_are_localised_and_checkpoints_stay_compatible() -> None:
    localised = EfficientNetV2Denoiser(TINY_BACKBONE, squeeze_excite_window=64)
    plain = EfficientNetV2Denoiser(TINY_BACKBONE, squeeze_excite_window=None)
    local_blocks = [m for m in localised.encoder.modules() if isinstance(m, LocalSqueezeExcite)]
    assert local_blocks and {block.window for block in local_blocks} >= {4, 2}  # 64 px at strides 16 and 32
    assert not any(isinstance(m, LocalSqueezeExcite) for m in plain.encoder.modules())
    assert localised.state_dict().keys() == plain.state_dict().keys()
    localised.load_state_dict(plain.state_dict())  # weights of either kind load into the other
    localised.eval()
    with torch.no_grad():
        output = localised(torch.rand(1, 1, 96, 80))
    assert output.shape == (1, 1, 96, 80) and torch.isfinite(output).all()


def test_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        LocalSqueezeExcite(timm_squeeze_excite_block(), window=0)
    assert localise_squeeze_excite(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)), 64) == 0
