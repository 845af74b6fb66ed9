"""Pairing, split and report of scripts/prepare_mayo.py on small synthetic Mayo- and TCIA-style DICOM trees."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from custom.data import mayo as prepare_mayo

Z_POSITIONS = (-10.0, -13.0, -16.0, -19.0)
STORED_VALUE = 1100  # 76 HU with the intercept below

ScriptLoader = Callable[[str], ModuleType]


def write_slice(
    path: Path,
    patient: str,
    series_uid: str,
    z: float | None,
    instance: int,
    description: str = "",
    modality: str = "CT",
    shape: tuple[int, int] = (8, 8),
) -> None:
    """A minimal but complete CT slice; the stored value encodes the position so pairs can be checked."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.PatientID = modality, patient
    dataset.SeriesInstanceUID, dataset.SeriesDescription = series_uid, description
    dataset.InstanceNumber = instance
    if z is not None:
        dataset.ImagePositionPatient = [-100.0, -100.0, z]
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.PixelSpacing, dataset.SliceThickness = [0.7, 0.7], 3.0
    dataset.Rows, dataset.Columns = shape
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    dataset.PixelData = np.full(shape, STORED_VALUE + instance, dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)


def write_series(folder: Path, patient: str, description: str, positions, rng: random.Random, shapes: dict | None = None) -> None:
    """One series with random file names, so file order says nothing about slice order; ``shapes`` overrides by z."""
    uid = generate_uid()
    for index, z in enumerate(positions):
        shape = (shapes or {}).get(z, (8, 8))
        write_slice(folder / f"{rng.randrange(10**8):08d}.IMA", patient, uid, z, len(positions) - index, description, shape=shape)


@pytest.fixture()
def mayo_tree(tmp_path: Path) -> Path:
    """Four patients; L096 misses one quarter-dose slice, L109 has a size mismatch, L506 holds an MR file and a note."""
    rng = random.Random(1)
    root = tmp_path / "mayo"
    for patient in ("L067", "L096", "L109", "L506"):
        full_positions = Z_POSITIONS + (-22.0,) if patient == "L109" else Z_POSITIONS
        low_positions = Z_POSITIONS[:-1] if patient == "L096" else full_positions
        write_series(root / patient / "quarter_3mm", patient, "quarter", low_positions, rng)
        write_series(root / patient / "full_3mm", patient, "full", full_positions, rng, shapes={-22.0: (16, 16)})
        write_series(root / patient / "full_1mm", patient, "full", (-10.0, -11.0), rng)  # other thickness: ignored
    write_slice(root / "L506" / "quarter_3mm" / "mr.IMA", "L506", generate_uid(), -25.0, 1, modality="MR")
    (root / "L506" / "quarter_3mm" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture()
def tcia_tree(tmp_path: Path) -> Path:
    """TCIA-style: dose from SeriesDescription; C002 has no positions (InstanceNumber fallback)."""
    rng = random.Random(2)
    root = tmp_path / "tcia" / "LDCT-and-Projection-data"
    for patient in ("C001", "C002", "L506"):
        study = root / patient / "01-01-2018-NA-NA-12345"
        positions = (None,) * 3 if patient == "C002" else Z_POSITIONS[:3]
        write_series(study / "1.000000-Full Dose Images-111", patient, "Full Dose Images", positions, rng)
        write_series(study / "1.000000-Low Dose Images-222", patient, "Low Dose Images", positions, rng)
    return root


def read_report(output_dir: Path) -> list[dict[str, str]]:
    with (output_dir / prepare_mayo.REPORT_NAME).open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def pair_positions(datalist: dict, split: str) -> list[tuple[str, float, float]]:
    """(patient, low z, full z) of every pair, read back from the files the datalist names."""
    rows = []
    for entry in datalist[split]:
        low, full = (pydicom.dcmread(entry[key], stop_before_pixels=True) for key in ("low_dose", "full_dose"))
        rows.append((entry["patient"], float(low.ImagePositionPatient[2]), float(full.ImagePositionPatient[2])))
    return rows


def test_detects_layouts(mayo_tree: Path, tcia_tree: Path) -> None:
    assert prepare_mayo.detect_layout(mayo_tree) == "mayo"
    assert prepare_mayo.detect_layout(tcia_tree) == "tcia"


def test_mayo_pairs_by_position_and_reports_the_rest(script: ScriptLoader, mayo_tree: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    assert script("prepare_mayo").main([str(mayo_tree), str(output), "--val-patients", "L109"]) == 0
    datalist = json.loads((output / prepare_mayo.DATALIST_NAME).read_text())
    assert {split: sorted({entry["patient"] for entry in datalist[split]}) for split in prepare_mayo.SPLITS} == {
        "training": ["L067", "L096"],
        "validation": ["L109"],
        "test": ["L506"],
    }
    pairs = [row for split in prepare_mayo.SPLITS for row in pair_positions(datalist, split)]
    assert all(low_z == full_z for _, low_z, full_z in pairs)
    per_patient = {patient: sum(row[0] == patient for row in pairs) for patient in ("L067", "L096", "L109", "L506")}
    assert per_patient == {"L067": 4, "L096": 3, "L109": 4, "L506": 4}
    assert all(Path(entry["low_dose"]).is_absolute() and "quarter_3mm" in entry["low_dose"] for entry in datalist["training"])

    report = read_report(output)
    reasons = sorted((row["patient"], row["dose"], row["reason"]) for row in report)
    assert reasons == [
        ("L096", "full", "unpaired"),
        ("L109", "full", "geometry mismatch"),
        ("L109", "low", "geometry mismatch"),
        ("L506", "low", "not CT"),
        ("L506", "low", "not a DICOM image"),
    ]
    assert {Path(row["file"]).name for row in report if row["patient"] == "L506"} == {"mr.IMA", "notes.txt"}
    assert "16x16" in next(row["detail"] for row in report if row["reason"] == "geometry mismatch")


def test_mayo_patient_is_the_dose_folders_parent_and_thickness_selects_folders(mayo_tree: Path) -> None:
    slices, _ = prepare_mayo.collect_slices(mayo_tree.parent, "mayo", "1mm")  # one folder above the patients
    assert {(item.patient, item.dose) for item in slices} == {(patient, "full") for patient in ("L067", "L096", "L109", "L506")}
    assert all(item.path.parent.name == "full_1mm" for item in slices)


def test_pairing_ignores_file_order() -> None:
    def ct_slice(name: str, dose: str, z: float) -> prepare_mayo.CTSlice:
        return prepare_mayo.CTSlice(Path(name), "P", dose, dose, z, None, 8, 8, (0.7, 0.7), (0.0, 0.0), 3.0)

    low = [ct_slice(f"low_{i}", "low", z) for i, z in enumerate((3.0, 0.0, 6.0))]
    full = [ct_slice(f"full_{i}", "full", z) for i, z in enumerate((6.05, 3.0, 0.0, 9.0))]
    pairs, skipped = prepare_mayo.pair_patient_slices(low, full, tolerance_mm=0.1)
    assert [(a.z, b.z) for a, b in pairs] == [(0.0, 0.0), (3.0, 3.0), (6.0, 6.05)]
    assert [(item.path.name, item.reason) for item in skipped] == [("full_3", "unpaired")]
    pairs, skipped = prepare_mayo.pair_patient_slices(low, full, tolerance_mm=0.01)
    assert len(pairs) == 2 and {item.path.name for item in skipped} == {"low_2", "full_0", "full_3"}


def test_tcia_layout_pairs_by_tags_and_instance_number(script: ScriptLoader, tcia_tree: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    assert script("prepare_mayo").main([str(tcia_tree), str(output), "--val-fraction", "0", "--nifti"]) == 0
    datalist = json.loads((output / prepare_mayo.DATALIST_NAME).read_text())
    assert sorted({entry["patient"] for entry in datalist["training"]}) == ["C001", "C002"]
    assert [entry["patient"] for entry in datalist["test"]] == ["L506"] * 3 and datalist["validation"] == []
    assert read_report(output) == []
    for entry in datalist["training"] + datalist["test"]:
        low, full = (nib.load(entry[key]) for key in ("low_dose", "full_dose"))
        assert Path(entry["low_dose"]).is_relative_to(output) and low.shape == (8, 8)
        np.testing.assert_allclose(np.diag(low.affine)[:2], [0.7, 0.7])
        # both members of a pair carry the same instance number, hence the same stored value
        np.testing.assert_array_equal(low.get_fdata(), full.get_fdata())
        assert 76 < low.get_fdata().min() < 80  # HU, rescaled with the intercept


def test_several_series_of_one_dose_are_not_guessed(tcia_tree: Path, tmp_path: Path) -> None:
    extra = tcia_tree / "C001" / "01-01-2018-NA-NA-12345" / "2.000000-Full Dose Images-333"
    write_series(extra, "C001", "Full Dose Images", Z_POSITIONS[:3], random.Random(3))
    slices, skipped = prepare_mayo.collect_slices(tcia_tree, "tcia", None)
    pairs, skipped = prepare_mayo.pair_slices(slices)
    assert sorted(pairs) == ["C002", "L506"]
    assert {item.reason for item in skipped} == {"several series of one dose"} and len(skipped) == 9


def test_split_by_fraction_is_patient_wise_and_seeded() -> None:
    patients = [f"L{index:03d}" for index in range(10)]
    split = prepare_mayo.split_patients(patients, test_fraction=0.2, val_fraction=0.25, seed=5)
    assert split == prepare_mayo.split_patients(patients, test_fraction=0.2, val_fraction=0.25, seed=5)
    assert (len(split["test"]), len(split["validation"]), len(split["training"])) == (2, 2, 6)
    assert sorted(patient for names in split.values() for patient in names) == patients
    with pytest.raises(ValueError, match="L506"):
        prepare_mayo.split_patients(patients, test_patients=["L506"])


def test_refuses_output_inside_input(script: ScriptLoader, mayo_tree: Path) -> None:
    with pytest.raises(SystemExit, match="input folder"):
        script("prepare_mayo").main([str(mayo_tree), str(mayo_tree / "L067" / "prepared")])
    assert not (mayo_tree / "L067" / "prepared").exists()
