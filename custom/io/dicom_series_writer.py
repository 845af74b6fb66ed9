"""Write a denoised HU volume as a new DICOM CT series derived from its source series.

Each output slice is its source slice's header with new pixels: patient and study stay the same so PACS files the
result next to the original, while the series and instance UIDs are new, ImageType says DERIVED\\SECONDARY and the
description says denoised, so nobody mistakes it for the acquired images. Pixels go back to stored values with the
source's own RescaleSlope/RescaleIntercept, uncompressed (explicit VR little endian). The series is written into a
hidden temporary folder renamed into place when complete, never into a folder that holds the source slices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from tqdm import tqdm

from custom.io.atomic_output import atomic_folder

MODEL_NAME = "ldct_effnetv2_wgangp"
DENOISED_LABEL = f"denoised ({MODEL_NAME})"
DEFAULT_DERIVATION = f"Noise reduced by the {MODEL_NAME} MONAI bundle (EfficientNetV2 generator trained as a WGAN-GP)"
# derived series are numbered after their source, as scanners do for reconstructions
SERIES_NUMBER_OFFSET = 1000
SERIES_DESCRIPTION_LIMIT = 64  # LO value representation
DERIVATION_DESCRIPTION_LIMIT = 1024  # ST value representation
# pixel statistics of the source that no longer hold for the denoised pixels
STALE_PIXEL_TAGS = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
)
STORED_DTYPES = {(8, 0): np.uint8, (8, 1): np.int8, (16, 0): np.uint16, (16, 1): np.int16}


def refuse_input_folders(output_folder: Path, source_files: Sequence[Path]) -> None:
    """Raise if `output_folder` is, or lies inside, a folder holding source slices."""
    target = output_folder.resolve()
    for folder in sorted({Path(file).resolve().parent for file in source_files}):
        if target == folder or folder in target.parents:
            raise ValueError(
                f"refusing to write the denoised series into '{output_folder}': it is inside the input series "
                f"folder '{folder}'; choose an output_dir outside the input"
            )


def stored_value_range(header: Dataset) -> tuple[int, int]:
    """Smallest and largest stored value that BitsStored and PixelRepresentation allow."""
    bits = int(header.get("BitsStored") or header.BitsAllocated)
    if int(header.PixelRepresentation) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def hu_to_stored(hu: np.ndarray, header: Dataset, source: Path) -> np.ndarray:
    """HU back to the source's stored values: inverse rescale, rounded, clipped to the stored range."""
    dtype = STORED_DTYPES.get((int(header.BitsAllocated), int(header.PixelRepresentation)))
    if dtype is None:
        raise ValueError(f"{source}: BitsAllocated {header.BitsAllocated} is not supported (8 or 16 only)")
    low, high = stored_value_range(header)
    stored = np.rint((np.asarray(hu, dtype=np.float64) - float(header.RescaleIntercept)) / float(header.RescaleSlope))
    return np.clip(stored, low, high).astype(dtype)


def denoised_description(source_description: str) -> str:
    """The source SeriesDescription marked as denoised, shortened to fit the 64-character limit."""
    room = SERIES_DESCRIPTION_LIMIT - len(DENOISED_LABEL) - 1
    return f"{source_description[:room].strip()} {DENOISED_LABEL}".strip()


def derived_image_type(header: Dataset) -> list[str]:
    """DERIVED\\SECONDARY, keeping the source's further values (AXIAL, ...)."""
    source = header.get("ImageType") or ["ORIGINAL", "PRIMARY", "AXIAL"]
    values = [source] if isinstance(source, str) else list(source)
    return ["DERIVED", "SECONDARY", *values[2:]]


def derive_slice(
    header: Dataset, hu_slice: np.ndarray, source: Path, series_uid: str, series_number: int, derivation: str
) -> Dataset:
    """The source slice's header turned into a denoised CT image with new pixels and a new SOP instance."""
    if hu_slice.shape != (header.Rows, header.Columns):
        raise ValueError(f"{source}: denoised slice is {hu_slice.shape}, the source is {header.Rows}x{header.Columns}")
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    for tag in STALE_PIXEL_TAGS:
        header.pop(tag, None)
    header.file_meta = FileMetaDataset()
    header.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header.set_pixel_data(
        hu_to_stored(hu_slice, header, source),
        photometric_interpretation=header.get("PhotometricInterpretation", "MONOCHROME2"),
        bits_stored=int(header.get("BitsStored") or header.BitsAllocated),
    )  # also sets a new SOPInstanceUID
    header.SOPClassUID = CTImageStorage
    header.file_meta.MediaStorageSOPClassUID = CTImageStorage
    header.file_meta.MediaStorageSOPInstanceUID = header.SOPInstanceUID
    header.SeriesInstanceUID = series_uid
    header.SeriesNumber = series_number
    header.SeriesDescription = denoised_description(str(header.get("SeriesDescription", "")))
    header.ImageType = derived_image_type(header)
    header.DerivationDescription = derivation[:DERIVATION_DESCRIPTION_LIMIT]
    header.SourceImageSequence = [reference]
    now = datetime.now()
    header.InstanceCreationDate = now.strftime("%Y%m%d")
    header.InstanceCreationTime = now.strftime("%H%M%S")
    return header


def write_denoised_series(
    hu_volume: np.ndarray,
    source_files: Sequence[str | os.PathLike],
    output_folder: str | os.PathLike,
    derivation_description: str = DEFAULT_DERIVATION,
) -> list[Path]:
    """Write `hu_volume` (slices, rows, columns), slice i derived from `source_files[i]`, as a new series.

    Returns the written files, `output_folder/slice_0001.dcm` onwards in the order of `source_files`.
    """
    sources = [Path(file) for file in source_files]
    volume = np.asarray(hu_volume)
    if volume.ndim != 3 or volume.shape[0] != len(sources):
        raise ValueError(f"denoised volume of shape {volume.shape} does not match {len(sources)} source slices")
    folder = Path(output_folder)
    refuse_input_folders(folder, sources)
    series_uid = generate_uid()
    first = pydicom.dcmread(sources[0], stop_before_pixels=True)
    series_number = int(first.get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET
    names = [f"slice_{index + 1:04d}.dcm" for index in range(len(sources))]
    with atomic_folder(folder) as temporary:  # the series appears complete or not at all
        for name, source, hu_slice in tqdm(
            zip(names, sources, volume, strict=True), total=len(sources), desc=f"writing {folder}", unit="slice"
        ):
            header = pydicom.dcmread(source, stop_before_pixels=True)
            dataset = derive_slice(header, hu_slice, source, series_uid, series_number, derivation_description)
            dataset.save_as(temporary / name, enforce_file_format=True)
    return [folder / name for name in names]
