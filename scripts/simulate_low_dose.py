"""Make paired training data from full-dose CT slices by simulating low dose in the projection domain.

Input: a folder of 2D slices (DICOM, NIfTI .nii/.nii.gz, or .npy in HU) searched recursively, or a datalist JSON
whose entries have a "full_dose" path. For every slice the output folder receives a float32 HU NIfTI of the full
dose and of the simulated low dose (``full_dose/`` and ``low_dose/``, same relative names), and ``datalist.json``
pairs them: {"training": [{"low_dose", "full_dose", "patient"}, ...], "validation": [...], "test": [...]}.
Writing both images the same way keeps each pair pixel-aligned whatever the input format was.
A datalist keeps its splits and patients; for a folder, the first sub-folder is the patient (loose files are one
patient) and the split is patient-wise by fraction. The output folder may not lie inside an input folder.

Example: python scripts/simulate_low_dose.py /data/full_dose_slices /data/simulated --dose-fraction 0.25
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
from nibabel.filebasedimages import ImageFileError
import numpy as np
import torch
from monai.data import MetaTensor
from pydicom.misc import is_dicom
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from custom.dicom_series import candidate_files, read_header, read_slice_hu  # noqa: E402
from custom.atomic_output import atomic_output  # noqa: E402
from custom.low_dose_simulation import (  # noqa: E402
    DEFAULT_ELECTRONIC_NOISE_VAR,
    DEFAULT_FILTER,
    DEFAULT_INCIDENT_FLUX,
    DEFAULT_NUM_VIEWS,
    SimulateLowDose,
)
from custom.parallel_beam_projector import FILTER_NAMES  # noqa: E402
from scripts.prepare_mayo import SPLITS, check_output_outside_input, split_patients  # noqa: E402

DATALIST_NAME = "datalist.json"
NIFTI_SUFFIXES = (".nii.gz", ".nii")


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
            image = nib.load(str(path))
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
    return hu, affine


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
        entries.append({"full_dose": str(path), "patient": parts[0] if len(parts) > 1 else input_dir.resolve().name})
    return entries


def datalist_entries(datalist_file: Path) -> dict[str, list[dict[str, str]]]:
    """Per split, the entries' full-dose paths (relative ones resolved against the datalist's folder) and patients."""
    try:
        content = json.loads(datalist_file.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{datalist_file}: cannot read the datalist ({error})") from error
    if not isinstance(content, dict):
        raise InputError(f"{datalist_file}: expected an object with {SPLITS} lists, got {type(content).__name__}")
    splits = {}
    for split in SPLITS:
        splits[split] = []
        for index, entry in enumerate(content.get(split, [])):
            if not isinstance(entry, dict) or "full_dose" not in entry:
                raise InputError(f"{datalist_file}: {split}[{index}] has no 'full_dose' path")
            splits[split].append({"full_dose": str(datalist_file.parent / entry["full_dose"]), "patient": str(entry.get("patient", ""))})
    if not any(splits.values()):
        raise InputError(f"{datalist_file}: no entries in {SPLITS}")
    return splits


def split_folder_entries(entries: list[dict[str, str]], args: argparse.Namespace) -> dict[str, list[dict[str, str]]]:
    split = split_patients(sorted({entry["patient"] for entry in entries}), None, None, args.test_fraction, args.val_fraction, args.seed)
    return {name: [entry for entry in entries if entry["patient"] in split[name]] for name in SPLITS}


def simulate_entries(
    splits: dict[str, list[dict[str, str]]], simulator: SimulateLowDose, output_dir: Path, args: argparse.Namespace
) -> dict[str, list[dict[str, str]]]:
    """Simulate every entry, write both NIfTI files atomically and return the paired datalist."""
    jobs = [(split, index, entry) for split in SPLITS for index, entry in enumerate(splits[split])]
    datalist: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    for split, index, entry in tqdm(jobs, desc="simulating low dose", unit="slice"):
        source = Path(entry["full_dose"])
        hu, affine = read_full_dose(source, args.pixel_spacing_mm)
        image = MetaTensor(torch.from_numpy(hu)[None], affine=torch.as_tensor(affine, dtype=torch.float64)).to(args.device)
        low_dose = simulator(image).cpu().numpy()[0]
        relative = Path(split) / f"{index:05d}_{strip_suffix(source)}.nii.gz"
        written = {}
        for key, array in (("full_dose", hu), ("low_dose", low_dose)):
            target = output_dir / key / relative
            with atomic_output(target) as temporary:
                nib.save(nib.Nifti1Image(array.astype(np.float32), affine), str(temporary))
            written[key] = str(target.absolute())
        datalist[split].append({**written, "patient": entry["patient"]})
    return datalist


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="folder of full-dose slices, or a datalist JSON with full_dose entries")
    parser.add_argument("output_dir", type=Path, help="where full_dose/, low_dose/ and datalist.json go")
    parser.add_argument("--dose-fraction", type=float, default=0.25, help="simulated dose relative to the input (0.25 = quarter)")
    parser.add_argument("--incident-flux", type=float, default=DEFAULT_INCIDENT_FLUX, help="full-dose photons per detector bin per view")
    parser.add_argument("--electronic-noise-var", type=float, default=DEFAULT_ELECTRONIC_NOISE_VAR)
    parser.add_argument("--num-views", type=int, default=DEFAULT_NUM_VIEWS)
    parser.add_argument("--filter-name", choices=FILTER_NAMES, default=DEFAULT_FILTER)
    parser.add_argument("--pixel-spacing-mm", type=float, default=None, help="pixel spacing of .npy inputs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and of the folder split")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="folder input: fraction of patients for validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="folder input: fraction of patients for test")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.input.is_dir():
            check_output_outside_input(args.input, args.output_dir)
            entries = folder_entries(args.input)
            if not entries:
                raise InputError(f"{args.input}: no DICOM, NIfTI or .npy slices found")
            splits = split_folder_entries(entries, args)
        elif args.input.is_file():
            splits = datalist_entries(args.input)
            for entry in (entry for entries in splits.values() for entry in entries):
                check_output_outside_input(Path(entry["full_dose"]).parent, args.output_dir)
        else:
            raise InputError(f"input '{args.input}' does not exist")
        simulator = SimulateLowDose(
            dose_fraction=args.dose_fraction, incident_flux=args.incident_flux, electronic_noise_var=args.electronic_noise_var,
            num_views=args.num_views, filter_name=args.filter_name, seed=args.seed,
        )
        datalist = simulate_entries(splits, simulator, args.output_dir, args)
    except ValueError as error:  # bad input: a message, not a traceback
        raise SystemExit(f"error: {error}") from error
    with atomic_output(args.output_dir / DATALIST_NAME) as temporary:
        temporary.write_text(json.dumps(datalist, indent=2))
    counts = ", ".join(f"{split} {len(datalist[split])}" for split in SPLITS)
    print(f"wrote {sum(map(len, datalist.values()))} pairs ({counts}) and {args.output_dir / DATALIST_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
