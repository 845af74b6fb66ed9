"""Export the bundle's generator to ONNX and check it against PyTorch with ONNX Runtime.

    python scripts/export_onnx.py --ckpt_file bundle/models/model.pt --output bundle/models/model.onnx

The network is built from the model file's record (custom.networks.model_file) with its weights, traced with the TorchScript-based ONNX exporter, and saved with dynamic batch, height and width.
Any height and width work (the graph pads to multiples of 32 and crops back). The input is HU
mapped from [hu_min, hu_max] to [0, 1] and clipped, the output is on the same scale; both facts are stored in the
model's metadata. The script prints JSON: the largest absolute difference to eager PyTorch on each checked input
shape and, with --benchmark_size, the median ONNX Runtime CPU latency; it exits with status 1 when a difference
exceeds --tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from custom.deploy.onnx_export import DEFAULT_CKPT, DEFAULT_OPSET, DEFAULT_OUTPUT, export_and_check


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'BxHxW' or 'HxW' (batch 1) to an NCHW shape."""
    try:
        numbers = [int(part) for part in text.lower().split("x")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"shape '{text}' is not BxHxW or HxW") from error
    if len(numbers) not in (2, 3) or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"shape '{text}' is not BxHxW or HxW with positive sizes")
    batch, height, width = numbers if len(numbers) == 3 else (1, *numbers)
    return batch, 1, height, width


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ckpt_file",
        type=Path,
        default=DEFAULT_CKPT,
        help="model file (default: the shipped model); its record builds the network",
    )
    parser.add_argument(
        "--random_init",
        action="store_true",
        help="skip --ckpt_file and export the initialised network, which is the identity: for latency only",
    )
    parser.add_argument("--backbone", help="backbone of a bare state_dict without record, or of --random_init")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument(
        "--check_shapes",
        type=parse_shape,
        nargs="+",
        default=[parse_shape("512x512"), parse_shape("500x333"), parse_shape("2x250x170")],
        help="input shapes BxHxW (or HxW) checked against PyTorch (any H and W)",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed absolute difference")
    parser.add_argument("--benchmark_size", type=int, help="also time ONNX Runtime on a 1x1xSxS input on CPU")
    parser.add_argument("--benchmark_repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        report = export_and_check(args)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
