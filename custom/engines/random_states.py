"""The random number generators' states as a checkpoint object, so a resumed run draws what the original would.

ignite's `Checkpoint` saves objects with `state_dict` / `load_state_dict`; Python's, NumPy's and torch's global
generators have none. Put an instance into the checkpoint dict (train.json's `train#checkpoint_dict`).
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch


class RandomStates:
    """Python, NumPy, torch CPU and (when present) CUDA generator states."""

    def state_dict(self) -> dict[str, Any]:
        # tensors, ints and strings only, so MONAI's CheckpointLoader (torch.load with weights_only=True) reads it back
        version, internal, gauss = random.getstate()
        legacy_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state(legacy=True))
        name, keys, position, has_gauss, cached_gaussian = legacy_state
        states: dict[str, Any] = {
            "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, states: dict[str, Any]) -> None:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(int(value) for value in internal.tolist()), gauss))
        name, keys, position, has_gauss, cached_gaussian = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
