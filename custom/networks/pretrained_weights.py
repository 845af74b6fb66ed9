"""One place that turns a user's `pretrained` setting into weights, for the generator and the perceptual network.

`pretrained` is `False` (random initialisation, the default and what tests use), `True` (download from the
model hub, needs the internet once, then the local cache is used) or a path to a local weights file (offline).
A failed load raises an error that says which of those to choose instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

PretrainedSetting = bool | str | None


def parse_pretrained(pretrained: PretrainedSetting) -> bool | Path:
    """Normalise the setting from JSON or the command line ("false", "true", "/path/w.pth") to bool or Path."""
    if pretrained is None:
        return False
    if isinstance(pretrained, bool):
        return pretrained
    text = str(pretrained).strip()
    if text.lower() in ("", "0", "false", "no", "none"):
        return False
    if text.lower() in ("1", "true", "yes"):
        return True
    path = Path(os.path.expanduser(text))
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file '{path}' does not exist: pass an existing .pth/.safetensors file, "
            "true (download from the hub) or false (random initialisation)"
        )
    return path


def load_failure_message(what: str, name: str, option: str, error: BaseException) -> str:
    """The error text for a failed weight load: why it failed and the three ways out."""
    hint = ""
    if name == "efficientnetv2_m":
        hint = " timm has no ImageNet weights for 'efficientnetv2_m'; its ImageNet EfficientNetV2-M is 'tf_efficientnetv2_m'."
    return (
        f"could not load pretrained weights for the {what} '{name}': {type(error).__name__}: {error}.{hint} "
        f"Set {option}=true where the internet is reachable (weights are cached afterwards), "
        f"{option}=/path/to/weights.pth to load a local file, or {option}=false for random initialisation."
    )


def create_timm_model(name: str, pretrained: PretrainedSetting, what: str, option: str, **kwargs: Any) -> nn.Module:
    """`timm.create_model` with hub or local-file weights and an actionable error when they cannot be loaded."""
    setting = parse_pretrained(pretrained)
    try:
        if isinstance(setting, Path):
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(setting)}, **kwargs)
        return timm.create_model(name, pretrained=setting, **kwargs)
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        if not setting:
            raise
        raise RuntimeError(load_failure_message(what, name, option, error)) from error


def load_state_dict_file(module: nn.Module, path: Path, what: str, option: str) -> None:
    """Load a local weights file into `module`, naming the file and the mismatch when it does not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        module.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise RuntimeError(load_failure_message(what, path.name, option, error)) from error
