"""Measure how far simulated quarter dose sits from full dose on real CT slices, and how fast the projector is.

Prints one JSON object: PSNR / SSIM / RMSE of simulated low dose against full dose (mean and std over slices)
in the abdominal window [-160, 240] HU (data range 400) and in [-1000, 1000] HU (data range 2000), the seconds
per slice of the torch simulation and, for comparison, of scikit-image radon + iradon, and the settings used.
``--calibrate-to-psnr`` first searches the incident flux that gives that abdominal-window PSNR; it is how
``custom.simulation.low_dose.DEFAULT_INCIDENT_FLUX`` was chosen (Mayo quarter dose: about 29 dB).

Example: python scripts/benchmark_simulation.py --data-dir ../shared/data/ct/totalsegmentator_abdomen_siemens
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from custom.evaluation.simulation_benchmark import DEFAULT_DATA_DIR, run
from custom.simulation.low_dose import DEFAULT_ELECTRONIC_NOISE_VAR, DEFAULT_FILTER, DEFAULT_INCIDENT_FLUX, DEFAULT_NUM_VIEWS
from custom.simulation.projector import FILTER_NAMES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder of full-dose CT DICOM slices")
    parser.add_argument("--max-slices", type=int, default=None, help="use only the first N slices")
    parser.add_argument("--dose-fraction", type=float, default=0.25)
    parser.add_argument("--incident-flux", type=float, default=DEFAULT_INCIDENT_FLUX, help="full-dose photons per bin per view")
    parser.add_argument("--electronic-noise-var", type=float, default=DEFAULT_ELECTRONIC_NOISE_VAR)
    parser.add_argument("--num-views", type=int, default=DEFAULT_NUM_VIEWS)
    parser.add_argument("--filter-name", choices=FILTER_NAMES, default=DEFAULT_FILTER)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate-to-psnr", type=float, default=None, metavar="DB", help="first search the flux giving this PSNR")
    parser.add_argument("--skimage-repeats", type=int, default=1, help="slices to time scikit-image on (0 skips it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
