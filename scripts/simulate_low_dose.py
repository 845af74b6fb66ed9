"""Make paired training data from full-dose CT slices by simulating low dose in the projection domain.

Input: a folder of 2D slices (DICOM, NIfTI .nii/.nii.gz, or .npy in HU) searched recursively, or a datalist JSON
whose entries have a "full_dose" path. For every slice the output folder receives a float32 HU NIfTI of the full
dose and of the simulated low dose (``full_dose/`` and ``low_dose/``, same relative names), and ``datalist.json``
pairs them: {"training": [{"low_dose", "full_dose", "patient"}, ...], "validation": [...], "test": [...]}.
Writing both images the same way keeps each pair pixel-aligned whatever the input format was.
A datalist keeps its splits and patients; for a folder, the first sub-folder is the patient (loose files are one
patient) and the split is patient-wise by fraction. The output folder may not lie inside an input folder.

The default simulation is calibrated to real Mayo quarter dose (Siemens AS+ geometry, bowtie, electronic noise,
B30f-like kernel; bundle/docs/data_and_simulation.md); the noise level follows the input's pixel spacing in mm.
For a whole 3D volume split by z-blocks use scripts/prepare_volume.py.

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
from custom.simulation.options import add_simulation_arguments, simulator_from_args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="folder of full-dose slices, or a datalist JSON with full_dose entries")
    parser.add_argument("output_dir", type=Path, help="where full_dose/, low_dose/ and datalist.json go")
    add_simulation_arguments(parser)
    parser.add_argument("--pixel-spacing-mm", type=float, default=None, help="pixel spacing of .npy inputs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and of the folder split")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="folder input: fraction of patients for validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="folder input: fraction of patients for test")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        simulator = simulator_from_args(args, seed=args.seed)
        datalist = simulate_dataset(
            args.input,
            args.output_dir,
            simulator,
            pixel_spacing_mm=args.pixel_spacing_mm,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            device=args.device,
        )
    except ValueError as error:  # bad input: a message, not a traceback
        raise SystemExit(f"error: {error}") from error
    counts = ", ".join(f"{split} {len(datalist[split])}" for split in SPLITS)
    print(f"wrote {sum(map(len, datalist.values()))} pairs ({counts}) to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
