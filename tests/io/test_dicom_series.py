"""Reading, validating and writing CT DICOM series on real CT slices (pydicom's CT_small, the shared scans)."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import pytest
from builders import CT_SMALL, MR_SMALL, RT_PLAN, SLICE_GAP_MM, edit, write_ct_series
from monai.transforms import LoadImage
from pydicom.pixels import apply_rescale
from pydicom.uid import ExplicitVRLittleEndian

from custom.errors import BundleInputError
from custom.io.ct_series_loader import LoadCTVolumed, list_inference_inputs
from custom.io.dicom_series import DicomSeriesError, find_ct_series, load_ct_series
from custom.io.dicom_series_writer import (
    DENOISED_LABEL,
    SERIES_NUMBER_OFFSET,
    hu_to_stored,
    stored_value_range,
    write_denoised_series,
)


def test_slices_sort_along_the_normal_and_convert_to_hu(tmp_path: Path) -> None:
    positions = [10.0, -5.0, 0.0, 5.0]
    files = write_ct_series(tmp_path / "series", positions)
    series = load_ct_series([tmp_path / "series"])
    order = np.argsort(positions)
    assert series.files == tuple(files[index] for index in order)
    hu = series.read_hu()
    for slice_hu, file in zip(hu, series.files, strict=True):
        dataset = pydicom.dcmread(file)
        np.testing.assert_array_equal(slice_hu, apply_rescale(dataset.pixel_array, dataset))
    affine = series.affine_lps()
    np.testing.assert_allclose(affine[:3, 2], [0, 0, SLICE_GAP_MM])
    np.testing.assert_allclose(affine[:3, 3], pydicom.dcmread(series.files[0]).ImagePositionPatient)


def test_without_positions_slices_follow_instance_number(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path, [0.0, 5.0, 10.0])
    for file in files:
        edit(file, ImagePositionPatient=None)
    assert load_ct_series([tmp_path]).files == tuple(reversed(files))


def test_reader_matches_monai_geometry_on_real_scans(shared_ct_dir: Path) -> None:
    """Every slice holds the same HU at the same world coordinates as with MONAI's PydicomReader."""
    folder = shared_ct_dir / "dcmqi_ct3slice_GE_liver"
    ours = LoadCTVolumed(keys="image")({"image": str(folder)})["image"]
    reference = LoadImage(reader="PydicomReader", image_only=True)(str(folder))
    assert ours.shape == reference.shape
    for k in range(ours.shape[2]):
        for i, j in [(0, 0), (5, 9), (511, 300)]:
            world = ours.affine.numpy() @ [i, j, k, 1]
            index = np.linalg.solve(reference.affine.numpy(), world)[:3]
            np.testing.assert_allclose(index[:2], [i, j], atol=1e-3)
            assert abs(index[2] - round(index[2])) < 1e-3
        np.testing.assert_array_equal(ours[..., k].numpy(), reference[..., round(index[2])].numpy())


def test_tilted_gantry_series_with_uneven_gaps(shared_ct_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        (series,) = find_ct_series(shared_ct_dir / "dcm_qa_ct_GE_head")
    assert [int(header.InstanceNumber) for header in series.headers] == list(range(1, 29))
    assert "slice gaps range" in caplog.text
    _row, column, _step = (series.affine_lps()[:3, axis] for axis in range(3))
    assert abs(np.dot(column / np.linalg.norm(column), [0, 0.948, -0.317])) > 0.99  # the tilt is kept


def test_series_sharing_a_folder_get_distinct_output_names(shared_ct_dir: Path, tmp_path: Path) -> None:
    entries = list_inference_inputs(shared_ct_dir / "dcm_qa_ct_Philips_headphantom", tmp_path)
    names = [entry["output_name"] for entry in entries]
    assert len(entries) == 4 and len(set(names)) == 4
    assert "dcm_qa_ct_Philips_headphantom_S202" in names  # unique SeriesNumber; 201 is used twice -> UIDs


def test_non_image_dicom_files_are_skipped(tmp_path: Path) -> None:
    write_ct_series(tmp_path, [0.0, 5.0])
    shutil.copy(RT_PLAN, tmp_path / "plan.dcm")
    (tmp_path / "notes.txt").write_text("scanned 2004")
    assert len(load_ct_series([tmp_path]).files) == 2


@pytest.mark.faults
@pytest.mark.parametrize("cut", ["header", "pixels"])
def test_truncated_file_is_named(tmp_path: Path, cut: str) -> None:
    files = write_ct_series(tmp_path, [0.0, 5.0, 10.0])
    data = files[1].read_bytes()
    files[1].write_bytes(data[:2000] if cut == "header" else data[: len(data) - 5000])
    with pytest.raises(DicomSeriesError, match=f"{files[1]}.*truncated"):
        load_ct_series([tmp_path]).read_hu()


def test_non_ct_file_is_named(tmp_path: Path) -> None:
    write_ct_series(tmp_path, [0.0, 5.0])
    shutil.copy(MR_SMALL, tmp_path / "mr.dcm")
    with pytest.raises(DicomSeriesError, match=f"{tmp_path / 'mr.dcm'}: Modality is 'MR', not 'CT'"):
        find_ct_series(tmp_path)


@pytest.mark.parametrize("tag", ["RescaleSlope", "RescaleIntercept"])
def test_missing_rescale_tag_is_named(tmp_path: Path, tag: str) -> None:
    files = write_ct_series(tmp_path, [0.0, 5.0])
    edit(files[0], **{tag: None})
    with pytest.raises(DicomSeriesError, match=f"{files[0]}: {tag} missing"):
        load_ct_series([tmp_path])


def test_two_series_in_one_volume_are_refused(tmp_path: Path) -> None:
    write_ct_series(tmp_path, [0.0, 5.0])
    write_ct_series(tmp_path / "other", [0.0, 5.0])
    with pytest.raises(DicomSeriesError, match=f"{tmp_path}: holds 2 series"):
        LoadCTVolumed(keys="image")({"image": str(tmp_path)})


def test_two_image_sizes_in_one_series_are_refused(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path, [0.0, 5.0])
    smaller = pydicom.dcmread(files[1])
    smaller.set_pixel_data(smaller.pixel_array[::2, ::2].copy(), "MONOCHROME2", 16, generate_instance_uid=False)
    smaller.save_as(files[1], enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match="one volume needs one image size") as error:
        find_ct_series(tmp_path)
    assert all(str(file) in str(error.value) for file in files) and "64x64" in str(error.value)


def test_empty_folder_and_folder_without_dicom_are_named(tmp_path: Path) -> None:
    with pytest.raises(DicomSeriesError, match=f"{tmp_path}: folder is empty"):
        load_ct_series([tmp_path])
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DicomSeriesError, match=f"{tmp_path}: no DICOM image files"):
        load_ct_series([tmp_path])


def test_writer_round_trips_hu_and_marks_the_series_derived(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", [0.0, 5.0, 10.0])
    edit(next((tmp_path / "in").iterdir()), SeriesDescription="x" * 64)
    series = load_ct_series([tmp_path / "in"])
    hu = series.read_hu()
    written = write_denoised_series(hu, series.files, tmp_path / "out")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [f"slice_000{i}.dcm" for i in (1, 2, 3)]
    outputs = [pydicom.dcmread(path) for path in written]
    sources = [pydicom.dcmread(path) for path in series.files]
    for output, source, expected in zip(outputs, sources, hu, strict=True):
        np.testing.assert_array_equal(apply_rescale(output.pixel_array, output), expected)
        assert output.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert output.SOPClassUID == source.SOPClassUID
        assert output.SOPInstanceUID != source.SOPInstanceUID
        assert output.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert output.SeriesInstanceUID != source.SeriesInstanceUID
        assert (output.PatientID, output.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
        assert output.ImagePositionPatient == source.ImagePositionPatient
        assert list(output.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert output.SeriesDescription.endswith(DENOISED_LABEL) and len(output.SeriesDescription) <= 64
        assert output.SeriesNumber == source.SeriesNumber + SERIES_NUMBER_OFFSET
        assert "denoised" in output.DerivationDescription.lower() or "noise" in output.DerivationDescription.lower()
    assert len({output.SeriesInstanceUID for output in outputs}) == 1
    assert len({output.SOPInstanceUID for output in outputs}) == 3


def test_writer_clips_to_the_stored_range(tmp_path: Path) -> None:
    header = pydicom.dcmread(CT_SMALL, stop_before_pixels=True)
    header.BitsStored, header.PixelRepresentation = 12, 0
    assert stored_value_range(header) == (0, 4095)
    stored = hu_to_stored(np.array([[-5000.0, -1023.6, 0.4, 10000.0]]), header, CT_SMALL)
    np.testing.assert_array_equal(stored, [[0, 0, 1024, 4095]])
    assert stored.dtype == np.uint16


def test_writer_refuses_the_input_folder(tmp_path: Path) -> None:
    series = load_ct_series(write_ct_series(tmp_path / "in", [0.0, 5.0]))
    with pytest.raises(ValueError, match="inside the input series folder"):
        write_denoised_series(series.read_hu(), series.files, tmp_path / "in" / "denoised")
    assert len(list((tmp_path / "in").rglob("*"))) == 2


@pytest.mark.parametrize("folder", ["totalsegmentator_abdomen_siemens", "dcmqi_ct3slice_GE_liver"])
def test_writer_decompresses_real_scans_exactly(shared_ct_dir: Path, tmp_path: Path, folder: str) -> None:
    """JPEG 2000 (Siemens) and implicit VR (GE, padding at -3024 HU) sources give uncompressed explicit VR copies."""
    source = sorted((shared_ct_dir / folder).iterdir())[:1]
    series = load_ct_series(source)
    (written,) = write_denoised_series(series.read_hu(), series.files, tmp_path)
    output, original = pydicom.dcmread(written), pydicom.dcmread(source[0])
    assert output.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(output.pixel_array, original.pixel_array)


def test_inputs_from_folders_nifti_and_datalists(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in" / "patient" / "ct", [0.0, 5.0])
    nifti = tmp_path / "in" / "volume.nii.gz"
    nifti.write_bytes(b"")
    with pytest.raises(BundleInputError, match=f"'{nifti}' cannot be read as a NIfTI volume"):
        list_inference_inputs(tmp_path / "in", tmp_path / "out")  # listing reads NIfTI voxels: HU checked first
    volume = np.where(np.arange(2 * 8 * 8).reshape(8, 8, 2) % 3 == 0, -1000.0, 40.0).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), nifti)
    entries = list_inference_inputs(tmp_path / "in", tmp_path / "out")
    assert sorted(entry["output_name"] for entry in entries) == ["patient_ct", "volume"]
    dicom_entry = next(entry for entry in entries if entry["output_name"] == "patient_ct")
    assert [Path(file).name for file in dicom_entry["image"]] == ["slice_002.dcm", "slice_001.dcm"]
    datalist = tmp_path / "in" / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"low_dose": "volume.nii.gz", "full_dose": "volume.nii.gz"}]}))
    assert list_inference_inputs(datalist, tmp_path / "out") == [{"image": str(nifti), "output_name": "volume"}]


def test_outputs_never_land_in_input_folders(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "study" / "ct", [0.0, 5.0])
    with pytest.raises(ValueError, match="inside input_dir"):
        list_inference_inputs(tmp_path / "study", tmp_path / "study" / "denoised")
    with pytest.raises(ValueError, match="inside the input folder"):  # output_dir/<name> would be the series folder
        list_inference_inputs(tmp_path / "study" / "ct", tmp_path / "study")
    with pytest.raises(ValueError, match="input_dir is not set"):
        list_inference_inputs("", tmp_path / "out")


SLOW_EXPORT = """
import sys, time
import pydicom
from custom.io.dicom_series import load_ct_series
from custom.io.dicom_series_writer import write_denoised_series

save_as = pydicom.Dataset.save_as
def slow_save_as(self, *args, **kwargs):
    time.sleep(0.1)  # a slow disk: the kill lands in the middle of the series
    save_as(self, *args, **kwargs)
pydicom.Dataset.save_as = slow_save_as
series = load_ct_series([sys.argv[1]])
hu = series.read_hu()
print("writing", flush=True)
write_denoised_series(hu - 100.0, series.files, sys.argv[2])
"""


@pytest.mark.faults
def test_killed_dicom_export_leaves_no_partial_series(tmp_path: Path, repo_root: Path) -> None:
    """The series is renamed into place complete: a kill leaves the earlier complete export or nothing."""
    write_ct_series(tmp_path / "in", [5.0 * i for i in range(12)])
    series = load_ct_series([tmp_path / "in"])
    write_denoised_series(series.read_hu(), series.files, tmp_path / "out")  # an earlier, complete export
    earlier = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXPORT, str(tmp_path / "in"), str(tmp_path / "out")], cwd=repo_root, stdout=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdout.readline().strip() == b"writing"
    time.sleep(0.5)  # about 4 of 12 slices written
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()} == earlier
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".tmp-")) == ["in", "out"]
    write_denoised_series(series.read_hu(), series.files, tmp_path / "out")  # a complete rerun replaces it whole
    assert len(list((tmp_path / "out").iterdir())) == 12 and not list(tmp_path.glob(".old-*"))


@pytest.mark.faults
def test_output_dir_that_is_a_file_is_refused_before_inference(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", [0.0, 5.0])
    (tmp_path / "out").write_text("a report, not a folder")
    with pytest.raises(BundleInputError, match=f"output_dir '{tmp_path / 'out'}' cannot be created: .* is a file"):
        list_inference_inputs(tmp_path / "in", tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a report, not a folder"
