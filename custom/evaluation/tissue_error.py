"""Where an image's error lives: RMSE (HU) within bands of the full dose's HU (air, lung, soft tissue, bone ...).

A PSNR in [-1000, 1000] HU mixes all tissues: a denoiser that cleans soft tissue but blurs the fine structure of the
lung can score like one that does little to either. Images are clipped to the wide evaluation window first, as its
PSNR clips them, so the bands' shares of the squared error add up to that PSNR's mean squared error (pooled over
all pixels of all slices).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from custom.conventions import TISSUE_BANDS_HU, WIDE_WINDOW


class TissueErrors:
    """Pooled squared error of named images against their references, per band of the reference's HU."""

    def __init__(self, bands: dict[str, tuple[float, float]] = TISSUE_BANDS_HU) -> None:
        self.bands = bands
        self.squared_error: dict[str, np.ndarray] = {}
        self.pixels = np.zeros(len(bands))

    def add(self, reference: np.ndarray, images: Mapping[str, np.ndarray]) -> None:
        """Add one slice: its reference's pixels per band and the squared error of each named image, all clipped to
        the wide window; the band masks and the clipped reference are made once for all images."""
        masks = [(reference >= low) & (reference < high) for low, high in self.bands.values()]
        self.pixels += [mask.sum() for mask in masks]
        clipped_reference = np.clip(reference, WIDE_WINDOW.low, WIDE_WINDOW.high)
        for name, image in images.items():
            error = (np.clip(image, WIDE_WINDOW.low, WIDE_WINDOW.high) - clipped_reference) ** 2
            sums = self.squared_error.setdefault(name, np.zeros(len(self.bands)))
            sums += [error[mask].sum() for mask in masks]

    def report(self, name: str) -> dict[str, dict[str, float]]:
        """Per band: RMSE in HU, the band's share of the reference's pixels and of the image's squared error."""
        sums, total_pixels = self.squared_error[name], max(self.pixels.sum(), 1.0)
        total_error = max(sums.sum(), np.finfo(float).tiny)
        return {
            band: {
                "rmse_hu": float(np.sqrt(sums[index] / self.pixels[index])) if self.pixels[index] else float("nan"),
                "pixel_fraction": float(self.pixels[index] / total_pixels),
                "share_of_squared_error": float(sums[index] / total_error),
            }
            for index, band in enumerate(self.bands)
        }
