"""scripts/score_model.py: a saved model scored as a user runs it, with denoising strengths from the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import abdomen_phantom, perturbed_tiny_generator, write_synthetic_datalist

from custom.conventions import NOISE_STRENGTH_RAMP_HU
from custom.evaluation.model_scoring import with_strengths
from custom.inference.denoising_strength import NoiseStrengthRamp
from custom.networks.model_file import save_model_file


def test_strengths_blend_the_whole_slice_output_with_the_input() -> None:
    low_dose, whole = np.array([[0.0, 100.0]]), np.array([[10.0, 60.0]])
    outputs = with_strengths({"whole": whole}, low_dose, [0.5, 0.0])
    np.testing.assert_array_equal(outputs["whole_strength_0.5"], [[5.0, 80.0]])
    np.testing.assert_array_equal(outputs["whole_strength_0"], low_dose)
    assert outputs["whole"] is whole
    with pytest.raises(ValueError, match=r"strength 1.2: must be in \[0, 1\]"):
        with_strengths({"whole": whole}, low_dose, [1.2])


def test_auto_strength_blends_each_slice_by_its_measured_noise() -> None:
    quiet = abdomen_phantom(0, 256, 10.0)
    whole = np.full_like(quiet, 40.0)
    ramp = NoiseStrengthRamp(*NOISE_STRENGTH_RAMP_HU)
    np.testing.assert_array_equal(with_strengths({"whole": whole}, quiet, ["auto"], ramp)["whole_strength_auto"], quiet)
    noisy = abdomen_phantom(0, 256, 40.0)
    np.testing.assert_array_equal(with_strengths({"whole": whole}, noisy, ["auto"], ramp)["whole_strength_auto"], whole)


def test_score_model_reports_whole_slices_and_strengths(script, tmp_path: Path) -> None:
    datalist = write_synthetic_datalist(tmp_path)
    model = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    report_file = tmp_path / "score.json"
    arguments = [
        "--model",
        str(model),
        "--datalist",
        str(datalist),
        "--strengths",
        "0.5",
        "0",
        "auto",
        "--json",
        str(report_file),
    ]
    assert script("score_model").main(arguments) == 0
    paired = json.loads(report_file.read_text())["paired"]
    assert paired["slices"] == 3
    assert {"low_dose", "whole", "whole_strength_0.5", "whole_strength_0", "whole_strength_auto"} <= set(paired)
    for window in ("w400", "w2000"):
        # strength 0 is the input itself; the network changed it
        assert paired["whole_strength_0"][f"psnr_{window}"] == paired["low_dose"][f"psnr_{window}"]
        assert paired["whole"][f"psnr_{window}"] != paired["low_dose"][f"psnr_{window}"]
    assert paired["whole_strength_0"]["error_by_tissue"] == paired["low_dose"]["error_by_tissue"]
    assert paired["whole"]["error_by_tissue"]["soft_tissue"]["rmse_hu"] > 0
    with pytest.raises(SystemExit):
        script("score_model").main([*arguments[:4], "--strengths", "2"])
    with pytest.raises(SystemExit):
        script("score_model").main([*arguments[:4], "--self-ensemble", "3"])


def test_score_model_averages_flipped_views_on_request(script, tmp_path: Path) -> None:
    datalist = write_synthetic_datalist(tmp_path)
    model = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    reports = {}
    for size in (1, 2):
        report_file = tmp_path / f"score_{size}.json"
        arguments = ["--model", str(model), "--datalist", str(datalist), "--self-ensemble", str(size), "--json", str(report_file)]
        assert script("score_model").main(arguments) == 0
        reports[size] = json.loads(report_file.read_text())
    assert [reports[size]["self_ensemble"] for size in (1, 2)] == [1, 2]
    first, second = (reports[size]["paired"]["whole"]["psnr_w400"]["mean"] for size in (1, 2))
    assert first != second  # the perturbed generator is not flip-invariant: the views were averaged
    assert reports[1]["paired"]["low_dose"] == reports[2]["paired"]["low_dose"]


def test_score_model_measures_edge_widths_against_the_full_dose(script, tmp_path: Path) -> None:
    """Fat/organ boundaries of a phantom: every image's edge width is read against the full dose at the same points;
    the noisy input reads narrower than the truth, and strength 0 (the input itself) reads as the input."""
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    pairs = []
    for index in range(2):
        full = abdomen_phantom(index, noise_hu=0.0)
        low = full + np.random.default_rng(10 + index).normal(0.0, 30.0, full.shape)
        pair = {"low_dose": f"low{index}.nii.gz", "full_dose": f"full{index}.nii.gz", "patient": f"p{index}"}
        for key, image in (("low_dose", low), ("full_dose", full)):
            nib.save(nib.Nifti1Image(image.astype(np.float32), affine), tmp_path / pair[key])
        pairs.append(pair)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": pairs[:1], "validation": pairs[:1], "test": pairs}))
    model = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    report_file = tmp_path / "score.json"
    arguments = ["--model", str(model), "--datalist", str(datalist), "--strengths", "0", "--json", str(report_file)]
    assert script("score_model").main([*arguments, "--context-sizes", "128"]) == 0
    paired = json.loads(report_file.read_text())["paired"]
    assert set(paired["whole"]["central_region_psnr_by_context"]) == {"context_128", "whole"}
    low_dose = paired["low_dose"]
    assert low_dose["edge_profiles"] >= 20 and low_dose["edge_width_ratio_to_reference"] < 1.0
    assert paired["whole"]["edge_width_ratio_to_reference"] > 0
    for key in ("edge_width_mm", "edge_width_ratio_to_reference", "edge_profiles"):
        assert paired["whole_strength_0"][key] == low_dose[key]


def test_context_sizes_beyond_the_slice_name_the_file_and_below_the_region_stop_at_parsing(script, tmp_path: Path) -> None:
    datalist = write_synthetic_datalist(tmp_path)  # 64x64 slices
    model = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    arguments = ["--model", str(model), "--datalist", str(datalist)]
    with pytest.raises(ValueError, match=r"low.*\.nii\.gz: context size 128 must lie between"):
        script("score_model").main([*arguments, "--context-sizes", "128"])
    with pytest.raises(SystemExit):
        script("score_model").main([*arguments, "--context-sizes", "64"])
