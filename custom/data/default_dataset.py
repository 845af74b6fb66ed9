"""The paired dataset the bundle trains on when the user gives no datalist: real CT embedded in the project.

Its source is real full-dose CT that may be redistributed, copied into `bundle/data/embedded/` with its licence
(NOTICE.md there): 20 contiguous 3 mm slices of a Siemens abdomen (TotalSegmentator, Apache-2.0). Low dose is the
calibrated projection-domain simulation with fixed seeds, at the dose fraction that gives this (large) patient the
noise of real Mayo quarter dose (see `custom.data.series_dose`). Contiguous z-blocks split it: the first 12 slices
train (4 noise realisations each), then 2 slices are left out, 3 validate and the last 3 are the test set. A
second patient would make a better test set, but the other redistributable series here (GE liver, 1.25 mm) has
more noise in its full dose than quarter dose adds, so PSNR against it rewards leaving noise in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from custom.conventions import DATALIST_NAME, EMBEDDED_DATA_DIR, FULL_DOSE_KEY, LOW_DOSE_KEY, PATIENT_KEY, SPLITS
from custom.data.series_dose import SERIES_DOSE_FRACTIONS
from custom.io.dicom_series import CTSeries, DicomSeriesError, find_ct_series
from custom.simulation.low_dose import DEFAULT_INCIDENT_FLUX, DEFAULT_NUM_VIEWS, simulate_low_dose_hu

SOURCE_SERIES = "totalsegmentator_abdomen_siemens"
TRAINING_SLICES = 12  # the first slices; then SPLIT_GAP left out, VALIDATION_SLICES validate, the rest are the test set
SPLIT_GAP = 2
VALIDATION_SLICES = 3
TRAINING_REALISATIONS = 4
BASE_SEED = 20160101
# Bump when the recipe changes so that caches built by older code are rebuilt.
RECIPE_VERSION = 4
BUILD_INFO_NAME = "build_info.json"
EMBEDDED_DIR_NAME = "embedded"


def read_embedded_series(source_dir: Path, name: str) -> CTSeries:
    """The one CT series in `source_dir / name`; a clear error when the embedded data are missing or broken."""
    folder = source_dir / name
    try:
        series = find_ct_series(folder)
    except (OSError, DicomSeriesError) as error:
        raise RuntimeError(f"default dataset: cannot read the embedded series {folder}: {error}") from error
    if len(series) != 1:
        raise RuntimeError(f"default dataset: {folder} should hold one CT series, found {len(series)}")
    return series[0]


def write_nifti_slice(hu: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    """Float32 HU slice stored (H, W) with the spacing in the affine, so LoadImage + EnsureChannelFirst give (1, H, W)."""
    nib.save(nib.Nifti1Image(hu.astype(np.float32), np.diag([*spacing, 1.0])), str(path))


def split_slices(count: int) -> dict[str, list[int]]:
    """Slice indices per split: contiguous z-blocks with SPLIT_GAP slices left out after the training block."""
    validation_start = TRAINING_SLICES + SPLIT_GAP
    test_start = validation_start + VALIDATION_SLICES
    if count <= test_start:
        raise RuntimeError(f"default dataset: {SOURCE_SERIES} has {count} slices, needs more than {test_start}")
    return {
        "training": list(range(TRAINING_SLICES)),
        "validation": list(range(validation_start, test_start)),
        "test": list(range(test_start, count)),
    }


def slice_spacing(series: CTSeries) -> tuple[float, float, float]:
    """(row, column, slice) spacing in mm from the series' headers."""
    header = series.headers[0]
    row, column = (float(value) for value in header.PixelSpacing)
    return row, column, float(header.get("SliceThickness") or 1.0)


def build_into(build_dir: Path, final_dir: Path, source_dir: Path) -> None:
    """Write the NIfTI pairs and datalist into ``build_dir``, with paths as they will be under ``final_dir``."""
    series = read_embedded_series(source_dir, SOURCE_SERIES)
    volume = series.read_hu()
    spacing = slice_spacing(series)
    datalist: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    jobs = [(split, index) for split, indices in split_slices(len(volume)).items() for index in indices]
    for split, index in tqdm(jobs, desc="default dataset: simulating low dose", unit="slice"):
        hu = volume[index]
        patient = f"{SOURCE_SERIES}_{index:02d}"
        generator = torch.Generator().manual_seed(BASE_SEED + index)
        low_doses = simulate_low_dose_hu(
            torch.from_numpy(hu)[None, None],
            spacing[0],
            generator,
            SERIES_DOSE_FRACTIONS[SOURCE_SERIES],
            realisations=TRAINING_REALISATIONS if split == "training" else 1,
        )
        full_dose_name = f"{patient}_full_dose.nii.gz"
        write_nifti_slice(hu, spacing, build_dir / full_dose_name)
        for realisation, low_dose in enumerate(low_doses):
            low_dose_name = f"{patient}_low_dose_{realisation}.nii.gz"
            write_nifti_slice(low_dose[0].numpy(), spacing, build_dir / low_dose_name)
            datalist[split].append(
                {
                    LOW_DOSE_KEY: str(final_dir / low_dose_name),
                    FULL_DOSE_KEY: str(final_dir / full_dose_name),
                    PATIENT_KEY: SOURCE_SERIES,
                }
            )
    (build_dir / DATALIST_NAME).write_text(json.dumps(datalist, indent=2))
    build_info = {
        "recipe_version": RECIPE_VERSION,
        "source": {SOURCE_SERIES: [path.name for path in series.files]},
        "simulation": {
            "dose_fraction": SERIES_DOSE_FRACTIONS[SOURCE_SERIES],
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


def embedded_source_dir(cache_dir: Path) -> Path:
    """The embedded series beside the cache (a bundle's own `data/embedded`), else those installed with the package.

    Runs that point `bundle_root` at an output folder still build the default dataset from the project's data.
    """
    sibling = cache_dir.parent / EMBEDDED_DIR_NAME
    return sibling if sibling.is_dir() else EMBEDDED_DATA_DIR


def build_default_datalist(cache_dir: str, source_dir: str | None = None) -> str:
    """Path of the default datalist JSON in ``cache_dir``, building the dataset there first if needed.

    ``source_dir`` holds the embedded series (default: `embedded_source_dir`).

    Building happens in a hidden sibling folder that is renamed into place when done, so an interrupted build
    leaves no half-written cache and two processes starting at once both end with the same complete one.
    """
    cache = Path(cache_dir).absolute()
    if not is_complete(cache):
        cache.parent.mkdir(parents=True, exist_ok=True)
        build_dir = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}-building-"))
        os.chmod(build_dir, 0o755)  # mkdtemp's 0o700 would hide the published cache from other users
        try:
            build_into(build_dir, cache, Path(source_dir) if source_dir else embedded_source_dir(cache))
            publish(build_dir, cache)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
    return str(cache / DATALIST_NAME)
