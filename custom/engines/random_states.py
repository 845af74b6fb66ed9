"""The random number generators' states as a checkpoint object, so a resumed run draws what the original would.

ignite's `Checkpoint` saves objects with `state_dict` / `load_state_dict`; Python's, NumPy's and torch's global
generators have none, and neither have the generators of MONAI's random transforms (each `Randomizable` holds its
own `numpy.random.RandomState`, which decides the crops and flips when the data loader has no worker processes).
Put an instance into the checkpoint dict (train.json's `train#checkpoint_dict`).
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch
from monai.transforms import Randomizable

# how deep to look for random transforms inside a transform (Compose -> dictionary transform -> array transform)
TRANSFORM_SEARCH_DEPTH = 4


def random_generators(transform: Any) -> list[np.random.RandomState]:
    """The `numpy.random.RandomState` of every random transform in `transform`, in a stable order."""
    found: list[np.random.RandomState] = []
    seen: set[int] = set()

    def visit(item: Any, depth: int) -> None:
        if id(item) in seen or depth > TRANSFORM_SEARCH_DEPTH:
            return
        seen.add(id(item))
        if isinstance(item, Randomizable) and id(item.R) not in seen:
            seen.add(id(item.R))
            found.append(item.R)
        children = item if isinstance(item, (list, tuple)) else vars(item).values() if hasattr(item, "__dict__") else ()
        for child in children:
            if isinstance(child, (list, tuple)) or (hasattr(child, "__dict__") and type(child).__module__.startswith("monai")):
                visit(child, depth + 1)

    visit(transform, 0)
    return found


def _numpy_state(state: tuple) -> list[Any]:
    name, keys, position, has_gauss, cached_gaussian = state
    # tensors, ints and strings only, so MONAI's CheckpointLoader (torch.load with weights_only=True) reads it back
    return [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian]


def _numpy_tuple(state: list[Any]) -> tuple:
    name, keys, position, has_gauss, cached_gaussian = state
    return name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian


class RandomStates:
    """Python, NumPy, torch CPU and (when present) CUDA generator states, and those of `transforms`' random transforms.

    Args:
        transforms: the training preprocessing (e.g. `train#preprocessing`); None for the global generators only.
    """

    def __init__(self, transforms: Any = None) -> None:
        self.transform_generators = random_generators(transforms) if transforms is not None else []

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        states: dict[str, Any] = {
            "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
            "numpy": _numpy_state(cast("tuple", np.random.get_state(legacy=True))),
            "torch": torch.get_rng_state(),
            "transforms": [_numpy_state(cast("tuple", generator.get_state())) for generator in self.transform_generators],
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, states: dict[str, Any]) -> None:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(int(value) for value in internal.tolist()), gauss))
        np.random.set_state(_numpy_tuple(states["numpy"]))
        torch.set_rng_state(states["torch"])
        saved = states.get("transforms", [])
        if len(saved) == len(self.transform_generators):  # else the transforms changed: keep their fresh seeds
            for generator, state in zip(self.transform_generators, saved, strict=True):
                generator.set_state(_numpy_tuple(state))
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
