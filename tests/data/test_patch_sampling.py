"""Where training patches come from: the body (full dose above the body threshold), and with
`background_patch_weight` > 0 also air and lung, which a denoiser meets on every slice it is applied to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

SIZE, PATCH = 96, 16
HU_MIN, HU_MAX = -1024.0, 3072.0


def patch_centres_in_air(repo_root: Path, background_patch_weight: float, draws: int = 300) -> float:
    """Fraction of patches of `train#patch_sampling` that lie wholly in the air half of a half-body slice."""
    parser = ConfigParser()
    parser.read_config(repo_root / "bundle" / "configs" / "train.json")
    parser.update({"background_patch_weight": background_patch_weight, "patch_size": PATCH, "batch_size": 4})
    sampling = Compose(parser.get_parsed_content("train#patch_sampling"))  # the whole chain: flips keep air in air
    hu = np.full((1, SIZE, SIZE), -1000.0, dtype=np.float32)
    hu[:, SIZE // 2 :] = 40.0  # the lower half is soft tissue
    normalised = MetaTensor(torch.from_numpy((hu - HU_MIN) / (HU_MAX - HU_MIN)))
    in_air = 0
    for seed in range(draws // 4):
        sampling.set_random_state(seed)
        patches = sampling({"image": normalised.clone(), "label": normalised.clone()})
        in_air += sum(bool((patch["label"] < 0.1).all()) for patch in patches)
    return in_air / (4 * (draws // 4))


@pytest.mark.parametrize(("weight", "low", "high"), [(0.0, 0.0, 0.0), (0.05, 0.05, 0.4)])
def test_background_patch_weight_brings_air_into_training(repo_root: Path, weight: float, low: float, high: float) -> None:
    fraction = patch_centres_in_air(repo_root, weight)
    assert low <= fraction <= high, fraction
