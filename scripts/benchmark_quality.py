"""Train and score every denoiser on one datalist; optionally measure each, without reference, on real low dose.

The logic and its documentation are in custom.evaluation.quality_benchmark; `--help` prints the documentation.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from custom.evaluation import quality_benchmark
from custom.evaluation.noise_measurement import CTVolume, read_series
from custom.evaluation.quality_benchmark import (
    ALL_METHODS,
    DEFAULT_DATA_DIR,
    DEFAULT_EXPERIMENT,
    DEFAULT_OUTPUT,
    DEFAULT_REAL_LOW_DOSE_SLICES,
    parse_method_setting,
    parse_sweep,
    real_series_name,
    run,
)


def low_dose_series(text: str) -> CTVolume:
    """argparse type: read and check a real low-dose series, so a bad path fails before any training."""
    try:
        return read_series(Path(text).expanduser())
    except ValueError as error:  # noise_measurement's InputError; its message names the file or folder
        raise argparse.ArgumentTypeError(str(error)) from error


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=quality_benchmark.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--datalist", type=Path, help="paired datalist JSON (default: simulated pairs of --data-dir)")
    data.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"real CT folder (default {DEFAULT_DATA_DIR})")
    data.add_argument("--max-test-slices", type=int, help="score an evenly spaced subset of the test split")
    data.add_argument(
        "--max-tuning-slices",
        type=int,
        help="tune the classical methods' strength on an evenly spaced subset of the validation split (BM3D: ~10 s a 512² slice)",
    )
    real = parser.add_argument_group("real low dose without reference")
    real.add_argument(
        "--real-low-dose",
        type=low_dose_series,
        action="append",
        default=[],
        metavar="PATH",
        help="real low-dose CT series without a full-dose partner (DICOM folder or NIfTI volume) on which every method "
        "is measured without reference: soft-tissue noise, mean shift and edge width; repeatable",
    )
    real.add_argument(
        "--real-low-dose-slices",
        type=int,
        default=DEFAULT_REAL_LOW_DOSE_SLICES,
        metavar="N",
        help=f"evenly spaced slices of each real series to denoise (default {DEFAULT_REAL_LOW_DOSE_SLICES})",
    )
    budget = parser.add_argument_group("budget (the same for every learned method)")
    budget.add_argument("--iterations", type=int, default=400, help="generator steps per run (default 400)")
    budget.add_argument("--val-every", type=int, help="validate every N iterations (default iterations/4)")
    budget.add_argument("--train-seconds", type=float, help="also stop at the first validation after this wall-clock time")
    budget.add_argument("--batch-size", type=int, default=16, help="patches per generator step (default 16)")
    budget.add_argument("--patch-size", type=int, default=64, help="patch side in pixels (default 64, as the paper)")
    budget.add_argument(
        "--late-patch-size",
        type=int,
        help="patch side for the recipe's late phase (default: train.json's; at most the image size)",
    )
    budget.add_argument("--backbone", default="efficientnetv2_m", help="generator backbone (default efficientnetv2_m)")
    budget.add_argument("--learning-rate", type=float, help="Adam learning rate (default: train.json's)")
    budget.add_argument(
        "--adversarial-warmup", type=int, help="generator iterations before the critic starts (default: train.json's)"
    )
    budget.add_argument("--seeds", type=int, default=1, help="training seeds per learned method (the paper: 10)")
    budget.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first of the --seeds consecutive seeds (default 0; e.g. 1 adds seeds to a run of seed 0 made before)",
    )
    budget.add_argument(
        "--perceptual-pretrained",
        default="false",
        help="false (random VGG19 features, offline), true (torchvision download) or a weights file",
    )
    budget.add_argument(
        "--set",
        dest="method_settings",
        nargs="+",
        action="extend",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="a train.json override for one learned method, e.g. ours.n_critic=1 red_cnn.learning_rate=1e-4; "
        "METHOD.iterations=N gives that method its own run length (equal training time for methods of unequal cost)",
    )
    budget.add_argument(
        "--sweep",
        dest="sweep_texts",
        nargs="+",
        action="extend",
        default=[],
        metavar="METHOD.KEY=V1,V2",
        help="one run per value (and seed), the method's settings with only KEY changed, e.g. ours.lambda_adv=0,0.01 "
        "ours.n_critic=1,5 ours.backbone=tf_efficientnetv2_b0,tf_efficientnetv2_s; quality.md marks the one with the "
        "best validation PSNR as chosen (the test PSNR is shown beside it and chooses nothing)",
    )
    budget.add_argument("--num-workers", type=int, default=0, help="data loader workers (default 0)")
    budget.add_argument("--device", help="torch device for training and scoring (default: train.json's, CUDA if any)")
    parser.add_argument(
        "--methods", nargs="+", choices=ALL_METHODS, default=list(ALL_METHODS), help="methods to run (ldct is always scored)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run: tf_efficientnetv2_b0, 1 iteration, batch 2, 32 px patches throughout, small grids",
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    parser.add_argument("--tracking-uri", help="MLflow store (default sqlite:///<output-dir>/mlruns.db)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone, args.iterations, args.batch_size, args.patch_size = "tf_efficientnetv2_b0", 1, 2, 32
        args.late_patch_size = args.patch_size
    args.val_every = args.val_every or max(1, args.iterations // 4)
    settings: dict[str, dict[str, Any]] = {}
    for text in args.method_settings:
        try:
            method, key, value = parse_method_setting(text)
        except ValueError as error:
            parser.error(f"--set {error}")
        settings.setdefault(method, {})[key] = value
    args.method_settings = settings
    try:
        args.sweeps = [parse_sweep(text) for text in args.sweep_texts]
    except ValueError as error:
        parser.error(f"--sweep {error}")
    if min(args.iterations, args.val_every, args.batch_size, args.patch_size, args.seeds, args.real_low_dose_slices) < 1:
        parser.error("--iterations, --val-every, --batch-size, --patch-size, --seeds and --real-low-dose-slices must be positive")
    if args.first_seed < 0:
        parser.error("--first-seed must be 0 or more")
    repeated = sorted(name for name, count in Counter(map(real_series_name, args.real_low_dose)).items() if count > 1)
    if repeated:
        parser.error(f"--real-low-dose: several series named {repeated}; results are keyed by folder or file name")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
