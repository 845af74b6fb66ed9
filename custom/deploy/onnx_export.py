"""Export the bundle's generator to ONNX and check it against PyTorch with ONNX Runtime.

    python scripts/export_onnx.py --ckpt_file bundle/models/model.pt --output bundle/models/model.onnx

The network is built from the model file's record (custom.networks.model_file) with its weights, traced with the TorchScript-based ONNX exporter, and saved with dynamic batch, height and width.
Any height and width work: the generator replicate-pads to multiples of 32 and crops back with operations on
the input's shape, which the trace records, so the graph does the same for every size. The input is HU
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
from torch import nn
from tqdm import tqdm

from custom.conventions import MODEL_HU_WINDOW, MODELS_DIR, SHIPPED_MODEL_FILE
from custom.io.atomic_output import atomic_output
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.model_file import build_generator as model_file_generator
from custom.networks.model_file import load_weights, read_model_file

DEFAULT_CKPT = SHIPPED_MODEL_FILE
DEFAULT_OUTPUT = MODELS_DIR / "model.onnx"
DEFAULT_BACKBONE = "efficientnetv2_m"
INPUT_NAME, OUTPUT_NAME = "image", "pred"
DYNAMIC_AXES = {name: {0: "batch", 2: "height", 3: "width"} for name in (INPUT_NAME, OUTPUT_NAME)}
DEFAULT_OPSET = 18
TRACE_SHAPE = (2, 1, 72, 88)  # not multiples of 32: the trace goes through the padding


def build_generator(ckpt_file: Path | None, backbone: str | None) -> tuple[nn.Module, tuple[float, float]]:
    """The generator of `ckpt_file` (built from its record) in eval mode, and the HU window of its inputs.

    None gives the initialised network (`backbone`, the identity) with the bundle's HU window.
    """
    if ckpt_file is None:
        return EfficientNetV2Denoiser(backbone or DEFAULT_BACKBONE, pretrained=False).eval(), MODEL_HU_WINDOW
    model = read_model_file(ckpt_file)
    return load_weights(model_file_generator(model, backbone=backbone), model).eval(), model.hu_window


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
    """Build the generator from its model file, export it, and compare ONNX Runtime with eager PyTorch."""

    benchmark_shape = (1, 1, args.benchmark_size, args.benchmark_size) if args.benchmark_size else None
    network, (hu_min, hu_max) = build_generator(None if args.random_init else args.ckpt_file, args.backbone)
    # a plain int attribute of the generator; mypy sees nn.Module.__getattr__, typed Tensor | Module
    size_multiple = int(cast(int, network.size_multiple))

    metadata = {
        "size_multiple": str(size_multiple),
        "input": f"{INPUT_NAME}: (batch, 1, height, width) float32, HU clipped to [{hu_min}, {hu_max}] -> [0, 1]",
        "output": f"{OUTPUT_NAME}: same shape and scale; HU = {hu_min} + {OUTPUT_NAME} * ({hu_max} - ({hu_min}))",
        "padding": f"inside the graph: any height and width, replicate-padded to multiples of {size_multiple}, output cropped back",
        "backbone": str(cast(dict, network.settings)["backbone"]),
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
