"""Noise level and noise texture (noise power spectrum, NPS) of CT images, for calibrating low-dose simulation.

A simulation is only useful for training a denoiser if its noise has the level *and* the texture of the real
low-dose scans it will meet, so both are measured here the same way on real and simulated series:

* noise is measured in soft tissue only (-20..180 HU after smoothing: enhanced liver is ~120 HU): fat, bone and edges add anatomy, not noise;
* the noise level is the 10th percentile of the 15x15 local standard deviation in soft tissue (the flattest
  patches, hence the least anatomy) and, separately, the standard deviation of 64x64 noise ROIs;
* the texture is the radial NPS of mean-subtracted, quadratic-detrended 64x64 ROIs inside soft tissue (at least 90%
  of their pixels: fully-inside 64x64 ROIs are too rare in real abdomens to average),
  normalised to unit area over (0, 0.5] cycles/pixel so that curves of different noise level compare by shape.

Noise-only images come from a low/full pair (low minus full) or, for a single real low-dose series without a
partner, from the difference of two nearby slices divided by sqrt(2). The slice difference is biased: anatomy
changes between slices add power (upward, mostly at low frequency), and slices that overlap (thickness larger
than spacing) share photons, which removes power (downward). The overlap is avoided by pairing slices at least
one thickness apart (``gap``); the anatomy is limited by subtracting a wide Gaussian low-pass of the difference
(sigma 5 px: it halves the NPS at 0.05 and changes it < 2 % above 0.1 cycles/pixel), by a quadratic detrend
of each ROI, by keeping only the flatter half of the ROIs (std of the smoothed difference; structures that
moved between slices fail that test) and by a median, not a mean, over the ROIs' periodograms.

numpy and scipy only, so it runs anywhere the bundle runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from custom.conventions import BODY_THRESHOLD_HU, ORGAN_TISSUE_HU

MIN_COVERAGE = 0.9
LOWPASS_SIGMA = 5.0  # pixels; removes anatomy change, changes the NPS by < 2 % above 0.1 cycles/pixel
FLATNESS_RATIO = 1.0  # keep the flatter half of the slice-difference ROIs
ROI_SIZE = 64
L1_BAND = (0.05, 0.45)  # cycles/pixel over which NPS shapes are compared


def soft_tissue_mask(
    hu: np.ndarray,
    low: float = ORGAN_TISSUE_HU[0],
    high: float = ORGAN_TISSUE_HU[1],
    smooth_sigma: float = 2.0,
    erosion: int = 2,
    body_threshold: float = BODY_THRESHOLD_HU,
    body_margin: int = 10,
) -> np.ndarray:
    """Boolean mask of soft tissue inside the body of a 2D HU slice.

    Smoothing first keeps noisy (low-dose) pixels from falling out of the HU range; eroding keeps 15x15
    windows and ROIs away from fat and organ borders; the body margin drops skin and the table edge.
    """
    hu = np.asarray(hu, dtype=np.float32)
    smooth = ndimage.gaussian_filter(hu, smooth_sigma)
    tissue = (smooth >= low) & (smooth <= high)
    body = ndimage.binary_fill_holes(ndimage.gaussian_filter(hu, 1.0) > body_threshold)
    labels, count = ndimage.label(body)
    if count > 1:  # the table and arms can be separate blobs: keep the largest, the trunk
        sizes = ndimage.sum(body, labels, index=np.arange(1, count + 1))
        body = labels == (1 + int(np.argmax(sizes)))
    body = ndimage.binary_erosion(body, iterations=body_margin)
    tissue = ndimage.binary_erosion(tissue, iterations=erosion) if erosion > 0 else tissue
    return tissue & body


def local_std(image: np.ndarray, size: int = 15) -> np.ndarray:
    """Standard deviation in a size x size window around every pixel."""
    image = np.asarray(image, dtype=np.float64)
    mean = ndimage.uniform_filter(image, size)
    mean_square = ndimage.uniform_filter(image * image, size)
    return np.sqrt(np.clip(mean_square - mean * mean, 0.0, None))


def local_noise_hu(noise_or_image: np.ndarray, mask: np.ndarray, size: int = 15, percentile: float = 10.0) -> float:
    """10th percentile of the 15x15 local std over ``mask`` (HU).

    Works on an image (anatomy inflates high percentiles, the low one picks the flattest patches) and on a
    noise-only image. Only window centres whose whole window lies in the mask count.
    """
    inner = ndimage.binary_erosion(mask, structure=np.ones((size, size), bool))
    if not inner.any():
        return float("nan")
    return float(np.percentile(local_std(noise_or_image, size)[inner], percentile))


def paired_noise(low_dose: np.ndarray, full_dose: np.ndarray) -> np.ndarray:
    """Noise added by lowering the dose: low minus full dose (exact for simulated pairs)."""
    return np.asarray(low_dose, np.float64) - np.asarray(full_dose, np.float64)


def slice_difference_noise(slice_a: np.ndarray, slice_b: np.ndarray, lowpass_sigma: float = LOWPASS_SIGMA) -> np.ndarray:
    """Noise-only estimate from two nearby slices of one series: (b - a) / sqrt(2), low-pass trend removed.

    Valid when the two slices' noise is independent (no overlap: pick slices at least one slice thickness
    apart). The Gaussian low-pass (sigma in pixels) removes slowly varying anatomy change; it multiplies the
    NPS by (1 - exp(-2 pi^2 sigma^2 f^2))^2: 0.5 at 0.05, > 0.98 above 0.1 cycles/pixel for sigma = 5.
    """
    difference = (np.asarray(slice_b, np.float64) - np.asarray(slice_a, np.float64)) / np.sqrt(2.0)
    if lowpass_sigma > 0:
        difference = difference - ndimage.gaussian_filter(difference, lowpass_sigma)
    return difference


def roi_corners(
    mask: np.ndarray, size: int = ROI_SIZE, stride: int = ROI_SIZE // 2, min_coverage: float = MIN_COVERAGE
) -> list[tuple[int, int]]:
    """Top-left corners, on a grid of ``stride``, of size x size ROIs with at least ``min_coverage`` of their
    pixels in ``mask`` (1.0: fully inside)."""
    integral = np.pad(np.cumsum(np.cumsum(mask.astype(np.int64), 0), 1), ((1, 0), (1, 0)))
    corners = []
    for row in range(0, mask.shape[0] - size + 1, stride):
        for column in range(0, mask.shape[1] - size + 1, stride):
            total = (
                integral[row + size, column + size]
                - integral[row, column + size]
                - integral[row + size, column]
                + integral[row, column]
            )
            if total >= min_coverage * size * size:
                corners.append((row, column))
    return corners


def flat_rois(
    noise: np.ndarray,
    mask: np.ndarray,
    size: int = ROI_SIZE,
    stride: int = ROI_SIZE // 4,
    flatness_sigma: float = 4.0,
    flatness_ratio: float | None = None,
) -> tuple[list[np.ndarray], list[float]]:
    """ROIs of a noise image fully inside ``mask`` plus each ROI's flatness (std of the Gaussian-smoothed ROI).

    Smoothing keeps anatomy residue (mid/low frequency) and suppresses noise, so an ROI whose smoothed std is
    far above the typical one holds anatomy that moved between slices; with ``flatness_ratio`` such ROIs
    (above ratio x median) are dropped.
    """
    smooth = ndimage.gaussian_filter(noise, flatness_sigma)
    rois, flatness = [], []
    for row, column in roi_corners(mask, size, stride):
        rois.append(noise[row : row + size, column : column + size])
        flatness.append(float(smooth[row : row + size, column : column + size].std()))
    if flatness_ratio is not None and rois:
        limit = flatness_ratio * float(np.median(flatness))
        kept = [(r, f) for r, f in zip(rois, flatness) if f <= limit]
        rois, flatness = [r for r, _ in kept], [f for _, f in kept]
    return rois, flatness


def _detrend(roi: np.ndarray, order: int) -> np.ndarray:
    """Remove the mean (order 0) or a least-squares plane (order 1) / quadratic (order 2)."""
    roi = np.asarray(roi, np.float64)
    if order <= 0:
        return roi - roi.mean()
    rows, columns = np.mgrid[: roi.shape[0], : roi.shape[1]].astype(np.float64)
    rows, columns = rows.ravel() - rows.mean(), columns.ravel() - columns.mean()
    terms = [np.ones_like(rows), rows, columns]
    if order >= 2:
        terms += [rows * rows, columns * columns, rows * columns]
    design = np.stack(terms, axis=1)
    coefficients, *_ = np.linalg.lstsq(design, roi.ravel(), rcond=None)
    return roi - (design @ coefficients).reshape(roi.shape)


def radial_nps(
    noise_rois: Sequence[np.ndarray], pixel_spacing: float, detrend_order: int = 1, robust: bool = True
) -> dict[str, Any]:
    """Radial NPS of square noise ROIs and its summary.

    Returns frequencies in cycles/pixel and cycles/mm (bin centres k / N, k = 0..N/2), the absolute radial NPS
    (HU^2 mm^2) and the NPS normalised to unit area over (0, 0.5] cycles/pixel. Unit *area* is chosen over unit
    peak because the L1 distance between area-normalised curves compares the whole texture rather than one point.
    Summary: ROI noise std (HU), peak frequency (parabolic interpolation around the maximum bin, so it is not
    quantised to 1/N), and the Nyquist share (radial NPS in the last bin over the peak value).

    ``robust``: average the ROIs' periodograms with the median (divided by ln 2, the median of an exponential
    variable, which a Gaussian noise periodogram is) instead of the mean, and the variances likewise with the
    median. A slice difference always leaves some ROIs with moved anatomy; their excess low-frequency power
    pulls a mean, not a median, as long as they are a minority.
    """
    if len(noise_rois) == 0:
        raise ValueError("radial_nps needs at least one ROI")
    size = noise_rois[0].shape[0]
    spectra, variances = [], []
    for roi in noise_rois:
        if roi.shape != (size, size):
            raise ValueError(f"ROIs must all be square {size}x{size}, got {roi.shape}")
        detrended = _detrend(roi, detrend_order)
        variances.append(float(detrended.var()))
        spectra.append(np.abs(np.fft.fft2(detrended)) ** 2)
    if robust and len(spectra) >= 5:
        nps_2d = np.median(spectra, axis=0) / np.log(2.0)
        roi_variance = float(nps_2d.sum() / (size * size) ** 2)  # Parseval
    else:
        nps_2d = np.mean(spectra, axis=0)
        roi_variance = float(np.mean(variances))
    nps_2d = nps_2d * pixel_spacing**2 / (size * size)  # HU^2 mm^2
    frequency = np.fft.fftfreq(size)
    radius = np.hypot(*np.meshgrid(frequency, frequency, indexing="ij"))
    bins = np.rint(radius * size).astype(int)
    count = np.bincount(bins.ravel())
    radial = np.bincount(bins.ravel(), nps_2d.ravel()) / np.maximum(count, 1)
    radial = radial[: size // 2 + 1]
    freq_px = np.arange(size // 2 + 1) / size
    df = 1.0 / size
    normalised = radial / (radial[1:].sum() * df)
    peak_index = 1 + int(np.argmax(radial[1:]))
    peak = freq_px[peak_index]
    if 1 <= peak_index < len(radial) - 1:
        left, centre, right = radial[peak_index - 1 : peak_index + 2]
        curvature = left - 2 * centre + right
        if curvature < 0:
            peak = freq_px[peak_index] + 0.5 * (left - right) / curvature * df
    return {
        "frequency_cycles_per_pixel": freq_px.tolist(),
        "frequency_cycles_per_mm": (freq_px / pixel_spacing).tolist(),
        "nps_hu2_mm2": radial.tolist(),
        "nps_area_normalised": normalised.tolist(),
        "noise_std_hu": float(np.sqrt(roi_variance)),
        "peak_cycles_per_pixel": float(peak),
        "peak_cycles_per_mm": float(peak / pixel_spacing),
        "nyquist_share_of_peak": float(radial[-1] / radial[peak_index]),
        "num_rois": len(noise_rois),
        "pixel_spacing_mm": float(pixel_spacing),
    }


def nps_l1_distance(
    a: dict[str, Any], b: dict[str, Any], band: tuple[float, float] = L1_BAND, unit: str = "cycles_per_pixel"
) -> float:
    """L1 distance of two NPS shapes over ``band``: each curve is interpolated on a common grid and renormalised
    to unit area over the band, so the value is 0 for equal shapes and at most 2 for disjoint ones.

    ``unit`` = "cycles_per_pixel" (band in cycles/pixel) or "cycles_per_mm" (band in cycles/mm).
    """
    grid = np.linspace(band[0], band[1], 201)
    curves = []
    for nps in (a, b):
        curve = np.interp(grid, np.asarray(nps[f"frequency_{unit}"]), np.asarray(nps["nps_hu2_mm2"]))
        curves.append(curve / np.trapezoid(curve, grid))
    return float(np.trapezoid(np.abs(curves[0] - curves[1]), grid))


def measure_series(
    volume_hu: np.ndarray,
    pixel_spacing: float,
    slice_indices: Sequence[int],
    full_dose_hu: np.ndarray | None = None,
    gap: int = 1,
    lowpass_sigma: float = LOWPASS_SIGMA,
    flatness_ratio: float | None = FLATNESS_RATIO,
    roi_size: int = ROI_SIZE,
    detrend_order: int = 2,
    robust: bool = True,
) -> dict[str, Any]:
    """Noise level and NPS of a series (volume shaped (Z, H, W), HU) at ``slice_indices``; JSON-serialisable.

    With ``full_dose_hu`` (same shape) the noise is low minus full dose ("paired"); without it, the slice
    difference of slice k and k + gap ("slice_difference"), restricted to flat ROIs. The soft-tissue mask
    comes from the (low-dose) images themselves, as it would for a real series; for a slice difference it
    must hold in both slices.
    """
    volume_hu = np.asarray(volume_hu)
    method = "paired" if full_dose_hu is not None else "slice_difference"
    rois: list[np.ndarray] = []
    local_levels, image_levels = [], []
    for k in slice_indices:
        if full_dose_hu is not None:
            noise = paired_noise(volume_hu[k], full_dose_hu[k])
            mask = soft_tissue_mask(volume_hu[k])
            flat = None
        else:
            noise = slice_difference_noise(volume_hu[k], volume_hu[k + gap], lowpass_sigma)
            mask = soft_tissue_mask(volume_hu[k]) & soft_tissue_mask(volume_hu[k + gap])
            flat = flatness_ratio
        local_levels.append(local_noise_hu(noise, mask))
        image_levels.append(local_noise_hu(volume_hu[k], soft_tissue_mask(volume_hu[k])))
        slice_rois, _ = flat_rois(noise, mask, roi_size, roi_size // 4, flatness_ratio=flat)
        rois.extend(slice_rois)
    nps = radial_nps(rois, pixel_spacing, detrend_order, robust)
    return {
        "method": method,
        "gap": gap if method == "slice_difference" else None,
        "slice_indices": [int(k) for k in slice_indices],
        "local_noise_hu_p10": float(np.nanmedian(local_levels)),
        "image_local_std_hu_p10": float(np.nanmedian(image_levels)),
        **nps,
    }
