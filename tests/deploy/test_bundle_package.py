"""The packaged bundle runs alone: model-zoo checks, export and inference of a real DICOM series inside its folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from builders import write_ct_series

from custom.deploy.bundle_package import requirement_conflicts
from custom.errors import BundleInputError
from custom.networks.model_file import read_model_file

# what `python -m monai.bundle verify_metadata / verify_net_in_out / ckpt_export / run` call, in one process
ZOO_CHECKS = """
import sys
import custom
from monai.bundle import ckpt_export, run, verify_metadata, verify_net_in_out
print("custom from", custom.__file__)
verify_metadata(meta_file="configs/metadata.json", filepath="configs/metadata_schema.json")
verify_net_in_out(net_id="network_def", meta_file="configs/metadata.json", config_file="configs/inference.json", n=1, any=48)
ckpt_export(net_id="network_def", filepath="models/model.ts", ckpt_file="models/model.pt", key_in_ckpt="model",
            meta_file="configs/metadata.json", config_file="configs/inference.json")
run(config_file="configs/inference.json", meta_file="configs/metadata.json", input_dir=sys.argv[1], output_dir=sys.argv[2])
"""


def run_inside(folder: Path, *command: str) -> str:
    """Run `command` in `folder` without the repository on the path: only the package's own copy of the code."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_packaged_bundle_passes_the_zoo_checks_and_denoises_a_dicom_series_alone(tmp_path: Path, script) -> None:
    package = tmp_path / "ldct_effnetv2_wgangp"
    assert script("package_bundle").main([str(package)]) == 0
    for name in (
        "configs/metadata.json",
        "configs/inference.json",
        "models/model.pt",
        "docs/README.md",
        "LICENSE",
        "custom/__init__.py",
        "monai_deploy_app.py",
        "monai_label_app/main.py",
    ):
        assert (package / name).is_file(), name
    assert json.loads((package / "configs/inference.json").read_text())["bundle_root"] == "."
    metadata = json.loads((package / "configs/metadata.json").read_text())
    assert metadata["monai_version"] == __import__("monai").__version__
    assert read_model_file(package / "models/model.pt").settings["backbone"]

    write_ct_series(tmp_path / "scan", [0.0, 5.0, 10.0])
    output = run_inside(package, sys.executable, "-c", ZOO_CHECKS, str(tmp_path / "scan"), str(tmp_path / "out"))
    assert f"custom from {package / 'custom' / '__init__.py'}" in output
    assert (package / "models/model.ts").is_file()
    (series,) = (tmp_path / "out").iterdir()
    slices = sorted((series / "dicom").iterdir())
    assert len(slices) == 3 and pydicom.dcmread(slices[0]).Modality == "CT"


@pytest.mark.faults
def test_package_target_that_is_not_empty_is_refused_and_left_alone(tmp_path: Path) -> None:
    from custom.deploy.bundle_package import package_bundle

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BundleInputError, match="exists and is not empty"):
        package_bundle(tmp_path)
    with pytest.raises(BundleInputError, match="does not exist"):
        package_bundle(tmp_path / "new", model_file=tmp_path / "missing.pt")
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_repository_metadata_states_versions_its_requirements_allow(repo_root: Path, tmp_path: Path) -> None:
    metadata = json.loads((repo_root / "bundle" / "configs" / "metadata.json").read_text())
    assert requirement_conflicts(metadata) == []
    # the check can fail: a version the requirements exclude, and a package they do not list
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("monai[fire]>=1.5,<1.7  # comment\ntorch>=2.4\ntimm>=1.0.9,<2\n")
    stated = {
        "monai_version": "1.7.0",
        "pytorch_version": "2.5.1",
        "required_packages_version": {"timm": "1.0.9", "mlflow": "3.0"},
    }
    assert requirement_conflicts(stated, requirements) == [
        "monai 1.7.0: outside requirements.txt's 'monai[fire]<1.7,>=1.5'",
        "mlflow 3.0: required by metadata.json, not listed in requirements.txt",
    ]
