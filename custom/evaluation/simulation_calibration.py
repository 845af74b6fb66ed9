"""Check the low-dose simulation's noise level and texture against real Mayo quarter dose (issue 10), behind
scripts/calibrate_simulation.py.

A denoiser trained on simulated pairs only transfers to real scans if the simulated noise has their level and
texture, so the default flux and kernel of ``custom.simulation.low_dose`` are checked against real Siemens B30f
quarter dose with one measure everywhere (``custom.simulation.noise_texture.measure_series``):

* real L109 quarter dose (3 mm slices 2 mm apart): slice difference of slices 4 mm apart (gap 2, no shared
  photons); gap 1 is reported too: the 1 mm overlap correlates the two slices' noise and lowers the estimate;
* real L067 full dose (3.2 mm slabs): 12 abdominal slabs and their upper neighbours simulated at quarter dose
  with fixed seeds, measured as simulated minus full dose ("paired": the inserted noise only; the total
  quarter-dose level is estimated as sqrt(inserted^2 + full-dose^2)) and as the slice difference of the
  simulated volume (the method used on L109, which shows that method's bias);
* the same slabs resampled to L109's 0.781 mm pixels, so that cycles/pixel compare literally;
* the flux that would give the simulated volume L109's slice-difference level: the inserted variance scales
  as 1 / flux and adds to the full-dose variance;
* the previous default (recorded, see ``OLD_DEFAULT``) for comparison;
* a cross-scanner check: the shared TotalSegmentator Siemens slices (0.98 mm, Br38f) at quarter dose;
* the constants of tests/simulation/test_calibration_constants.py, so that they can be regenerated.

Verdict per simulated row against L109: level within ``LEVEL_TOLERANCE`` (paired rows: the total estimate),
peak frequency within ``PEAK_TOLERANCE`` and NPS L1 distance at most ``L1_LIMIT``, both in cycles/mm (the
kernel is defined in mm and L067's pixels are smaller than L109's). The paired rows are the like-for-like
texture; the slice-difference rows carry the anatomy bias of that method and are shown for it.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from custom.conventions import BUNDLE_DIR, SHARED_CT_DIR, SHARED_DATA_DIR
from custom.data.simulated_pairs import InputError
from custom.evaluation.noise_measurement import CTVolume, compare, plot_nps, read_series, scalars
from custom.io.atomic_output import write_text_atomically
from custom.simulation import low_dose
from custom.simulation.noise_texture import ROI_SIZE, measure_series
from custom.simulation.projector import B30F_HALF_MTF_CYCLES_PER_MM, B30F_ORDER

DEFAULT_MAYO_DIR = SHARED_DATA_DIR / "mayo"
L109_QUARTER = "L109_quarter_3mm"
L067_FULL = "L067_full_3mm.nii.gz"
DEFAULT_TOTALSEGMENTATOR_DIR = SHARED_CT_DIR / "totalsegmentator_abdomen_siemens"
DEFAULT_JSON = BUNDLE_DIR / "docs" / "simulation_calibration.json"
DEFAULT_PNG = BUNDLE_DIR / "docs" / "simulation_calibration.png"

DOSE_FRACTION = 0.25
SEED = 20160101  # slice k is simulated with seed SEED + k
L067_SLABS = tuple(round(k) for k in np.linspace(78, 132, 12))  # top of the liver to the kidneys' lower poles
L109_SLICES = tuple(range(8, 118, 4))  # 28 slices over the abdomen
L109_GAP = 2
TOTALSEGMENTATOR_STRIDE = 3  # every third slice, two from each end left out
TEST_SLICES = (6, 10, 14)  # tests/simulation/test_calibration_constants.py: these slices, seed 0 each
TEST_SEED = 0
TEST_TOLERANCES = {"local_noise_hu_p10": 0.05, "noise_std_hu": 0.05, "peak_cycles_per_pixel": 0.25}  # relative
LEVEL_TOLERANCE = 0.10
PEAK_TOLERANCE = 0.10
L1_LIMIT = 0.15

# The previous default (parallel beam with one detector bin per pixel, 720 views, Shepp-Logan FBP, 5.15e6 photons
# per bin per view: custom/simulation/low_dose.py and projector.py at commit 78143da) measured by measure_series on
# the same L067 slabs with the same seeds, when this calibration was first run. Recorded rather than recomputed:
# the projector now works in mm, so that default cannot be run any more. NPS in HU^2 mm^2 at k / 64 cycles/pixel.
OLD_DEFAULT: dict[str, dict[str, Any]] = {
    "paired": {
        "method": "paired",
        "gap": None,
        "local_noise_hu_p10": 12.91,
        "image_local_std_hu_p10": 20.98,
        "noise_std_hu": 15.74,
        "peak_cycles_per_pixel": 0.2211,
        "peak_cycles_per_mm": 0.333,
        "nyquist_share_of_peak": 0.3665,
        "num_rois": 309,
        "pixel_spacing_mm": 0.6640625,
        "nps_hu2_mm2": [
            0.0, 23.66, 54.05, 73.46, 90.33, 107.4, 120.5, 135.3, 135.7, 146.0, 168.4, 174.3, 179.7, 185.1, 189.5, 187.2,
            179.9, 175.1, 172.0, 162.7, 161.7, 148.2, 141.5, 129.9, 123.9, 114.2, 104.0, 100.9, 89.64, 87.5, 80.52, 76.39,
            69.46,
        ],
    },
    "slice_difference": {
        "method": "slice_difference",
        "gap": 1,
        "local_noise_hu_p10": 19.27,
        "image_local_std_hu_p10": 20.98,
        "noise_std_hu": 26.67,
        "peak_cycles_per_pixel": 0.06442,
        "peak_cycles_per_mm": 0.09701,
        "nyquist_share_of_peak": 0.04649,
        "num_rois": 89,
        "pixel_spacing_mm": 0.6640625,
        "nps_hu2_mm2": [
            0.0, 233.1, 577.5, 1152.0, 1620.0, 1337.0, 1491.0, 1226.0, 1162.0, 943.9, 991.2, 946.0, 835.6, 752.2, 715.5,
            606.6, 539.0, 482.3, 440.1, 379.7, 348.7, 304.7, 271.4, 209.3, 186.4, 168.0, 142.6, 130.7, 117.4, 109.0,
            93.04, 87.5, 75.3,
        ],
    },
}  # fmt: skip


def recorded_measure(record: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded measure with the frequency axes that measure_series would give it."""
    frequency = np.arange(len(record["nps_hu2_mm2"])) / ROI_SIZE
    return {
        **record,
        "frequency_cycles_per_pixel": frequency.tolist(),
        "frequency_cycles_per_mm": (frequency / record["pixel_spacing_mm"]).tolist(),
    }


def simulate_slices(volume: np.ndarray, pixel_spacing_mm: float, seeds: Mapping[int, int], dose_fraction: float) -> np.ndarray:
    """A copy of ``volume`` (Z, H, W) whose slices ``seeds`` holds are replaced by simulated low dose, each with its
    own seed, with the current defaults."""
    low = volume.copy()
    for index, seed in tqdm(seeds.items(), desc=f"simulating dose {dose_fraction:g}", unit="slice"):
        image = torch.from_numpy(np.ascontiguousarray(volume[index]))[None, None]
        generator = torch.Generator().manual_seed(seed)
        low[index] = low_dose.simulate_low_dose_hu(image, pixel_spacing_mm, generator, dose_fraction)[0, 0].numpy()
    return low


def simulated_measures(full: CTVolume, slabs: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Paired (simulated minus full) and slice-difference (simulated volume, gap 1) measures at quarter dose."""
    needed = sorted(set(slabs) | {k + 1 for k in slabs})
    low = simulate_slices(full.hu, full.pixel_spacing_mm, {k: SEED + k for k in needed}, DOSE_FRACTION)
    return {
        "paired": measure_series(low, full.pixel_spacing_mm, slabs, full_dose_hu=full.hu),
        "slice_difference": measure_series(low, full.pixel_spacing_mm, slabs, gap=1),
    }


def resampled_paired_measure(full: CTVolume, slabs: Sequence[int], pixel_spacing_mm: float) -> dict[str, Any]:
    """Paired measure of the slabs resampled (bilinear) to ``pixel_spacing_mm`` before simulation."""
    zoom = full.pixel_spacing_mm / pixel_spacing_mm
    resampled = np.stack([ndimage.zoom(full.hu[k], zoom, order=1) for k in slabs])
    low = simulate_slices(resampled, pixel_spacing_mm, {i: SEED + i for i in range(len(slabs))}, DOSE_FRACTION)
    return measure_series(low, pixel_spacing_mm, range(len(slabs)), full_dose_hu=resampled)


def solved_flux(simulated_level: float, full_dose_level: float, target_level: float) -> float:
    """The flux at which the simulated total level would be ``target_level``: inserted variance ~ 1 / flux."""
    inserted_variance = max(simulated_level**2 - full_dose_level**2, 1e-6)
    return low_dose.DEFAULT_INCIDENT_FLUX * inserted_variance / (target_level**2 - full_dose_level**2)


def table_row(label: str, measure: Mapping[str, Any], real: dict[str, Any], full_dose_level: float) -> dict[str, Any]:
    """One line of the verdict table: the measure, its comparison with L109 and PASS/FAIL."""
    comparison = compare(dict(measure), real)
    level = measure["local_noise_hu_p10"]
    if measure["method"] == "paired":  # inserted noise only: add the full-dose noise for a total level
        level = math.hypot(level, full_dose_level)
    level_ratio = level / real["local_noise_hu_p10"]
    passed = (
        abs(level_ratio - 1.0) <= LEVEL_TOLERANCE
        and abs(comparison["peak_ratio_cycles_per_mm"] - 1.0) <= PEAK_TOLERANCE
        and comparison["l1_cycles_per_mm"] <= L1_LIMIT
    )
    return {
        "series": label,
        **{key: measure[key] for key in ("method", "local_noise_hu_p10", "noise_std_hu")},
        **{key: measure[key] for key in ("peak_cycles_per_pixel", "peak_cycles_per_mm", "nyquist_share_of_peak")},
        "total_level_hu": level,
        "level_ratio": level_ratio,
        **comparison,
        "verdict": "PASS" if passed else "FAIL",
    }


def totalsegmentator_check(volume: CTVolume) -> dict[str, Any]:
    """Inserted quarter-dose noise on another Siemens scanner and kernel (0.98 mm, Br38f), and its full-dose noise."""
    slices = list(range(2, len(volume.hu) - 2, TOTALSEGMENTATOR_STRIDE))
    low = simulate_slices(volume.hu, volume.pixel_spacing_mm, {k: SEED + k for k in slices}, DOSE_FRACTION)
    inserted = measure_series(low, volume.pixel_spacing_mm, slices, full_dose_hu=volume.hu)
    level = inserted["local_noise_hu_p10"]
    return {
        "path": str(volume.path),
        "pixel_spacing_mm": volume.pixel_spacing_mm,
        "slices": slices,
        "inserted_quarter_dose": scalars(inserted),
        # inserted variance = s^2 (1 - d) / d for the model's full-dose noise s; the total at dose d is s / sqrt(d)
        "model_full_dose_noise_hu": level * math.sqrt(DOSE_FRACTION / (1 - DOSE_FRACTION)),
        "model_total_quarter_dose_noise_hu": level / math.sqrt(1 - DOSE_FRACTION),
        "full_dose_slice_difference": scalars(measure_series(volume.hu, volume.pixel_spacing_mm, slices[:-1], gap=1)),
    }


def calibration_test_constants(volume: CTVolume) -> dict[str, Any]:
    """The figures tests/simulation/test_calibration_constants.py checks, computed the way it computes them."""
    low = simulate_slices(volume.hu, volume.pixel_spacing_mm, dict.fromkeys(TEST_SLICES, TEST_SEED), DOSE_FRACTION)
    measure = measure_series(low, volume.pixel_spacing_mm, TEST_SLICES, full_dose_hu=volume.hu)
    return {
        "how": f"read_series(TotalSegmentator folder); slices {list(TEST_SLICES)} each simulated with simulate_low_dose_hu"
        f"(slice[None, None], spacing, torch.Generator().manual_seed({TEST_SEED}), {DOSE_FRACTION}) at the defaults; "
        "measure_series(low, spacing, slices, full_dose_hu=full)",
        "relative_tolerances": TEST_TOLERANCES,
        **{key: measure[key] for key in TEST_TOLERANCES},
    }


def simulation_defaults() -> dict[str, Any]:
    """The defaults this calibration checked."""
    return {
        "incident_flux": low_dose.DEFAULT_INCIDENT_FLUX,
        "electronic_noise_var": low_dose.DEFAULT_ELECTRONIC_NOISE_VAR,
        "num_views": low_dose.DEFAULT_NUM_VIEWS,
        "filter_name": low_dose.DEFAULT_FILTER,
        "b30f_half_cycles_per_mm": B30F_HALF_MTF_CYCLES_PER_MM,
        "b30f_order": B30F_ORDER,
        "bin_width_mm": low_dose.DETECTOR_BIN_MM,
        "bowtie_width_mm": low_dose.BOWTIE_WIDTH_MM,
        "bowtie_floor": low_dose.BOWTIE_FLOOR,
    }


def required(path: Path, option: str) -> Path:
    """``path``, or an error saying which option points at the shared data."""
    if not path.exists():
        raise InputError(f"{path}: not found; the calibration needs the shared real data (pass {option})")
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure real and simulated noise, write the JSON report and the NPS plot, and return the report.

    ``args``: mayo_dir, totalsegmentator_dir, json, png (paths) and threads (int or None).
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    l109 = read_series(required(args.mayo_dir / L109_QUARTER, "--mayo-dir"))
    l067 = read_series(required(args.mayo_dir / L067_FULL, "--mayo-dir"))
    totalsegmentator = read_series(required(args.totalsegmentator_dir, "--totalsegmentator-dir"))

    real = measure_series(l109.hu, l109.pixel_spacing_mm, L109_SLICES, gap=L109_GAP)
    real_overlapping = measure_series(l109.hu, l109.pixel_spacing_mm, L109_SLICES, gap=1)
    full_dose = measure_series(l067.hu, l067.pixel_spacing_mm, L067_SLABS, gap=1)
    full_level = full_dose["local_noise_hu_p10"]
    new = simulated_measures(l067, L067_SLABS)
    resampled = resampled_paired_measure(l067, L067_SLABS, l109.pixel_spacing_mm)
    old = {method: recorded_measure(record) for method, record in OLD_DEFAULT.items()}

    rows = [
        ("new default, L067 (sim - full)", new["paired"]),
        ("new default, L067 at 0.781 mm (sim - full)", resampled),
        ("new default, L067 (slice diff)", new["slice_difference"]),
        ("old default, L067 (sim - full)", old["paired"]),
        ("old default, L067 (slice diff)", old["slice_difference"]),
    ]
    report: dict[str, Any] = {
        "dose_fraction": DOSE_FRACTION,
        "seed": SEED,
        "l109_slices": list(L109_SLICES),
        "l067_slabs": list(L067_SLABS),
        "tolerances": {"level": LEVEL_TOLERANCE, "peak_cycles_per_mm": PEAK_TOLERANCE, "l1_cycles_per_mm": L1_LIMIT},
        "defaults": simulation_defaults(),
        "table": [table_row(label, measure, real, full_level) for label, measure in rows],
        "real_l109": {"gap2": real, "gap1_overlapping": scalars(real_overlapping)},
        "l067_full_dose_slice_difference": scalars(full_dose),
        "new_default": {**new, "l067_at_l109_pixels_paired": resampled},
        "old_default_recorded_at_78143da": old,
        "flux_matching_l109_level": solved_flux(
            new["slice_difference"]["local_noise_hu_p10"], full_level, real["local_noise_hu_p10"]
        ),
        "totalsegmentator": totalsegmentator_check(totalsegmentator),
        "test_constants": calibration_test_constants(totalsegmentator),
    }
    curves = [
        ("real L109 quarter dose (slice diff, gap 2)", real, "k-"),
        (rows[0][0], new["paired"], "b--"),
        (rows[1][0], resampled, "g-."),
        (rows[2][0], new["slice_difference"], "b:"),
        (rows[3][0], old["paired"], "r--"),
        (rows[4][0], old["slice_difference"], "r:"),
    ]
    plot_nps(curves, args.png, "Radial NPS at quarter dose, 3 mm abdomen: real L109 vs simulated L067 (area-normalised)")
    write_text_atomically(args.json, json.dumps(report, indent=1))
    return report


def markdown_table(report: Mapping[str, Any]) -> str:
    """The verdict table and the cross-scanner line, as markdown."""
    real = report["real_l109"]["gap2"]
    tolerances = report["tolerances"]
    lines = [
        f"Quarter dose vs real L109 (tolerances: level ±{tolerances['level']:.0%}, peak ±{tolerances['peak_cycles_per_mm']:.0%}, "
        f"L1 ≤ {tolerances['l1_cycles_per_mm']} in cycles/mm; paired rows: total level sqrt(inserted² + full dose²))",
        "",
        "| series | level p10 (HU) | total level (HU) | ROI std (HU) | peak (c/px) | peak (c/mm) | Nyquist/peak "
        "| level ratio | peak ratio (c/mm) | L1 (c/px) | L1 (c/mm) | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| real L109 (slice diff, gap 2) | {real['local_noise_hu_p10']:.1f} | {real['local_noise_hu_p10']:.1f} "
        f"| {real['noise_std_hu']:.1f} | {real['peak_cycles_per_pixel']:.3f} | {real['peak_cycles_per_mm']:.3f} "
        f"| {real['nyquist_share_of_peak']:.3f} | | | | | reference |",
    ]
    for row in report["table"]:
        lines.append(
            f"| {row['series']} | {row['local_noise_hu_p10']:.1f} | {row['total_level_hu']:.1f} | {row['noise_std_hu']:.1f} "
            f"| {row['peak_cycles_per_pixel']:.3f} | {row['peak_cycles_per_mm']:.3f} | {row['nyquist_share_of_peak']:.3f} "
            f"| {row['level_ratio']:.3f} | {row['peak_ratio_cycles_per_mm']:.3f} | {row['l1_cycles_per_pixel']:.3f} "
            f"| {row['l1_cycles_per_mm']:.3f} | {row['verdict']} |"
        )
    check = report["totalsegmentator"]
    inserted = check["inserted_quarter_dose"]
    lines += [
        "",
        f"Flux that would match L109's level: {report['flux_matching_l109_level']:.3g} "
        f"(default {report['defaults']['incident_flux']:.3g}).",
        f"TotalSegmentator Siemens ({check['pixel_spacing_mm']:.3f} mm, Br38f), quarter dose: inserted "
        f"{inserted['local_noise_hu_p10']:.1f} HU (ROI std {inserted['noise_std_hu']:.1f} HU, peak "
        f"{inserted['peak_cycles_per_pixel']:.3f} c/px = {inserted['peak_cycles_per_mm']:.3f} c/mm); model full-dose noise "
        f"{check['model_full_dose_noise_hu']:.1f} HU, total at quarter dose {check['model_total_quarter_dose_noise_hu']:.1f} HU; "
        f"measured full-dose noise (slice diff) {check['full_dose_slice_difference']['local_noise_hu_p10']:.1f} HU.",
    ]
    return "\n".join(lines)
