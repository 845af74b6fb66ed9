"""MONAI Label: a real `monailabel start_server` with the packaged bundle's app, a real `/infer` call.

monailabel is not a project requirement: 0.8.5 needs pydicom < 3 (the project needs pydicom 3), so it lives in its
own environment. `bash scripts/check_monai_label.sh` builds that environment and runs this file; elsewhere the
tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import abdomen_phantom, perturbed_tiny_generator

from custom.conventions import REPO_ROOT
from custom.networks.model_file import save_model_file

pytestmark = pytest.mark.skipif(importlib.util.find_spec("monailabel") is None, reason="monailabel is not installed here")

HU_MIN, HU_MAX = -1024.0, 3072.0  # the bundle's normalisation window (inference.json hu_min / hu_max)
MODEL = "ldct_effnetv2_wgangp"  # metadata.json "name"
METAL_HU = 3500.0  # above the window: must pass through unchanged
SERVER_START_SECONDS = 300


def label_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("monai_label_app_main", REPO_ROOT / "scripts" / "monai_label_app" / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_volume(path: Path) -> nib.Nifti1Image:
    """Three 160 x 144 phantom slices (not square, so a swapped axis shows), int16 HU as scanners' NIfTI are,
    a metal spot above the window, an oblique-free affine with its own spacing and origin."""
    volume = np.stack([abdomen_phantom(seed)[:, :144] for seed in range(3)], axis=-1)
    volume[80:83, 60:63, 1] = METAL_HU
    affine = np.diag([0.7, 0.8, 3.0, 1.0])
    affine[:3, 3] = (-56.0, -57.6, 120.0)
    image = nib.Nifti1Image(np.round(volume).astype(np.int16), affine)
    nib.save(image, path)
    return image


def expected_denoised_hu(network: torch.nn.Module, volume_hu: np.ndarray) -> np.ndarray:
    """The bundle's pipeline written independently: each z slice as stored, [0, 1] scale, HU, passthrough."""
    slices = torch.as_tensor(np.moveaxis(volume_hu, -1, 0), dtype=torch.float32)[:, None]
    with torch.no_grad():
        pred = network(((slices - HU_MIN) / (HU_MAX - HU_MIN)).clamp(0, 1))[:, 0]
    hu = np.moveaxis((pred * (HU_MAX - HU_MIN) + HU_MIN).numpy(), 0, -1)
    outside = (volume_hu < HU_MIN) | (volume_hu > HU_MAX)
    return np.where(outside, volume_hu, hu)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_info(url: str, server: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server stopped:\n{log.read_text()[-5000:]}"
        try:
            with urllib.request.urlopen(f"{url}/info/", timeout=10) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(2)
    raise AssertionError(f"no /info/ within {SERVER_START_SECONDS} s:\n{log.read_text()[-5000:]}")


@pytest.mark.slow
def test_server_returns_denoised_float_hu_on_the_input_grid(tmp_path: Path) -> None:
    from custom.deploy.bundle_package import package_bundle

    network = perturbed_tiny_generator()
    package = package_bundle(tmp_path / MODEL, model_file=save_model_file(tmp_path / "model.pt", network))
    studies = tmp_path / "studies"
    studies.mkdir()
    source = write_volume(studies / "abdomen.nii.gz")
    original = (studies / "abdomen.nii.gz").read_bytes()
    port, log = free_port(), tmp_path / "server.log"
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(package / "monai_label_app")]
    command += ["--studies", str(studies), "--host", "127.0.0.1", "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # only the package's own code
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        info = wait_for_info(url, server, log)
        model = info["models"][MODEL]
        assert model["type"] == "others" and model["labels"] == {}, model
        assert "float32 HU" in model["output"]
        request = urllib.request.Request(f"{url}/infer/{MODEL}?image=abdomen&output=image", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=600) as response:
            (tmp_path / "denoised.nii.gz").write_bytes(response.read())
    finally:
        server.terminate()
        server.wait(timeout=60)

    denoised = nib.load(tmp_path / "denoised.nii.gz")
    assert denoised.get_data_dtype() == np.float32, "a label-map dtype would destroy HU"
    assert denoised.shape == source.shape
    np.testing.assert_allclose(denoised.affine, source.affine, atol=1e-4)
    source_hu = source.get_fdata()
    denoised_hu = denoised.get_fdata()
    np.testing.assert_allclose(denoised_hu, expected_denoised_hu(network, source_hu), atol=1e-2)
    assert np.abs(denoised_hu - source_hu).max() > 5, "the perturbed generator should change the HU"
    assert (denoised_hu == METAL_HU).sum() == 9
    assert (studies / "abdomen.nii.gz").read_bytes() == original, "the input volume must not change"


def test_app_refuses_a_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    for name in ("inference.json", "metadata.json"):
        (tmp_path / "configs" / name).write_text("{}")
    with pytest.raises(ValueError, match=r"missing models/model\.pt.*package_bundle\.py"):
        label_app().bundle_folder(str(tmp_path / "monai_label_app"), {})
    with pytest.raises(ValueError, match="missing configs/inference.json"):
        label_app().bundle_folder("unused", {"bundle": str(tmp_path / "elsewhere")})
