"""Channels-last networks: same outputs, weights and names as NCHW ones, for every network the bundle trains."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from torch import nn

from custom.networks.critic import WGANCritic
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.memory_format import use_channels_last
from custom.networks.red_cnn import REDCNN


def uses_channels_last(network: nn.Module) -> bool:
    """Whether `network` holds channels-last convolution weights (as `use_channels_last` leaves them)."""
    return any(
        weight.dim() == 4 and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)
        for weight in network.parameters()
    )


def networks() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "generator": EfficientNetV2Denoiser(backbone="tf_efficientnetv2_b0", pretrained=False, squeeze_excite_window=32),
        "critic": WGANCritic(base_channels=8),
        "red_cnn": REDCNN(channels=8),
    }


@pytest.mark.parametrize("name", ["generator", "critic", "red_cnn"])
def test_a_channels_last_network_trains_as_its_nchw_twin(name: str) -> None:
    plain = networks()[name]
    fast = use_channels_last(copy.deepcopy(plain))
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert uses_channels_last(fast) and not uses_channels_last(plain)
    image = torch.rand(2, 1, 64, 96)
    for network in (plain, fast):  # one training step each (BatchNorm in training mode)
        optimiser = torch.optim.SGD(network.parameters(), lr=0.1)
        network(image).square().mean().backward()
        optimiser.step()
    output = fast(image)
    assert output.is_contiguous()  # one channel: NCHW-contiguous in either layout
    torch.testing.assert_close(output, plain(image), rtol=1e-3, atol=1e-4)  # float rounding of other kernels
    for (key, weight), twin in zip(fast.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(weight, twin, rtol=1e-3, atol=1e-4, msg=key)


def test_copies_keep_the_format_and_weights_load_across_formats() -> None:
    plain = networks()["generator"].eval()
    fast = use_channels_last(copy.deepcopy(plain))
    assert use_channels_last(fast) is fast and uses_channels_last(fast)
    ema = copy.deepcopy(fast)  # as ignite's EMAHandler copies the generator
    assert uses_channels_last(ema) and not uses_channels_last(plain)
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        ema.load_state_dict(plain.state_dict())
        plain.load_state_dict(fast.state_dict())
        torch.testing.assert_close(ema(image), plain(image), rtol=1e-4, atol=1e-5)
    assert use_channels_last(plain, enabled=False) is plain and not uses_channels_last(plain)


@pytest.mark.parametrize("config_file", ["train.json", "inference.json"])
def test_the_configs_run_networks_channels_last_unless_told_not_to(repo_root: Path, config_file: str) -> None:
    config = json.loads((repo_root / "bundle/configs" / config_file).read_text())
    for enabled in (None, False):
        parser = ConfigParser(config)
        parser["bundle_root"] = str(repo_root / "bundle")
        parser["device"] = "$torch.device('cpu')"
        if enabled is not None:
            parser["channels_last"] = enabled
        names = ["network", "critic"] if config_file == "train.json" else ["network"]
        assert [uses_channels_last(parser.get_parsed_content(name)) for name in names] == [enabled is None] * len(names)
