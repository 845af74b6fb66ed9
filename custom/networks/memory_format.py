"""Channels-last memory format for a network, without changing its weights' names or its callers.

oneDNN runs convolutions faster on NHWC tensors (tensor cores on GPUs too; not measured here): on a 2-core Intel
Xeon with AMX a single training step of the B0 generator took 0.72-0.93x its NCHW time in float32 and 0.68-0.85x
with bfloat16 autocast, and the default recipe's epochs with `--amp true` 0.71-0.90x (benchmarks.md).
Only the weights change format: a convolution with channels-last weights computes in channels-last and passes that
format on, and one-channel images (every network's input and the generator's output) have the same strides in both
layouts, so callers see no difference. The network keeps its class and `state_dict`
keys: model files and checkpoints load across formats, and `copy.deepcopy` (the EMA generator) keeps the format.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def use_channels_last(network: ModuleT, enabled: bool = True) -> ModuleT:
    """`network` itself, its 4-D weights converted to channels-last in place (untouched when `enabled` is false).

    Configs wrap the expression that builds a network: `"$memory_format.use_channels_last(<network>, @channels_last)"`.
    """
    return network.to(memory_format=torch.channels_last) if enabled else network
