"""Export the bundle's generator to ONNX and check it against PyTorch with ONNX Runtime.

    python scripts/export_onnx.py --ckpt_file bundle/models/model.pt --output bundle/models/model.onnx

The network is built from the bundle config's `network_def` (as `monai.bundle ckpt_export` does), loaded with the
trained weights, traced with the TorchScript-based ONNX exporter, and saved with dynamic batch, height and width.
Height and width must be multiples of 32 (the encoder's stride): the generator pads other sizes inside Python,
which a trace cannot keep, so an ONNX user pads (replicate) to a multiple of 32 and crops back. The input is HU
mapped from [hu_min, hu_max] to [0, 1] and clipped, the output is on the same scale; both facts are stored in the
model's metadata. The script prints JSON: the largest absolute difference to eager PyTorch on each checked input
shape and, with --benchmark_size, the median ONNX Runtime CPU latency; it exits with status 1 when a difference
exceeds --tolerance.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime
import torch
from monai.bundle import ConfigParser
from torch import nn
from tqdm import tqdm

from custom.conventions import INFERENCE_CONFIG, MODEL_FILE
from custom.io.atomic_output import atomic_output

DEFAULT_CONFIG = INFERENCE_CONFIG
DEFAULT_CKPT = MODEL_FILE
DEFAULT_OUTPUT = MODEL_FILE.with_suffix(".onnx")
INPUT_NAME, OUTPUT_NAME = "image", "pred"
DYNAMIC_AXES = {name: {0: "batch", 2: "height", 3: "width"} for name in (INPUT_NAME, OUTPUT_NAME)}
TRACE_SHAPE = (2, 1, 64, 64)


def build_generator(config_file: Path, ckpt_file: Path | None, overrides: dict) -> tuple[nn.Module, ConfigParser]:
    """`network_def` of the bundle config in eval mode, with the weights of `ckpt_file` (None: as initialised)."""
    parser = ConfigParser()
    parser.read_config(config_file)
    parser.update(overrides)
    network = parser.get_parsed_content("network_def").eval()
    if ckpt_file is not None:
        try:
            state = torch.load(ckpt_file, map_location="cpu", weights_only=True)
            network.load_state_dict(state)
        except (OSError, RuntimeError) as error:
            raise RuntimeError(
                f"cannot load the generator weights '{ckpt_file}' into network_def of '{config_file}' "
                f"(is --backbone the one it was trained with?): {error}"
            ) from error
    return network, parser


def export_onnx(network: nn.Module, output: Path, opset: int, metadata: dict[str, str]) -> None:
    """Trace `network` to ONNX with dynamic batch/height/width and write it atomically with `metadata`."""
    with atomic_output(output) as temporary:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(
                network,
                (torch.rand(TRACE_SHAPE),),
                temporary,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=DYNAMIC_AXES,
                opset_version=opset,
                dynamo=False,
            )
        model = onnx.load(temporary)
        onnx.helper.set_model_props(model, metadata)
        onnx.checker.check_model(model)
        onnx.save(model, temporary)


def median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `run` in milliseconds, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def compare_with_eager(
    network: nn.Module, session: onnxruntime.InferenceSession, shapes: Sequence[tuple[int, ...]], seed: int
) -> list[dict]:
    """Largest absolute difference between ONNX Runtime and eager PyTorch on random inputs of each shape."""
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in tqdm(shapes, desc="ONNX Runtime vs PyTorch", unit="shape"):
        image = torch.rand(shape, generator=generator)
        with torch.no_grad():
            expected = network(image).numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})[0]
        if actual.shape != expected.shape:
            raise RuntimeError(f"ONNX output shape {actual.shape} differs from PyTorch {expected.shape} for {shape}")
        results.append({"input_shape": list(shape), "max_abs_diff": float(np.abs(actual - expected).max())})
    return results


def export_and_check(args: argparse.Namespace) -> dict[str, Any]:
    """Build the generator from the bundle config, export it, and compare ONNX Runtime with eager PyTorch."""

    benchmark_shape = (1, 1, args.benchmark_size, args.benchmark_size) if args.benchmark_size else None
    shapes = [*args.check_shapes, *([benchmark_shape] if benchmark_shape else [])]
    overrides = {"network_def#backbone": args.backbone} if args.backbone else {}
    network, config = build_generator(args.config_file, None if args.random_init else args.ckpt_file, overrides)
    # a plain int attribute of the generator; mypy sees nn.Module.__getattr__, typed Tensor | Module
    size_multiple = int(cast(int, network.size_multiple))
    bad = [shape for shape in shapes if shape[2] % size_multiple or shape[3] % size_multiple]
    if bad:
        raise ValueError(f"height and width must be multiples of {size_multiple} for the ONNX model, got {bad}")

    hu_min, hu_max = (config.get_parsed_content(key) for key in ("hu_min", "hu_max"))
    metadata = {
        "size_multiple": str(size_multiple),
        "input": f"{INPUT_NAME}: (batch, 1, height, width) float32, HU clipped to [{hu_min}, {hu_max}] -> [0, 1]",
        "output": f"{OUTPUT_NAME}: same shape and scale; HU = {hu_min} + {OUTPUT_NAME} * ({hu_max} - ({hu_min}))",
        "padding": f"pad height and width to multiples of {size_multiple} (replicate) and crop the output back",
        "backbone": str(config.get_parsed_content("network_def#backbone")),
    }
    export_onnx(network, args.output, args.opset, metadata)
    session = onnxruntime.InferenceSession(str(args.output), providers=["CPUExecutionProvider"])
    checks = compare_with_eager(network, session, args.check_shapes, args.seed)
    largest = max(check["max_abs_diff"] for check in checks)
    report = {
        "onnx_file": str(args.output),
        "backbone": metadata["backbone"],
        "opset": args.opset,
        "dynamic_axes": DYNAMIC_AXES[INPUT_NAME],
        "size_multiple": size_multiple,
        "checks": checks,
        "max_abs_diff": largest,
        "tolerance": args.tolerance,
        "passed": largest <= args.tolerance,
    }
    if benchmark_shape is not None:  # set exactly when args.benchmark_size is
        image = torch.rand(benchmark_shape)
        with torch.no_grad():
            report["benchmark"] = {
                "input_shape": list(benchmark_shape),
                "repeats": args.benchmark_repeats,
                "onnxruntime_cpu_ms": median_ms(
                    lambda: session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()}), args.benchmark_repeats
                ),
                "pytorch_cpu_ms": median_ms(lambda: network(image), args.benchmark_repeats),
                "threads": torch.get_num_threads(),
            }
    return report
