"""Check training pairs before any compute: every file decodes, holds finite HU, and each low-dose image lies on
its full-dose image (same shape, spacing and position, same anatomy at zero shift).

A misaligned pair (a slice off by one, a shifted crop, a full dose of another series) does not crash training: it
trains the generator to move anatomy, silently. These checks name both files and the shift found, before the
dataset is cached. Alignment is judged by normalised cross-correlation (NCC) of the two images in a wide HU window:
the quarter-dose noise barely lowers it, anatomy that moved lowers it a lot.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from monai.transforms import LoadImage
from tqdm import tqdm

from custom.conventions import IMAGE_KEY, LABEL_KEY
from custom.errors import BundleInputError
from custom.io.hu_values import value_problem
from custom.io.output_folders import writable_folder

logger = logging.getLogger(__name__)

ALIGNMENT_HU_WINDOW = (-1000.0, 1000.0)  # air to bone: the body outline and organs dominate the correlation
MIN_NCC = 0.5  # a best match below it: the two images do not show the same anatomy
SHIFT_TOLERANCE_PIXELS = 0  # pairs from one acquisition share a grid: any peak off zero is a shift
SPACING_TOLERANCE = 1e-3  # relative


@functools.lru_cache(maxsize=4)  # a full-dose image is paired with several low-dose draws in a row
def load_hu(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The image at `path` as float HU (2D: rows, columns; a volume's middle slice) and its affine."""
    try:
        image = LoadImage(image_only=True, ensure_channel_first=False)(path)
    except Exception as error:  # readers raise many types for damaged files; all mean the same to the user
        raise BundleInputError(f"'{path}' cannot be read as an image: {error}") from error
    array = np.asarray(image, dtype=np.float32)
    array = array if array.ndim == 2 else array[..., array.shape[-1] // 2]
    return array, np.asarray(image.affine, dtype=np.float64)


def correlation_peak(moving: np.ndarray, fixed: np.ndarray) -> tuple[tuple[int, int], float, float]:
    """The circular shift (rows, columns) that best maps `moving` onto `fixed`, the NCC there and at zero shift."""
    a, b = (np.clip(image, *ALIGNMENT_HU_WINDOW) for image in (moving, fixed))
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum())) or 1.0
    correlation = np.fft.irfft2(np.fft.rfft2(b) * np.conj(np.fft.rfft2(a)), s=a.shape) / scale
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    shift = tuple(int(p if p <= n // 2 else p - n) for p, n in zip(peak, correlation.shape, strict=True))
    return (shift[0], shift[1]), float(correlation[peak]), float(correlation[0, 0])


def pair_problem(low_path: str, full_path: str, patch_size: int) -> str | None:
    """Why the pair (low dose, full dose) cannot train or validate the denoiser, or None."""
    (low, low_affine), (full, full_affine) = load_hu(low_path), load_hu(full_path)
    for name, path, image in (("low dose", low_path, low), ("full dose", full_path, full)):
        problem = value_problem(image)
        if problem:
            return f"{name} '{path}': {problem}"
    pair = f"low dose '{low_path}' and full dose '{full_path}'"
    if low.shape != full.shape:
        return f"{pair} differ in shape: {low.shape} vs {full.shape}"
    if min(low.shape) < patch_size:
        return f"{pair}: the image ({low.shape[0]}x{low.shape[1]}) is smaller than the training patch ({patch_size}); pass a smaller --patch_size (and --late_patch_size)"
    low_spacing, full_spacing = (np.linalg.norm(affine[:3, :3], axis=0) for affine in (low_affine, full_affine))
    if not np.allclose(low_spacing, full_spacing, rtol=SPACING_TOLERANCE):
        return f"{pair} differ in voxel spacing: {np.round(low_spacing, 4).tolist()} vs {np.round(full_spacing, 4).tolist()} mm"
    offset = full_affine[:3, 3] - low_affine[:3, 3]
    if np.linalg.norm(offset) > 0.5 * float(low_spacing.min()):
        return f"{pair} are placed differently: origins {np.round(offset, 2).tolist()} mm apart"
    shift, peak, at_zero = correlation_peak(low, full)
    if peak < MIN_NCC:
        return f"{pair} do not show the same anatomy (normalised cross-correlation at most {peak:.2f} < {MIN_NCC})"
    if max(abs(shift[0]), abs(shift[1])) > SHIFT_TOLERANCE_PIXELS:
        return (
            f"{pair} are misaligned: the low dose matches best when shifted by {shift[0]} rows and {shift[1]} columns "
            f"(normalised cross-correlation {peak:.2f} there, {at_zero:.2f} unshifted)"
        )
    return None


def check_pairs(entries: Sequence[dict], split: str, patch_size: int = 0) -> None:
    """Raise `BundleInputError` for the first entry of `split` whose pair is unusable (see `pair_problem`)."""
    for index, entry in enumerate(tqdm(entries, desc=f"checking {split} pairs", unit="pair", leave=False)):
        problem = pair_problem(str(entry[IMAGE_KEY]), str(entry[LABEL_KEY]), patch_size)
        if problem:
            raise BundleInputError(f"datalist {split}[{index}]: {problem}")


def check_training_inputs(
    training: Sequence[dict], validation: Sequence[dict], patch_size: int, output_folders: Iterable[str | os.PathLike]
) -> int:
    """Check output folders, then every training and validation pair, before anything is cached or trained.

    `patch_size` is the largest training patch (the late patch size when it is used). Returns the pairs checked.
    """
    for folder in output_folders:
        writable_folder(Path(folder), "output folder")
    check_pairs(training, "training", patch_size)
    check_pairs(validation, "validation")
    logger.info(f"checked {len(training)} training and {len(validation)} validation pairs: aligned, finite HU")
    return len(training) + len(validation)
