"""Turn the inference bundle's `input_dir` into MONAI data: one datalist entry per CT volume, read in HU.

`input_dir` may be a folder (every DICOM series below it, grouped by SeriesInstanceUID, and every .nii/.nii.gz),
a single NIfTI file, or a datalist JSON whose `test` split's `low_dose` entries are denoised. DICOM series are read
by `CTSeriesReader`, which MONAI's `LoadImaged` picks for folders and DICOM files while NIfTI keeps MONAI's own
readers; the reader validates the series (`custom.io.dicom_series`) and records the sorted slice files in the image
metadata so the DICOM writer can derive each output slice from its source slice.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import ImageReader
from monai.transforms import LoadImaged
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple
from pydicom.misc import is_dicom

from custom.data.datalist import load_paired_datalist
from custom.errors import BundleInputError
from custom.io.dicom_series import CTSeries, DicomSeriesError, candidate_files, find_ct_series, load_ct_series
from custom.io.hu_values import value_problem
from custom.io.output_folders import writable_folder

DICOM_FILES_KEY = "dicom_files"
OUTPUT_NAME_KEY = "output_name"
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DATALIST_SPLIT = "test"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


class CTSeriesReader(ImageReader):
    """MONAI image reader for one CT DICOM series, given as a folder or a list of slice files.

    The image comes back in HU with MONAI's axis order (columns, rows, slices) and a RAS affine, like MONAI's own
    DICOM readers, but slices are sorted along the slice normal and the series is validated first; the metadata
    key `dicom_files` lists the slice files in image order.
    """

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        paths = [Path(name) for name in ensure_tuple(filename)]
        return all(path.is_dir() or (not is_nifti(path) and is_dicom(path)) for path in paths)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> CTSeries:
        return load_ct_series([Path(name) for name in ensure_tuple(data)])

    def get_data(self, img: CTSeries) -> tuple[np.ndarray, dict]:
        affine = LPS_TO_RAS @ img.affine_lps()
        volume = np.ascontiguousarray(img.read_hu().transpose(2, 1, 0))
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(volume.shape),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
            DICOM_FILES_KEY: [str(file) for file in img.files],
        }
        return volume, meta


class LoadCTVolumed(LoadImaged):
    """`LoadImaged` that reads DICOM series with `CTSeriesReader` and everything else with MONAI's readers.

    Registering the reader (instead of passing `reader=`) keeps MONAI's choice by file type, so a DICOM validation
    error reaches the user as is instead of being swallowed while other readers are tried.
    """

    def __init__(self, keys: Sequence[str] | str, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, image_only=True, allow_missing_keys=allow_missing_keys)
        self.register(CTSeriesReader())


def safe_name(text: str) -> str:
    """A folder name made of letters, digits, dots, dashes and underscores."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "volume"


def relative_name(path: Path, root: Path) -> str:
    """`path` relative to `root` as one name ('a/b/c.nii.gz' -> 'a_b_c'); the root itself is named by its folder."""
    if path == root:
        relative = Path(root.resolve().name)
    elif path.is_relative_to(root):
        relative = path.relative_to(root)
    else:  # an absolute path in a datalist, outside its base folder
        relative = Path(path.name)
    text = "_".join(relative.parts)
    for suffix in NIFTI_SUFFIXES[::-1]:
        if text.lower().endswith(suffix):
            return safe_name(text[: -len(suffix)])
    return safe_name(text)


def dicom_entries(series: list[CTSeries], root: Path) -> list[dict]:
    """Datalist entries for DICOM series; series sharing a folder get their SeriesNumber (or UID) appended."""
    by_folder: dict[Path, list[CTSeries]] = defaultdict(list)
    for item in series:
        by_folder[item.folder].append(item)
    entries = []
    for folder, members in by_folder.items():
        base = relative_name(folder, root)
        numbers = [str(member.headers[0].get("SeriesNumber", "")) for member in members]
        counts = Counter(numbers)
        for member, number in zip(members, numbers, strict=True):
            if len(members) == 1:
                name = base
            elif number and counts[number] == 1:
                name = f"{base}_S{number}"
            else:
                name = f"{base}_{member.series_uid}"
            entries.append({"image": [str(file) for file in member.files], OUTPUT_NAME_KEY: safe_name(name)})
    return entries


def nifti_entry(path: Path, root: Path) -> dict:
    """The datalist entry of a NIfTI volume whose values are usable HU. DICOM series are checked by their reader;
    a NIfTI file can hold NaN, raw stored values or normalised intensities, which the network would turn into
    garbage without a word, so its voxels are read once here, before any volume is denoised."""
    try:
        image: Any = nib.load(path)  # a NIfTI image; nibabel types load() as its base class
        hu = np.asanyarray(image.dataobj, dtype=np.float32)  # with the file's scaling applied
    except Exception as error:  # nibabel raises several types for damaged files; all mean the same here
        raise BundleInputError(f"'{path}' cannot be read as a NIfTI volume: {error}") from error
    problem = value_problem(hu)
    if problem:
        raise BundleInputError(f"'{path}': {problem}; nothing was denoised")
    return {"image": str(path), OUTPUT_NAME_KEY: relative_name(path, root)}


def volumes_at(path: Path, root: Path) -> list[dict]:
    """Datalist entries for one input path: a NIfTI file, a DICOM file, or a folder of either (recursively)."""
    if path.is_file():
        if is_nifti(path):
            return [nifti_entry(path, root)]
        return dicom_entries([load_ct_series([path])], root)
    files = candidate_files(path)
    if not files:
        raise DicomSeriesError(f"{path}: folder is empty, nothing to denoise")
    nifti = [nifti_entry(file, root) for file in files if is_nifti(file)]
    entries = dicom_entries(find_ct_series(path), root) + nifti
    if not entries:
        raise DicomSeriesError(f"{path}: no DICOM CT series and no .nii/.nii.gz volumes found")
    return entries


def refuse_writing_into_inputs(entries: list[dict], input_path: Path, output_dir: Path) -> None:
    """Raise before any inference if an output could land in an input folder or be found again as input."""
    output = output_dir.resolve()
    if input_path.is_dir() and (output == input_path.resolve() or input_path.resolve() in output.parents):
        raise ValueError(
            f"output_dir '{output_dir}' is inside input_dir '{input_path}': a later run would read the denoised "
            "series as input; choose an output_dir outside the input"
        )
    input_folders = {Path(file).resolve().parent for entry in entries for file in ensure_tuple(entry["image"])}
    dicom_folders = {
        Path(file).resolve().parent for entry in entries if isinstance(entry["image"], list) for file in entry["image"]
    }
    for entry in entries:
        target = output / entry[OUTPUT_NAME_KEY]
        clashes = [folder for folder in input_folders if folder == target]
        clashes += [folder for folder in dicom_folders if folder in target.parents]
        if clashes:
            raise ValueError(
                f"output folder '{target}' would be inside the input folder '{clashes[0]}'; "
                "choose an output_dir outside the input"
            )


def list_inference_inputs(input_path: str | os.PathLike, output_dir: str | os.PathLike, dataset_dir: str = "") -> list[dict]:
    """The inference datalist: {"image": NIfTI path or sorted DICOM slice files, "output_name": folder name}.

    Args:
        input_path: a folder (searched recursively), a NIfTI file, or a datalist JSON (its `test` split's
            `low_dose` entries are denoised; relative paths resolve against `dataset_dir`, default the JSON's folder).
        output_dir: where outputs go; checked here so nothing is written into an input folder.
        dataset_dir: base folder for relative paths in a datalist JSON, as in the training config.
    """
    if not str(input_path):
        raise ValueError("input_dir is not set: pass --input_dir <DICOM folder | NIfTI file or folder | datalist.json>")
    source = Path(input_path).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"input '{source}' does not exist")
    if source.is_file() and source.suffix.lower() == ".json":
        root = Path(dataset_dir) if dataset_dir else source.parent
        images = [Path(entry["image"]) for entry in load_paired_datalist(source, DATALIST_SPLIT, dataset_dir)]
        entries = [entry for image in images for entry in volumes_at(image, root)]
    else:
        entries = volumes_at(source, source.parent if source.is_file() else source)
    repeated = sorted(name for name, count in Counter(entry[OUTPUT_NAME_KEY] for entry in entries).items() if count > 1)
    if repeated:
        raise ValueError(f"{source}: several inputs would be written to the same output folder(s) {repeated}")
    output = Path(output_dir).expanduser()
    refuse_writing_into_inputs(entries, source, output)
    writable_folder(output, "output_dir")
    for entry in entries:
        target = output / entry[OUTPUT_NAME_KEY]
        if target.exists() and not target.is_dir():
            raise BundleInputError(f"output folder '{target}' for '{source}' is a file; move it or pass another --output_dir")
    return entries
