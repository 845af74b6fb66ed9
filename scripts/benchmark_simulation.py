"""Measure what the low-dose simulation does to real CT slices, and how fast it is (one JSON object on stdout).

Reports PSNR / SSIM / RMSE of simulated low dose against full dose in the [-160, 240] HU (data range 400) and
[-1000, 1000] HU (data range 2000) windows, the level and noise power spectrum of the inserted noise in soft
tissue (also scaled to quarter dose, to compare scanners), and seconds per slice of the torch simulation against
scikit-image radon + iradon. The default flux and kernel come from scripts/calibrate_simulation.py (real Mayo).

Example: python scripts/benchmark_simulation.py --data-dir ../shared/data/ct/totalsegmentator_abdomen_siemens --threads 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from custom.evaluation.simulation_benchmark import DEFAULT_DATA_DIR, run
from custom.simulation.options import add_simulation_arguments


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder of full-dose CT DICOM slices")
    parser.add_argument("--max-slices", type=int, default=None, help="use only the first N slices")
    add_simulation_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skimage-repeats", type=int, default=1, help="slices to time scikit-image on (0 skips it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
