"""Make paired training data from full-dose CT slices by simulating low dose in the projection domain.

Input: a folder of 2D slices (DICOM, NIfTI .nii/.nii.gz, or .npy in HU) searched recursively, or a datalist JSON
whose entries have a "full_dose" path; every slice is read and checked (CT, pixel spacing, a body in it)
before anything is written. For every slice the output folder receives a float32 HU NIfTI of the full
dose and of the simulated low dose (``full_dose/`` and ``low_dose/``, same relative names), and ``datalist.json``
pairs them: {"training": [{"low_dose", "full_dose", "patient"}, ...], "validation": [...], "test": [...]}.
Writing both images the same way keeps each pair pixel-aligned whatever the input format was.
A datalist keeps its splits and patients; for a folder, the first sub-folder is the patient (loose files are one
patient) and the split is patient-wise by fraction. The output folder may not lie inside an input folder.

Example: python scripts/simulate_low_dose.py /data/full_dose_slices /data/simulated --dose-fraction 0.25
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import SpatialImage
from pydicom.misc import is_dicom
from tqdm import tqdm

from custom.conventions import BODY_THRESHOLD_HU, DATALIST_NAME, FULL_DOSE_KEY, LOW_DOSE_KEY, PATIENT_KEY, SPLITS
from custom.data.mayo import check_output_outside_input, split_patients
from custom.io.atomic_output import atomic_output, write_text_atomically
from custom.io.dicom_series import candidate_files, read_header, read_slice_hu
from custom.simulation.low_dose import (
    SimulateLowDose,
)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MIN_BODY_FRACTION = 0.01  # of the slice's pixels above BODY_THRESHOLD_HU: less is air, or the table alone


class InputError(ValueError):
    """An input slice or datalist the simulation cannot use; the message names the file."""


def strip_suffix(path: Path) -> str:
    """File name without its image extension (both parts of .nii.gz)."""
    for suffix in (*NIFTI_SUFFIXES, ".npy", ".dcm", ".IMA", ".ima"):
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def spacing_affine(row_spacing: float, column_spacing: float) -> np.ndarray:
    return np.diag([row_spacing, column_spacing, 1.0, 1.0])


def read_full_dose(path: Path, npy_spacing_mm: float | None) -> tuple[np.ndarray, np.ndarray]:
    """A 2D HU slice (H, W) and the 4x4 affine whose first two columns carry its pixel spacing."""
    if path.name.endswith(NIFTI_SUFFIXES):
        try:
            # nib.load is typed FileBasedImage; a NIfTI file loads as a SpatialImage (dataobj and affine)
            image = cast(SpatialImage, nib.load(str(path)))
            hu, affine = np.asarray(image.dataobj, dtype=np.float32), image.affine
        except (OSError, ValueError, ImageFileError) as error:
            raise InputError(f"{path}: unreadable NIfTI ({error})") from error
    elif path.suffix == ".npy":
        if npy_spacing_mm is None:
            raise InputError(f"{path}: .npy files carry no pixel spacing; pass --pixel-spacing-mm")
        try:
            hu, affine = np.load(path).astype(np.float32), spacing_affine(npy_spacing_mm, npy_spacing_mm)
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: unreadable .npy file ({error})") from error
    else:
        header = read_header(path)
        if header is None:
            raise InputError(f"{path}: not a DICOM image, NIfTI or .npy file")
        if header.get("Modality") != "CT" or "PixelSpacing" not in header:
            raise InputError(f"{path}: not a CT slice with PixelSpacing (Modality {header.get('Modality')!r})")
        hu, affine = read_slice_hu(path).astype(np.float32), spacing_affine(*(float(v) for v in header.PixelSpacing))
    hu = hu.squeeze()
    if hu.ndim != 2:
        raise InputError(f"{path}: expected one 2D slice, got an array of shape {hu.shape}")
    require_body(hu, str(path))
    return hu, affine


def require_body(hu: np.ndarray, where: str) -> None:
    """Refuse a slice without a patient in it: its simulated low dose would be noise in air, nothing to learn from."""
    body_fraction = float((hu > BODY_THRESHOLD_HU).mean())
    if body_fraction < MIN_BODY_FRACTION:
        raise InputError(
            f"{where}: no body in the slice ({body_fraction:.1%} of pixels above {BODY_THRESHOLD_HU:g} HU); "
            "is it a CT slice in HU through the patient?"
        )


def is_image_file(path: Path) -> bool:
    return path.name.endswith((*NIFTI_SUFFIXES, ".npy")) or is_dicom(path)


def folder_entries(input_dir: Path) -> list[dict[str, str]]:
    """Every image file below the folder as {"full_dose", "patient"}.

    The patient is the first sub-folder; loose files count as one patient named after the folder, since they are
    most likely one series, which must not be spread over several splits. Other files (notes, hidden files) are
    left out rather than treated as errors: study folders often hold them.
    """
    entries = []
    for path in candidate_files(input_dir):
        if not is_image_file(path):
            continue
        parts = path.relative_to(input_dir).parts
        entries.append({FULL_DOSE_KEY: str(path), PATIENT_KEY: parts[0] if len(parts) > 1 else input_dir.resolve().name})
    return entries


def datalist_entries(datalist_file: Path) -> dict[str, list[dict[str, str]]]:
    """Per split, the entries' full-dose paths (relative ones resolved against the datalist's folder) and patients."""
    try:
        content = json.loads(datalist_file.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{datalist_file}: cannot read the datalist ({error})") from error
    if not isinstance(content, dict):
        raise InputError(f"{datalist_file}: expected an object with {SPLITS} lists, got {type(content).__name__}")
    splits: dict[str, list[dict[str, str]]] = {}
    for split in SPLITS:
        splits[split] = []
        for index, entry in enumerate(content.get(split, [])):
            if not isinstance(entry, dict) or FULL_DOSE_KEY not in entry:
                raise InputError(f"{datalist_file}: {split}[{index}] has no 'full_dose' path")
            splits[split].append(
                {FULL_DOSE_KEY: str(datalist_file.parent / entry[FULL_DOSE_KEY]), PATIENT_KEY: str(entry.get(PATIENT_KEY, ""))}
            )
    if not any(splits.values()):
        raise InputError(f"{datalist_file}: no entries in {SPLITS}")
    return splits


def split_folder_entries(
    entries: list[dict[str, str]], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[dict[str, str]]]:
    split = split_patients(sorted({entry[PATIENT_KEY] for entry in entries}), None, None, test_fraction, val_fraction, seed)
    return {name: [entry for entry in entries if entry[PATIENT_KEY] in split[name]] for name in SPLITS}


def simulate_entries(
    splits: dict[str, list[dict[str, str]]],
    simulator: SimulateLowDose,
    output_dir: Path,
    pixel_spacing_mm: float | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, list[dict[str, str]]]:
    """Simulate every entry, write both NIfTI files atomically and return the paired datalist."""
    jobs = [(split, index, entry) for split in SPLITS for index, entry in enumerate(splits[split])]
    datalist: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    for split, index, entry in tqdm(jobs, desc="simulating low dose", unit="slice"):
        source = Path(entry[FULL_DOSE_KEY])
        hu, affine = read_full_dose(source, pixel_spacing_mm)
        image = MetaTensor(torch.from_numpy(hu)[None], affine=torch.as_tensor(affine, dtype=torch.float64)).to(device)
        simulated = simulator(image)
        assert isinstance(simulated, torch.Tensor)  # the simulator returns the type it is given
        low_dose = simulated.cpu().numpy()[0]
        relative = Path(split) / f"{index:05d}_{strip_suffix(source)}.nii.gz"
        written = {}
        for key, array in ((FULL_DOSE_KEY, hu), (LOW_DOSE_KEY, low_dose)):
            target = output_dir / key / relative
            with atomic_output(target) as temporary:
                nib.save(nib.Nifti1Image(array.astype(np.float32), affine), str(temporary))
            written[key] = str(target.absolute())
        datalist[split].append({**written, PATIENT_KEY: entry[PATIENT_KEY]})
    return datalist


def simulate_dataset(
    source: Path,
    output_dir: Path,
    simulator: SimulateLowDose,
    *,
    pixel_spacing_mm: float | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, list[dict[str, str]]]:
    """Simulate low-dose partners of every full-dose slice of ``source`` (a folder or a datalist) into ``output_dir``.

    A folder is split by patient (seeded); a datalist keeps its splits. Inputs are checked before anything is
    written, and the datalist is written last and atomically, so an interrupted run leaves no datalist behind.
    """
    if source.is_dir():
        check_output_outside_input(source, output_dir)
        entries = folder_entries(source)
        if not entries:
            raise InputError(f"{source}: no DICOM, NIfTI or .npy slices found")
        splits = split_folder_entries(entries, val_fraction, test_fraction, seed)
    elif source.is_file():
        splits = datalist_entries(source)
        for entry in (entry for entries in splits.values() for entry in entries):
            check_output_outside_input(Path(entry[FULL_DOSE_KEY]).parent, output_dir)
    else:
        raise InputError(f"input '{source}' does not exist")
    for entry in (entry for entries in splits.values() for entry in entries):  # every input checked before any output
        read_full_dose(Path(entry[FULL_DOSE_KEY]), pixel_spacing_mm)
    datalist = simulate_entries(splits, simulator, output_dir, pixel_spacing_mm, device)
    write_text_atomically(output_dir / DATALIST_NAME, json.dumps(datalist, indent=2))
    return datalist
