"""Squeeze-and-excitation that pools over a fixed window instead of the whole image.

EfficientNetV2's SE blocks gate each channel by the mean of that channel over the *whole* input. A generator
trained on 64x64 patches therefore learns gates computed over 64x64 pixels; on a whole 512x512 slice the same
blocks average over the slice, air and table included, and the output changes (in practice it got worse than
the low-dose input). Pooling over a fixed window of the input's pixels at every position, in training and at
inference alike, makes the generator translation-equivariant: a whole slice gets, at every pixel, the gate a
training patch centred there would get, so whole-slice inference equals patch inference and needs no tiling.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class LocalSqueezeExcite(nn.Module):
    """timm's ``SqueezeExcite`` with the global mean replaced by a ``window`` x ``window`` box mean (stride 1).

    Holds the original block's layers under their original names, so state dicts load either way.
    """

    def __init__(self, block: nn.Module, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"the squeeze-excitation window must be at least 1 feature pixel, got {window}")
        self.window = int(window)
        # timm's layers, typed loosely (Tensor | Module) when read off the block
        self.conv_reduce = cast(nn.Module, block.conv_reduce)
        self.act1 = cast(nn.Module, block.act1)
        self.conv_expand = cast(nn.Module, block.conv_expand)
        self.gate = cast(nn.Module, block.gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pooled = F.avg_pool2d(x, self.window, stride=1, padding=self.window // 2, count_include_pad=False)
        pooled = pooled[..., :height, :width]  # an even window pads one more row and column than it needs
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(pooled))))


def _is_timm_squeeze_excite(module: nn.Module) -> bool:
    return type(module).__name__ == "SqueezeExcite" and hasattr(module, "conv_reduce") and hasattr(module, "gate")


def localise_squeeze_excite(encoder: nn.Module, window_px: int, probe_size: int = 64) -> int:
    """Replace every timm SE block of ``encoder`` by a :class:`LocalSqueezeExcite` covering ``window_px`` input pixels.

    Each block's stride is found by a probe forward pass; its window is ``window_px / stride`` feature pixels
    (at least 1). Returns the number of blocks replaced.
    """
    strides: dict[str, int] = {}
    hooks = []
    for name, module in encoder.named_modules():
        if _is_timm_squeeze_excite(module):
            hooks.append(
                module.register_forward_hook(
                    lambda _m, inputs, _o, name=name: strides.__setitem__(name, probe_size // inputs[0].shape[-1])
                )
            )
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        encoder(torch.zeros(1, _input_channels(encoder), probe_size, probe_size))
    encoder.train(was_training)
    for hook in hooks:
        hook.remove()
    for name, stride in strides.items():
        parent_name, _, child_name = name.rpartition(".")
        parent = encoder.get_submodule(parent_name) if parent_name else encoder
        setattr(parent, child_name, LocalSqueezeExcite(getattr(parent, child_name), max(1, window_px // stride)))
    return len(strides)


def _input_channels(encoder: nn.Module) -> int:
    first_conv = next(module for module in encoder.modules() if isinstance(module, nn.Conv2d))
    return int(first_conv.in_channels)
