"""Fit the noise ramp of denoising strength "auto" for a model, and write a copy of the model file that records it.

    # the shipped model on the L067 validation block at full, half, quarter and eighth dose
    python scripts/calibrate_strength.py --model bundle/models/shipped/model.pt \\
        --datalist /data/l067_zblocks/datalist.json --split validation --output /data/shipped_calibrated.pt

Every full-dose slice of the split is simulated at each --doses (the bundle's calibrated projection-domain
simulation, fixed --seed; dose 1 is the full dose itself), denoised as inference.json does (--self-ensemble views),
and blended with its input at strengths 0, 0.05, ..., 1. The ramp (strength 0 at or below one measured noise level,
1 at or above another; custom/inference/denoising_strength.py) with the best mean PSNR over all slices and doses,
[-160, 240] and [-1000, 1000] HU counted alike, is printed as JSON with, per dose, the input's, the network's and
"auto"'s PSNR. With --output, a copy of the model file records the ramp (inference.json --strength auto then
uses it; without a recorded ramp a model gets custom.conventions.NOISE_STRENGTH_RAMP_HU). Calibrate on a
validation split, never on the test split you report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import LoadImage
from tqdm import tqdm

from custom.conventions import INFERENCE_SELF_ENSEMBLE, SHIPPED_MODEL_FILE
from custom.data.datalist import load_paired_datalist
from custom.evaluation.model_scoring import load_denoisers
from custom.evaluation.strength_calibration import BlendScores, blend_scores, calibration_summary, fit_noise_ramp
from custom.evaluation.subsets import evenly_spaced
from custom.inference.self_ensemble import SELF_ENSEMBLE_SIZES
from custom.io.atomic_output import print_json_report
from custom.networks.model_file import ModelFile, ModelFileError, read_model_file, save_with_noise_ramp
from custom.simulation.low_dose import SimulateLowDose

DEFAULT_DOSES = (1.0, 0.5, 0.25, 0.125)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_FILE, help="model file (default: the shipped model)")
    parser.add_argument("--datalist", type=Path, required=True, help="paired datalist whose full-dose slices are used")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--doses", type=float, nargs="+", default=list(DEFAULT_DOSES), help="doses in (0, 1] to simulate")
    parser.add_argument("--max-slices", type=int, help="evenly spaced subset of the split")
    parser.add_argument("--self-ensemble", type=int, default=INFERENCE_SELF_ENSEMBLE, choices=SELF_ENSEMBLE_SIZES)
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated noise")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="where the network runs: cpu (default), cuda, ...")
    parser.add_argument("--output", type=Path, help="write a copy of the model file that records the fitted ramp")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if not all(0.0 < dose <= 1.0 for dose in args.doses):
        parser.error(f"--doses must lie in (0, 1], got {args.doses}")
    if not args.datalist.is_file():
        parser.error(f"{args.datalist} does not exist")
    if args.output is not None and args.output.resolve() == args.model.resolve():
        parser.error(f"--output {args.output} is the input model file: write the calibrated copy elsewhere")
    return args


def score_split(args: argparse.Namespace, model: ModelFile) -> list[BlendScores]:
    denoise = load_denoisers(model, [], args.device, args.self_ensemble)["whole"]
    entries = evenly_spaced(load_paired_datalist(args.datalist, args.split), args.max_slices)
    simulator = SimulateLowDose(seed=args.seed)
    load = LoadImage(image_only=True)
    scores = []
    with tqdm(total=len(entries) * len(args.doses), desc=f"calibrating on {args.split}", unit="slice") as progress:
        for entry in entries:
            full_dose = load(entry["label"]).squeeze()
            reference = np.asarray(full_dose, np.float32)
            for dose in args.doses:
                low_dose = np.asarray(simulator(full_dose, dose_fraction=dose), np.float32)
                scores.append(blend_scores(dose, low_dose, denoise(low_dose), reference))
                progress.update()
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = read_model_file(args.model)
        scores = score_split(args, model)
    except (ModelFileError, ValueError) as error:
        print(f"calibrate_strength: {error}", file=sys.stderr)
        return 2
    ramp, mean_psnr = fit_noise_ramp(scores)
    report = {
        "model": str(args.model),
        "datalist": str(args.datalist),
        "split": args.split,
        "self_ensemble": args.self_ensemble,
        "seed": args.seed,
        "noise_strength_ramp_hu": [ramp.zero_at_hu, ramp.full_at_hu],
        "mean_psnr_db_both_windows": mean_psnr,
        "by_dose": calibration_summary(scores, ramp),
    }
    if args.output is not None:
        report["output"] = str(save_with_noise_ramp(model, args.output, (ramp.zero_at_hu, ramp.full_at_hu)))
    print_json_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
