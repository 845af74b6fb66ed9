"""Noise level and noise power spectrum (NPS) of CT series side by side, behind scripts/measure_noise.py.

A simulation is judged by whether its noise looks like that of the real low-dose scans it stands in for, so
real and simulated series are measured here the same way (``custom.simulation.noise_texture.measure_series``)
and compared with a reference series: level ratio, peak-frequency ratio and L1 distance of the NPS shapes.

Inputs are DICOM folders (Siemens .IMA included) or NIfTI files: a 3D volume stored [x, y, z], or a folder of
2D slices. Slices are sorted by position along the slice normal. A series with a full-dose partner is measured
as low minus full dose ("paired", exact); one without as the difference of slices ``gap`` apart
("slice_difference", biased: see noise_texture). Every input is read and checked before anything is measured,
and errors name the file and the problem.

Slice choice: a comma list is taken as given (a listed slice without soft tissue is an error); a range
START:STOP:STEP, or the default (every slice, at most ``max_slices`` evenly spread), keeps the slices that hold
at least one soft-tissue ROI and lists the others as skipped.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure
from nibabel.affines import voxel_sizes
from nibabel.filebasedimages import ImageFileError
from tqdm import tqdm

from custom.conventions import ORGAN_TISSUE_HU
from custom.data.simulated_pairs import InputError
from custom.evaluation.subsets import evenly_spaced
from custom.io.atomic_output import atomic_output, write_text_atomically
from custom.io.ct_series_loader import is_nifti
from custom.io.dicom_series import DicomSeriesError, candidate_files, load_ct_series
from custom.simulation.noise_texture import (
    L1_BAND,
    ROI_SIZE,
    measure_series,
    nps_l1_distance,
    roi_corners,
    soft_tissue_mask,
)

DEFAULT_GAP = 2  # slices 2 apart: 4 mm for Mayo 3 mm slices every 2 mm, so the two slices share no photons
DEFAULT_MAX_SLICES = 32
SPACING_TOLERANCE = 0.01  # relative; rows vs columns, and slices of one series


@dataclass(frozen=True)
class CTVolume:
    """A series in HU, (Z, H, W) sorted by position, with square pixels of ``pixel_spacing_mm``.

    ``slice_names`` says where each slice came from, for error messages.
    """

    path: Path
    hu: np.ndarray
    pixel_spacing_mm: float
    slice_names: tuple[str, ...]


def square_spacing(row_mm: float, column_mm: float, where: object) -> float:
    """The pixel spacing, refusing unknown or non-square pixels: the radial NPS needs one spacing in mm."""
    if not (row_mm > 0 and column_mm > 0):
        raise InputError(f"{where}: pixel spacing {row_mm} x {column_mm} mm is not positive, so it is unknown")
    if not math.isclose(row_mm, column_mm, rel_tol=SPACING_TOLERANCE):
        raise InputError(f"{where}: pixels are {row_mm} x {column_mm} mm, not square; the radial NPS needs square pixels")
    return row_mm


def read_dicom(path: Path) -> CTVolume:
    """A DICOM series (a folder, or one file), validated by custom.io.dicom_series and sorted along its normal."""
    try:
        series = load_ct_series([path])
        spacings = []
        for file, header in zip(series.files, series.headers):
            if "PixelSpacing" not in header:
                raise InputError(f"{file}: no PixelSpacing, so the pixel spacing is unknown")
            row_mm, column_mm = (float(value) for value in header.PixelSpacing)
            spacings.append(square_spacing(row_mm, column_mm, file))
            if not math.isclose(spacings[-1], spacings[0], rel_tol=SPACING_TOLERANCE):
                raise InputError(f"{file}: pixel spacing {spacings[-1]} mm, but {series.files[0]} has {spacings[0]} mm")
        hu = series.read_hu()
    except DicomSeriesError as error:
        raise InputError(str(error)) from error
    return CTVolume(path, hu, spacings[0], tuple(str(file) for file in series.files))


def read_nifti(path: Path) -> tuple[np.ndarray, float, np.ndarray]:
    """A NIfTI image as (Z, H, W) HU slices (stored [x, y, z]), its pixel spacing and each slice's position (mm)
    along the slice normal. An image without sform and qform carries no spacing (nibabel then assumes 1 mm)."""
    try:
        image = nib.load(str(path))
        if not isinstance(image, nib.Nifti1Image):  # Nifti2Image is a subclass
            raise InputError(f"{path}: not a NIfTI image")
        data = np.asarray(image.dataobj, dtype=np.float32)
    except InputError:
        raise
    except (OSError, EOFError, ValueError, ImageFileError) as error:  # truncated files raise EOFError or OSError
        raise InputError(f"{path}: unreadable NIfTI ({type(error).__name__}: {error})") from error
    if int(image.header["sform_code"]) == 0 and int(image.header["qform_code"]) == 0:
        raise InputError(f"{path}: no sform or qform in the header, so the pixel spacing is unknown")
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 2D slice or a 3D volume, got an array of shape {data.shape}")
    affine = image.affine
    column_mm, row_mm = (float(size) for size in voxel_sizes(affine)[:2])  # NIfTI axis 0 runs along a row
    spacing = square_spacing(row_mm, column_mm, path)
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    normal /= np.linalg.norm(normal)
    positions = (affine[:3, 3] + np.outer(np.arange(data.shape[2]), affine[:3, 2])) @ normal
    return np.ascontiguousarray(data.transpose(2, 1, 0)), spacing, positions


def read_nifti_volume(path: Path) -> CTVolume:
    """One NIfTI file: a 3D volume (or a single 2D slice)."""
    hu, spacing, positions = read_nifti(path)
    order = np.argsort(positions, kind="stable")
    return CTVolume(path, hu[order], spacing, tuple(f"{path} (z index {index})" for index in order))


def read_nifti_slices(folder: Path, files: Sequence[Path]) -> CTVolume:
    """A folder of 2D NIfTI slices of one size and spacing, stacked in order of position (file name on ties)."""
    slices: list[np.ndarray] = []
    positions: list[float] = []
    spacing = 0.0
    for file in files:
        hu, file_spacing, file_positions = read_nifti(file)
        spacing = spacing or file_spacing
        if hu.shape[0] != 1:
            raise InputError(f"{file}: holds {hu.shape[0]} slices; a folder of NIfTI files must hold 2D slices")
        if slices and hu.shape[1:] != slices[0].shape:
            raise InputError(f"{file}: {hu.shape[1:]} pixels, but {files[0]} in the same folder has {slices[0].shape}")
        if slices and not math.isclose(file_spacing, spacing, rel_tol=SPACING_TOLERANCE):
            raise InputError(f"{file}: pixel spacing {file_spacing} mm, but {files[0]} has {spacing} mm")
        slices.append(hu[0])
        positions.append(float(file_positions[0]))
    order = np.argsort(positions, kind="stable")
    return CTVolume(folder, np.stack([slices[index] for index in order]), spacing, tuple(str(files[index]) for index in order))


def read_series(path: Path) -> CTVolume:
    """A CT series in HU from a DICOM folder or file, a NIfTI volume, or a folder of 2D NIfTI slices."""
    if not path.exists():
        raise InputError(f"{path}: does not exist")
    if path.is_file():
        return read_nifti_volume(path) if is_nifti(path) else read_dicom(path)
    nifti = [file for file in candidate_files(path) if is_nifti(file)]
    return read_nifti_slices(path, nifti) if nifti else read_dicom(path)


def check_pair(low: CTVolume, full: CTVolume) -> None:
    """A low/full pair is subtracted pixel by pixel, so it must agree in shape and pixel spacing."""
    if low.hu.shape != full.hu.shape:
        raise InputError(
            f"{low.path} has shape {low.hu.shape} but its full-dose partner {full.path} has {full.hu.shape}; "
            "a pair must be pixel-aligned slice by slice"
        )
    if not math.isclose(low.pixel_spacing_mm, full.pixel_spacing_mm, rel_tol=SPACING_TOLERANCE):
        raise InputError(
            f"{low.path} has {low.pixel_spacing_mm} mm pixels but its full-dose partner {full.path} has {full.pixel_spacing_mm} mm"
        )


def parse_slices(text: str | None) -> slice | list[int]:
    """``None`` (every slice), "START:STOP:STEP" (a Python slice, parts optional) or a comma list "4,8,12"."""
    if text is None:
        return slice(None)
    try:
        if ":" in text:
            parts = [int(part) if part.strip() else None for part in text.split(":")]
            if len(parts) > 3 or (len(parts) == 3 and parts[2] is not None and parts[2] < 1):
                raise ValueError("at most START:STOP:STEP, with a positive STEP")
            return slice(*parts)
        return [int(part) for part in text.split(",")]
    except ValueError as error:
        raise InputError(f"--slices {text!r}: expected START:STOP:STEP or a comma list of slice indices ({error})") from error


class SliceChecker:
    """Soft-tissue masks of a series' slices, each computed once, and the test whether a slice is measurable."""

    def __init__(self, volume: CTVolume, paired: bool, gap: int) -> None:
        self.volume, self.paired, self.gap = volume, paired, gap
        self._masks: dict[int, np.ndarray] = {}

    def mask(self, index: int) -> np.ndarray:
        if index not in self._masks:
            self._masks[index] = soft_tissue_mask(self.volume.hu[index])
        return self._masks[index]

    def measurable(self, index: int) -> bool:
        """Whether the slice (and its slice-difference partner) holds a soft-tissue ROI, as measure_series needs."""
        mask = self.mask(index) if self.paired else self.mask(index) & self.mask(index + self.gap)
        return bool(roi_corners(mask, ROI_SIZE, ROI_SIZE // 4))

    def usable_range(self) -> range:
        """Slices that have a slice-difference partner inside the series (all of them for a pair)."""
        return range(len(self.volume.hu) - (0 if self.paired else self.gap))


def select_slices(checker: SliceChecker, spec: slice | list[int], max_slices: int, label: str) -> tuple[list[int], list[int]]:
    """The slices to measure and those skipped for lack of soft tissue; raises on a listed slice that cannot be used."""
    usable = checker.usable_range()
    count = len(checker.volume.hu)
    if isinstance(spec, list):
        for index in spec:
            if index not in usable:
                partner = "" if checker.paired else f" with a partner {checker.gap} slices on (--gap)"
                raise InputError(f"{checker.volume.path}: slice {index} out of range{partner}; the series has {count} slices")
        for index in tqdm(spec, desc=f"{label}: checking slices", unit="slice"):
            if not checker.measurable(index):
                raise InputError(
                    f"slice {index} ({checker.volume.slice_names[index]}): no {ROI_SIZE}x{ROI_SIZE} region of soft tissue ({ORGAN_TISSUE_HU[0]:g}.."
                    f"{ORGAN_TISSUE_HU[1]:g} HU) inside the body; pick slices through the abdomen"
                )
        return list(spec), []
    candidates = list(usable[spec])
    flags = [checker.measurable(index) for index in tqdm(candidates, desc=f"{label}: checking slices", unit="slice")]
    kept = [index for index, flag in zip(candidates, flags) if flag]
    skipped = [index for index, flag in zip(candidates, flags) if not flag]
    if not kept:
        raise InputError(f"{checker.volume.path}: none of the {len(candidates)} selected slices holds soft tissue to measure")
    return evenly_spaced(kept, max_slices), skipped


def scalars(measure: Mapping[str, Any]) -> dict[str, Any]:
    """A measure without its curves (lists), for printing and tables."""
    return {key: value for key, value in measure.items() if not isinstance(value, list)}


def compare(measure: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Level and peak ratios (measure / reference) and L1 distances of the NPS shapes in both frequency units.

    The cycles/mm band is the cycles/pixel band at the coarser of the two pixel spacings, so that both curves
    cover it without extrapolation.
    """
    coarser = max(measure["pixel_spacing_mm"], reference["pixel_spacing_mm"])
    band_mm = (L1_BAND[0] / coarser, L1_BAND[1] / coarser)
    return {
        "level_ratio_local_p10": measure["local_noise_hu_p10"] / reference["local_noise_hu_p10"],
        "level_ratio_roi_std": measure["noise_std_hu"] / reference["noise_std_hu"],
        "peak_ratio_cycles_per_pixel": measure["peak_cycles_per_pixel"] / reference["peak_cycles_per_pixel"],
        "peak_ratio_cycles_per_mm": measure["peak_cycles_per_mm"] / reference["peak_cycles_per_mm"],
        "l1_cycles_per_pixel": nps_l1_distance(measure, reference),
        "l1_cycles_per_mm": nps_l1_distance(measure, reference, band=band_mm, unit="cycles_per_mm"),
    }


def plot_nps(curves: Sequence[tuple[str, Mapping[str, Any], str]], target: Path, title: str) -> None:
    """NPS curves (label, measure, matplotlib format string or "") normalised to unit area, in cycles/pixel and in
    cycles/mm side by side: shape compares across noise levels, and the two units across pixel sizes."""
    figure = Figure(figsize=(14, 6), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, unit in zip(axes, ("cycles_per_pixel", "cycles_per_mm")):
        for label, measure, style in curves:
            frequency = np.asarray(measure[f"frequency_{unit}"])
            nps = np.asarray(measure["nps_hu2_mm2"])
            legend = (
                f"{label}: {measure['local_noise_hu_p10']:.1f} HU, peak {measure['peak_cycles_per_pixel']:.3f} c/px"
                f" = {measure['peak_cycles_per_mm']:.3f} c/mm"
            )
            axis.plot(frequency, nps / np.trapezoid(nps[1:], frequency[1:]), style, label=legend)
        axis.set_xlabel(unit.replace("_", " "))
        axis.set_ylabel(f"NPS, unit area over {unit.replace('_', ' ')}")
        axis.grid(alpha=0.3)
    axes[0].axvspan(*L1_BAND, color="0.92", zorder=0, label="L1 comparison band")
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    figure.suptitle(title)
    with atomic_output(target) as temporary:
        figure.savefig(temporary, format="png", dpi=110)


def labelled_path(text: str) -> tuple[str, Path]:
    """argparse type of LABEL=PATH."""
    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, Path(path).expanduser()


def check_arguments(args: argparse.Namespace) -> dict[str, Path]:
    """The full-dose partner of each series label; raises on labels that repeat or refer to no series."""
    labels = [label for label, _ in args.series]
    if not labels:
        raise InputError("no series given: pass --series LABEL=PATH at least once")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InputError(f"--series labels must be unique, repeated: {repeated}")
    partners: dict[str, Path] = {}
    for label, path in args.full_dose:
        if label not in labels:
            raise InputError(f"--full-dose {label}={path}: no --series labelled {label!r}")
        if label in partners:
            raise InputError(f"--full-dose {label}: given twice")
        partners[label] = path
    if args.reference is not None and args.reference not in labels:
        raise InputError(f"--reference {args.reference!r} is not a --series label ({labels})")
    if args.gap < 1:
        raise InputError(f"--gap must be at least 1, got {args.gap}")
    if args.max_slices < 1:
        raise InputError(f"--max-slices must be at least 1, got {args.max_slices}")
    return partners


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Read and check every series, then measure, compare with the reference and write the JSON and PNG.

    ``args``: series and full_dose (lists of (label, path)), slices (text or None), gap, max_slices,
    reference (a label or None: the first series), json and png (paths or None).
    """
    partners = check_arguments(args)
    spec = parse_slices(args.slices)
    jobs = []
    for label, path in args.series:
        volume = read_series(path)
        full = read_series(partners[label]) if label in partners else None
        if full is not None:
            check_pair(volume, full)
        slices, skipped = select_slices(SliceChecker(volume, full is not None, args.gap), spec, args.max_slices, label)
        jobs.append((label, volume, full, slices, skipped))
    series: dict[str, dict[str, Any]] = {}
    for label, volume, full, slices, skipped in tqdm(jobs, desc="measuring", unit="series"):
        measure = measure_series(volume.hu, volume.pixel_spacing_mm, slices, None if full is None else full.hu, args.gap)
        series[label] = {
            "path": str(volume.path),
            "full_dose_path": None if full is None else str(full.path),
            "slices_in_series": len(volume.hu),
            "skipped_slices_without_soft_tissue": skipped,
            **measure,
        }
    reference = args.reference or args.series[0][0]
    report: dict[str, Any] = {
        "reference": reference,
        "l1_band_cycles_per_pixel": list(L1_BAND),
        "series": series,
        "vs_reference": {label: compare(measure, series[reference]) for label, measure in series.items() if label != reference},
    }
    if args.png is not None:
        curves = [(label, measure, "") for label, measure in series.items()]
        plot_nps(curves, args.png, f"Radial NPS in soft tissue (area-normalised); reference {reference}")
        report["png"] = str(args.png)
    if args.json is not None:
        report["json"] = str(args.json)
        write_text_atomically(args.json, json.dumps(report, indent=1))
    return report


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report without the NPS curves and slice lists: what a person reads on the terminal."""
    return {**report, "series": {label: scalars(measure) for label, measure in report["series"].items()}}
