"""scripts/score_model.py: a saved model scored as a user runs it, with denoising strengths from the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import perturbed_tiny_generator, write_synthetic_datalist

from custom.evaluation.model_scoring import with_strengths
from custom.networks.model_file import save_model_file


def test_strengths_blend_the_whole_slice_output_with_the_input() -> None:
    low_dose, whole = np.array([[0.0, 100.0]]), np.array([[10.0, 60.0]])
    outputs = with_strengths({"whole": whole}, low_dose, [0.5, 0.0])
    np.testing.assert_array_equal(outputs["whole_strength_0.5"], [[5.0, 80.0]])
    np.testing.assert_array_equal(outputs["whole_strength_0"], low_dose)
    assert outputs["whole"] is whole
    with pytest.raises(ValueError, match=r"strength 1.2: must be in \[0, 1\]"):
        with_strengths({"whole": whole}, low_dose, [1.2])


def test_score_model_reports_whole_slices_and_strengths(script, tmp_path: Path) -> None:
    datalist = write_synthetic_datalist(tmp_path)
    model = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    report_file = tmp_path / "score.json"
    arguments = ["--model", str(model), "--datalist", str(datalist), "--strengths", "0.5", "0", "--json", str(report_file)]
    assert script("score_model").main(arguments) == 0
    paired = json.loads(report_file.read_text())["paired"]
    assert paired["slices"] == 3 and {"low_dose", "whole", "whole_strength_0.5", "whole_strength_0"} <= set(paired)
    for window in ("w400", "w2000"):
        # strength 0 is the input itself; the network changed it
        assert paired["whole_strength_0"][f"psnr_{window}"] == paired["low_dose"][f"psnr_{window}"]
        assert paired["whole"][f"psnr_{window}"] != paired["low_dose"][f"psnr_{window}"]
    with pytest.raises(SystemExit):
        script("score_model").main([*arguments[:4], "--strengths", "2"])
