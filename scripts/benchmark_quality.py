"""Train and score every denoiser on the same data, split and budget, through the bundle's own train.json.

Methods (`--methods`, default all):
  ours          EfficientNetV2 generator, WGAN-GP, adversarial + L1 + perceptual (train.json as shipped)
  ours_no_adv   the same without the critic (lambda_adv 0, n_critic 0): L1 + perceptual
  ours_l1       L1 only (also lambda_perceptual 0)
  red_cnn       RED-CNN (custom.networks.red_cnn.REDCNN) with its original MSE loss, same trainer, data and budget
  bm3d, nlm, tv classical denoisers (BM3D, scikit-image non-local means and total variation), no training;
                their strength is chosen on the validation split from a small grid, never on the test split
  ldct          the low-dose input itself (always scored: it is the reference of the deltas)

Learned methods run `monai.bundle.ConfigWorkflow` on bundle/configs/train.json with overrides only (the users'
code path), one run per method and seed; the generator the bundle saves as best on validation PSNR
(`models/model.pt`) is then scored on the test split. Every method is scored the same way: the bundle's
`validate#preprocessing` loads a pair, the method denoises the normalised low-dose slice, the bundle's
`validate#postprocessing` maps it back to HU and windows it, and MONAI's PSNR / SSIM / RMSE score each test slice
in [-160, 240] HU (data range 400, the literature's convention) and [-1000, 1000] HU (data range 2000).
Results are mean ± std over test slices (pooled over seeds) and, with `--seeds` > 1, the std of the per-seed means.

Every run (learned, classical, LDCT) is an MLflow run in one experiment (`--experiment`) of one SQLite store
(`--tracking-uri`, default <output>/mlruns.db), so `mlflow ui --backend-store-uri <uri>` or
`scripts/compare_runs.py` compares them. A Markdown table goes to stdout and <output>/quality.md, the full record
(per-slice scores included) to <output>/quality.json, and the learned runs' validation PSNR/SSIM over training
to <output>/validation_curves.png.

Data: `--datalist` takes any paired datalist (e.g. real Mayo pairs from scripts/prepare_mayo.py). Without it, the
developers' real CT slices (`--data-dir`, default ../shared/data/ct) get simulated low dose
(custom.simulation.low_dose) and are split by series, so no patient is in two splits:
  test        totalsegmentator_abdomen_siemens (20 Siemens abdominal slices, 3 mm: the Mayo-like task), quarter dose
  validation  dcmqi_ct3slice_GE_liver (3 GE abdominal slices)
  training    dcm_qa_ct_GE_head (28 slices) and dcm_qa_ct_Philips_headphantom (4 phantom slices)
The NIfTI volume totalsegmentator_example_ct_3mm.nii.gz is left out: it is TotalSegmentator's example subject,
very likely the same patient as the test series. Training and validation series are simulated at the dose that gives
them the test series' quarter-dose noise (SERIES_DOSE_FRACTIONS; the report prints each split's noise level).

Example (the reduced CPU budget documented in the model card, about 50 minutes on 2 cores):
    python scripts/benchmark_quality.py --iterations 120 --val-every 20 --batch-size 16 --patch-size 64 \\
        --learning-rate 1e-4 --seeds 2 --max-test-slices 10
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from custom.evaluation.quality_benchmark import ALL_METHODS, DEFAULT_DATA_DIR, DEFAULT_EXPERIMENT, DEFAULT_OUTPUT, run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--datalist", type=Path, help="paired datalist JSON (default: simulated pairs of --data-dir)")
    data.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"real CT folder (default {DEFAULT_DATA_DIR})")
    data.add_argument("--max-test-slices", type=int, help="score an evenly spaced subset of the test split")
    budget = parser.add_argument_group("budget (the same for every learned method)")
    budget.add_argument("--iterations", type=int, default=400, help="generator steps per run (default 400)")
    budget.add_argument("--val-every", type=int, help="validate every N iterations (default iterations/4)")
    budget.add_argument("--train-seconds", type=float, help="also stop at the first validation after this wall-clock time")
    budget.add_argument("--batch-size", type=int, default=16, help="patches per generator step (default 16)")
    budget.add_argument("--patch-size", type=int, default=64, help="patch side in pixels (default 64, as the paper)")
    budget.add_argument("--backbone", default="efficientnetv2_m", help="generator backbone (default efficientnetv2_m)")
    budget.add_argument("--learning-rate", type=float, help="Adam learning rate (default: train.json's)")
    budget.add_argument("--adversarial-warmup", type=int,
                        help="generator iterations before the critic starts (default: train.json's)")
    budget.add_argument("--seeds", type=int, default=1, help="training seeds per learned method (the paper: 10)")
    budget.add_argument("--perceptual-pretrained", default="false",
                        help="false (random VGG19 features, offline), true (torchvision download) or a weights file")
    budget.add_argument("--num-workers", type=int, default=0, help="data loader workers (default 0)")
    budget.add_argument("--device", help="torch device for training and scoring (default: train.json's, CUDA if any)")
    parser.add_argument("--methods", nargs="+", choices=ALL_METHODS, default=list(ALL_METHODS),
                        help="methods to run (ldct is always scored)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run: tf_efficientnetv2_b0, 1 iteration, batch 2, 32 px patches, small grids")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    parser.add_argument("--tracking-uri", help="MLflow store (default sqlite:///<output-dir>/mlruns.db)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone, args.iterations, args.batch_size, args.patch_size = "tf_efficientnetv2_b0", 1, 2, 32
    args.val_every = args.val_every or max(1, args.iterations // 4)
    if min(args.iterations, args.val_every, args.batch_size, args.patch_size, args.seeds) < 1:
        parser.error("--iterations, --val-every, --batch-size, --patch-size and --seeds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
