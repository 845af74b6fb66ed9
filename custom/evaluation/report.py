"""What the test-set evaluation leaves for a reader: mean ± std of each metric, comparison figures, MLflow artifacts.

MONAI's `MetricsSaver` writes the per-slice CSVs and percentile summaries; these ignite handlers add the paper-style
"mean ± std" table (model next to the low-dose input) and PNG panels low dose | denoised | full dose | difference,
so a user sees both the numbers and what the network did to the image.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from ignite.engine import Engine, Events
from matplotlib.figure import Figure
from monai.handlers import MetricsSaver
from monai.utils import ImageMetaKey

from custom.conventions import IMAGE_KEY, LABEL_KEY, PRED_KEY, PRIMARY_WINDOW
from custom.data.datalist import format_family
from custom.evaluation.windowed_metrics import slice_scores
from custom.io.atomic_output import atomic_files, atomic_output
from custom.tracking.mlflow_logging import only_mlflow_handlers

logger = logging.getLogger(__name__)

LDCT_PREFIX = "ldct_"  # metrics of the low-dose input against full dose, named like the model's with this prefix
MEAN_STD_FILE = "metrics_mean_std.csv"


class AtomicMetricsSaver(MetricsSaver):
    """MONAI's `MetricsSaver` (per-slice CSVs, summaries) with every file written whole or not at all: it writes into
    a temporary folder whose files are renamed into `save_dir` (a kill mid-write leaves the previous reports)."""

    def __call__(self, engine: Engine) -> None:
        target = Path(self.save_dir)
        with atomic_files(target) as staging:
            self.save_dir = str(staging)
            try:
                super().__call__(engine)
            finally:
                self.save_dir = str(target)


def per_slice_values(details: Any) -> np.ndarray:
    """A metric's per-slice details (slices, channels) as one value per slice (channel mean), NaNs dropped."""
    values = torch.as_tensor(details).detach().double().cpu().reshape(len(details), -1).mean(dim=1).numpy()
    return values[~np.isnan(values)]


class MetricMeanStdReport:
    """At epoch end: mean ± std over slices of every metric with per-slice details; logged, saved, and tracked.

    The population std (ddof=0, as MetricsSaver's summary) is also stored as `engine.state.metrics["<name>_std"]`,
    so experiment trackers attached after this handler (`--tracking mlflow`) record it next to the mean.

    Args:
        output_dir: folder of `metrics_mean_std.csv` (metric, mean, std, slices).
    """

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        details = getattr(engine.state, "metric_details", {}) or {}
        summary = {}
        for name, value in details.items():
            values = per_slice_values(value)
            summary[name] = (float(values.mean()), float(values.std()), int(values.size))
            engine.state.metrics[f"{name}_std"] = summary[name][1]
        if not summary:
            raise RuntimeError("no per-slice metric details to summarise: the metrics need save_details=True")
        with atomic_output(self.output_dir / MEAN_STD_FILE) as temporary, open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["metric", "mean", "std", "slices"])
            for name, (mean, std, count) in summary.items():
                writer.writerow([name, f"{mean:.6f}", f"{std:.6f}", count])
        logger.info("test-set metrics, mean ± std over slices:\n%s", self.table(summary))

    @staticmethod
    def table(summary: dict[str, tuple[float, float, int]]) -> str:
        """Model metrics beside the low-dose input's, one row per metric."""

        def cell(entry: tuple[float, float, int] | None) -> str:
            return f"{entry[0]:.4f} ± {entry[1]:.4f}" if entry else "-"

        lines = [f"{'metric':<12} {'denoised':>22} {'low-dose input':>22}"]
        for name in sorted(name for name in summary if not name.startswith(LDCT_PREFIX)):
            lines.append(f"{name:<12} {cell(summary[name]):>22} {cell(summary.get(LDCT_PREFIX + name)):>22}")
        return "\n".join(lines)


class DenoisingFigureSaver:
    """Save `low dose | denoised | full dose | denoised - full dose` PNGs for the first `num_slices` slices.

    Reads the evaluator's postprocessed output (HU images under `image_key`, `pred_key`, `label_key`), shows the
    three images in the display window and the difference in ±`difference_hu` HU.

    Args:
        output_dir: folder for `<number>_<input file name>.png`.
        num_slices: how many slices get a figure.
        window: display window in HU (the literature's abdomen window by default).
        difference_hu: half-width of the difference display range in HU.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        num_slices: int = 4,
        window: Sequence[float] = (PRIMARY_WINDOW.low, PRIMARY_WINDOW.high),
        difference_hu: float = 100.0,
        image_key: str = IMAGE_KEY,
        pred_key: str = PRED_KEY,
        label_key: str = LABEL_KEY,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.num_slices = num_slices
        self.window = (float(window[0]), float(window[1]))
        self.difference_hu = float(difference_hu)
        self.keys = (image_key, pred_key, label_key)
        self.saved: list[Path] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.saved.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        # ignite types State.output as int | None; after decollation it is the list of per-item dicts
        for item in cast("list[dict[str, Any]]", engine.state.output):
            if len(self.saved) >= self.num_slices:
                return
            self.saved.append(self.save(item))

    def save(self, item: dict) -> Path:
        """Draw and write one figure of channel-first 2D HU slices, shown with the image rows down the page.

        NIfTI and NumPy slices are stored (rows, columns), while MONAI reads DICOM as (columns, rows).
        """
        source = str(getattr(item[self.keys[0]], "meta", {}).get(ImageMetaKey.FILENAME_OR_OBJ, ""))
        columns_first = bool(source) and format_family(source) == "dicom"
        slices = [torch.as_tensor(item[key]).detach().float().cpu().numpy()[0] for key in self.keys]
        low, denoised, full = (image.T if columns_first else image for image in slices)
        name = f"{len(self.saved) + 1:02d}_{Path(source).name.split('.')[0] or 'slice'}"  # numbered: names may repeat
        figure = Figure(figsize=(16, 4.4), layout="constrained")
        axes = figure.subplots(1, 4)
        panels = [("low dose", low), ("denoised", denoised), ("full dose", full)]
        for axis, (title, image) in zip(axes, panels):
            axis.imshow(image, cmap="gray", vmin=self.window[0], vmax=self.window[1])
            axis.set_title(f"{title} [{self.window[0]:g}, {self.window[1]:g}] HU")
        shown = axes[3].imshow(denoised - full, cmap="RdBu_r", vmin=-self.difference_hu, vmax=self.difference_hu)
        axes[3].set_title("denoised - full dose (HU)")
        figure.colorbar(shown, ax=axes[3], shrink=0.8)
        for axis in axes:
            axis.set_axis_off()
        scores = {
            label: slice_scores(torch.from_numpy(image), torch.from_numpy(full), PRIMARY_WINDOW)
            for label, image in (("low dose", low), ("denoised", denoised))
        }
        figure.suptitle(
            f"{name}: PSNR / SSIM against full dose in [{PRIMARY_WINDOW.low:g}, {PRIMARY_WINDOW.high:g}] HU (range "
            f"{PRIMARY_WINDOW.data_range:g}): "
            + ", ".join(f"{label} {psnr:.2f} dB / {ssim:.3f}" for label, (psnr, ssim) in scores.items())
        )
        target = self.output_dir / f"{name}.png"
        with atomic_output(target) as temporary:
            figure.savefig(temporary, format="png", dpi=80)
        return target


def add_mlflow_artifacts(handlers: Iterable[Any], paths: Sequence[str | os.PathLike]) -> int:
    """Have every attached MLFlowHandler upload `paths` (files or folders) when the run completes.

    Returns how many handlers were changed (0 without `--tracking mlflow`), so configs can call it unconditionally.
    """
    mlflow_handlers = only_mlflow_handlers(handlers)
    for handler in mlflow_handlers:
        handler.artifacts = (*(path for path in handler.artifacts if path), *map(str, paths))
    return len(mlflow_handlers)
