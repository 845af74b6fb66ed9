"""Command line of `custom.data.mayo`, whose docstring is this script's --help."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import custom.data.mayo as mayo
from custom.conventions import DEFAULT_TEST_PATIENTS
from custom.data.mayo import DEFAULT_MAYO_THICKNESS, THICKNESSES, run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=mayo.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir", type=Path, help="the Mayo or TCIA download (one folder per patient)")
    parser.add_argument("output_dir", type=Path, help="where datalist.json, pairing_report.tsv and NIfTI files go")
    parser.add_argument("--layout", choices=("auto", "mayo", "tcia"), default="auto")
    parser.add_argument(
        "--thickness",
        choices=THICKNESSES,
        default=None,
        help=f"Mayo: which reconstruction to pair (default {DEFAULT_MAYO_THICKNESS}); TCIA: keep only this SliceThickness",
    )
    parser.add_argument(
        "--test-patients",
        nargs="+",
        default=None,
        help=f"default: {' '.join(DEFAULT_TEST_PATIENTS)} unless --test-fraction is given",
    )
    parser.add_argument("--val-patients", nargs="+", default=None, help="default: --val-fraction of the other patients")
    parser.add_argument(
        "--test-fraction", type=float, default=None, help="random fraction of patients for test instead of named ones"
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="random fraction of non-test patients for validation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random patient split")
    parser.add_argument("--position-tolerance", type=float, default=0.1, help="mm by which paired slice positions may differ")
    parser.add_argument("--nifti", action="store_true", help="also write float32 HU NIfTI slices and point the datalist at them")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
