"""Edge widths on synthetic steps with known blur: the fit, and widths against a reference at the same points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from custom.evaluation import edge_width

STEP = np.where(np.arange(128) < 64.3, -100.0, 60.0) * np.ones((128, 1))  # a straight fat/soft-tissue boundary


@pytest.mark.parametrize("spacing_mm", [0.5, 1.0])
def test_fitted_width_is_the_10_90_rise_of_a_blurred_step(spacing_mm: float) -> None:
    """A straight fat/soft-tissue step blurred by sigma = 2 px rises 10-90 % over 2.563 x 2 px, in mm, despite noise."""
    blurred = ndimage.gaussian_filter(STEP, 2.0) + np.random.default_rng(0).normal(0.0, 10.0, STEP.shape)
    edges = edge_width.find_edges(blurred, (spacing_mm, spacing_mm))
    assert len(edges.points) >= 10
    assert np.allclose(np.abs(edges.normals[:, 1]), 1.0, atol=0.1)  # across the step, pointing to the bright side
    assert np.all(edges.normals[:, 1] > 0)
    widths = edge_width.fit_edge_widths(edges.sample(blurred))
    assert np.nanmedian(widths) == pytest.approx(2.563 * 2.0 * spacing_mm, rel=0.08)


def test_widths_against_the_reference_pair_at_the_inputs_edges() -> None:
    """The reference itself reads 1, more blur reads wider; the noisy input reads narrower than the truth (the bias
    a no-reference ratio against the input carries)."""
    reference = ndimage.gaussian_filter(STEP, 2.0)
    rng = np.random.default_rng(1)
    noisy = [reference + ndimage.gaussian_filter(rng.normal(0.0, 60.0, STEP.shape), 0.7) for _ in range(4)]
    ratios = []
    for low_dose in noisy:
        images = {"reference": reference, "blurred": ndimage.gaussian_filter(STEP, 3.0), "input": low_dose}
        paired = edge_width.edge_widths_against_reference(low_dose, reference, images, (0.7, 0.7))
        assert len(paired["reference"][0]) >= 10
        np.testing.assert_array_equal(*paired["reference"])
        blurred_reference, blurred = paired["blurred"]
        assert np.median(blurred) / np.median(blurred_reference) == pytest.approx(1.5, rel=0.08)
        ratios.append(np.median(paired["input"][1]) / np.median(paired["input"][0]))
    assert np.mean(ratios) < 1.0
    flat = np.full_like(STEP, 40.0)
    assert all(
        len(w) == 0
        for pair in edge_width.edge_widths_against_reference(flat, flat, {"x": flat}, (0.7, 0.7)).values()
        for w in pair
    )
