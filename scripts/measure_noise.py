"""Measure the noise level and noise power spectrum (NPS) of CT series in soft tissue, and compare them.

Each --series is a DICOM folder (Siemens .IMA too), a NIfTI volume or a folder of 2D NIfTI slices, in HU. With a
--full-dose partner the noise is low minus full dose (exact); without, the difference of slices --gap apart
(pick slices at least one slice thickness apart; anatomy biases it, see custom/simulation/noise_texture.py).
Prints a JSON summary; --json writes everything (curves included), --png the area-normalised NPS curves in
cycles/pixel and cycles/mm. Logic: custom/evaluation/noise_measurement.py.

Examples:
  # real quarter dose against a simulation of it, with the real series as reference
  python scripts/measure_noise.py --series real=../shared/data/mayo/L109_quarter_3mm \\
      --series sim=sim/low_dose.nii.gz --full-dose sim=sim/full_dose.nii.gz --reference real \\
      --json noise.json --png noise.png
  # every fourth slice from 20 to 100 of one series
  python scripts/measure_noise.py --series scan=/data/dicom/series1 --slices 20:100:4
  # three given slices (each must hold soft tissue)
  python scripts/measure_noise.py --series scan=volume.nii.gz --slices 40,50,60 --gap 1
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from custom.evaluation.noise_measurement import DEFAULT_GAP, DEFAULT_MAX_SLICES, labelled_path, run, summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--series", type=labelled_path, action="append", default=[], metavar="LABEL=PATH", help="a series to measure (repeat)"
    )
    parser.add_argument(
        "--full-dose",
        type=labelled_path,
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="full-dose partner of the series LABEL, same shape: measures low minus full dose",
    )
    parser.add_argument(
        "--slices",
        default=None,
        help="START:STOP:STEP (slices without soft tissue are skipped) or a comma list (each must hold soft tissue); "
        "default: every slice with soft tissue, at most --max-slices",
    )
    parser.add_argument(
        "--max-slices", type=int, default=DEFAULT_MAX_SLICES, help="cap for a range or the default, evenly spread"
    )
    parser.add_argument("--gap", type=int, default=DEFAULT_GAP, help="slice-difference distance in slices (unpaired series)")
    parser.add_argument("--reference", default=None, help="label the others are compared with (default: the first series)")
    parser.add_argument("--json", type=Path, default=None, help="write the full report (NPS curves included) here")
    parser.add_argument("--png", type=Path, default=None, help="write the NPS plot here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except ValueError as error:  # bad input: a message, not a traceback
        raise SystemExit(f"error: {error}") from error
    print(json.dumps(summary(report), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
