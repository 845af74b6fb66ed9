"""The noise measurement tool on synthetic series of known noise, written as real DICOM and NIfTI files.

A soft-tissue disc (40 HU in air) carries white noise of a known standard deviation, or band-passed noise of a
known texture; the tool must find that level and texture, read every format the same way, and refuse bad input
with the file's name before measuring anything.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy import ndimage

from custom.data.simulated_pairs import InputError
from custom.evaluation import noise_measurement
from custom.evaluation.noise_measurement import read_series, run

SIZE = 160
SPACING_MM = 0.8
SIGMA_HU = 20.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def phantom(slices: int) -> np.ndarray:
    """(Z, H, W) HU: a 40 HU disc (soft tissue) of radius 74 pixels in air."""
    rows, columns = np.mgrid[:SIZE, :SIZE]
    disc = (rows - SIZE / 2) ** 2 + (columns - SIZE / 2) ** 2 < 74**2
    return np.repeat(np.where(disc, 40.0, -1000.0)[None], slices, axis=0)


def white_noise(slices: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, SIGMA_HU, (slices, SIZE, SIZE))


def write_dicom(
    folder: Path, volume: np.ndarray, spacing: tuple[float, float] = (SPACING_MM, SPACING_MM), modality: str = "CT"
) -> list[Path]:
    """One DICOM file per slice of a (Z, H, W) HU volume, slice k at z = 3k mm; file names run against z."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    files = []
    for index, image in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset = Dataset()
        dataset.file_meta = meta
        dataset.SOPClassUID = meta.MediaStorageSOPClassUID
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        dataset.SeriesInstanceUID = series_uid
        dataset.Modality = modality
        dataset.Rows, dataset.Columns = image.shape
        dataset.PixelSpacing = list(spacing)
        dataset.ImagePositionPatient = [0.0, 0.0, 3.0 * index]
        dataset.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        dataset.SliceThickness = 3.0
        dataset.RescaleSlope, dataset.RescaleIntercept = 1.0, -2048.0
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
        dataset.PixelData = np.clip(np.round(image + 2048.0), 0, 65535).astype(np.uint16).tobytes()
        path = folder / f"IM{len(volume) - index:04d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def nifti_affine(spacing: tuple[float, float] = (SPACING_MM, SPACING_MM), z: float = 0.0) -> np.ndarray:
    return np.array([[spacing[0], 0, 0, 0], [0, spacing[1], 0, 0], [0, 0, 3.0, z], [0, 0, 0, 1.0]])


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """A (Z, H, W) HU volume as one NIfTI file stored [x, y, z]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0).astype(np.float32), nifti_affine() if affine is None else affine), path)
    return path


def write_nifti_slices(folder: Path, volume: np.ndarray) -> Path:
    """One 2D NIfTI file per slice, slice k at z = 3k mm; file names run against z."""
    for index, image in enumerate(volume):
        write_nifti(folder / f"s{len(volume) - index:03d}.nii.gz", image[None], nifti_affine(z=3.0 * index))
    return folder


def arguments(
    series: list[tuple[str, Path]], full_dose: list[tuple[str, Path]] | None = None, **options: Any
) -> argparse.Namespace:
    settings: dict[str, Any] = {"slices": None, "gap": 1, "max_slices": 32, "reference": None, "json": None, "png": None}
    return argparse.Namespace(series=series, full_dose=full_dose or [], **{**settings, **options})


def test_every_format_reads_in_position_order(tmp_path: Path) -> None:
    volume = phantom(4) + white_noise(4)
    for source in (
        write_dicom(tmp_path / "dicom", volume)[0].parent,
        write_nifti(tmp_path / "volume.nii.gz", volume),
        write_nifti_slices(tmp_path / "slices", volume),
    ):
        read = read_series(source)
        assert read.pixel_spacing_mm == pytest.approx(SPACING_MM)
        np.testing.assert_allclose(read.hu, volume, atol=0.5, err_msg=str(source))  # DICOM stores whole HU


def test_white_noise_measures_its_std_and_a_flat_nps(tmp_path: Path) -> None:
    full = phantom(4)
    low = write_dicom(tmp_path / "low", full + white_noise(4))[0].parent
    report = run(arguments([("white", low)], [("white", write_nifti(tmp_path / "full.nii.gz", full))]))
    measure = report["series"]["white"]
    assert measure["method"] == "paired" and measure["gap"] is None
    assert measure["noise_std_hu"] == pytest.approx(SIGMA_HU, rel=0.05)
    assert 0.85 * SIGMA_HU < measure["local_noise_hu_p10"] < SIGMA_HU  # the flattest 15x15 windows
    nps = np.asarray(measure["nps_hu2_mm2"][2:])  # the quadratic detrend removes the lowest bins
    assert np.mean(nps) == pytest.approx(SIGMA_HU**2 * SPACING_MM**2, rel=0.1)  # white: sigma^2 x pixel area
    assert np.std(nps) / np.mean(nps) < 0.1
    assert measure["nyquist_share_of_peak"] > 0.8


def band_passed(noise: np.ndarray, smoothing: float) -> np.ndarray:
    """CT-like noise (low and high frequencies suppressed), optionally smoothed further; scaled to SIGMA_HU."""
    textured = np.stack([ndimage.gaussian_filter(image, 1.0) - ndimage.gaussian_filter(image, 3.0) for image in noise])
    if smoothing:
        textured = np.stack([ndimage.gaussian_filter(image, smoothing) for image in textured])
    return textured * SIGMA_HU / textured.std()


def test_smoothed_noise_has_a_lower_peak(tmp_path: Path) -> None:
    full = phantom(4)
    full_path = write_nifti(tmp_path / "full.nii.gz", full)
    series = [("sharp", write_nifti(tmp_path / "sharp.nii.gz", full + band_passed(white_noise(4), 0.0)))]
    series.append(("smooth", write_nifti(tmp_path / "smooth.nii.gz", full + band_passed(white_noise(4), 2.0))))
    report = run(arguments(series, [(label, full_path) for label, _ in series], reference="sharp"))
    sharp = report["series"]["sharp"]
    # G(1) - G(3) peaks where 2 pi^2 f^2 (9 - 1) = ln 9: f = 0.118 cycles/pixel
    assert sharp["peak_cycles_per_pixel"] == pytest.approx(0.118, abs=0.02)
    assert sharp["peak_cycles_per_mm"] == pytest.approx(sharp["peak_cycles_per_pixel"] / SPACING_MM)
    comparison = report["vs_reference"]["smooth"]
    assert comparison["peak_ratio_cycles_per_pixel"] < 0.85  # 0.66 in theory
    assert comparison["l1_cycles_per_pixel"] > 0.2
    assert comparison["l1_cycles_per_mm"] == pytest.approx(comparison["l1_cycles_per_pixel"])  # one pixel size
    assert set(report["vs_reference"]) == {"smooth"}


def test_slice_difference_agrees_with_the_pair(tmp_path: Path) -> None:
    full = phantom(6)
    full[0] = full[-1] = -1000.0  # air slices: skipped by a range, not measured
    low = full + white_noise(6, seed=1)
    low_path = write_nifti_slices(tmp_path / "low", low)
    series = [("pair", low_path), ("difference", low_path)]
    report = run(arguments(series, [("pair", write_dicom(tmp_path / "full", full)[0].parent)], slices="0:6"))
    pair, difference = report["series"]["pair"], report["series"]["difference"]
    assert (pair["method"], difference["method"], difference["gap"]) == ("paired", "slice_difference", 1)
    assert pair["slice_indices"] == [1, 2, 3, 4] and pair["skipped_slices_without_soft_tissue"] == [0, 5]
    assert difference["slice_indices"] == [1, 2, 3] and difference["skipped_slices_without_soft_tissue"] == [0, 4]
    assert difference["noise_std_hu"] == pytest.approx(pair["noise_std_hu"], rel=0.1)
    assert difference["local_noise_hu_p10"] == pytest.approx(pair["local_noise_hu_p10"], rel=0.1)


def test_default_selection_is_capped_and_evenly_spread(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "volume.nii.gz", phantom(9) + white_noise(9))
    report = run(arguments([("scan", path)], max_slices=3))
    assert report["series"]["scan"]["slice_indices"] == [0, 4, 7]  # slices 0..7 have a partner one slice on


def bad_inputs(folder: Path) -> dict[str, tuple[argparse.Namespace, str]]:
    """Each case's arguments and the file its error must name."""
    volume = phantom(3) + white_noise(3)
    no_spacing = write_dicom(folder / "no_spacing", volume)
    dataset = pydicom.dcmread(no_spacing[1])
    del dataset.PixelSpacing
    dataset.save_as(no_spacing[1], enforce_file_format=True)
    mr = write_dicom(folder / "mr", volume, modality="MR")
    oblong = write_dicom(folder / "oblong", volume, spacing=(0.8, 1.0))
    good = write_nifti(folder / "good.nii.gz", volume)
    bare = folder / "bare.nii.gz"  # no sform or qform: nibabel falls back to 1 mm, which says nothing
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0).astype(np.float32), None), bare)
    air = write_nifti_slices(folder / "air", np.concatenate([volume[:2], np.full((1, SIZE, SIZE), -1000.0)]))
    return {
        "unknown DICOM spacing": (arguments([("a", no_spacing[0].parent)]), str(no_spacing[1])),
        "NIfTI without spacing": (arguments([("a", bare)]), "bare.nii.gz"),
        "not CT": (arguments([("a", mr[0].parent)]), "mr/IM"),
        "non-square DICOM pixels": (arguments([("a", oblong[0].parent)]), "oblong/IM"),
        "non-square NIfTI pixels": (
            arguments([("a", write_nifti(folder / "oblong.nii.gz", volume, nifti_affine((0.8, 1.0))))]),
            "oblong.nii.gz",
        ),
        "slice out of range": (arguments([("a", good)], slices="0,2"), "good.nii.gz"),
        "pair of different shapes": (
            arguments([("a", good)], [("a", write_nifti(folder / "short.nii.gz", volume[:2]))]),
            "short.nii.gz",
        ),
        "listed slice without soft tissue": (
            arguments([("b", good), ("a", air)], [("b", good), ("a", air)], slices="2"),
            "s001.nii.gz",  # slice 2 of 3, named against z
        ),
    }


def test_bad_input_names_the_file_before_measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def measure_series(*args: object, **kwargs: object) -> dict:
        raise AssertionError("measured before every input was checked")

    monkeypatch.setattr(noise_measurement, "measure_series", measure_series)
    for case, (args, named) in bad_inputs(tmp_path).items():
        with pytest.raises(InputError) as error:
            run(args)
        assert named in str(error.value), f"{case}: {error.value}"


def test_script_writes_json_and_png(
    script: Callable[[str], ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = phantom(4)
    low = write_nifti(tmp_path / "low.nii.gz", full + white_noise(4))
    argv = [
        "--series",
        f"real={low}",
        "--series",
        f"sim={low}",
        "--full-dose",
        f"sim={write_nifti(tmp_path / 'full.nii.gz', full)}",
    ]
    argv += [
        "--gap",
        "1",
        "--reference",
        "real",
        "--json",
        str(tmp_path / "out/noise.json"),
        "--png",
        str(tmp_path / "out/nps.png"),
    ]
    assert script("measure_noise").main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "out/noise.json").read_text())
    assert printed["reference"] == written["reference"] == "real"
    assert written["series"]["real"]["method"] == "slice_difference" and written["series"]["sim"]["method"] == "paired"
    assert "nps_hu2_mm2" in written["series"]["sim"] and "nps_hu2_mm2" not in printed["series"]["sim"]
    assert set(written["vs_reference"]["sim"]) >= {"level_ratio_local_p10", "peak_ratio_cycles_per_mm", "l1_cycles_per_mm"}
    assert (tmp_path / "out/nps.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["noise.json", "nps.png"]  # no temporary left


def test_script_reports_bad_input_without_a_traceback(script: Callable[[str], ModuleType], tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"error: .*missing\.nii\.gz: does not exist"):
        script("measure_noise").main(["--series", f"a={tmp_path / 'missing.nii.gz'}"])
