"""Inference and training speed of our generator against RED-CNN, side by side in one run; prints JSON.

Inference: 512x512 slices (batch 1 latency, and throughput at the best of a few batch sizes) for every model in
every runtime variant: eager fp32, channels_last, autocast (bfloat16 on CPU, float16 on CUDA, on top of
channels_last), torch.compile, TorchScript (scripted, frozen, optimised for inference) and ONNX Runtime on the CPU.
Each variant also reports its largest deviation from eager fp32 in HU, so a faster variant that changes the
image shows it. GFLOPs per slice come from `torch.utils.flop_counter.FlopCounterMode` on the meta device; peak
memory is CUDA `max_memory_allocated`, or on CPU the process's peak resident set (VmHWM, reset before each
measurement), both also given as the increase over the memory in use before the calls.

Training: patches/s of one full WGAN-GP iteration (n_critic critic steps with gradient penalty, then one
generator step with adversarial + L1 + perceptual loss) through the bundle's own `WGANGPTrainer`, with the
hyperparameters read from `bundle/configs/train.json` (paper: batch 128 of 64x64 patches, efficientnetv2_m).

Weights are random (no downloads); the generator's zero-initialised noise head is re-initialised so its output
depends on the whole network and the deviation check means something. Speed does not depend on weight values.

Reduced CPU budget (the defaults on a CPU): one warm call then timed calls for at least 4 s (at least three);
batch sizes 1, 2, 4, and a model's batch search stops once a single call takes over 8 s (RED-CNN at 512x512
on 2 cores stays at batch 1); torch.compile runs in a child process at batch 1 only, and is reported as skipped
if compiling and timing take over 240 s; training: one warm and one timed iteration. On CUDA: 3 warm calls, at
least 10 timed calls and 2 s, batch sizes up to 32, every variant at every batch size; training: 2 warm and 5
timed iterations. The 1-minute load average at start and end is recorded: other processes slow a shared CPU.

    python scripts/benchmark_speed.py                     # full run (device auto)
    python scripts/benchmark_speed.py --quick             # 64x64, small models, no torch.compile: a smoke run
    python scripts/benchmark_speed.py --self-ensemble 2   # ours as inference.json runs it: two views per slice
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from custom.conventions import INFERENCE_SELF_ENSEMBLE
from custom.evaluation.speed_benchmark import MODELS, VARIANTS, run
from custom.inference.self_ensemble import SELF_ENSEMBLE_SIZES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
