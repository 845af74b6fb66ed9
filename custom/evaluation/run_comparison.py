"""Compare the runs of MLflow experiments: a table of what differs and how they ended, and validation curves.

The table has one row per run: its name, status, the parameters whose values differ between runs (the ones
that explain the differences) and the final value of each metric. The plot shows validation PSNR and SSIM over
training steps; the bundle logs validation once per epoch, so steps are epochs times `epoch_length` when the
run records that parameter, and epochs otherwise. Runs with a single value (e.g. classical denoisers scored by
`scripts/benchmark_quality.py`) appear as horizontal reference lines. A resumed training logs again the steps
after its checkpoint; a step's latest value is the one drawn. Runs of other stores or experiments (a GPU
machine's store, another benchmark) join the same table and plot with `--also URI EXPERIMENT`.

    python scripts/compare_runs.py --tracking-uri sqlite:///bundle/eval/mlruns.db --experiment ldct_effnetv2_wgangp
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mlflow import MlflowClient
from mlflow.entities import Run
from tqdm import tqdm

from custom.conventions import HEADLINE_METRIC, PRIMARY_WINDOW
from custom.io.atomic_output import atomic_output, write_text_atomically

DEFAULT_CURVES = (HEADLINE_METRIC, f"ssim_{PRIMARY_WINDOW.name}")
# per-iteration training curves are too many columns for a table; they stay in MLflow
TRAINING_METRIC_PREFIX = "train_"
TRAINING_CURVE_WINDOW = 10
RUN_NAME_TAG = "mlflow.runName"


@dataclass(frozen=True)
class TrackedRun:
    """A run with the store it lives in (its metric histories are read from there) and its label in table and plot."""

    client: MlflowClient
    run: Run
    label: str


def load_runs(client: MlflowClient, experiment_name: str) -> list[Run]:
    """Every run of the experiment, oldest first; a clear error when the experiment does not exist."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        known = [e.name for e in client.search_experiments()]
        raise SystemExit(f"no experiment '{experiment_name}' in {client.tracking_uri} (experiments: {known})")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=10000)


def run_label(run: Run) -> str:
    return run.data.tags.get(RUN_NAME_TAG) or run.info.run_id[:8]


def load_sources(sources: Sequence[tuple[str, str]]) -> list[TrackedRun]:
    """The runs of every (tracking URI, experiment), in that order; every store is checked before any is read.
    A name that occurs in more than one source is labelled with its experiment (and store, if that is the same)."""
    for tracking_uri, _ in sources:
        check_store(tracking_uri)
    loaded = []
    for tracking_uri, experiment in sources:
        client = MlflowClient(tracking_uri=tracking_uri)
        loaded += [(client, run, tracking_uri, experiment) for run in load_runs(client, experiment)]
    names = [run_label(run) for _, run, _, _ in loaded]

    def label(run: Run, tracking_uri: str, experiment: str) -> str:
        name = run_label(run)
        if len(sources) == 1 or names.count(name) == 1:
            return name
        in_experiment = sum(run_label(other) == name and named == experiment for _, other, _, named in loaded)
        return f"{name} ({experiment})" if in_experiment == 1 else f"{name} ({experiment}, {tracking_uri})"

    return [TrackedRun(client, run, label(run, uri, experiment)) for client, run, uri, experiment in loaded]


def differing_params(runs: Sequence[Run]) -> list[str]:
    """Parameter names whose value is not the same in every run (a missing parameter counts as a value)."""
    names = sorted({name for run in runs for name in run.data.params})
    return [name for name in names if len({run.data.params.get(name) for run in runs}) > 1]


def table_metrics(runs: Sequence[Run], requested: Sequence[str] | None) -> list[str]:
    if requested:
        return list(requested)
    names = {name for run in runs for name in run.data.metrics}
    return sorted(name for name in names if not name.startswith(TRAINING_METRIC_PREFIX))


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value).replace("|", "\\|")


def runs_table(runs: Sequence[TrackedRun], params: Sequence[str], metrics: Sequence[str]) -> str:
    """Markdown: run, status, the differing params, then the final metrics."""
    header = ["run", "status", *params, *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for tracked in runs:
        run = tracked.run
        cells = [
            tracked.label,
            run.info.status,
            *(run.data.params.get(name) for name in params),
            *(run.data.metrics.get(name) for name in metrics),
        ]
        lines.append("| " + " | ".join(format_value(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def is_training_metric(metric: str) -> bool:
    return metric.startswith(TRAINING_METRIC_PREFIX)


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Per-iteration training terms are noisy: the plot shows their running mean over `window` iterations."""
    array = np.asarray(values, dtype=float)
    if window <= 1 or len(array) < window:
        return array
    return np.convolve(array, np.ones(window) / window, mode="valid")


def metric_curve(client: MlflowClient, run: Run, metric: str) -> list[tuple[float, float]]:
    """(training step, value) of one metric, a value per step: the latest logged, as a resumed run logs again the
    steps after its checkpoint. Validation metrics are logged per epoch: their steps are scaled by the run's
    `epoch_length` when it has one; training metrics (`train_...`) are logged per iteration already."""
    history = client.get_metric_history(run.info.run_id, metric)
    scale = run.data.params.get("epoch_length")
    factor = int(scale) if scale and scale.isdigit() and not is_training_metric(metric) else 1
    latest = {point.step: point.value for point in sorted(history, key=lambda point: point.timestamp)}  # stable sort
    return sorted((step * factor, value) for step, value in latest.items())


def plot_curves(runs: Sequence[TrackedRun], metrics: Sequence[str], path: Path) -> int:
    """Write one panel per metric; returns how many curves were drawn."""
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    drawn = 0
    any_scaled = any((tracked.run.data.params.get("epoch_length") or "").isdigit() for tracked in runs)
    for axis, metric in zip(axes[0], metrics):
        for index, tracked in enumerate(tqdm(runs, desc=f"history {metric}", file=sys.stderr, leave=False)):
            curve = metric_curve(tracked.client, tracked.run, metric)
            if not curve:
                continue
            steps, values = zip(*curve)
            style = {"label": tracked.label, "color": f"C{index % 10}"}  # a run keeps its colour in every panel
            if len(curve) == 1:
                axis.axhline(values[0], linestyle="--", linewidth=1, **style)
            elif is_training_metric(metric):
                smoothed = moving_average(values, TRAINING_CURVE_WINDOW)
                axis.plot(steps[len(steps) - len(smoothed) :], smoothed, linewidth=1, **style)
            else:
                axis.plot(steps, values, marker="o", markersize=3, **style)
            drawn += 1
        window = f" (running mean of {TRAINING_CURVE_WINDOW} iterations)" if is_training_metric(metric) else ""
        axis.set_title(f"{'training' if is_training_metric(metric) else 'validation'} {metric}{window}")
        axis.set_xlabel("training iteration" if any_scaled else "epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)
    return drawn


def store_path(tracking_uri: str) -> Path | None:
    """The local file or folder behind a `sqlite:///` or `file:` URI or a plain path; None for a tracking server."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///") :])
    if tracking_uri.startswith("file:"):
        return Path(urlparse(tracking_uri).path)
    return None if "://" in tracking_uri else Path(tracking_uri)


def check_store(tracking_uri: str) -> None:
    """Refuse a local store that does not exist: MLflow would silently create an empty one there."""
    path = store_path(tracking_uri)
    if path is not None and not path.exists():
        raise SystemExit(
            f"no MLflow store at {path} ({tracking_uri}): train with --tracking mlflow first, or pass --tracking-uri"
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    sources = [(args.tracking_uri, args.experiment), *(tuple(source) for source in args.also or ())]
    runs = load_sources(sources)
    if not runs:
        raise SystemExit(f"no runs in {', '.join(f'{experiment} ({uri})' for uri, experiment in sources)}")
    plain_runs = [tracked.run for tracked in runs]
    params = differing_params(plain_runs)
    metrics = table_metrics(plain_runs, args.metrics)
    table = runs_table(runs, params, metrics)
    print(table)
    write_text_atomically(args.table, table + "\n")
    curves = plot_curves(runs, args.curves, args.plot)
    print(f"wrote {args.table} and {args.plot} ({curves} curves)", file=sys.stderr)
    summary = {
        "tracking_uri": args.tracking_uri,
        "experiment": args.experiment,
        "sources": [{"tracking_uri": uri, "experiment": experiment} for uri, experiment in sources],
        "differing_params": params,
        "plot": str(args.plot),
        "table": str(args.table),
        "curves": curves,
        "runs": [
            {
                "run": tracked.label,
                "run_id": tracked.run.info.run_id,
                "status": tracked.run.info.status,
                "params": {name: tracked.run.data.params.get(name) for name in params},
                "metrics": {name: tracked.run.data.metrics.get(name) for name in metrics},
            }
            for tracked in runs
        ],
    }
    if args.json:
        write_text_atomically(args.json, json.dumps(summary, indent=2) + "\n")
    return summary
