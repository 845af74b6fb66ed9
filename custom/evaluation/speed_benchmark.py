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
hyperparameters read from `bundle/configs/train.json` (paper: batch 128 of 64x64 patches, efficientnetv2_m), in
fp32 and with autocast, each with NCHW and channels-last networks (train.json's default:
`custom.conventions.CHANNELS_LAST`).

With `self_ensemble` above 1 our models run as the mean over that many flipped views of each slice
(`custom.inference.self_ensemble`, inference.json's default: `custom.conventions.INFERENCE_SELF_ENSEMBLE`), every
variant alike, and the deviation is measured against eager fp32 averaged over the same views; RED-CNN runs alone.

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
import contextlib
import copy
import functools
import itertools
import json
import math
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from custom.conventions import MODEL_HU_WINDOW, TRAIN_CONFIG
from custom.inference.self_ensemble import check_self_ensemble, self_ensemble
from custom.io.atomic_output import write_text_atomically
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.memory_format import use_channels_last
from custom.networks.model_file import load_weights, read_model_file
from custom.networks.red_cnn import REDCNN

MODELS: dict[str, Callable[[], nn.Module]] = {
    "ours_efficientnetv2_m": partial(EfficientNetV2Denoiser, "efficientnetv2_m"),
    "ours_tf_efficientnetv2_b0": partial(EfficientNetV2Denoiser, "tf_efficientnetv2_b0"),
    "red_cnn": REDCNN,
}
REFERENCE_MODEL = "red_cnn"
VARIANTS = ("eager_fp32", "channels_last", "autocast", "compile", "torchscript", "onnxruntime_cpu")
QUICK_MODELS = ("ours_tf_efficientnetv2_b0", "red_cnn")
MIB = 2**20


@dataclass(frozen=True)
class Settings:
    """How much to measure; `for_device` gives the documented defaults."""

    device: str
    image_size: int
    batch_sizes: tuple[int, ...]
    warmup: int
    min_repeats: int
    min_seconds: float
    max_repeats: int
    max_call_seconds: float
    compile_batch_sizes: tuple[int, ...]
    compile_timeout: float
    skip_compile_reason: str = ""
    seed: int = 0
    weights: tuple[tuple[str, str], ...] = ()  # (model name, state_dict file) pairs; random weights otherwise
    self_ensemble: int = 1  # flipped views averaged per slice by our models (RED-CNN: always 1)

    @classmethod
    def for_device(cls, device: str, quick: bool) -> Settings:
        if quick:
            return cls(
                device,
                64,
                (1, 2),
                1,
                1,
                0.0,
                2,
                math.inf,
                (1,),
                0.0,
                skip_compile_reason="skipped in --quick: torch.compile takes minutes on a CPU",
            )
        if torch.device(device).type == "cuda":
            return cls(device, 512, (1, 4, 8, 16, 32), 3, 10, 2.0, 200, math.inf, (1, 4, 8, 16, 32), 600.0)
        return cls(device, 512, (1, 2, 4), 1, 3, 4.0, 10, 8.0, (1,), 240.0)


@dataclass(frozen=True)
class TrainingSettings:
    """The paper's training step (efficientnetv2_m, 128 patches of 64x64) and how often to time it."""

    backbone: str = "efficientnetv2_m"
    batch_size: int = 128
    patch_size: int = 64
    warmup_steps: int = 2
    timed_steps: int = 5
    amp_modes: tuple[bool, ...] = (False, True)
    channels_last_modes: tuple[bool, ...] = (False, True)

    @classmethod
    def for_device(cls, device: str, quick: bool) -> TrainingSettings:
        if quick:
            return cls("tf_efficientnetv2_b0", 4, 32, warmup_steps=0, timed_steps=1, amp_modes=(False,))
        return cls() if torch.device(device).type == "cuda" else cls(warmup_steps=1, timed_steps=1)


@dataclass
class Timing:
    """Seconds per call at one batch size."""

    batch_size: int
    seconds: list[float] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return 1000 * statistics.median(self.seconds)

    @property
    def slices_per_s(self) -> float:
        return self.batch_size / statistics.median(self.seconds)

    def summary(self) -> dict[str, Any]:
        return {
            "latency_ms": round(self.latency_ms, 2),
            "slices_per_s": round(self.slices_per_s, 3),
            "timed_calls": len(self.seconds),
        }


# ---------------------------------------------------------------------------------------------------------------
# memory and synchronisation helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_mib(field_name: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field_name}")


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict that holds `peak_memory_mb` and `peak_memory_increase_mb` once the block ends."""
    record: dict[str, float] = {}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / MIB
        yield record
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / MIB
    else:
        try:  # writing 5 to clear_refs resets VmHWM (Linux >= 4.0); without it the peak is the process's
            Path("/proc/self/clear_refs").write_text("5")
            before = _proc_status_mib("VmRSS")
        except OSError:
            yield record
            return
        yield record
        peak = _proc_status_mib("VmHWM")
    record.update(peak_memory_mb=round(peak, 1), peak_memory_increase_mb=round(peak - before, 1))


# ---------------------------------------------------------------------------------------------------------------
# models and runtime variants


def build_model(name: str, settings: Settings) -> nn.Module:
    """The named model in eval mode on the settings' device, with trained weights if given, else seeded random ones."""
    torch.manual_seed(settings.seed)
    model = MODELS[name]()
    weights = dict(settings.weights).get(name)
    if weights:
        load_weights(model, read_model_file(weights))
    elif isinstance(model, EfficientNetV2Denoiser):
        model.noise_head.reset_parameters()  # a zero head makes every variant output its input exactly
    return model.eval().to(settings.device)


def views_of(name: str, settings: Settings) -> int:
    """Flipped views the named model averages per slice: the settings' self-ensemble for ours, 1 for RED-CNN."""
    return 1 if name == REFERENCE_MODEL else settings.self_ensemble


def example_input(settings: Settings, batch_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(settings.seed)
    return torch.rand(batch_size, 1, settings.image_size, settings.image_size, generator=generator).to(settings.device)


def gflops_per_slice(model: nn.Module, image_size: int) -> float:
    """Forward FLOPs of one slice, counted on the meta device so no arithmetic runs."""
    meta_model = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model(torch.empty(1, 1, image_size, image_size, device="meta"))
    return counter.get_total_flops() / 1e9


def autocast_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _channels_last(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    model = use_channels_last(model)
    return model, lambda x: model(x.contiguous(memory_format=torch.channels_last))


def _onnxruntime_runner(model: nn.Module, example: torch.Tensor, folder: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    from custom.deploy.onnx_export import DEFAULT_OPSET, export_onnx

    # the model as scripts/export_onnx.py exports it (traced, dynamic batch, height and width), so the benchmark
    # times the ONNX file the project ships
    path = os.path.join(folder, "model.onnx")
    with contextlib.redirect_stdout(sys.stderr):
        export_onnx(copy.deepcopy(model).cpu().eval(), Path(path), DEFAULT_OPSET, {})
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {input_name: x.cpu().numpy()})[0])


def prepare_variant(
    model: nn.Module, variant: str, device: torch.device, example: torch.Tensor, folder: str
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """A callable that runs `model` as `variant`, and what the variant is (for the report)."""
    if variant == "eager_fp32":
        return model, {"dtype": "float32", "memory_format": "contiguous"}
    if variant == "channels_last":
        return _channels_last(model)[1], {"dtype": "float32", "memory_format": "channels_last"}
    if variant == "autocast":
        dtype = autocast_dtype(device)
        run_channels_last = _channels_last(model)[1]

        def run_autocast(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=dtype):
                return run_channels_last(x).float()

        return run_autocast, {"dtype": str(dtype).removeprefix("torch."), "memory_format": "channels_last"}
    if variant == "compile":
        compiled = torch.compile(_channels_last(model)[0])
        return (lambda x: compiled(x.contiguous(memory_format=torch.channels_last))), {
            "dtype": "float32",
            "memory_format": "channels_last",
            "mode": "default (inductor)",
        }
    if variant == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the bundle's export
            scripted = torch.jit.optimize_for_inference(torch.jit.script(model))
        return scripted, {"dtype": "float32", "memory_format": "contiguous", "mode": "script + freeze + optimize_for_inference"}
    if variant == "onnxruntime_cpu":
        return _onnxruntime_runner(model, example, folder), {
            "dtype": "float32",
            "provider": "CPUExecutionProvider",
            "threads": torch.get_num_threads(),
        }
    raise ValueError(f"unknown variant '{variant}' (choose from {', '.join(VARIANTS)})")


# ---------------------------------------------------------------------------------------------------------------
# measurement


def time_calls(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, warmup: int, settings: Settings) -> Timing:
    """`warmup` untimed calls, then timed calls until both `min_repeats` and `min_seconds` are reached."""
    device = torch.device(settings.device)
    timing = Timing(x.shape[0])
    for _ in range(warmup):
        run(x)
    synchronize(device)
    while len(timing.seconds) < settings.min_repeats or (
        sum(timing.seconds) < settings.min_seconds and len(timing.seconds) < settings.max_repeats
    ):
        start = time.perf_counter()
        run(x)
        synchronize(device)
        timing.seconds.append(time.perf_counter() - start)
    return timing


def setup_variant(
    model: nn.Module,
    variant: str,
    example: torch.Tensor,
    folder: str,
    reference: torch.Tensor | None,
    result: dict[str, Any],
    views: int = 1,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build the variant's runner (averaged over `views` flipped views) and make its first call; record setup time
    and deviation from `reference`.

    The deviation is given in HU and relative to the largest change eager fp32 makes to its input, because
    random weights can give outputs of any scale.
    """
    device = example.device
    start = time.perf_counter()
    run, description = prepare_variant(model, variant, device, example, folder)
    run = partial(self_ensemble, run, size=views)
    output = run(example)
    synchronize(device)
    result.update(description, setup_s=round(time.perf_counter() - start, 2))
    if reference is not None:
        deviation = (output.float().to(reference.device) - reference).abs().max().item()
        change = (reference - example.to(reference.device)).abs().max().item()
        result["max_abs_diff_hu_vs_eager_fp32"] = round(deviation * bundle_hu_span(), 4)
        result["relative_diff_vs_eager_fp32"] = float(f"{deviation / change:.3g}") if change else None
    return run


def measure_variant(
    model_name: str,
    variant: str,
    settings: Settings,
    reference: torch.Tensor | None,
    model: nn.Module | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Setup time, deviation from `reference`, peak memory and timings of one model in one variant.

    The setup call (build + first batch-1 call: compiling, tracing, exporting) counts as the first warm-up call
    (the batch sizes start at 1).
    `report`, when given, receives the partial result after every batch size (the compile child's lifeline).
    """
    device = torch.device(settings.device)
    model = build_model(model_name, settings) if model is None else copy.deepcopy(model)
    batch_sizes = settings.compile_batch_sizes if variant == "compile" else settings.batch_sizes
    result: dict[str, Any] = {"status": "ok"}
    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder:
        example = example_input(settings, 1)
        per_batch: dict[str, dict[str, Any]] = {}
        for batch_size in batch_sizes:
            x = example if batch_size == 1 else example_input(settings, batch_size)
            try:
                with peak_memory(device) as memory:  # at batch 1 the setup's memory (exports, compilers) counts
                    if batch_size == batch_sizes[0]:
                        run = setup_variant(model, variant, example, folder, reference, result, views_of(model_name, settings))
                    timing = time_calls(run, x, settings.warmup - 1 if batch_size == 1 else settings.warmup, settings)
            except torch.OutOfMemoryError:
                result["batch_search_stopped"] = f"out of memory at batch {batch_size}"
                torch.cuda.empty_cache()
                break
            per_batch[str(batch_size)] = {**timing.summary(), **memory}
            result["per_batch"] = per_batch
            if report is not None:
                report(result)
            if max(timing.seconds) > settings.max_call_seconds and batch_size != batch_sizes[-1]:
                result["batch_search_stopped"] = (
                    f"one call at batch {batch_size} took {max(timing.seconds):.1f} s > {settings.max_call_seconds} s"
                )
                break
    return summarise_batches(result)


def summarise_batches(result: dict[str, Any]) -> dict[str, Any]:
    """Add batch-1 latency and the best batch's throughput to a variant's per-batch timings."""
    per_batch = result.get("per_batch", {})
    if not per_batch:
        return result
    best_batch, best = max(per_batch.items(), key=lambda item: item[1]["slices_per_s"])
    first = per_batch.get("1", next(iter(per_batch.values())))
    return {
        **result,
        "batch1_latency_ms": first["latency_ms"],
        "batch1_slices_per_s": first["slices_per_s"],
        "best_batch": int(best_batch),
        "best_batch_slices_per_s": best["slices_per_s"],
        "best_batch_latency_ms": best["latency_ms"],
        "peak_memory_mb": first.get("peak_memory_mb"),
        "peak_memory_increase_mb": first.get("peak_memory_increase_mb"),
    }


def _compile_child(model_name: str, settings: Settings, reference: torch.Tensor | None, threads: int, channel: Any) -> None:
    """Entry point of the torch.compile child process: stream partial results, then the final one."""
    torch.set_num_threads(threads)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            result = measure_variant(
                model_name, "compile", settings, reference, report=lambda partial_result: channel.put(("partial", partial_result))
            )
            channel.put(("done", result))
        except Exception as error:
            channel.put(("failed", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))


def measure_compile(model_name: str, settings: Settings, reference: torch.Tensor | None) -> dict[str, Any]:
    """torch.compile in a child process, so a compiler that takes too long can be stopped and reported."""
    if settings.skip_compile_reason:
        return {"status": "skipped", "reason": settings.skip_compile_reason}
    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    child = context.Process(
        target=_compile_child, args=(model_name, settings, reference, torch.get_num_threads(), channel), daemon=True
    )
    child.start()
    deadline = time.monotonic() + settings.compile_timeout
    latest: dict[str, Any] | None = None
    try:
        while True:
            try:
                kind, payload = channel.get(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    reason = f"torch.compile did not finish within {settings.compile_timeout:g} s"
                    if latest is None:
                        return {"status": "skipped", "reason": reason}
                    return summarise_batches({**latest, "batch_search_stopped": reason})
                if not child.is_alive() and channel.empty():
                    return {"status": "failed", "reason": f"compile process exited with code {child.exitcode}"}
                continue
            if kind == "partial":
                latest = payload
            elif kind == "done":
                return payload
            else:
                return {"status": "failed", "reason": payload}
    finally:
        if child.is_alive():
            child.terminate()
        child.join(timeout=10)


def benchmark_model(name: str, variants: Sequence[str], settings: Settings, progress: tqdm) -> dict[str, Any]:
    model = build_model(name, settings)
    record: dict[str, Any] = {
        "weights": dict(settings.weights).get(name, "random (seeded)"),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "gflops_per_slice": round(views_of(name, settings) * gflops_per_slice(model, settings.image_size), 2),
        "self_ensemble": views_of(name, settings),
        "variants": {},
    }
    with torch.inference_mode():
        reference = self_ensemble(model, example_input(settings, 1), views_of(name, settings)).float()
    for variant in variants:
        progress.set_postfix_str(f"{name} {variant}")
        try:
            if variant == "compile":
                outcome = measure_compile(name, settings, reference.cpu())
            else:
                outcome = measure_variant(name, variant, settings, reference, model=model)
        except Exception as error:
            outcome = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
        record["variants"][variant] = outcome
        progress.update()
    return record


# ---------------------------------------------------------------------------------------------------------------
# training throughput


@functools.cache
def load_train_hyperparameters() -> dict[str, Any]:
    """The loss weights, critic settings and HU range of the bundle's train.json, so the benchmark trains as users do."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(TRAIN_CONFIG))
    names = (
        "n_critic",
        "lambda_gp",
        "lambda_adv",
        "lambda_l1",
        "lambda_mse",
        "lambda_perceptual",
        "perceptual_network",
        "critic_channels",
        "learning_rate",
    )
    return {name: parser.get(name) for name in names}


def bundle_hu_span() -> float:
    """HU per unit of the networks' normalised intensities (the width of the model's HU window)."""
    return MODEL_HU_WINDOW[1] - MODEL_HU_WINDOW[0]


def measure_training(
    settings: TrainingSettings, device: torch.device, amp: bool, channels_last: bool, seed: int
) -> dict[str, Any]:
    """Patches/s of full WGAN-GP iterations through the bundle's `WGANGPTrainer` on random patches."""
    from ignite.engine import Events

    from custom.engines.wgan_gp_trainer import WGANGPTrainer
    from custom.losses.perceptual import PerceptualLoss
    from custom.losses.wgan_gp import GeneratorLoss
    from custom.networks.critic import WGANCritic

    hyper = load_train_hyperparameters()
    torch.manual_seed(seed)
    generator = use_channels_last(EfficientNetV2Denoiser(settings.backbone).to(device), channels_last)
    critic = use_channels_last(WGANCritic(base_channels=hyper["critic_channels"]).to(device), channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random perceptual features: same cost as ImageNet ones
        perceptual = PerceptualLoss(hyper["perceptual_network"], pretrained=False).to(device)
    loss = GeneratorLoss(hyper["lambda_adv"], hyper["lambda_l1"], hyper["lambda_perceptual"], hyper["lambda_mse"], perceptual)
    shape = (settings.batch_size, 1, settings.patch_size, settings.patch_size)
    batch = {"image": torch.rand(shape), "label": torch.rand(shape)}
    steps = settings.warmup_steps + settings.timed_steps
    trainer = WGANGPTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=[batch] * steps,
        epoch_length=steps,
        generator=generator,
        critic=critic,
        g_optimizer=torch.optim.Adam(generator.parameters(), lr=hyper["learning_rate"]),
        c_optimizer=torch.optim.Adam(critic.parameters(), lr=hyper["learning_rate"]),
        g_loss_function=loss,
        n_critic=hyper["n_critic"],
        lambda_gp=hyper["lambda_gp"],
        amp=amp,
        decollate=False,
    )
    step_seconds: list[float] = []
    clock: dict[str, float] = {}

    @trainer.on(Events.ITERATION_STARTED)
    def _start(_: Any) -> None:
        synchronize(device)
        clock["start"] = time.perf_counter()

    @trainer.on(Events.ITERATION_COMPLETED)
    def _stop(engine: Any) -> None:
        synchronize(device)
        if engine.state.iteration > settings.warmup_steps:
            step_seconds.append(time.perf_counter() - clock["start"])

    with peak_memory(device) as memory:
        trainer.run()
    seconds = statistics.median(step_seconds)
    return {
        "status": "ok",
        "backbone": settings.backbone,
        "batch_size": settings.batch_size,
        "patch_size": settings.patch_size,
        "amp": amp,
        "amp_dtype": str(autocast_dtype(device)).removeprefix("torch.") if amp else None,
        "channels_last": channels_last,
        "n_critic": hyper["n_critic"],
        "lambda_gp": hyper["lambda_gp"],
        "lambda_adv": hyper["lambda_adv"],
        "lambda_l1": hyper["lambda_l1"],
        "lambda_perceptual": hyper["lambda_perceptual"],
        "perceptual_network": hyper["perceptual_network"],
        "timed_steps": len(step_seconds),
        "seconds_per_iteration": round(seconds, 3),
        "patches_per_s": round(settings.batch_size / seconds, 2),
        **memory,
    }


# ---------------------------------------------------------------------------------------------------------------
# report


def describe_hardware(device: torch.device) -> dict[str, Any]:
    import onnxruntime

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    return {
        "device": str(device),
        "name": name,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def speedups(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each of our models' throughput over RED-CNN's: per variant and best against best."""
    if REFERENCE_MODEL not in models:
        return {}

    def rate(variant_result: dict[str, Any]) -> float | None:
        return variant_result.get("best_batch_slices_per_s") if variant_result.get("status") == "ok" else None

    def best(variants: dict[str, dict[str, Any]]) -> tuple[str, float] | None:
        rated = [(name, value) for name, result in variants.items() if (value := rate(result))]
        return max(rated, key=lambda item: item[1]) if rated else None

    reference = models[REFERENCE_MODEL]["variants"]
    ratios: dict[str, Any] = {}
    for name, record in models.items():
        if name == REFERENCE_MODEL:
            continue
        per_variant = {
            variant: round(ours_rate / reference_rate, 2)
            for variant, result in record["variants"].items()
            if (ours_rate := rate(result)) and variant in reference and (reference_rate := rate(reference[variant]))
        }
        ours_best, reference_best = best(record["variants"]), best(reference)
        ratios[name] = {"per_variant": per_variant}
        if ours_best and reference_best:
            ratios[name]["best_vs_best"] = {
                "ratio": round(ours_best[1] / reference_best[1], 2),
                "ours_variant": ours_best[0],
                "red_cnn_variant": reference_best[0],
            }
    return ratios


def memory_format_name(channels_last: bool | None) -> str:
    return "channels_last" if channels_last else "NCHW"


def markdown_tables(result: dict[str, Any]) -> str:
    """The inference table (one row per model and variant) and the training table."""
    size = result["settings"]["image_size"]
    lines = [
        f"| model | variant | setup s | batch-1 latency ms | batch-1 slices/s | best batch | best slices/s | "
        f"GFLOPs/{size}² slice | peak MiB (increase) | max Δ vs fp32: HU (relative) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name, record in result["models"].items():
        views = record.get("self_ensemble", 1)
        name = f"{model_name} ({views} views)" if views > 1 else model_name
        for variant, outcome in record["variants"].items():
            if outcome.get("status") != "ok" or "batch1_latency_ms" not in outcome:
                lines.append(f"| {name} | {variant} | {outcome.get('status')}: {outcome.get('reason', '')} | | | | | | | |")
                continue
            peak = outcome.get("peak_memory_mb")
            memory = f"{peak:.0f} ({outcome['peak_memory_increase_mb']:+.0f})" if peak is not None else "n/a"
            lines.append(
                f"| {name} | {variant} | {outcome['setup_s']:.1f} | {outcome['batch1_latency_ms']:.1f} | "
                f"{outcome['batch1_slices_per_s']:.3f} | {outcome['best_batch']} | "
                f"{outcome['best_batch_slices_per_s']:.3f} | {record['gflops_per_slice']:.1f} | {memory} | "
                f"{outcome.get('max_abs_diff_hu_vs_eager_fp32', float('nan')):.3g} "
                f"({outcome.get('relative_diff_vs_eager_fp32') or 0:.2g}) |"
            )
    if result.get("training"):
        lines += [
            "",
            "| training | amp | memory format | batch × patch | n_critic | s/iteration | patches/s | peak MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in result["training"]:
            if run.get("status") != "ok":
                lines.append(
                    f"| {run.get('backbone')} | {run.get('amp')} | {memory_format_name(run.get('channels_last'))} | "
                    f"{run.get('status')}: {run.get('reason', '')} | | | | |"
                )
                continue
            lines.append(
                f"| {run['backbone']} WGAN-GP | {run['amp_dtype'] or 'off'} | {memory_format_name(run['channels_last'])} | "
                f"{run['batch_size']} × "
                f"{run['patch_size']}² | {run['n_critic']} | {run['seconds_per_iteration']:.2f} | "
                f"{run['patches_per_s']:.1f} | {run.get('peak_memory_mb', float('nan')):.0f} |"
            )
    return "\n".join(lines) + "\n"


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = Settings.for_device(str(device), args.quick)
    weights = tuple(tuple(item.split("=", 1)) for item in args.weights or ())
    unknown = [name for name, _ in weights if name not in MODELS]
    if unknown or any(not Path(path).is_file() for _, path in weights):
        raise SystemExit(f"--weights needs MODEL=FILE with MODEL in {list(MODELS)} and an existing file, got {args.weights}")
    overrides = {
        "image_size": args.image_size,
        "seed": args.seed,
        "weights": weights,
        "batch_sizes": tuple(args.batch_sizes) if args.batch_sizes else None,
        "compile_timeout": args.compile_timeout,
        "self_ensemble": check_self_ensemble(args.self_ensemble),
    }
    settings = replace(settings, **{key: value for key, value in overrides.items() if value is not None})
    if args.compile_timeout is not None and args.quick:
        settings = replace(settings, skip_compile_reason="")
    models = args.models or (list(QUICK_MODELS) if args.quick else list(MODELS))
    training = TrainingSettings.for_device(str(device), args.quick)
    training = replace(
        training,
        **{
            k: v
            for k, v in {
                "backbone": args.train_backbone,
                "batch_size": args.train_batch_size,
                "patch_size": args.train_patch_size,
            }.items()
            if v is not None
        },
    )

    result: dict[str, Any] = {
        "hardware": describe_hardware(device),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "settings": {**asdict(settings), "quick": args.quick, "training": asdict(training)},
        "models": {},
    }
    with tqdm(total=len(models) * len(args.variants), desc="inference", file=sys.stderr) as progress:
        for name in models:
            result["models"][name] = benchmark_model(name, args.variants, settings, progress)
    result["speedup_vs_red_cnn"] = speedups(result["models"])
    result["training"] = []
    if not args.skip_training:
        modes = list(itertools.product(training.amp_modes, training.channels_last_modes))
        for amp, channels_last in tqdm(modes, desc="training", file=sys.stderr):
            try:
                result["training"].append(measure_training(training, device, amp, channels_last, settings.seed))
            except Exception as error:
                result["training"].append(
                    {
                        "status": "failed",
                        "backbone": training.backbone,
                        "amp": amp,
                        "channels_last": channels_last,
                        "reason": f"{type(error).__name__}: {error}",
                    }
                )
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    with contextlib.redirect_stdout(sys.stderr):  # exporters and compilers print; stdout carries only the JSON
        result = run_benchmark(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        write_text_atomically(args.output, text + "\n")
    if args.markdown:
        write_text_atomically(args.markdown, markdown_tables(result))
    return result
