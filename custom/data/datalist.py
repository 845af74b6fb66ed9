"""Read the paired datalist JSON that `scripts/prepare_mayo.py` and the default dataset write.

Format: {"training": [{"low_dose": path, "full_dose": path, "patient": id}, ...], "validation": [...],
"test": [...]}. Entries come back with MONAI's pipeline keys: `image` (low dose) and `label` (full dose).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from custom.conventions import FULL_DOSE_KEY, IMAGE_KEY, LABEL_KEY, LOW_DOSE_KEY, PATIENT_KEY

PAIR_KEYS = {LOW_DOSE_KEY: IMAGE_KEY, FULL_DOSE_KEY: LABEL_KEY}
NON_DICOM_SUFFIXES = {".nii": "nifti", ".gz": "nifti", ".npy": "numpy", ".npz": "numpy"}


def format_family(path: str) -> str:
    """'nifti', 'numpy' or 'dicom' (.dcm, Mayo's .IMA, no suffix): readers of different families order axes differently."""
    return NON_DICOM_SUFFIXES.get(Path(path).suffix.lower(), "dicom")


def load_paired_datalist(datalist_file: str | os.PathLike, split: str, base_dir: str | os.PathLike = "") -> list[dict]:
    """Entries of `split` as {"image", "label", "patient"}, relative paths resolved against `base_dir`.

    `base_dir` defaults to the datalist's own folder, so a datalist travels with its data.
    """
    path = Path(datalist_file)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"datalist '{path}' does not exist") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"datalist '{path}' is not valid JSON: {error}") from error
    if not isinstance(content, dict) or split not in content:
        found = list(content) if isinstance(content, dict) else type(content).__name__
        raise KeyError(f"datalist '{path}' has no '{split}' split (found: {found})")
    root = Path(base_dir) if str(base_dir) else path.parent
    entries = []
    for index, item in enumerate(content[split]):
        missing = [key for key in PAIR_KEYS if key not in item]
        if missing:
            raise KeyError(f"datalist '{path}', {split}[{index}]: missing {missing} (needs low_dose and full_dose)")
        entry = {new: str(root / item[old]) for old, new in PAIR_KEYS.items()}
        for key, file in entry.items():
            if not Path(file).exists():
                raise FileNotFoundError(f"datalist '{path}', {split}[{index}]: {key} file '{file}' does not exist")
        families = {format_family(file) for file in entry.values()}
        if len(families) > 1:
            raise ValueError(
                f"datalist '{path}', {split}[{index}]: low_dose and full_dose are stored as {sorted(families)}; "
                "store both in one format (MONAI reads DICOM with rows and columns swapped relative to NIfTI/NumPy, "
                "so a mixed pair would be misaligned)"
            )
        entries.append({**entry, PATIENT_KEY: str(item.get(PATIENT_KEY, ""))})
    if not entries:
        raise ValueError(f"datalist '{path}': the '{split}' split is empty")
    return entries
