"""scripts/calibrate_strength.py and its fit: the ramp of strength "auto" from reference pairs at several doses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import abdomen_phantom, perturbed_tiny_generator, write_synthetic_datalist

from custom.conventions import NOISE_STRENGTH_RAMP_HU
from custom.evaluation.strength_calibration import STRENGTH_GRID, BlendScores, blend_scores, fit_noise_ramp
from custom.networks.model_file import NOISE_RAMP_KEY, read_model_file, save_model_file


def peaked_scores(dose: float, noise_hu: float, best_strength: float) -> BlendScores:
    """A slice whose PSNR peaks at `best_strength`, in both windows."""
    psnr = 40.0 - 10.0 * (STRENGTH_GRID - best_strength) ** 2
    return BlendScores(dose, noise_hu, np.stack([psnr, psnr]))


def test_the_fit_finds_the_ramp_that_gives_each_slice_its_best_strength() -> None:
    # quiet slices want the input (0), noisy ones the network (1), a middle level half of it
    scores = [peaked_scores(1.0, 12.0, 0.0), peaked_scores(0.5, 20.0, 0.5), peaked_scores(0.25, 30.0, 1.0)]
    ramp, mean_psnr = fit_noise_ramp(scores)
    # strengths are scored on the 0.05 grid
    assert [round(20 * ramp.strength(score.noise_hu)) / 20 for score in scores] == [0.0, 0.5, 1.0]
    assert mean_psnr == pytest.approx(40.0)
    with pytest.raises(ValueError, match="no slices"):
        fit_noise_ramp([])


def test_blend_scores_rise_to_the_cap_for_a_perfect_denoiser() -> None:
    full = abdomen_phantom(0, 128, 0.0)
    noisy = full + np.random.default_rng(1).normal(0.0, 30.0, full.shape)
    scores = blend_scores(0.25, noisy, full, full)  # the 'network' returns the reference itself
    assert scores.noise_hu == pytest.approx(30.0, rel=0.2)
    assert scores.psnr_db.shape == (2, len(STRENGTH_GRID))
    assert np.all(np.diff(scores.psnr_db, axis=1) >= 0)
    assert scores.at(0.0)[0] < 30.0 and scores.at(1.0)[0] == 50.0  # the reference itself: capped, not infinite


def test_calibrate_strength_writes_a_model_copy_that_records_its_ramp(script, tmp_path: Path) -> None:
    datalist = write_synthetic_datalist(tmp_path)
    model = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    before = model.read_bytes()
    output, report_file = tmp_path / "calibrated.pt", tmp_path / "calibration.json"
    arguments = ["--model", str(model), "--datalist", str(datalist), "--doses", "1", "0.25", "--self-ensemble", "1"]
    assert script("calibrate_strength").main([*arguments, "--output", str(output), "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    ramp = report["noise_strength_ramp_hu"]
    assert read_model_file(output).noise_strength_ramp_hu == tuple(ramp)
    assert read_model_file(output).record[NOISE_RAMP_KEY] == ramp
    assert read_model_file(model).noise_strength_ramp_hu == NOISE_STRENGTH_RAMP_HU  # uncalibrated: the bundle's
    assert model.read_bytes() == before
    assert set(report["by_dose"]) == {"1", "0.25"} and report["by_dose"]["1"]["input"]["psnr_w400"] == 50.0
    assert report["by_dose"]["0.25"]["slices"] == 2
    with pytest.raises(SystemExit):
        script("calibrate_strength").main([*arguments, "--output", str(model)])
    with pytest.raises(SystemExit):
        script("calibrate_strength").main([*arguments[:4], "--doses", "0"])
