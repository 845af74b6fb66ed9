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
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from custom.conventions import SPLITS
from custom.data.simulated_pairs import simulate_dataset
from custom.simulation.low_dose import (
    DEFAULT_ELECTRONIC_NOISE_VAR,
    DEFAULT_FILTER,
    DEFAULT_INCIDENT_FLUX,
    DEFAULT_NUM_VIEWS,
    SimulateLowDose,
)
from custom.simulation.projector import FILTER_NAMES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        simulator = SimulateLowDose(
            dose_fraction=args.dose_fraction, incident_flux=args.incident_flux, electronic_noise_var=args.electronic_noise_var,
            num_views=args.num_views, filter_name=args.filter_name, seed=args.seed,
        )
        datalist = simulate_dataset(
            args.input, args.output_dir, simulator, pixel_spacing_mm=args.pixel_spacing_mm,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed, device=args.device,
        )
    except ValueError as error:  # bad input: a message, not a traceback
        raise SystemExit(f"error: {error}") from error
    counts = ", ".join(f"{split} {len(datalist[split])}" for split in SPLITS)
    print(f"wrote {sum(map(len, datalist.values()))} pairs ({counts}) to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
