"""Validation metrics in the project's evaluation windows (``custom.conventions.EVALUATION_WINDOWS``).

Each window gets clipped HU copies of prediction, target and low-dose input (``pred_w400``, ...), and PSNR/SSIM/RMSE
of the prediction and of the low-dose input against the target, with data range = window width. The bundle's
configs build their validation postprocessing and metrics from here, so the windows are declared once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.handlers import IgniteMetricHandler, PeakSignalToNoiseRatio, RootMeanSquaredError, from_engine
from monai.metrics import PSNRMetric, SSIMMetric
from monai.transforms import CopyItemsd, MapTransform, ScaleIntensityRanged

from custom.conventions import EVALUATION_WINDOWS, HEADLINE_METRIC, IMAGE_KEY, LABEL_KEY, PRED_KEY, EvaluationWindow

SCORED_KEYS = (PRED_KEY, LABEL_KEY, IMAGE_KEY)
# metric name prefix -> the key scored against the label: the prediction, and the low-dose input as the baseline
SCORED_SOURCES = {"": PRED_KEY, "ldct_": IMAGE_KEY}


def hu_window_postprocessing(
    hu_min: float, hu_max: float, keys: Sequence[str] = SCORED_KEYS, in_hu: Sequence[MapTransform] = ()
) -> list[MapTransform]:
    """Network scale [0, 1] back to HU, then `in_hu` (e.g. the denoising strength inference applies, so the test
    set is scored as users get it), then one clipped copy per evaluation window named ``<key>_<window>``."""
    transforms: list[MapTransform] = [ScaleIntensityRanged(keys, a_min=0.0, a_max=1.0, b_min=hu_min, b_max=hu_max)]
    transforms.extend(in_hu)
    for window in EVALUATION_WINDOWS:
        windowed = [f"{key}_{window.name}" for key in keys]
        transforms.append(CopyItemsd(keys, times=1, names=windowed))
        transforms.append(
            ScaleIntensityRanged(windowed, a_min=window.low, a_max=window.high, b_min=window.low, b_max=window.high, clip=True)
        )
    return transforms


def windowed_metrics() -> dict[str, IgniteMetricHandler]:
    """``{prefix}{psnr,ssim,rmse}_{window}`` for the prediction (no prefix) and the low-dose input (``ldct_``)."""
    metrics: dict[str, IgniteMetricHandler] = {}
    for window in EVALUATION_WINDOWS:
        for prefix, source in SCORED_SOURCES.items():
            pair = from_engine([f"{source}_{window.name}", f"{LABEL_KEY}_{window.name}"])
            metrics[f"{prefix}psnr_{window.name}"] = PeakSignalToNoiseRatio(max_val=window.data_range, output_transform=pair)
            metrics[f"{prefix}ssim_{window.name}"] = IgniteMetricHandler(
                metric_fn=SSIMMetric(spatial_dims=2, data_range=window.data_range), output_transform=pair
            )
            metrics[f"{prefix}rmse_{window.name}"] = RootMeanSquaredError(output_transform=pair)
    return metrics


def key_metric() -> dict[str, IgniteMetricHandler]:
    """The model-selection metric: PSNR in the primary window."""
    return {HEADLINE_METRIC: windowed_metrics()[HEADLINE_METRIC]}


def additional_metrics() -> dict[str, IgniteMetricHandler]:
    """Every windowed metric but the key metric."""
    metrics = windowed_metrics()
    del metrics[HEADLINE_METRIC]
    return metrics


def slice_scores(image_hu: torch.Tensor, reference_hu: torch.Tensor, window: EvaluationWindow) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one 2D HU slice against its reference, both clipped to `window` (range = its width)."""
    clipped = [
        torch.as_tensor(x).float().clamp(window.low, window.high).reshape(1, 1, *x.shape[-2:]) for x in (image_hu, reference_hu)
    ]
    psnr = PSNRMetric(max_val=window.data_range)(*clipped)
    ssim = SSIMMetric(spatial_dims=2, data_range=window.data_range)(*clipped)
    return float(torch.as_tensor(psnr).mean()), float(torch.as_tensor(ssim).mean())
