"""Pair the low-dose and full-dose slices of the AAPM-Mayo LDCT data and write the bundle's datalist JSON.

Two layouts are recognised (``--layout auto`` tells them apart by the Mayo folder names):

* ``mayo``: the 2016 Grand Challenge download, ``<input>/<patient>/{full,quarter}_{1mm,3mm}/**/*.IMA``;
* ``tcia``: TCIA "LDCT-and-Projection-data", one folder per patient holding a full-dose and a low-dose series,
  told apart by SeriesDescription (or else folder names) containing "full" versus "low"/"quarter".

Slices are paired within a patient by slice position (ImagePositionPatient z, or InstanceNumber when positions
are missing), never by file order, and a pair must agree in Modality (CT), image size, pixel spacing and
position. Whatever cannot be paired for certain is skipped and listed in ``pairing_report.tsv`` next to the
datalist. The split is by patient; L506 is the usual test patient in the literature.

Output (never inside the input folder): ``datalist.json`` = {"training": [{"low_dose", "full_dose", "patient"},
...], "validation": [...], "test": [...]} with absolute paths to the DICOM files (MONAI's loader applies the
rescale), or with ``--nifti`` to float32 HU NIfTI slices written under ``<output>/nifti/<patient>/``.

Example: python scripts/prepare_mayo.py /data/Mayo2016 /data/mayo_prepared --thickness 3mm --nifti
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from custom.conventions import DATALIST_NAME, DEFAULT_TEST_PATIENTS, FULL_DOSE_KEY, LOW_DOSE_KEY, PATIENT_KEY, SPLITS
from custom.data.default_dataset import write_nifti_slice
from custom.io.atomic_output import atomic_output, write_text_atomically
from custom.io.dicom_series import DicomSeriesError, candidate_files, read_header, read_slice_hu

THICKNESSES = ("1mm", "3mm")
DEFAULT_MAYO_THICKNESS = "3mm"
MAYO_DOSE_FOLDERS = {"full": "full_{thickness}", "low": "quarter_{thickness}"}
REPORT_NAME = "pairing_report.tsv"
REPORT_COLUMNS = (PATIENT_KEY, "dose", "file", "reason", "detail")
SPACING_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class CTSlice:
    """What pairing needs to know about one DICOM slice."""

    path: Path
    patient: str
    dose: str  # "full" or "low"
    series_uid: str
    z: float | None
    instance: int | None
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    xy: tuple[float, float] | None  # in-plane part of ImagePositionPatient
    slice_thickness: float | None


@dataclass(frozen=True)
class Skipped:
    """A file left out of the datalist: a short reason to count by, and the particulars."""

    patient: str
    dose: str
    path: Path
    reason: str
    detail: str = ""


def detect_layout(input_dir: Path) -> str:
    """ "mayo" when some folder is named like full_3mm / quarter_1mm, else "tcia"."""
    mayo_names = {pattern.format(thickness=t) for pattern in MAYO_DOSE_FOLDERS.values() for t in THICKNESSES}
    return "mayo" if any(path.is_dir() and path.name in mayo_names for path in input_dir.rglob("*")) else "tcia"


def dose_from_text(text: str) -> str | None:
    """ "full" or "low" when the text names exactly one of them."""
    text = text.lower()
    is_full, is_low = "full" in text, ("low" in text or "quarter" in text)
    return None if is_full == is_low else ("full" if is_full else "low")


def read_slice(path: Path, patient: str, dose: str | None, use_tags: bool) -> CTSlice | Skipped:
    """Header facts of one file, or why it cannot take part (not DICOM, not CT, dose unknown).

    With ``use_tags`` (TCIA), PatientID and SeriesDescription take precedence over the folder-derived guesses.
    """
    try:
        header = read_header(path)
    except DicomSeriesError as error:
        return Skipped(patient, dose or "", path, "unreadable DICOM", str(error))
    if header is None:
        return Skipped(patient, dose or "", path, "not a DICOM image")
    if use_tags:
        patient = str(header.get("PatientID") or patient)
        dose = dose_from_text(str(header.get("SeriesDescription", ""))) or dose
    if header.get("Modality") != "CT":
        return Skipped(patient, dose or "", path, "not CT", f"Modality is {header.get('Modality', 'missing')!r}")
    if dose is None:
        return Skipped(patient, "", path, "dose unknown", "neither SeriesDescription nor folder names tell full from low dose")
    position = header.get("ImagePositionPatient")
    spacing = header.get("PixelSpacing")
    thickness = header.get("SliceThickness")
    instance = header.get("InstanceNumber")
    return CTSlice(
        path=path,
        patient=patient,
        dose=dose,
        series_uid=str(header.get("SeriesInstanceUID", "")),
        z=float(position[2]) if position else None,
        instance=int(instance) if instance not in (None, "") else None,
        rows=int(header.Rows),
        columns=int(header.Columns),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
        xy=(float(position[0]), float(position[1])) if position else None,
        slice_thickness=float(thickness) if thickness not in (None, "") else None,
    )


def mayo_candidates(input_dir: Path, thickness: str) -> list[tuple[Path, str, str | None]]:
    """(file, patient, dose) for the Grand Challenge layout: the dose folder's name gives the dose, its parent the patient.

    Dose folders inside another dose folder (an unpacked archive repeating the name) count once, as the outer one.
    """
    dose_of_folder = {pattern.format(thickness=thickness): dose for dose, pattern in MAYO_DOSE_FOLDERS.items()}
    dose_dirs = sorted(path for path in input_dir.rglob("*") if path.is_dir() and path.name in dose_of_folder)
    outer_dirs = [path for path in dose_dirs if not any(parent in dose_dirs for parent in path.parents)]
    return [
        (file, dose_dir.parent.name, dose_of_folder[dose_dir.name])
        for dose_dir in outer_dirs
        for file in candidate_files(dose_dir)
    ]


def tcia_candidates(input_dir: Path) -> list[tuple[Path, str, str | None]]:
    """(file, patient folder, dose from the nearest decisive folder name) for the TCIA layout; tags may override both."""
    candidates = []
    for file in candidate_files(input_dir):
        parts = file.relative_to(input_dir).parts
        patient = parts[0] if len(parts) > 1 else ""
        folder_doses = (dose_from_text(folder) for folder in reversed(parts[1:-1]))  # the series folder first
        candidates.append((file, patient, next((dose for dose in folder_doses if dose), None)))
    return candidates


def collect_slices(input_dir: Path, layout: str, thickness: str | None) -> tuple[list[CTSlice], list[Skipped]]:
    """Read the headers of every candidate file; TCIA slices take patient and dose from their own tags when present."""
    if layout == "mayo":
        candidates = mayo_candidates(input_dir, thickness or DEFAULT_MAYO_THICKNESS)
    else:
        candidates = tcia_candidates(input_dir)
    slices: list[CTSlice] = []
    skipped: list[Skipped] = []
    for file, patient, folder_dose in tqdm(candidates, desc="reading DICOM headers", unit="file"):
        item = read_slice(file, patient, folder_dose, use_tags=layout == "tcia")
        if isinstance(item, CTSlice):
            slices.append(item)
        else:
            skipped.append(item)
    if layout == "tcia" and thickness:
        wanted = float(thickness.removesuffix("mm"))
        matches = [item.slice_thickness is not None and abs(item.slice_thickness - wanted) < 0.05 for item in slices]
        skipped += [
            Skipped(item.patient, item.dose, item.path, "other slice thickness", f"SliceThickness {item.slice_thickness}")
            for item, match in zip(slices, matches)
            if not match
        ]
        slices = [item for item, match in zip(slices, matches) if match]
    return slices, skipped


def one_series_per_dose(slices: list[CTSlice]) -> tuple[list[CTSlice], list[Skipped]]:
    """Drop patients whose full or low dose spans several series: which series to pair would be a guess."""
    series = defaultdict(set)
    for item in slices:
        series[(item.patient, item.dose)].add(item.series_uid)
    ambiguous = {patient: f"{len(uids)} {dose}-dose series" for (patient, dose), uids in series.items() if len(uids) > 1}
    kept = [item for item in slices if item.patient not in ambiguous]
    skipped = [
        Skipped(item.patient, item.dose, item.path, "several series of one dose", ambiguous[item.patient])
        for item in slices
        if item.patient in ambiguous
    ]
    return kept, skipped


def geometry_mismatch(low: CTSlice, full: CTSlice, tolerance_mm: float) -> str | None:
    """Why two slices at the same position still cannot form a pixel-wise pair, or None."""
    if (low.rows, low.columns) != (full.rows, full.columns):
        return f"image size {low.rows}x{low.columns} differs from its partner's {full.rows}x{full.columns}"
    if (
        low.pixel_spacing
        and full.pixel_spacing
        and any(abs(a - b) > SPACING_TOLERANCE_MM for a, b in zip(low.pixel_spacing, full.pixel_spacing))
    ):
        return f"pixel spacing {low.pixel_spacing} differs from its partner's {full.pixel_spacing}"
    if low.xy and full.xy and any(abs(a - b) > tolerance_mm for a, b in zip(low.xy, full.xy)):
        return f"in-plane position {low.xy} differs from its partner's {full.xy}"
    return None


def _unique_by_key(items: list[CTSlice], key: dict[Path, float], tolerance: float) -> tuple[list[CTSlice], list[Skipped]]:
    """Slices of one series whose key no other slice of the series shares within ``tolerance``."""
    ordered = sorted(items, key=lambda item: key[item.path])
    clash = set()
    for previous, current in zip(ordered[:-1], ordered[1:]):
        if key[current.path] - key[previous.path] <= tolerance:
            clash.update({previous.path, current.path})
    return [item for item in ordered if item.path not in clash], [
        Skipped(item.patient, item.dose, item.path, "duplicate position", "another slice of the series has the same position")
        for item in ordered
        if item.path in clash
    ]


def _position_key(item: CTSlice, by_position: bool) -> float:
    """The slice's z position, or its InstanceNumber as a float; the caller has checked that it is present."""
    if by_position:
        assert item.z is not None
        return item.z
    assert item.instance is not None
    return float(item.instance)


def pair_patient_slices(
    low_slices: list[CTSlice], full_slices: list[CTSlice], tolerance_mm: float = 0.1
) -> tuple[list[tuple[CTSlice, CTSlice]], list[Skipped]]:
    """Pair one patient's low- and full-dose slices by z position, or by InstanceNumber if any position is missing.

    A slice pairs only with the one partner within the tolerance (exact instance number); everything else is
    returned as skipped with the reason, in file-independent order.
    """
    everything = low_slices + full_slices
    by_position = all(item.z is not None for item in everything)
    if not by_position and not all(item.instance is not None for item in everything):
        return [], [
            Skipped(
                item.patient,
                item.dose,
                item.path,
                "no position",
                "neither ImagePositionPatient nor InstanceNumber on every slice",
            )
            for item in everything
        ]
    key = {item.path: _position_key(item, by_position) for item in everything}
    tolerance = tolerance_mm if by_position else 0.0
    low, skipped = _unique_by_key(low_slices, key, tolerance)
    full, skipped_full = _unique_by_key(full_slices, key, tolerance)
    skipped += skipped_full
    full_keys = [key[item.path] for item in full]
    claimed: dict[Path, list[CTSlice]] = defaultdict(list)
    for item in low:
        index = bisect.bisect_left(full_keys, key[item.path])
        nearby = [i for i in (index - 1, index) if 0 <= i < len(full) and abs(full_keys[i] - key[item.path]) <= tolerance]
        if nearby:
            claimed[full[min(nearby, key=lambda i: abs(full_keys[i] - key[item.path]))].path].append(item)
        else:
            where = f"z={item.z:g}" if by_position else f"InstanceNumber {item.instance}"
            skipped.append(Skipped(item.patient, item.dose, item.path, "unpaired", f"no full-dose slice at {where}"))
    pairs = []
    for partner in full:
        claimants = claimed.get(partner.path, [])
        if not claimants:
            where = f"z={partner.z:g}" if by_position else f"InstanceNumber {partner.instance}"
            skipped.append(Skipped(partner.patient, partner.dose, partner.path, "unpaired", f"no low-dose slice at {where}"))
        elif len(claimants) > 1:
            skipped += [
                Skipped(item.patient, item.dose, item.path, "ambiguous pair", "several low-dose slices match one full-dose slice")
                for item in claimants + [partner]
            ]
        elif mismatch := geometry_mismatch(claimants[0], partner, tolerance_mm):
            skipped += [
                Skipped(item.patient, item.dose, item.path, "geometry mismatch", mismatch) for item in (claimants[0], partner)
            ]
        else:
            pairs.append((claimants[0], partner))
    return pairs, skipped


def pair_slices(
    slices: list[CTSlice], tolerance_mm: float = 0.1
) -> tuple[dict[str, list[tuple[CTSlice, CTSlice]]], list[Skipped]]:
    """Pairs per patient (sorted by position) and everything skipped, over all patients."""
    slices, skipped = one_series_per_dose(slices)
    by_patient: dict[str, dict[str, list[CTSlice]]] = defaultdict(lambda: {"low": [], "full": []})
    for item in slices:
        by_patient[item.patient][item.dose].append(item)
    pairs = {}
    for patient in sorted(by_patient):
        patient_pairs, patient_skipped = pair_patient_slices(
            by_patient[patient]["low"], by_patient[patient]["full"], tolerance_mm
        )
        skipped += patient_skipped
        if patient_pairs:
            pairs[patient] = patient_pairs
    return pairs, skipped


def _pick(patients: list[str], fraction: float, rng: random.Random) -> list[str]:
    if not 0 <= fraction < 1:
        raise ValueError(f"split fractions must be in [0, 1), got {fraction}")
    count = max(1, round(fraction * len(patients))) if fraction > 0 and len(patients) > 1 else 0
    return sorted(rng.sample(patients, count))


def _named(patients: list[str], names: list[str], role: str) -> list[str]:
    missing = sorted(set(names) - set(patients))
    if missing:
        raise ValueError(
            f"{role} patient(s) {missing} have no paired slices among {patients}; "
            "name others with --test-patients / --val-patients or use --test-fraction / --val-fraction"
        )
    return sorted(set(names))


def split_patients(
    patients: list[str],
    test_patients: list[str] | None = None,
    val_patients: list[str] | None = None,
    test_fraction: float = 0.0,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Patient-wise split: named patients first, else a seeded random fraction of the remaining ones."""
    rng = random.Random(seed)
    patients = sorted(patients)
    test = _named(patients, test_patients, "test") if test_patients is not None else _pick(patients, test_fraction, rng)
    remaining = [patient for patient in patients if patient not in test]
    if val_patients is not None:
        validation = _named(remaining, val_patients, "validation (and not test)")
    else:
        validation = _pick(remaining, val_fraction, rng)
    training = [patient for patient in remaining if patient not in validation]
    if not training:
        raise ValueError(f"no patient left for training after choosing test {test} and validation {validation}")
    return {"training": training, "validation": validation, "test": test}


def write_nifti_pairs(pairs: dict[str, list[tuple[CTSlice, CTSlice]]], output_dir: Path) -> dict[Path, Path]:
    """HU NIfTI slice for every paired DICOM file, written atomically; returns DICOM path -> NIfTI path."""
    converted = {}
    jobs = [(patient, index, item) for patient, items in pairs.items() for index, pair in enumerate(items) for item in pair]
    for patient, index, item in tqdm(jobs, desc="writing NIfTI slices", unit="slice"):
        target = output_dir / "nifti" / patient / f"{item.dose}_dose" / f"{index:04d}.nii.gz"
        spacing = item.pixel_spacing or (1.0, 1.0)
        with atomic_output(target) as temporary:
            write_nifti_slice(read_slice_hu(item.path).astype("float32"), (*spacing, item.slice_thickness or 1.0), temporary)
        converted[item.path] = target
    return converted


def build_datalist(
    pairs: dict[str, list[tuple[CTSlice, CTSlice]]], split: dict[str, list[str]], converted: dict[Path, Path] | None = None
) -> dict[str, list[dict[str, str]]]:
    """The datalist: per split, the pairs of its patients with absolute paths (NIfTI ones when converted)."""

    def location(item: CTSlice) -> str:
        return str((converted[item.path] if converted else item.path).absolute())

    return {
        name: [
            {LOW_DOSE_KEY: location(low), FULL_DOSE_KEY: location(full), PATIENT_KEY: patient}
            for patient in split[name]
            for low, full in pairs[patient]
        ]
        for name in SPLITS
    }


def write_report(skipped: list[Skipped], path: Path) -> None:
    with atomic_output(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        for item in sorted(skipped, key=lambda entry: (entry.patient, entry.dose, str(entry.path))):
            writer.writerow((item.patient, item.dose, str(item.path), item.reason, item.detail))


def check_output_outside_input(input_dir: Path, output_dir: Path) -> None:
    resolved_input, resolved_output = input_dir.resolve(), output_dir.resolve()
    if resolved_output == resolved_input or resolved_input in resolved_output.parents:
        raise ValueError(f"refusing to write into the input folder: output '{output_dir}' lies inside input '{input_dir}'")


def run(args: argparse.Namespace) -> int:
    try:
        return prepare(args)
    except ValueError as error:  # bad input: a message, not a traceback
        raise SystemExit(f"error: {error}") from error


def prepare(args: argparse.Namespace) -> int:
    if not args.input_dir.is_dir():
        raise ValueError(f"input folder '{args.input_dir}' does not exist")
    check_output_outside_input(args.input_dir, args.output_dir)
    layout = detect_layout(args.input_dir) if args.layout == "auto" else args.layout
    slices, skipped = collect_slices(args.input_dir, layout, args.thickness)
    pairs, skipped_pairing = pair_slices(slices, args.position_tolerance)
    skipped += skipped_pairing
    write_report(skipped, args.output_dir / REPORT_NAME)
    if not pairs:
        raise ValueError(f"{args.input_dir}: no low/full-dose pairs found in the {layout} layout ({len(skipped)} files skipped)")
    test_patients = None if args.test_fraction is not None else (args.test_patients or list(DEFAULT_TEST_PATIENTS))
    split = split_patients(list(pairs), test_patients, args.val_patients, args.test_fraction or 0.0, args.val_fraction, args.seed)
    converted = write_nifti_pairs(pairs, args.output_dir) if args.nifti else None
    datalist = build_datalist(pairs, split, converted)
    write_text_atomically(args.output_dir / DATALIST_NAME, json.dumps(datalist, indent=2))
    print(f"layout: {layout}; pairs written to {args.output_dir / DATALIST_NAME}")
    for name in SPLITS:
        print(f"  {name}: {len(datalist[name])} pairs from {len(split[name])} patients {split[name]}")
    print(f"skipped {len(skipped)} files (see {args.output_dir / REPORT_NAME})")
    for reason, count in Counter(item.reason for item in skipped).most_common():
        print(f"  {count} x {reason}")
    return 0
