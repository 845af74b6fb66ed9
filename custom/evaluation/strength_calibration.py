"""Calibrating strength "auto": the noise ramp (custom.inference.denoising_strength.NoiseStrengthRamp) that serves a
model best on reference pairs at several doses.

Each reference slice is simulated at every dose (dose 1: the reference itself), denoised once, and blended with its
input at every strength of `STRENGTH_GRID`; the ramp is the one whose per-slice strengths, chosen from each input's
measured noise alone, give the best mean PSNR over all slices and doses, both evaluation windows counted. Fit it on
a validation split: the test split then says whether a rule from measured noise carries over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from custom.conventions import EVALUATION_WINDOWS
from custom.inference.denoising_strength import NoiseStrengthRamp, blend_with_source, measured_noise_hu

STRENGTH_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)
# the full dose given back unchanged scores infinite PSNR; capped, it counts as one very good slice among many
PSNR_CAP_DB = 50.0
RAMP_STEP_HU = 0.25
RAMP_MAX_HU = 60.0


@dataclass(frozen=True)
class BlendScores:
    """One input slice: its measured noise (HU) and the PSNR (dB, capped) of its output blended with it at every
    strength of STRENGTH_GRID, one row per evaluation window."""

    dose: float
    noise_hu: float
    psnr_db: np.ndarray  # (windows, strengths)

    def at(self, strength: float) -> np.ndarray:
        """PSNR per window at the grid strength nearest `strength`."""
        return self.psnr_db[:, grid_index(np.asarray(strength))]


def grid_index(strengths: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(strengths) * (len(STRENGTH_GRID) - 1)).astype(int)


def capped_psnr(image: np.ndarray, reference: np.ndarray, low: float, high: float) -> float:
    error = np.mean((np.clip(image, low, high) - np.clip(reference, low, high)) ** 2, dtype=np.float64)
    if error == 0.0:
        return PSNR_CAP_DB
    return float(min(10.0 * np.log10((high - low) ** 2 / error), PSNR_CAP_DB))


def blend_scores(dose: float, low_dose: np.ndarray, denoised: np.ndarray, full_dose: np.ndarray) -> BlendScores:
    """Score `denoised` blended with `low_dose` at every grid strength against `full_dose` (HU slices)."""
    psnr = [
        [
            capped_psnr(blend_with_source(denoised, low_dose, float(strength)), full_dose, window.low, window.high)
            for strength in STRENGTH_GRID
        ]
        for window in EVALUATION_WINDOWS
    ]
    return BlendScores(dose, measured_noise_hu(low_dose), np.asarray(psnr))


def ramp_strengths(noise_hu: np.ndarray, zero_at_hu: float, full_at_hu: np.ndarray) -> np.ndarray:
    """NoiseStrengthRamp.strength for every slice (rows) and every `full_at_hu` (columns); nan noise gives 1."""
    strengths = (noise_hu[:, None] - zero_at_hu) / (full_at_hu[None, :] - zero_at_hu)
    return np.where(np.isfinite(strengths), np.clip(strengths, 0.0, 1.0), 1.0)


def fit_noise_ramp(scores: Sequence[BlendScores]) -> tuple[NoiseStrengthRamp, float]:
    """The ramp (levels on a RAMP_STEP_HU grid up to RAMP_MAX_HU) with the best mean PSNR over `scores` (both windows
    summed), and that mean; among equals the lowest levels."""
    if not scores:
        raise ValueError("no slices to calibrate on")
    noise = np.array([score.noise_hu for score in scores])
    summed = np.stack([score.psnr_db.sum(axis=0) for score in scores])  # (slices, strengths)
    rows = np.arange(len(scores))[:, None]
    levels = np.arange(0.0, RAMP_MAX_HU + RAMP_STEP_HU, RAMP_STEP_HU)
    best = (-np.inf, 0.0, 0.0)
    for index, zero_at in enumerate(levels[:-1]):
        full_at = levels[index + 1 :]
        mean = summed[rows, grid_index(ramp_strengths(noise, zero_at, full_at))].mean(axis=0)
        column = int(np.argmax(mean))
        if mean[column] > best[0]:
            best = (float(mean[column]), float(zero_at), float(full_at[column]))
    return NoiseStrengthRamp(best[1], best[2]), best[0] / len(EVALUATION_WINDOWS)


def calibration_summary(scores: Sequence[BlendScores], ramp: NoiseStrengthRamp) -> dict[str, dict]:
    """Per dose: slices, median measured noise, mean PSNR per window of the input, the network (strength 1) and
    strength "auto" with `ramp`, and the mean "auto" strength."""
    summary = {}
    for dose in sorted({score.dose for score in scores}, reverse=True):
        chosen = [score for score in scores if score.dose == dose]
        strengths = [ramp.strength(score.noise_hu) for score in chosen]
        rows = {
            "input": np.mean([score.at(0.0) for score in chosen], axis=0),
            "network": np.mean([score.at(1.0) for score in chosen], axis=0),
            "auto": np.mean([score.at(strength) for score, strength in zip(chosen, strengths, strict=True)], axis=0),
        }
        summary[f"{dose:g}"] = {
            "slices": len(chosen),
            "median_noise_hu": float(np.nanmedian([score.noise_hu for score in chosen])),
            "mean_auto_strength": float(np.mean(strengths)),
            **{
                name: {
                    f"psnr_{window.name}": round(float(value), 3) for window, value in zip(EVALUATION_WINDOWS, psnr, strict=True)
                }
                for name, psnr in rows.items()
            },
        }
    return summary
