"""The real `bundle/configs/inference.json`, run through `monai.bundle` on real CT DICOM and NIfTI.

The untrained generator is the identity (its last layer starts at zero), so the denoised series must give back the
input HU within rounding: an end-to-end check of reading, slice order, scaling, writing and geometry. A generator
with a constant noise estimate checks that voxels outside the model's window pass through unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from builders import MR_SMALL, abdomen_phantom, edit, write_ct_series
from monai.bundle import run
from pydicom.pixels import apply_rescale
from pydicom.uid import ExplicitVRLittleEndian

from custom.inference.self_ensemble import self_ensemble
from custom.io.dicom_series import load_ct_series
from custom.io.dicom_series_writer import DENOISED_LABEL, stored_value_range
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.model_file import build_generator, load_weights, read_model_file, save_model_file

BACKBONE = "tf_efficientnetv2_b0"
HU_MIN, HU_MAX = -1024, 3072
NOISE = 0.01  # constant noise estimate of the shifting generator, in the [0, 1] scale: 40.96 HU
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def bundle_files(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The inference config and the bundle metadata (a minimal stand-in while the lead's is not there)."""
    meta = repo_root / "bundle" / "configs" / "metadata.json"
    if not meta.is_file():
        meta = tmp_path_factory.mktemp("meta") / "metadata.json"
        meta.write_text(json.dumps({"version": "0.0.0", "monai_version": "1.6.1", "pytorch_version": "2"}))
    return {"config_file": repo_root / "bundle" / "configs" / "inference.json", "meta_file": meta}


def save_generator(path: Path, noise: float = 0.0) -> Path:
    """A random tiny generator; `noise` sets its (otherwise zero) noise estimate to a constant.

    A constant noise estimate would be taken out again by the generator's local-mean removal, so a shifting
    generator is built (and recorded in its model file) without it.
    """
    generator = EfficientNetV2Denoiser(backbone=BACKBONE, noise_mean_sigma=None if noise else 16.0)
    torch.nn.init.constant_(generator.noise_head.bias, noise)
    return save_model_file(path, generator)


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_generator(tmp_path_factory.mktemp("models") / "identity.pt")


@pytest.fixture(scope="module")
def shifting_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_generator(tmp_path_factory.mktemp("models") / "shifting.pt", noise=NOISE)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generator whose output head is random too: its output changes with the slice's orientation."""
    torch.manual_seed(0)
    generator = EfficientNetV2Denoiser(backbone=BACKBONE)
    torch.nn.init.normal_(generator.noise_head.weight, std=0.05)
    return save_model_file(tmp_path_factory.mktemp("models") / "random.pt", generator)


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run_in_process(bundle_files: dict[str, Path], model: Path, input_dir: Path, output_dir: Path, **overrides) -> None:
    files = {name: str(path) for name, path in bundle_files.items()}
    run(
        **files,
        input_dir=str(input_dir),
        output_dir=str(output_dir),
        model_path=str(model),
        backbone=BACKBONE,
        batch_size=2,
        **overrides,
    )


def error_chain(error: BaseException | None) -> str:
    """All messages of an exception and its causes (the bundle wraps errors in config and transform errors)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


def read_output_series(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in sorted(folder.glob("slice_*.dcm"))]


def assert_identity_outputs(source_folder: Path, output_folder: Path, name: str) -> None:
    """DICOM and NIfTI outputs give back the source HU, slice by slice, at the source's positions."""
    series = load_ct_series([source_folder])
    source_hu = series.read_hu()
    outputs = read_output_series(output_folder / name / "dicom")
    assert len(outputs) == len(series.files)
    for output, header, expected in zip(outputs, series.headers, source_hu, strict=True):
        assert (output.Rows, output.Columns) == (header.Rows, header.Columns)
        assert output.SeriesInstanceUID != header.SeriesInstanceUID
        assert output.SOPInstanceUID != header.SOPInstanceUID
        assert output.PatientID == header.PatientID and output.StudyInstanceUID == header.StudyInstanceUID
        assert output.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert list(output.ImageType)[:2] == ["DERIVED", "SECONDARY"] and DENOISED_LABEL in output.SeriesDescription
        low, high = stored_value_range(output)
        assert low <= output.pixel_array.min() and output.pixel_array.max() <= high
        np.testing.assert_allclose(apply_rescale(output.pixel_array, output), expected, atol=0.5)
    nifti = nib.load(output_folder / name / f"{name}_denoised.nii.gz")
    volume = nifti.get_fdata().transpose(2, 1, 0)  # (slices, rows, columns)
    np.testing.assert_allclose(volume, source_hu, atol=1e-3)
    for k, output in enumerate(outputs):  # voxel (0, 0, k) sits at the k-th slice's position
        position = LPS_TO_RAS @ [*output.ImagePositionPatient, 1]
        np.testing.assert_allclose(nifti.affine @ [0, 0, k, 1], position, atol=1e-3)


@pytest.mark.slow
def test_command_line_denoises_a_dicom_series(
    bundle_files: dict[str, Path], identity_model: Path, repo_root: Path, tmp_path: Path
) -> None:
    series_folder = tmp_path / "input" / "patient_1" / "ct"
    write_ct_series(series_folder, [0.0, 10.0, 5.0])
    before = checksums(tmp_path / "input")
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(bundle_files["config_file"]),
        "--meta_file",
        str(bundle_files["meta_file"]),
        "--input_dir",
        str(tmp_path / "input"),
        "--output_dir",
        str(tmp_path / "output"),
        "--model_path",
        str(identity_model),
        "--backbone",
        BACKBONE,
        "--batch_size",
        "2",
    ]
    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_identity_outputs(series_folder, tmp_path / "output", "patient_1_ct")
    assert checksums(tmp_path / "input") == before
    assert not list((tmp_path / "output").rglob(".tmp-*"))


@pytest.mark.slow
def test_real_abdominal_slices_round_trip(
    bundle_files: dict[str, Path], identity_model: Path, shared_ct_dir: Path, tmp_path: Path
) -> None:
    """Siemens JPEG 2000 slices in, uncompressed denoised series out, HU unchanged by the identity generator."""
    source = tmp_path / "abdomen"
    source.mkdir()
    for path in sorted((shared_ct_dir / "totalsegmentator_abdomen_siemens").iterdir())[:2]:
        shutil.copy(path, source / path.name)
    before = checksums(source)
    run_in_process(bundle_files, identity_model, source, tmp_path / "output")
    assert_identity_outputs(source, tmp_path / "output", "abdomen")
    assert checksums(source) == before


@pytest.mark.slow
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_voxels_outside_the_window_keep_the_input_hu(
    bundle_files: dict[str, Path], shifting_model: Path, tmp_path: Path, strength: float
) -> None:
    """Padding below -1024 HU and metal above 3072 HU pass through; the rest is shifted by the noise estimate, times
    the denoising strength (`--strength`), which the derived series' description states when below 1."""
    files = write_ct_series(tmp_path / "in", [0.0, 5.0])
    for file in files:
        dataset = pydicom.dcmread(file)
        stored = dataset.pixel_array.copy()
        stored[:4, :] = -1000  # -2024 HU with intercept -1024: outside the reconstruction circle
        stored[60:64, 60:64] = 4500  # 3476 HU: metal
        dataset.PixelData = stored.tobytes()
        dataset.save_as(file, enforce_file_format=True)
    run_in_process(bundle_files, shifting_model, tmp_path / "in", tmp_path / "out", amp=True, strength=strength)
    series = load_ct_series([tmp_path / "in"])
    outputs = read_output_series(tmp_path / "out" / "in" / "dicom")
    for output, expected in zip(outputs, series.read_hu(), strict=True):
        hu = apply_rescale(output.pixel_array, output)
        outside = (expected < HU_MIN) | (expected > HU_MAX)
        assert outside.sum() == 4 * 128 + 16
        np.testing.assert_array_equal(hu[outside], expected[outside])
        shift = strength * NOISE * (HU_MAX - HU_MIN)
        np.testing.assert_allclose(hu[~outside], expected[~outside] - shift, atol=0.5 + 0.02 * shift)
        assert ("denoising strength 0.5" in output.DerivationDescription) == (strength < 1)
        assert "mean over 2 flipped views" in output.DerivationDescription  # inference.json's default self-ensemble


@pytest.mark.parametrize("size", [1, 2])
def test_the_self_ensemble_averages_flipped_views_of_each_slice(
    bundle_files: dict[str, Path], random_model: Path, tmp_path: Path, size: int
) -> None:
    """`--self_ensemble` gives the mean of the network over that many views, as `self_ensemble` computes it."""
    write_ct_series(tmp_path / "in", [0.0, 5.0])
    run_in_process(bundle_files, random_model, tmp_path / "in", tmp_path / "out", self_ensemble=size, strength=1.0)
    model = read_model_file(random_model)
    network = load_weights(build_generator(model), model).eval()
    source = load_ct_series([tmp_path / "in"]).read_hu().transpose(0, 2, 1)  # (x, y): as the bundle's loader
    scaled = torch.from_numpy(np.clip((source - HU_MIN) / (HU_MAX - HU_MIN), 0, 1).astype(np.float32))[:, None]
    with torch.no_grad():
        views = {n: self_ensemble(network, scaled, n)[:, 0].numpy() * (HU_MAX - HU_MIN) + HU_MIN for n in (1, 2)}
    assert np.abs(views[2] - views[1]).max() > 5  # the views differ: the test tells the sizes apart
    outputs = read_output_series(tmp_path / "out" / "in" / "dicom")
    for output, wanted in zip(outputs, views[size], strict=True):
        np.testing.assert_allclose(apply_rescale(output.pixel_array, output), wanted.T, atol=1.0)


def test_the_default_strength_follows_each_slices_measured_noise(
    bundle_files: dict[str, Path], shifting_model: Path, tmp_path: Path
) -> None:
    """Strength "auto" (the default): of a quiet slice (10 HU of noise, as at a high dose) the shifting network's
    change is not kept, of a quarter-dose-like one (40 HU) all of it; the DICOM output says so."""
    volume = np.stack([abdomen_phantom(0, 256, 10.0), abdomen_phantom(1, 256, 40.0)], axis=-1).astype(np.float32)
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(volume, np.diag([0.7, 0.7, 3.0, 1.0])), tmp_path / "in" / "two_doses.nii.gz")
    run_in_process(bundle_files, shifting_model, tmp_path / "in", tmp_path / "out", self_ensemble=1)
    output = nib.load(tmp_path / "out" / "two_doses" / "two_doses_denoised.nii.gz").get_fdata()
    shift = NOISE * (HU_MAX - HU_MIN)
    np.testing.assert_allclose(output[..., 0], volume[..., 0], atol=1e-3)
    inside = volume[..., 1] >= HU_MIN  # air noise below -1024 HU passes through unchanged
    np.testing.assert_allclose(output[..., 1][inside], volume[..., 1][inside] - shift, atol=0.5)

    write_ct_series(tmp_path / "dicom_in", [0.0, 5.0])
    run_in_process(bundle_files, shifting_model, tmp_path / "dicom_in", tmp_path / "dicom_out")
    description = read_output_series(tmp_path / "dicom_out" / "dicom_in" / "dicom")[0].DerivationDescription
    assert "denoising strength from each slice's measured noise (auto: 0 at" in description


def test_nifti_folder_and_datalist_inputs(bundle_files: dict[str, Path], identity_model: Path, tmp_path: Path) -> None:
    """NIfTI in, NIfTI out with the same affine and HU, and no DICOM output; a datalist JSON works alike."""
    series = load_ct_series(write_ct_series(tmp_path / "dicom", [0.0, 5.0]))
    affine = np.array([[-0.7, 0, 0, 90], [0, -0.7, 0, 80], [0, 0, 5, -30], [0, 0, 0, 1]])
    volume = series.read_hu().transpose(2, 1, 0)
    (tmp_path / "nifti").mkdir()
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "nifti" / "ld_case.nii.gz")
    run_in_process(bundle_files, identity_model, tmp_path / "nifti", tmp_path / "out")
    output = nib.load(tmp_path / "out" / "ld_case" / "ld_case_denoised.nii.gz")
    np.testing.assert_allclose(output.affine, affine, atol=1e-5)
    np.testing.assert_allclose(output.get_fdata(), volume, atol=1e-3)
    assert not (tmp_path / "out" / "ld_case" / "dicom").exists()

    datalist = tmp_path / "nifti" / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"low_dose": "ld_case.nii.gz", "full_dose": "ld_case.nii.gz"}]}))
    run_in_process(bundle_files, identity_model, datalist, tmp_path / "from_datalist")
    assert (tmp_path / "from_datalist" / "ld_case" / "ld_case_denoised.nii.gz").is_file()


def truncate(folder: Path) -> Path:
    files = write_ct_series(folder, [0.0, 5.0])
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) - 5000])
    return files[1]


def non_ct(folder: Path) -> Path:
    write_ct_series(folder, [0.0, 5.0])
    shutil.copy(MR_SMALL, folder / "mr.dcm")
    return folder / "mr.dcm"


def no_rescale_slope(folder: Path) -> Path:
    files = write_ct_series(folder, [0.0, 5.0])
    edit(files[0], RescaleSlope=None)
    return files[0]


def mixed_image_sizes(folder: Path) -> Path:
    files = write_ct_series(folder, [0.0, 5.0])
    smaller = pydicom.dcmread(files[0])
    smaller.set_pixel_data(smaller.pixel_array[::2, ::2].copy(), "MONOCHROME2", 16, generate_instance_uid=False)
    smaller.save_as(files[0], enforce_file_format=True)
    return files[0]


def nan_nifti(folder: Path) -> Path:
    volume = np.full((16, 16, 2), 40.0, dtype=np.float32)
    volume[:8] = -1000.0
    volume[3, 4, 1] = np.nan
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / "nan.nii.gz")
    return folder / "nan.nii.gz"


def normalised_nifti(folder: Path) -> Path:
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 2), dtype=np.float32), np.eye(4)), folder / "n.nii")
    return folder / "n.nii"


def empty(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize(
    "make_bad_input, problem",
    [
        (truncate, "truncated"),
        (non_ct, "not 'CT'"),
        (no_rescale_slope, "RescaleSlope missing"),
        (mixed_image_sizes, "one volume needs one image size"),
        (empty, "folder is empty"),
        (nan_nifti, "1 voxels are NaN or infinite"),
        (normalised_nifti, "already normalised, not HU"),
    ],
)
def test_bad_input_names_the_file(
    bundle_files: dict[str, Path], identity_model: Path, tmp_path: Path, make_bad_input, problem: str
) -> None:
    culprit = make_bad_input(tmp_path / "in")
    with pytest.raises(Exception) as error:
        run_in_process(bundle_files, identity_model, tmp_path / "in", tmp_path / "out")
    message = error_chain(error.value)
    assert str(culprit) in message and problem in message
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_output_inside_the_input_is_refused(bundle_files: dict[str, Path], identity_model: Path, tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", [0.0, 5.0])
    before = checksums(tmp_path / "in")
    with pytest.raises(Exception) as error:
        run_in_process(bundle_files, identity_model, tmp_path / "in", tmp_path / "in" / "denoised")
    assert "inside input_dir" in error_chain(error.value)
    assert checksums(tmp_path / "in") == before


@pytest.mark.parametrize("strength", [1.5, -0.1])
def test_a_strength_outside_0_1_is_refused_before_any_output(
    bundle_files: dict[str, Path], identity_model: Path, tmp_path: Path, strength: float
) -> None:
    write_ct_series(tmp_path / "in", [0.0, 5.0])
    with pytest.raises(Exception) as error:
        run_in_process(bundle_files, identity_model, tmp_path / "in", tmp_path / "out", strength=strength)
    assert f"denoising strength {strength}: must be in [0, 1]" in error_chain(error.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.*"))


def test_a_self_ensemble_size_that_is_not_a_group_is_refused_before_any_output(
    bundle_files: dict[str, Path], identity_model: Path, tmp_path: Path
) -> None:
    write_ct_series(tmp_path / "in", [0.0, 5.0])
    with pytest.raises(Exception) as error:
        run_in_process(bundle_files, identity_model, tmp_path / "in", tmp_path / "out", self_ensemble=3)
    assert "self-ensemble size 3: must be one of (1, 2, 4, 8)" in error_chain(error.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.*"))
