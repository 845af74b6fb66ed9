"""Score a saved model: against full dose on paired slices, and without reference on real low-dose series.

    # the shipped model on the L067 test block, whole slices against 64-pixel tiles, and on real Mayo quarter dose
    python scripts/score_model.py --model bundle/models/shipped/model.pt \\
        --datalist /data/l067_zblocks/datalist.json --split test --tile-sizes 64 \\
        --real-low-dose ../shared/data/mayo/L109_quarter_3mm --json score.json

With --datalist: PSNR/SSIM (mean and std over slices) of whole-slice outputs, of each --tile-sizes tiling and of
the low-dose input in both evaluation windows ([-160, 240] HU range 400; [-1000, 1000] HU range 2000), the
soft-tissue mean shift, seconds per slice, and the 10-90 % edge width of organ boundaries against the full dose's
at the same points (edge_width_ratio_to_reference; custom/evaluation/edge_width.py). With --real-low-dose (a DICOM
folder or NIfTI; repeatable): noise of output and input (10th percentile of 15x15 local std in soft tissue), mean
shift, and 10-90 % edge widths of organ boundaries, output against input (custom/evaluation/no_reference.py). With
--strengths, both parts also for whole slices blended with the input at each denoising strength (inference.json's
--strength; "auto": each slice's strength from its measured noise), from the same network outputs. With --context-sizes: the PSNR ([-160, 240] HU) of each paired slice's
central 128x128 pixels denoised within centred crops of each size and whole; a model that carries far context
(air, table, body outline) into the organs drifts as the crop grows (custom/evaluation/context_sensitivity.py).
With --self-ensemble N: every output is the mean over N flipped views of the slice (inference.json's
--self_ensemble, default custom.conventions.INFERENCE_SELF_ENSEMBLE there; 1 here, the network alone, as in the
model card's tables before 2026-12-05).
Prints JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from custom.conventions import INFERENCE_SELF_ENSEMBLE, SHIPPED_MODEL_FILE
from custom.evaluation.context_sensitivity import DEFAULT_REGION
from custom.evaluation.model_scoring import load_denoisers, score_pairs, score_real_series
from custom.inference.denoising_strength import NoiseStrengthRamp, check_strength
from custom.inference.self_ensemble import SELF_ENSEMBLE_SIZES
from custom.io.atomic_output import print_json_report
from custom.networks.model_file import ModelFileError, read_model_file


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_FILE, help="model file (default: the shipped model)")
    parser.add_argument("--datalist", type=Path, help="paired datalist to score against full dose")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-slices", type=int, help="evenly spaced subset of the split")
    parser.add_argument("--tile-sizes", type=int, nargs="*", default=[], help="also score tiled inference at these sizes")
    parser.add_argument("--real-low-dose", type=Path, action="append", default=[], help="real low-dose series (repeat)")
    parser.add_argument("--real-slices", type=int, default=16, help="evenly spaced slices per real series")
    parser.add_argument(
        "--strengths",
        nargs="*",
        default=[],
        help="also score whole slices at these denoising strengths in [0, 1), or auto (each slice's from its measured "
        "noise, with the model file's ramp; inference.json --strength)",
    )
    parser.add_argument(
        "--context-sizes",
        type=int,
        nargs="*",
        default=[],
        help="also score the central 128 px of each paired slice denoised within centred crops of these sizes",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--self-ensemble",
        type=int,
        default=1,
        choices=SELF_ENSEMBLE_SIZES,
        help=f"average over this many flipped views of each slice (default 1: the network alone; inference.json: "
        f"{INFERENCE_SELF_ENSEMBLE})",
    )
    parser.add_argument("--device", default="cpu", help="where the network runs (float32): cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.datalist is None and not args.real_low_dose:
        parser.error("give --datalist and/or --real-low-dose")
    if any(size < DEFAULT_REGION for size in args.context_sizes):
        parser.error(f"--context-sizes must be at least the {DEFAULT_REGION}-pixel region they surround")
    try:
        args.strengths = [check_strength(strength) for strength in args.strengths]
    except ValueError as error:
        parser.error(str(error))
    for path in [*([args.datalist] if args.datalist else []), *args.real_low_dose]:
        if not path.exists():
            parser.error(f"{path} does not exist")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = read_model_file(args.model)
        denoisers = load_denoisers(model, args.tile_sizes, args.device, args.self_ensemble)
        ramp = NoiseStrengthRamp(*model.noise_strength_ramp_hu)
    except ModelFileError as error:
        print(f"score_model: {error}", file=sys.stderr)
        return 2
    report: dict = {"model": str(args.model), "self_ensemble": args.self_ensemble, "threads": torch.get_num_threads()}
    if args.datalist:
        report["paired"] = score_pairs(
            denoisers, args.datalist, args.split, args.max_slices, args.strengths, args.context_sizes, ramp
        )
    report["real_low_dose"] = [
        score_real_series(denoisers, series, args.real_slices, args.strengths, ramp) for series in args.real_low_dose
    ]
    print_json_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
