"""Check the low-dose simulation's default noise level and texture against real Mayo quarter dose.

Measures real L109 quarter dose and quarter dose simulated from real L067 full dose with the current defaults
(fixed seeds), compares them with the previous default (recorded figures), checks the shared TotalSegmentator
Siemens slices, and writes bundle/docs/simulation_calibration.json (everything, including the constants of
tests/simulation/test_calibration_constants.py) and simulation_calibration.png (NPS curves). Prints a markdown
table with PASS/FAIL per simulated series. About 3 minutes on 2 CPU cores. Logic: custom/evaluation/simulation_calibration.py.

Example: python scripts/calibrate_simulation.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from custom.evaluation.simulation_calibration import (
    DEFAULT_JSON,
    DEFAULT_MAYO_DIR,
    DEFAULT_PNG,
    DEFAULT_TOTALSEGMENTATOR_DIR,
    L067_FULL,
    L109_QUARTER,
    markdown_table,
    run,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mayo-dir", type=Path, default=DEFAULT_MAYO_DIR, help=f"folder holding {L109_QUARTER}/ and {L067_FULL}")
    parser.add_argument(
        "--totalsegmentator-dir", type=Path, default=DEFAULT_TOTALSEGMENTATOR_DIR, help="TotalSegmentator Siemens DICOM slices"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="report to write")
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG, help="NPS plot to write")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except ValueError as error:  # missing or bad input: a message, not a traceback
        raise SystemExit(f"error: {error}") from error
    print(markdown_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
