"""Find, validate and read CT DICOM series, so the denoiser sees Hounsfield units in anatomical slice order.

Everything that would make a denoised series wrong (a file that is not CT, has no rescale tags or is truncated,
two series or two image sizes mixed into one volume) raises `DicomSeriesError` naming the file or folder, before
any output is written.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.misc import is_dicom
from pydicom.uid import UID

logger = logging.getLogger(__name__)

RESCALE_TAGS = ("RescaleSlope", "RescaleIntercept")
# header reads skip values larger than this (the pixel data) but still see whether they are there
DEFER_SIZE = "64 KB"
# direction cosines of slices in one volume agree to this tolerance (they are stored with about 6 decimals)
ORIENTATION_TOLERANCE = 1e-4
# slice positions closer than this (mm) along the normal are the same position
POSITION_TOLERANCE = 1e-3
# relative deviation of a slice gap from the mean gap above which the NIfTI affine only approximates the series
SPACING_TOLERANCE = 0.01


class DicomSeriesError(ValueError):
    """A DICOM input that cannot become one CT volume; the message names the file or folder and the problem."""


def read_header(path: Path) -> Dataset | None:
    """The header of a DICOM image file (pixel data deferred, not loaded); None for files that are not images.

    Files without the DICOM preamble (notes, NIfTI, .DS_Store) and DICOM objects that are not images (DICOMDIR,
    dose reports, plans, presentation states) are skipped, because study folders commonly hold them next to the
    images. An image file that ends before its pixel data is truncated and raises.
    """
    if not is_dicom(path):
        return None
    try:
        header = pydicom.dcmread(path, defer_size=DEFER_SIZE)
    except Exception as error:  # pydicom raises many types for damaged files; all mean the same to the user
        raise DicomSeriesError(
            f"{path}: unreadable DICOM file ({type(error).__name__}: {error}); it may be truncated or corrupt"
        ) from error
    sop_class = UID(header.get("SOPClassUID") or header.file_meta.get("MediaStorageSOPClassUID") or "")
    if "Image Storage" not in sop_class.name:
        return None
    if "PixelData" not in header:
        raise DicomSeriesError(f"{path}: the file ends before its pixel data; it is truncated")
    return header


def validate_ct_header(header: Dataset, path: Path) -> None:
    """Refuse slices the denoiser cannot turn into Hounsfield units, or that are not CT at all."""
    modality = header.get("Modality", "")
    if modality != "CT":
        raise DicomSeriesError(f"{path}: Modality is '{modality}', not 'CT'; only CT series can be denoised")
    missing = [tag for tag in RESCALE_TAGS if header.get(tag) is None]
    if missing:
        raise DicomSeriesError(f"{path}: {' and '.join(missing)} missing, so stored values cannot be converted to HU")
    if float(header.RescaleSlope) == 0:
        raise DicomSeriesError(f"{path}: RescaleSlope is 0, so stored values cannot be converted to HU")


@dataclass(frozen=True)
class CTSeries:
    """One validated CT series: files and headers sorted along the slice normal (first slice first)."""

    files: tuple[Path, ...]
    headers: tuple[Dataset, ...]

    @property
    def series_uid(self) -> str:
        return str(self.headers[0].get("SeriesInstanceUID", ""))

    @property
    def folder(self) -> Path:
        """The deepest folder holding every slice of the series."""
        return Path(os.path.commonpath([str(file.parent) for file in self.files]))

    def affine_lps(self) -> np.ndarray:
        """4x4 affine from (column, row, slice) indices to DICOM patient coordinates (LPS, mm)."""
        first = self.headers[0]
        row_spacing, column_spacing = (float(value) for value in first.get("PixelSpacing", (1.0, 1.0)))
        affine = np.eye(4)
        if not has_geometry(self.headers):
            affine[:3, :3] = np.diag([column_spacing, row_spacing, slice_thickness(first)])
            return affine
        row_cosine, column_cosine = direction_cosines(first)
        start = np.asarray(first.ImagePositionPatient, dtype=float)
        if len(self.headers) > 1:
            stop = np.asarray(self.headers[-1].ImagePositionPatient, dtype=float)
            slice_step = (stop - start) / (len(self.headers) - 1)
        else:
            slice_step = np.cross(row_cosine, column_cosine) * slice_thickness(first)
        affine[:3, 0] = row_cosine * column_spacing
        affine[:3, 1] = column_cosine * row_spacing
        affine[:3, 2] = slice_step
        affine[:3, 3] = start
        return affine

    def read_hu(self) -> np.ndarray:
        """The series in HU (stored * RescaleSlope + RescaleIntercept, per slice), shape (slices, rows, columns)."""
        return np.stack([read_slice_hu(file) for file in self.files]).astype(np.float32)


def read_slice_hu(path: Path) -> np.ndarray:
    """One slice in HU as float64, naming the file when its pixel data cannot be decoded or is cut short."""
    try:
        dataset = pydicom.dcmread(path)
        stored = dataset.pixel_array
    except Exception as error:  # truncated files surface as EOFError, ValueError or decoder errors
        raise DicomSeriesError(
            f"{path}: cannot read the pixel data ({type(error).__name__}: {error}); the file may be truncated"
        ) from error
    if stored.shape != (dataset.Rows, dataset.Columns):
        raise DicomSeriesError(
            f"{path}: pixel data has shape {stored.shape}, expected one {dataset.Rows}x{dataset.Columns} frame"
        )
    return stored.astype(np.float64) * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)


def has_geometry(headers: Iterable[Dataset]) -> bool:
    return all("ImagePositionPatient" in header and "ImageOrientationPatient" in header for header in headers)


def direction_cosines(header: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The row and column direction cosines of a slice (ImageOrientationPatient)."""
    orientation = np.asarray(header.ImageOrientationPatient, dtype=float)
    return orientation[:3], orientation[3:]


def slice_thickness(header: Dataset) -> float:
    """The slice gap to assume when positions cannot tell it (single slice or no geometry)."""
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        value = header.get(tag)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 1.0


def sort_slices(entries: Sequence[tuple[Path, Dataset]]) -> list[tuple[Path, Dataset]]:
    """Order slices along the slice normal (ImagePositionPatient), else by InstanceNumber, else by file name."""
    headers = [header for _, header in entries]
    if has_geometry(headers):
        row_cosine, column_cosine = direction_cosines(headers[0])
        normal = np.cross(row_cosine, column_cosine)
        for path, header in entries:
            row, column = direction_cosines(header)
            if not (
                np.allclose(row, row_cosine, atol=ORIENTATION_TOLERANCE)
                and np.allclose(column, column_cosine, atol=ORIENTATION_TOLERANCE)
            ):
                raise DicomSeriesError(
                    f"{path}: ImageOrientationPatient differs from {entries[0][0]}; one volume needs one orientation"
                )
        positions = [float(np.dot(np.asarray(header.ImagePositionPatient, dtype=float), normal)) for header in headers]
        order = np.argsort(positions, kind="stable")
        for previous, current in zip(order[:-1], order[1:], strict=True):
            if positions[current] - positions[previous] < POSITION_TOLERANCE:
                raise DicomSeriesError(
                    f"{entries[current][0]}: same slice position as {entries[previous][0]}; "
                    "one volume cannot hold two slices at one position"
                )
        warn_uneven_spacing(np.sort(positions), entries[0][0].parent)
        return [entries[index] for index in order]
    if all(header.get("InstanceNumber") is not None for header in headers):
        logger.warning(
            "%s: no ImagePositionPatient/ImageOrientationPatient, slices ordered by InstanceNumber", entries[0][0].parent
        )
        return sorted(entries, key=lambda entry: int(entry[1].InstanceNumber))
    logger.warning("%s: no slice positions or instance numbers, slices ordered by file name", entries[0][0].parent)
    return sorted(entries, key=lambda entry: entry[0].name)


def warn_uneven_spacing(positions: np.ndarray, folder: Path) -> None:
    """Denoising is per slice and unaffected, but a NIfTI affine can only describe evenly spaced slices."""
    gaps = np.diff(positions)
    if len(gaps) > 1 and np.max(np.abs(gaps - gaps.mean())) > SPACING_TOLERANCE * gaps.mean():
        logger.warning(
            "%s: slice gaps range from %.3g to %.3g mm; the NIfTI output assumes the mean gap %.3g mm "
            "(the DICOM output keeps each slice's own position)",
            folder,
            gaps.min(),
            gaps.max(),
            gaps.mean(),
        )


def build_series(entries: Sequence[tuple[Path, Dataset]], where: Path) -> CTSeries:
    """Validate that the slices form one CT volume and sort them; `where` names the input in errors."""
    uids = sorted({str(header.get("SeriesInstanceUID", "")) for _, header in entries})
    if len(uids) > 1:
        raise DicomSeriesError(
            f"{where}: holds {len(uids)} series (SeriesInstanceUID {', '.join(uids)}); one output needs one series, "
            "so pass the folder of a single series, or the parent folder to denoise each series separately"
        )
    first_path, first = entries[0]
    for path, header in entries:
        validate_ct_header(header, path)
        if (header.Rows, header.Columns) != (first.Rows, first.Columns):
            raise DicomSeriesError(
                f"{path}: {header.Rows}x{header.Columns} pixels, but {first_path} in the same series has "
                f"{first.Rows}x{first.Columns}; one volume needs one image size"
            )
    ordered = sort_slices(entries)
    return CTSeries(files=tuple(path for path, _ in ordered), headers=tuple(header for _, header in ordered))


def candidate_files(folder: Path) -> list[Path]:
    """Every non-hidden file below `folder` (hidden ones include the writers' temporary files)."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def read_headers(files: Iterable[Path]) -> list[tuple[Path, Dataset]]:
    """(path, header) of the DICOM image files among `files`."""
    entries = [(path, read_header(path)) for path in files]
    return [(path, header) for path, header in entries if header is not None]


def find_ct_series(folder: Path) -> list[CTSeries]:
    """Every CT series below `folder` (searched recursively, grouped by SeriesInstanceUID); [] when none."""
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for path, header in read_headers(candidate_files(folder)):
        groups[str(header.get("SeriesInstanceUID", ""))].append((path, header))
    series = [build_series(entries, entries[0][0].parent) for entries in groups.values()]
    return sorted(series, key=lambda item: str(item.folder))


def load_ct_series(paths: Sequence[Path]) -> CTSeries:
    """The one CT series made of `paths`: DICOM files, or a single folder searched recursively."""
    paths = [Path(path) for path in paths]
    if len(paths) == 1 and paths[0].is_dir():
        where = paths[0]
        files = candidate_files(where)
        if not files:
            raise DicomSeriesError(f"{where}: folder is empty, no DICOM files to denoise")
    else:
        where = paths[0].parent
        files = paths
    entries = read_headers(files)
    if not entries:
        raise DicomSeriesError(f"{where}: no DICOM image files found")
    return build_series(entries, where)
