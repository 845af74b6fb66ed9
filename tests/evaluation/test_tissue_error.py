"""Error per band of the full dose's HU: the bands' shares add up to the wide window's mean squared error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from custom.conventions import TISSUE_BANDS_HU, WIDE_WINDOW
from custom.evaluation.tissue_error import TissueErrors
from custom.evaluation.windowed_metrics import slice_scores


def test_error_is_put_in_the_band_of_the_reference_and_adds_up_to_the_wide_psnr() -> None:
    reference = np.full((32, 32), 40.0)  # soft tissue ...
    reference[:, :8] = -850.0  # ... beside lung
    reference[:4, :] = -1024.0  # and air, below the window: errors are clipped as the PSNR clips them
    image = reference.copy()
    image[:, :8] += 30.0  # blurred lung
    image[10:, 8:] += 3.0
    image[:4, :] = -1010.0  # a change the wide window cannot see
    errors = TissueErrors()
    errors.add(reference, {"whole": image})
    report = errors.report("whole")
    assert set(report) == set(TISSUE_BANDS_HU)
    assert report["lung"]["rmse_hu"] == pytest.approx(30.0) and report["air"]["rmse_hu"] == 0.0
    assert report["soft_tissue"]["rmse_hu"] == pytest.approx(3.0 * np.sqrt(22 * 24 / (28 * 24)))
    assert np.isnan(report["contrast_and_bone"]["rmse_hu"]) and report["contrast_and_bone"]["pixel_fraction"] == 0.0
    assert sum(band["pixel_fraction"] for band in report.values()) == pytest.approx(1.0)
    assert sum(band["share_of_squared_error"] for band in report.values()) == pytest.approx(1.0)
    mse = sum(band["pixel_fraction"] * band["rmse_hu"] ** 2 for band in report.values() if band["pixel_fraction"])
    psnr, _ = slice_scores(torch.from_numpy(image).float(), torch.from_numpy(reference).float(), WIDE_WINDOW)
    assert 10 * np.log10(WIDE_WINDOW.data_range**2 / mse) == pytest.approx(psnr, abs=1e-3)
