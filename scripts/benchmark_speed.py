"""Command line of `custom.evaluation.speed_benchmark`, whose docstring is this script's --help."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import custom.evaluation.speed_benchmark as speed_benchmark
from custom.conventions import INFERENCE_SELF_ENSEMBLE
from custom.evaluation.speed_benchmark import MODELS, VARIANTS, run
from custom.inference.self_ensemble import SELF_ENSEMBLE_SIZES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=speed_benchmark.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--quick", action="store_true", help="64x64, b0 + RED-CNN, no torch.compile: a smoke run")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="default: all (quick: b0 and RED-CNN)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--image-size", type=int, help="slice side in pixels (default 512; quick 64)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="batch sizes to search (default: per device)")
    parser.add_argument(
        "--compile-timeout",
        type=float,
        help="seconds allowed to torch.compile and its timing (default CPU 240, CUDA 600); "
        "with --quick, also turns torch.compile on",
    )
    parser.add_argument("--train-backbone", help="training benchmark backbone (default efficientnetv2_m)")
    parser.add_argument("--train-batch-size", type=int, help="training batch of patches (default 128)")
    parser.add_argument("--train-patch-size", type=int, help="training patch side (default 64)")
    parser.add_argument("--skip-training", action="store_true", help="inference only")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--weights",
        nargs="+",
        metavar="MODEL=FILE",
        help="trained state_dicts (e.g. the bundle's models/model.pt) so the Δ vs fp32 is realistic",
    )
    parser.add_argument(
        "--self-ensemble",
        type=int,
        default=1,
        choices=SELF_ENSEMBLE_SIZES,
        help=f"our models average this many flipped views per slice (default 1: one pass; inference.json: "
        f"{INFERENCE_SELF_ENSEMBLE}); RED-CNN runs alone",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument("--markdown", type=Path, help="also write Markdown tables here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
