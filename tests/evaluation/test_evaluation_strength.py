"""The test-set evaluation (train.json + evaluate.json) scores outputs at the strength inference.json applies.

The evaluation's postprocessing is built from the bundle's configs, as `python -m monai.bundle run evaluating`
builds it, for a model file that records its own noise ramp; slices of known noise go through it with a
prediction that differs from the input, and the scored prediction must be the blend the ramp gives each slice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import TINY_BACKBONE, abdomen_phantom, perturbed_tiny_generator, to_model_scale
from monai.bundle import ConfigParser

from custom.inference.denoising_strength import NoiseStrengthRamp, measured_noise_hu
from custom.networks.model_file import save_model_file

RAMP_HU = (10.0, 20.0)


def evaluation_parser(repo_root: Path, model_path: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(repo_root / "bundle/configs/train.json"), str(repo_root / "bundle/configs/evaluate.json")])
    parser["bundle_root"] = str(repo_root / "bundle")
    parser["model_path"] = str(model_path)
    parser["backbone"] = TINY_BACKBONE
    return parser


def to_network_scale(hu: np.ndarray) -> torch.Tensor:
    """A (1, H, W) float32 channel-first slice on the network's scale, as the evaluation's loader gives it."""
    return torch.from_numpy(to_model_scale(hu).astype(np.float32))[None]


def scored_prediction(postprocessing: Callable, low_dose: np.ndarray, full_dose: np.ndarray) -> np.ndarray:
    """The prediction (HU) the metrics see when the network's output is the full dose itself."""
    sample = {"image": to_network_scale(low_dose), "label": to_network_scale(full_dose), "pred": to_network_scale(full_dose)}
    output = postprocessing(sample)
    np.testing.assert_allclose(np.asarray(output["image"])[0], low_dose, atol=0.05)  # the input's own scores untouched
    return np.asarray(output["pred"])[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model_file(tmp_path_factory.mktemp("model") / "model.pt", perturbed_tiny_generator(), noise_ramp_hu=RAMP_HU)


@pytest.mark.parametrize("noise_hu", [4.0, 14.0, 40.0])
def test_each_test_slice_is_scored_at_the_strength_its_noise_gives(repo_root: Path, model_path: Path, noise_hu: float) -> None:
    parser = evaluation_parser(repo_root, model_path)
    assert parser.get_parsed_content("strength") == "auto"
    assert tuple(parser.get_parsed_content("noise_ramp_hu")) == RAMP_HU  # the model file's own ramp
    postprocessing = parser.get_parsed_content("test#postprocessing")
    full_dose = abdomen_phantom(seed=0, noise_hu=0.0)
    low_dose = abdomen_phantom(seed=1, noise_hu=noise_hu)
    strength = NoiseStrengthRamp(*RAMP_HU).strength(measured_noise_hu(low_dose))
    expected = low_dose + strength * (full_dose - low_dose)
    np.testing.assert_allclose(scored_prediction(postprocessing, low_dose, full_dose), expected, atol=0.05)
    if noise_hu < RAMP_HU[0]:
        assert strength == 0.0
    elif noise_hu > RAMP_HU[1]:
        assert strength == 1.0
    else:
        assert 0.0 < strength < 1.0


def test_a_fixed_strength_overrides_auto_and_is_recorded(repo_root: Path, model_path: Path) -> None:
    parser = evaluation_parser(repo_root, model_path)
    parser["strength"] = 0.5
    postprocessing = parser.get_parsed_content("test#postprocessing")
    full_dose, low_dose = abdomen_phantom(seed=0, noise_hu=0.0), abdomen_phantom(seed=1, noise_hu=4.0)
    expected = (low_dose + full_dose) / 2
    np.testing.assert_allclose(scored_prediction(postprocessing, low_dose, full_dose), expected, atol=0.05)
    assert parser.get_parsed_content("evaluation_params#strength") == "0.5"  # the MLflow parameter
