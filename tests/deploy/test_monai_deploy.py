"""MONAI Deploy: the HU-preserving output conversion, and the whole application when the App SDK is installed.

The SDK (`monai-deploy-app-sdk` with Holoscan) is not a project requirement: installed next to MONAI it is imported
by every `import monai`. The application test runs where it is importable, e.g. in a separate environment:
`python -m venv /tmp/deployenv && /tmp/deployenv/bin/pip install monai-deploy-app-sdk`, then
`/tmp/deployenv/bin/python -m pytest tests/deploy/test_monai_deploy.py` (with the project installed there too). Elsewhere it skips with the import error.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from builders import export_torchscript_bundle, perturbed_tiny_generator
from monai.utils import OptionalImportError
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from custom.deploy.hu_preserving_bundle_operator import (
    HAS_DEPLOY_SDK,
    HUPreservingBundleInferenceOperator,
    hu_volume_for_dicom,
)
from custom.networks.model_file import WEIGHTS_KEY, save_model_file

HU_MIN, HU_MAX = -1024.0, 3072.0  # the bundle's normalisation window (inference.json hu_min / hu_max)
SLICE_SHIFTS_HU = (0, 150, -300)  # each slice of the synthetic series is distinguishable
requires_sdk = pytest.mark.skipif(not HAS_DEPLOY_SDK, reason="monai-deploy-app-sdk (with holoscan) is not importable")


def test_volume_keeps_float_hu_in_dicom_axis_order() -> None:
    columns_rows_slices = torch.tensor([-1000.25, -3.5, 0.0, 1234.75, 3071.0, -1024.0]).reshape(1, 3, 2, 1)
    volume = hu_volume_for_dicom(columns_rows_slices)
    assert volume.dtype == np.float32 and volume.shape == (1, 2, 3)  # slices, rows, columns
    np.testing.assert_array_equal(volume[0], columns_rows_slices[0, :, :, 0].numpy().T)
    assert volume.min() < 0 and volume.max() > 255  # what a uint8 cast would have destroyed


def test_single_slice_output_keeps_its_layout() -> None:
    image = np.arange(12, dtype=np.float64).reshape(1, 3, 4) - 500
    volume = hu_volume_for_dicom(image)
    assert volume.dtype == np.float32
    np.testing.assert_array_equal(volume, image[0])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((2, 4, 4)), "one channel-first"),
        (np.zeros(4), "one channel-first"),
        (np.full((1, 2, 2), np.nan), "NaN"),
    ],
)
def test_bad_outputs_are_refused(value: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hu_volume_for_dicom(value, "pred")


@pytest.mark.skipif(HAS_DEPLOY_SDK, reason="the App SDK is installed here")
def test_operator_without_sdk_says_what_to_install() -> None:
    with pytest.raises(OptionalImportError, match="monai.deploy"):
        HUPreservingBundleInferenceOperator()


def write_ct_series(folder: Path) -> list[Path]:
    """Three slices made from pydicom's CT_small (128x128, slope 1, intercept -1024), files out of slice order."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = source.pixel_array.astype(np.int32)
    series_uid = generate_uid()
    folder.mkdir(parents=True)
    files = []
    for index, shift in enumerate(SLICE_SHIFTS_HU):
        dataset = copy.deepcopy(source)
        dataset.PixelData = (pixels + shift).astype(np.int16).tobytes()
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = index + 1
        x, y, z = (float(value) for value in source.ImagePositionPatient)
        dataset.ImagePositionPatient = [x, y, z + 5 * index]
        path = folder / f"{'cab'[index]}.dcm"  # the file names do not sort like the slices
        dataset.save_as(path)
        files.append(path)
    return files


def expected_denoised_hu(network: torch.nn.Module, hu_slice: np.ndarray) -> np.ndarray:
    """The bundle's pipeline on one slice, written independently: columns-first, [0, 1] scale, HU, passthrough."""
    image = torch.as_tensor(hu_slice.T, dtype=torch.float32)[None, None]
    with torch.no_grad():
        pred = network(((image - HU_MIN) / (HU_MAX - HU_MIN)).clamp(0, 1))[0, 0]
    hu = (pred * (HU_MAX - HU_MIN) + HU_MIN).numpy().T
    outside = (hu_slice < HU_MIN) | (hu_slice > HU_MAX)
    return np.where(outside, hu_slice, hu)


def run_application(app: Path, model_file: Path, tmp_path: Path, cwd: Path, env: dict[str, str] | None = None) -> Path:
    """Run the application on a fresh 3-slice series; returns the output folder."""
    output = tmp_path / "output"
    command = [sys.executable, str(app), "-i", str(tmp_path / "input"), "-o", str(output), "-m", str(model_file)]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output


@requires_sdk
def test_application_writes_denoised_hu_series(tmp_path: Path, repo_root: Path) -> None:
    network = perturbed_tiny_generator()
    model_file = export_torchscript_bundle(network, tmp_path)
    sources = write_ct_series(tmp_path / "input")
    output = run_application(repo_root / "scripts" / "monai_deploy_app.py", model_file, tmp_path, cwd=tmp_path)
    check_denoised_series(output, sources, network)


@requires_sdk
@pytest.mark.slow
def test_application_runs_from_the_packaged_bundle(tmp_path: Path) -> None:
    """The packaged bundle alone (repository off the path): ckpt_export of its model, then its copy of the app."""
    from custom.deploy.bundle_package import package_bundle

    network = perturbed_tiny_generator()
    package = package_bundle(tmp_path / "package", model_file=save_model_file(tmp_path / "model.pt", network))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    export = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", "models/model.ts"]
    export += ["--ckpt_file", "models/model.pt", "--key_in_ckpt", WEIGHTS_KEY, "--meta_file", "configs/metadata.json"]
    export += ["--config_file", "configs/inference.json"]
    result = subprocess.run(export, cwd=package, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sources = write_ct_series(tmp_path / "input")
    output = run_application(package / "monai_deploy_app.py", package / "models" / "model.ts", tmp_path, package, env)
    check_denoised_series(output, sources, network)


def check_denoised_series(output: Path, sources: list[Path], network: torch.nn.Module) -> None:
    """One derived slice per source slice, in HU, equal to the bundle's pipeline run independently."""
    written = sorted(output.glob("*.dcm"))
    assert len(written) == len(sources)
    source_by_uid = {pydicom.dcmread(path).SOPInstanceUID: pydicom.dcmread(path) for path in sources}
    changed = []
    for path in written:
        denoised = pydicom.dcmread(path)
        source = source_by_uid[denoised.SourceImageSequence[0].ReferencedSOPInstanceUID]
        source_hu = source.pixel_array * float(source.RescaleSlope) + float(source.RescaleIntercept)
        denoised_hu = denoised.pixel_array * float(denoised.RescaleSlope) + float(denoised.RescaleIntercept)
        assert denoised.SeriesInstanceUID != source.SeriesInstanceUID and "DERIVED" in denoised.ImageType
        # stored values are rounded to integers: half a HU, plus float32 noise
        np.testing.assert_allclose(denoised_hu, expected_denoised_hu(network, source_hu), atol=0.5 + 1e-3)
        changed.append(np.abs(denoised_hu - source_hu).max())
    assert min(changed) > 5, "the perturbed generator should change the HU"
