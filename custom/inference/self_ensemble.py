"""Self-ensemble: the mean of the network's outputs over flipped and transposed copies of the input.

Training augments patches with flips and 90-degree rotations, so each copy is a valid view of the slice; the
network's errors on them are partly independent and averaging them lowers the error, for `size` forward passes per
slice. Flips and transposes move no pixel's value, so the mean HU is kept. The gain per size is measured in the
model card (inference.json's default is the size that keeps the bundle's speed target).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SPATIAL_DIMS = (-2, -1)

# The eight symmetries of the square as (transpose, flipped dims), ordered so that every prefix of size 1, 2, 4 or 8
# is a group: identity; left-right; up-down and both; then the same after a transpose.
DIHEDRAL_VIEWS: tuple[tuple[bool, tuple[int, ...]], ...] = (
    (False, ()),
    (False, (-1,)),
    (False, (-2,)),
    (False, (-2, -1)),
    (True, ()),
    (True, (-1,)),
    (True, (-2,)),
    (True, (-2, -1)),
)
SELF_ENSEMBLE_SIZES = (1, 2, 4, 8)


def check_self_ensemble(size: int) -> int:
    if size not in SELF_ENSEMBLE_SIZES:
        raise ValueError(f"self-ensemble size {size}: must be one of {SELF_ENSEMBLE_SIZES} (1: the network alone)")
    return int(size)


def _view(image: torch.Tensor, transpose: bool, flips: tuple[int, ...]) -> torch.Tensor:
    image = image.transpose(*SPATIAL_DIMS) if transpose else image
    return image.flip(flips) if flips else image


def _unview(image: torch.Tensor, transpose: bool, flips: tuple[int, ...]) -> torch.Tensor:
    image = image.flip(flips) if flips else image
    return image.transpose(*SPATIAL_DIMS) if transpose else image


def self_ensemble(network: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of `network` over the first `size` dihedral views of `image` (batch, channel, height, width); with
    size 1 the network's output itself, untouched."""
    views = DIHEDRAL_VIEWS[: check_self_ensemble(size)]
    total = network(image)  # the first view is the slice itself
    for transpose, flips in views[1:]:
        total = total + _unview(network(_view(image, transpose, flips)), transpose, flips)
    return total if len(views) == 1 else total / len(views)
