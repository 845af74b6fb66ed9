"""Compare the runs of MLflow experiments: a table of what differs and how they ended, and validation curves.

The table has one row per run: its name, status, the parameters whose values differ between runs (the ones
that explain the differences) and the final value of each metric. The plot shows validation PSNR and SSIM over
training steps; the bundle logs validation once per epoch, so steps are epochs times `epoch_length` when the
run records that parameter, and epochs otherwise. Runs with a single value (e.g. classical denoisers scored by
`scripts/benchmark_quality.py`) appear as horizontal reference lines. A resumed run's re-logged steps count once
(their latest value). `--also URI EXPERIMENT` adds the runs of another store or experiment.

    python scripts/compare_runs.py   # the bundle's store bundle/eval/mlruns.db, experiment ldct_effnetv2_wgangp;
                                     # table and PNG into bundle/eval/
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from custom.conventions import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI, EVAL_DIR
from custom.evaluation.run_comparison import DEFAULT_CURVES, run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help=f"MLflow store (default {DEFAULT_TRACKING_URI})")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"experiment name (default {DEFAULT_EXPERIMENT})")
    parser.add_argument(
        "--also",
        nargs=2,
        action="append",
        metavar=("URI", "EXPERIMENT"),
        help="also the runs of this store and experiment (repeatable; a name found twice gets its experiment added)",
    )
    parser.add_argument("--metrics", nargs="+", help="table columns (default: every metric not starting with train_)")
    parser.add_argument("--curves", nargs="+", default=list(DEFAULT_CURVES), help="metrics to plot over training steps")
    parser.add_argument("--plot", type=Path, default=EVAL_DIR / "compare_runs.png", help="PNG to write (default bundle/eval/)")
    parser.add_argument("--table", type=Path, default=EVAL_DIR / "compare_runs.md", help="table to write (default bundle/eval/)")
    parser.add_argument("--json", type=Path, help="also write the table's content as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
