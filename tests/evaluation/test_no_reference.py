"""No-reference measures on synthetic abdomen-like slices with known truth: what they must show and must not."""

from __future__ import annotations

import numpy as np
import pytest
from builders import abdomen_phantom as phantom
from scipy import ndimage

from custom.evaluation import edge_width, no_reference
from custom.simulation.noise_texture import local_noise_hu, soft_tissue_mask

SPACING = (0.7, 0.7)


@pytest.fixture(scope="module")
def slices() -> list[np.ndarray]:
    return [phantom(seed) for seed in range(3)]


def summary(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    measures = no_reference.summarise_series(inputs, outputs, SPACING)
    assert all(value is not None for value in measures.values()), measures
    return {key: float(value) for key, value in measures.items() if value is not None}


def test_identity_changes_nothing(slices: list[np.ndarray]) -> None:
    measures = summary(slices, slices)
    assert measures["noise_ratio"] == 1.0 and measures["edge_width_ratio"] == 1.0
    assert measures["mean_shift_hu"] == 0.0 and measures["max_abs_slice_shift_hu"] == 0.0
    assert measures["noise_slices"] == 3 and measures["edge_profiles"] >= 30
    assert 20 < measures["noise_input_hu"] < 30  # the flattest windows of 25 HU white noise


def test_blur_lowers_noise_and_widens_edges(slices: list[np.ndarray]) -> None:
    measures = summary(slices, [ndimage.gaussian_filter(hu, 1.5) for hu in slices])
    assert measures["noise_ratio"] < 0.3
    assert measures["edge_width_ratio"] > 1.5
    assert measures["edge_width_output_mm"] > measures["edge_width_input_mm"] + 1.0


def test_offset_is_a_mean_shift_and_nothing_else(slices: list[np.ndarray]) -> None:
    measures = summary(slices, [hu + 10.0 for hu in slices])
    assert measures["mean_shift_hu"] == pytest.approx(10.0) and measures["max_abs_slice_shift_hu"] == pytest.approx(10.0)
    assert measures["noise_ratio"] == pytest.approx(1.0) and measures["edge_width_ratio"] == pytest.approx(1.0)


def test_shift_is_measured_in_the_inputs_soft_tissue(slices: list[np.ndarray]) -> None:
    """A change outside soft tissue (air, here) is no shift; the noise level is noise_texture's own measure."""
    (hu,) = slices[:1]
    mask = soft_tissue_mask(hu)
    changed = np.where(hu < -500, hu + 300.0, hu)
    assert no_reference.mean_shift_hu(hu, changed, mask) == 0.0
    assert no_reference.noise_levels_hu(hu, changed, mask)[0] == local_noise_hu(hu, mask)
    assert np.isnan(no_reference.mean_shift_hu(hu, hu, np.zeros_like(mask)))


def test_skin_and_bone_edges_are_left_out() -> None:
    """Air/body and bone/soft-tissue boundaries are not soft-tissue edges: no profiles, so no edge width."""
    rows, columns = np.mgrid[:128, :128] - 64
    hu = np.where(np.hypot(rows, columns) < 55, 40.0, -1000.0)
    hu[np.hypot(rows - 10, columns) < 12] = 1000.0
    assert len(edge_width.find_edges(hu, SPACING).points) == 0
    measures = no_reference.summarise_series([hu], [ndimage.gaussian_filter(hu, 2.0)], SPACING)
    assert measures["edge_profiles"] == 0 and measures["edge_width_ratio"] is None
