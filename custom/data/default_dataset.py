"""The tiny paired dataset the bundle trains on when the user gives no datalist.

It is built from real CT slices that install with the project's requirements (pydicom's and pydicom-data's
test files), so a first run needs no download: full dose is the slice in HU, low dose is the projection-domain
quarter-dose simulation with fixed seeds. Each source slice is its own "patient"; training slices get several
independent noise realisations so that a short run still sees a few pairs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file

from custom.conventions import DATALIST_NAME, FULL_DOSE_KEY, LOW_DOSE_KEY, PATIENT_KEY, SPLITS
from custom.io.dicom_series import DicomSeriesError, read_slice_hu
from custom.simulation.low_dose import DEFAULT_INCIDENT_FLUX, DEFAULT_NUM_VIEWS, simulate_low_dose_hu

# In split order: the last usable source is the test slice (an abdomen), the one before it validation, the rest
# training. bad_sequence.dcm needs the GPL decoder pylibjpeg-libjpeg, which the project does not install.
SOURCE_FILES = ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "bad_sequence.dcm", "693_UNCR.dcm", "explicit_VR-UN.dcm")
TRAINING_REALISATIONS = 4
DOSE_FRACTION = 0.25
BASE_SEED = 20160101
# Bump when the recipe changes so that caches built by older code are rebuilt.
RECIPE_VERSION = 2
BUILD_INFO_NAME = "build_info.json"


def read_source_slice(name: str) -> tuple[np.ndarray, tuple[float, float, float]] | None:
    """HU image and (row, column, slice) spacing of a pydicom test file; None, with a warning, when unusable."""
    path = get_testdata_file(name, download=False)
    if path is None:
        warnings.warn(f"default dataset: pydicom test file {name} is not installed; skipping it", stacklevel=3)
        return None
    header = pydicom.dcmread(path, stop_before_pixels=True)
    if header.get("Modality") != "CT" or "PixelSpacing" not in header:
        warnings.warn(f"default dataset: {path} is not a CT slice with PixelSpacing; skipping it", stacklevel=3)
        return None
    try:
        hu = read_slice_hu(Path(path))
    except DicomSeriesError as error:
        warnings.warn(f"default dataset: skipping {name}: {error}", stacklevel=3)
        return None
    row_spacing, column_spacing = (float(value) for value in header.PixelSpacing)
    return hu.astype(np.float32), (row_spacing, column_spacing, float(header.get("SliceThickness") or 1.0))


def write_nifti_slice(hu: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    """Float32 HU slice stored (H, W) with the spacing in the affine, so LoadImage + EnsureChannelFirst give (1, H, W)."""
    nib.save(nib.Nifti1Image(hu.astype(np.float32), np.diag([*spacing, 1.0])), str(path))


def split_sources(names: list[str]) -> dict[str, list[str]]:
    """Patient-wise split of the usable sources, following SOURCE_FILES' order."""
    if len(names) < 3:
        raise RuntimeError(
            f"default dataset: only {len(names)} usable CT test slices ({names}); need 3 for training, validation "
            "and test. Reinstall pydicom and pydicom-data, or pass a datalist."
        )
    return {"training": names[:-2], "validation": [names[-2]], "test": [names[-1]]}


def build_into(build_dir: Path, final_dir: Path) -> None:
    """Write the NIfTI pairs and datalist into ``build_dir``, with paths as they will be under ``final_dir``."""
    sources = {name: source for name in SOURCE_FILES if (source := read_source_slice(name)) is not None}
    datalist: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    for split, names in split_sources(list(sources)).items():
        for name in names:
            hu, spacing = sources[name]
            patient = Path(name).stem
            realisations = TRAINING_REALISATIONS if split == "training" else 1
            generator = torch.Generator().manual_seed(BASE_SEED + SOURCE_FILES.index(name))
            low_doses = simulate_low_dose_hu(
                torch.from_numpy(hu)[None, None],
                spacing[0],
                generator,
                DOSE_FRACTION,
                realisations=realisations,  # otherwise the calibrated defaults (real Mayo quarter-dose noise)
            )
            full_dose_name = f"{patient}_full_dose.nii.gz"
            write_nifti_slice(hu, spacing, build_dir / full_dose_name)
            for index, low_dose in enumerate(low_doses):
                low_dose_name = f"{patient}_low_dose_{index}.nii.gz"
                write_nifti_slice(low_dose[0].numpy(), spacing, build_dir / low_dose_name)
                datalist[split].append(
                    {
                        LOW_DOSE_KEY: str(final_dir / low_dose_name),
                        FULL_DOSE_KEY: str(final_dir / full_dose_name),
                        PATIENT_KEY: patient,
                    }
                )
    (build_dir / DATALIST_NAME).write_text(json.dumps(datalist, indent=2))
    build_info = {
        "recipe_version": RECIPE_VERSION,
        "sources": list(sources),
        "simulation": {
            "dose_fraction": DOSE_FRACTION,
            "incident_flux": DEFAULT_INCIDENT_FLUX,
            "num_views": DEFAULT_NUM_VIEWS,
            "base_seed": BASE_SEED,
        },
    }
    (build_dir / BUILD_INFO_NAME).write_text(json.dumps(build_info, indent=2))


def is_complete(cache_dir: Path) -> bool:
    """True when the cache was built by this recipe and every file its datalist names exists."""
    try:
        build_info = json.loads((cache_dir / BUILD_INFO_NAME).read_text())
        datalist = json.loads((cache_dir / DATALIST_NAME).read_text())
    except (OSError, ValueError):
        return False
    if build_info.get("recipe_version") != RECIPE_VERSION or not all(datalist.get(split) for split in SPLITS):
        return False
    return all(
        Path(entry[key]).is_file() for split in SPLITS for entry in datalist[split] for key in (LOW_DOSE_KEY, FULL_DOSE_KEY)
    )


def publish(build_dir: Path, cache_dir: Path) -> None:
    """Move a finished build onto ``cache_dir`` in one rename, replacing an incomplete cache.

    If another process published first, its complete cache is kept and this build is left to the caller to delete.
    """
    if cache_dir.exists() and not is_complete(cache_dir):
        stale_dir = Path(tempfile.mkdtemp(dir=cache_dir.parent, prefix=f".{cache_dir.name}-stale-"))
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.replace(cache_dir, stale_dir / cache_dir.name)
        shutil.rmtree(stale_dir, ignore_errors=True)
    try:
        os.rename(build_dir, cache_dir)
    except OSError:
        if not is_complete(cache_dir):
            raise


def build_default_datalist(cache_dir: str) -> str:
    """Path of the default datalist JSON in ``cache_dir``, building the dataset there first if needed.

    Building happens in a hidden sibling folder that is renamed into place when done, so an interrupted build
    leaves no half-written cache and two processes starting at once both end with the same complete one.
    """
    cache = Path(cache_dir).absolute()
    if not is_complete(cache):
        cache.parent.mkdir(parents=True, exist_ok=True)
        build_dir = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}-building-"))
        os.chmod(build_dir, 0o755)  # mkdtemp's 0o700 would hide the published cache from other users
        try:
            build_into(build_dir, cache)
            publish(build_dir, cache)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
    return str(cache / DATALIST_NAME)
