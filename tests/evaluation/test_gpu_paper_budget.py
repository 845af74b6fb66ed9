"""scripts/gpu_paper_budget.sh, the prepared GPU run: refuses bad input before any compute, and (slow) runs every
step end to end on the CPU with a tiny volume, so a session lent a GPU for minutes does not spend them on a typo."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import abdomen_phantom, write_ct_series

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_paper_budget.sh"


def run_budget(*arguments: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, arguments)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_help_names_the_arguments_and_exits_2(tmp_path: Path) -> None:
    result = run_budget("--help", cwd=tmp_path)
    assert result.returncode == 2
    for word in ("VOLUME", "REAL_SERIES", "OUTPUT_DIR", "TRAIN_SECONDS", "BACKBONE"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (("missing.nii.gz", "series", "out"), "missing.nii.gz does not exist"),
        (("volume.nii.gz", "no_series", "out"), "no_series does not exist"),
        (("volume.nii.gz", "series", "out", "1.5"), "TRAIN_SECONDS '1.5' is not a positive integer"),
        (("volume.nii.gz", "series", "full"), "full is not empty"),
    ],
)
def test_bad_input_is_named_before_anything_runs(tmp_path: Path, arguments: tuple[str, ...], problem: str) -> None:
    (tmp_path / "volume.nii.gz").write_bytes(b"")
    (tmp_path / "series").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("an earlier run")
    result = run_budget(*arguments, cwd=tmp_path)  # relative paths: from the caller's folder, not the repository's
    assert result.returncode == 2
    assert problem in result.stderr
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "full" / "keep.txt").read_text() == "an earlier run"


@pytest.mark.slow
def test_every_step_runs_on_a_cpu_with_a_tiny_volume(tmp_path: Path) -> None:
    # 128 pixels: the recipe's late patches; 24 slabs: a few per block after the gaps
    slabs = np.stack([abdomen_phantom(seed, size=128, noise_hu=0.0) for seed in range(24)], axis=-1)
    (tmp_path / "input").mkdir()  # outputs may not go inside the volume's folder
    nib.save(nib.Nifti1Image(slabs.astype(np.float32), np.diag([1.4, 1.4, 3.0, 1.0])), str(tmp_path / "input" / "volume.nii.gz"))
    write_ct_series(tmp_path / "series", [3.0 * z for z in range(3)])
    cpu_smoke = {
        "BACKBONE": "tf_efficientnetv2_b0",
        "BATCH": "4",
        "DEVICE": "cpu",
        "SPEED_ARGS": "--quick",
        "WORKERS": "0",
        "COMPILE_TIMEOUT": "1",  # reported as skipped: compiling takes minutes on a CPU
    }
    result = run_budget("input/volume.nii.gz", "series", "out", "1", cwd=tmp_path, env=cpu_smoke)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    speed = json.loads((out / "speed.json").read_text())
    assert any(step["status"] == "ok" for step in speed["training"])
    assert "3/4 training: 50 iterations (5 per epoch) of tf_efficientnetv2_b0, batch 4" in result.stdout
    assert (out / "run" / "models" / "model.pt").is_file()
    for name in ("test", "validation", "test_self_ensemble_2", "validation_self_ensemble_2"):
        score = json.loads((out / f"score_{name}.json").read_text())
        assert np.isfinite(score["paired"]["whole"]["psnr_w400"]["mean"])
    (real,) = json.loads((out / "score_test.json").read_text())["real_low_dose"]
    assert real["slices"] == [0, 1, 2]
