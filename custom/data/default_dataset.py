"""The paired dataset the bundle trains on when the user gives no datalist: real CT embedded in the project.

Its sources are real full-dose slices that may be redistributed, copied into `bundle/data/embedded/` with their
licences (NOTICE.md there): 20 contiguous 3 mm slices of a Siemens abdomen (TotalSegmentator, Apache-2.0) and 3
GE liver slices (dcmqi, BSD-3-style). Low dose is the calibrated projection-domain simulation with fixed seeds, at
the dose fraction that gives each series the noise of real Mayo quarter dose (about 26 HU, see
`custom.data.series_dose`). The split keeps evaluation honest with two patients: the abdomen's first 14 slices
train (4 noise realisations each), its last 4 validate (2 slices, 6 mm, left out between), and the other patient,
scanner and vendor (the GE liver) is the test set.
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

from custom.conventions import DATALIST_NAME, FULL_DOSE_KEY, LOW_DOSE_KEY, PATIENT_KEY, SPLITS
from custom.data.series_dose import SERIES_DOSE_FRACTIONS
from custom.io.dicom_series import CTSeries, DicomSeriesError, find_ct_series
from custom.simulation.low_dose import DEFAULT_INCIDENT_FLUX, DEFAULT_NUM_VIEWS, simulate_low_dose_hu

TRAINING_SERIES = "totalsegmentator_abdomen_siemens"
TEST_SERIES = "dcmqi_ct3slice_GE_liver"
TRAINING_SLICES = 14  # the first slices of TRAINING_SERIES; then SPLIT_GAP left out, then the rest validates
SPLIT_GAP = 2
TRAINING_REALISATIONS = 4
BASE_SEED = 20160101
# Bump when the recipe changes so that caches built by older code are rebuilt.
RECIPE_VERSION = 3
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


def split_slices(series: dict[str, CTSeries]) -> dict[str, list[tuple[str, int]]]:
    """(series name, slice index) per split: training and validation from the abdomen, test from the liver."""
    count = len(series[TRAINING_SERIES].files)
    if count < TRAINING_SLICES + SPLIT_GAP + 1:
        raise RuntimeError(f"default dataset: {TRAINING_SERIES} has {count} slices, needs {TRAINING_SLICES + SPLIT_GAP + 1}")
    return {
        "training": [(TRAINING_SERIES, index) for index in range(TRAINING_SLICES)],
        "validation": [(TRAINING_SERIES, index) for index in range(TRAINING_SLICES + SPLIT_GAP, count)],
        "test": [(TEST_SERIES, index) for index in range(len(series[TEST_SERIES].files))],
    }


def slice_spacing(series: CTSeries) -> tuple[float, float, float]:
    """(row, column, slice) spacing in mm from the series' headers."""
    header = series.headers[0]
    row, column = (float(value) for value in header.PixelSpacing)
    return row, column, float(header.get("SliceThickness") or 1.0)


def build_into(build_dir: Path, final_dir: Path, source_dir: Path) -> None:
    """Write the NIfTI pairs and datalist into ``build_dir``, with paths as they will be under ``final_dir``."""
    series = {name: read_embedded_series(source_dir, name) for name in (TRAINING_SERIES, TEST_SERIES)}
    volumes = {name: ct.read_hu() for name, ct in series.items()}
    datalist: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    jobs = [(split, name, index) for split, slices in split_slices(series).items() for name, index in slices]
    for split, name, index in tqdm(jobs, desc="default dataset: simulating low dose", unit="slice"):
        spacing = slice_spacing(series[name])
        hu = volumes[name][index]
        patient = f"{name}_{index:02d}"
        generator = torch.Generator().manual_seed(BASE_SEED + 100 * list(series).index(name) + index)
        low_doses = simulate_low_dose_hu(
            torch.from_numpy(hu)[None, None],
            spacing[0],
            generator,
            SERIES_DOSE_FRACTIONS[name],
            realisations=TRAINING_REALISATIONS if split == "training" else 1,
        )
        full_dose_name = f"{patient}_full_dose.nii.gz"
        write_nifti_slice(hu, spacing, build_dir / full_dose_name)
        for realisation, low_dose in enumerate(low_doses):
            low_dose_name = f"{patient}_low_dose_{realisation}.nii.gz"
            write_nifti_slice(low_dose[0].numpy(), spacing, build_dir / low_dose_name)
            datalist[split].append(
                {LOW_DOSE_KEY: str(final_dir / low_dose_name), FULL_DOSE_KEY: str(final_dir / full_dose_name), PATIENT_KEY: name}
            )
    (build_dir / DATALIST_NAME).write_text(json.dumps(datalist, indent=2))
    build_info = {
        "recipe_version": RECIPE_VERSION,
        "sources": {name: [path.name for path in ct.files] for name, ct in series.items()},
        "simulation": {
            "dose_fractions": {name: SERIES_DOSE_FRACTIONS[name] for name in series},
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


def build_default_datalist(cache_dir: str, source_dir: str | None = None) -> str:
    """Path of the default datalist JSON in ``cache_dir``, building the dataset there first if needed.

    ``source_dir`` holds the embedded series (default: ``embedded`` beside ``cache_dir``).

    Building happens in a hidden sibling folder that is renamed into place when done, so an interrupted build
    leaves no half-written cache and two processes starting at once both end with the same complete one.
    """
    cache = Path(cache_dir).absolute()
    if not is_complete(cache):
        cache.parent.mkdir(parents=True, exist_ok=True)
        build_dir = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}-building-"))
        os.chmod(build_dir, 0o755)  # mkdtemp's 0o700 would hide the published cache from other users
        try:
            build_into(build_dir, cache, Path(source_dir) if source_dir else cache.parent / EMBEDDED_DIR_NAME)
            publish(build_dir, cache)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
    return str(cache / DATALIST_NAME)
