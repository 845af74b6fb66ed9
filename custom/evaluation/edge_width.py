"""The 10-90 % edge width of soft-tissue boundaries, measured on the same edge points in several images of a slice.

Edges are found once, on the (noisy) input; every image of the slice (input, outputs, a full-dose reference when
there is one) is sampled along the same profiles and fitted, so widths pair point by point. On a noisy image the
fit reads edges narrower than they are (noise steepens the fitted rise): on simulated Mayo pairs the full dose
measures 6-9 % wider than its own quarter dose at the same points. A ratio against the noisy input therefore
overstates the widening; where a reference exists, `edge_widths_against_reference` measures it against the truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtr, ndtri

# edge detection on the input, smoothed to see edges through low-dose noise (about 30 HU)
EDGE_SMOOTHING_MM = 1.5
PLATEAU_DISTANCE_MM = 3.0  # where the two sides of an edge are read (smoothed input)
EDGE_SIDES_HU = (-250.0, 300.0)  # fat (about -100 HU) to enhanced organs; air, lung and bone edges are left out
MIN_EDGE_CONTRAST_HU = 100.0  # soft tissue against fat, organ against organ: strong enough to fit through the noise
EDGE_CELL_MM = 5.0  # at most one profile (the strongest edge point) per cell, so profiles spread over the slice
MAX_PROFILES_PER_SLICE = 200
# profiles across each edge, sampled on the unsmoothed images
PROFILE_HALF_LENGTH_MM = 5.0
PROFILE_STEP_MM = 0.25
LATERAL_OFFSETS_MM = (-1.0, 0.0, 1.0)  # parallel profiles averaged along the edge: noise down by sqrt(3)
# error-function fit of each profile: grids of centre and blur (sigma), the step found in closed form for each
FIT_CENTRES_MM = np.arange(-2.0, 2.0 + 1e-9, 0.05)
FIT_SIGMAS_MM = np.geomspace(0.05, 4.0, 120)
MIN_FIT_R2 = 0.5  # a profile the step model explains less than this is a structure, not an edge
RISE_10_90_PER_SIGMA = 2.0 * float(ndtri(0.9))  # 10-90 % rise distance of a Gaussian-blurred step: 2.563 sigma


@dataclass(frozen=True)
class EdgeProfiles:
    """Where profiles cross edges: points (n, 2) in pixel (row, column) coordinates, unit normals (n, 2) in mm
    space pointing from the dark to the bright side, and the pixel spacing (row, column) in mm."""

    points: np.ndarray
    normals: np.ndarray
    pixel_spacing_mm: tuple[float, float]

    def sample(self, image: np.ndarray) -> np.ndarray:
        """Profiles (n, samples) of `image` along the normals at PROFILE_STEP_MM, averaged over LATERAL_OFFSETS_MM."""
        offsets = profile_offsets_mm()
        lateral = np.asarray(LATERAL_OFFSETS_MM)
        tangents = np.stack([-self.normals[:, 1], self.normals[:, 0]], axis=1)
        positions_mm = (
            offsets[None, :, None, None] * self.normals[:, None, None, :]
            + lateral[None, None, :, None] * tangents[:, None, None, :]
        )
        coordinates = self.points[:, None, None, :] + positions_mm / np.asarray(self.pixel_spacing_mm)
        values = ndimage.map_coordinates(np.asarray(image, np.float64), coordinates.reshape(-1, 2).T, order=1)
        return values.reshape(len(self.points), len(offsets), len(lateral)).mean(axis=2)


def profile_offsets_mm() -> np.ndarray:
    return np.arange(-PROFILE_HALF_LENGTH_MM, PROFILE_HALF_LENGTH_MM + PROFILE_STEP_MM / 2, PROFILE_STEP_MM)


def find_edges(input_hu: np.ndarray, pixel_spacing_mm: tuple[float, float]) -> EdgeProfiles:
    """Strong soft-tissue edges of a slice, found on the Gaussian-smoothed input (EDGE_SMOOTHING_MM).

    An edge point is a peak of the gradient magnitude along the gradient (non-maximum suppression) whose two
    sides, read PLATEAU_DISTANCE_MM away on the smoothed input, differ by at least MIN_EDGE_CONTRAST_HU, and
    whose whole profile stays in EDGE_SIDES_HU on the smoothed input: soft tissue against fat and organ against
    organ, with no skin, lung or bone within reach, whose contrast would dominate the profile and whose widths no
    soft-tissue reader looks at. Only the strongest point per EDGE_CELL_MM cell is kept (at most
    MAX_PROFILES_PER_SLICE, strongest first), and only where the whole profile lies inside the image. The same
    points serve every output, so input and output widths are paired.
    """
    spacing = np.asarray(pixel_spacing_mm, np.float64)
    smooth = ndimage.gaussian_filter(np.asarray(input_hu, np.float64), EDGE_SMOOTHING_MM / spacing)
    gradient = np.stack(np.gradient(smooth, *spacing))  # HU/mm along rows, columns
    magnitude = np.hypot(gradient[0], gradient[1])
    # a step of the minimum contrast blurred by the smoothing peaks at contrast / (sqrt(2 pi) sigma); half of it
    # is a cheap pre-selection, the contrast test below is the real one
    threshold = 0.5 * MIN_EDGE_CONTRAST_HU / (np.sqrt(2 * np.pi) * EDGE_SMOOTHING_MM)
    points = np.argwhere(magnitude > threshold).astype(np.float64)
    strength = magnitude[magnitude > threshold]
    normals = gradient[:, magnitude > threshold].T / strength[:, None]
    pixel_step = normals / spacing
    pixel_step /= np.linalg.norm(pixel_step, axis=1, keepdims=True)

    def at(image: np.ndarray, where: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(image, where.T, order=1, mode="nearest")

    peak = (strength >= at(magnitude, points + pixel_step)) & (strength >= at(magnitude, points - pixel_step))
    contrast = at(smooth, points + PLATEAU_DISTANCE_MM * normals / spacing) - at(
        smooth, points - PLATEAU_DISTANCE_MM * normals / spacing
    )
    reach = (PROFILE_HALF_LENGTH_MM + max(abs(offset) for offset in LATERAL_OFFSETS_MM)) / spacing
    inside = np.all((points >= reach) & (points <= np.asarray(smooth.shape) - 1 - reach), axis=1)
    keep = peak & (contrast >= MIN_EDGE_CONTRAST_HU) & inside
    candidates = EdgeProfiles(points[keep], normals[keep], (float(spacing[0]), float(spacing[1])))
    along = candidates.sample(smooth)
    soft = np.all((along >= EDGE_SIDES_HU[0]) & (along <= EDGE_SIDES_HU[1]), axis=1)
    points, normals, strength = points[keep][soft], normals[keep][soft], strength[keep][soft]
    order = np.argsort(-strength, kind="stable")
    cells = np.floor(points[order] * spacing / EDGE_CELL_MM).astype(np.int64)
    _, first = np.unique(cells, axis=0, return_index=True)  # the strongest point of each cell
    chosen = order[np.sort(first)][:MAX_PROFILES_PER_SLICE]
    return EdgeProfiles(points[chosen], normals[chosen], (float(spacing[0]), float(spacing[1])))


def fit_edge_widths(profiles: np.ndarray) -> np.ndarray:
    """10-90 % rise distance (mm) of each profile (n, samples at profile_offsets_mm()); nan where it is no edge.

    Each profile is fitted, by least squares, with a Gaussian-blurred step a + b Phi((x - x0) / sigma), the edge
    spread function of a sharp boundary seen through a blurring system; its 10-90 % rise distance is 2.563
    sigma. Fitting the whole profile rather than reading where it crosses 10 % and 90 % keeps low-dose noise from
    moving the crossings. The fit is exhaustive over a grid of (x0, sigma) with (a, b) in closed form, refined by a
    parabola in log sigma, so it cannot end in a local minimum and runs on all profiles at once. A profile counts
    only if it rises (b at least half of MIN_EDGE_CONTRAST_HU), the model explains at least MIN_FIT_R2 of its
    variance, and x0 and sigma lie inside their grids.
    """
    offsets = profile_offsets_mm()
    basis = ndtr((offsets[None, None, :] - FIT_CENTRES_MM[:, None, None]) / FIT_SIGMAS_MM[None, :, None])
    basis -= basis.mean(axis=2, keepdims=True)  # (centres, sigmas, samples), centred: the offset a drops out
    norms = np.einsum("cks,cks->ck", basis, basis)
    centred = np.asarray(profiles, np.float64) - np.mean(profiles, axis=1, keepdims=True)
    projection = np.einsum("ns,cks->nck", centred, basis)
    gain = np.where(projection > 0, projection**2 / norms, 0.0)  # variance explained by a rising step
    flat = gain.reshape(len(centred), -1).argmax(axis=1)
    centre, sigma = np.unravel_index(flat, norms.shape)
    rows = np.arange(len(centred))
    best = gain[rows, centre, sigma]
    step = projection[rows, centre, sigma] / norms[centre, sigma]
    total = np.einsum("ns,ns->n", centred, centred)
    valid = (
        (step >= MIN_EDGE_CONTRAST_HU / 2)
        & (best >= MIN_FIT_R2 * total)
        & (centre > 0)
        & (centre < len(FIT_CENTRES_MM) - 1)
        & (sigma > 0)
        & (sigma < len(FIT_SIGMAS_MM) - 1)
    )
    inner = np.clip(sigma, 1, len(FIT_SIGMAS_MM) - 2)
    left, middle, right = (gain[rows, centre, inner + shift] for shift in (-1, 0, 1))
    curvature = left - 2 * middle + right
    vertex = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    log_sigma = np.log(FIT_SIGMAS_MM[inner]) + np.clip(vertex, -0.5, 0.5) * np.log(FIT_SIGMAS_MM[1] / FIT_SIGMAS_MM[0])
    return np.where(valid, RISE_10_90_PER_SIGMA * np.exp(log_sigma), np.nan)


def edge_widths_mm(
    input_hu: np.ndarray, output_hu: np.ndarray, pixel_spacing_mm: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Paired 10-90 % edge widths (mm) of input and output at the input's edges, for profiles that fit in both: the
    input as its own reference."""
    return edge_widths_against_reference(input_hu, input_hu, {"output": output_hu}, pixel_spacing_mm)["output"]


def edge_widths_against_reference(
    input_hu: np.ndarray, reference_hu: np.ndarray, images_hu: Mapping[str, np.ndarray], pixel_spacing_mm: tuple[float, float]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per named image, paired widths (mm) of the reference and of that image at the input's edges, for profiles
    that fit in both: a widening measured against the truth rather than against the noisy input."""
    edges = find_edges(input_hu, pixel_spacing_mm)
    if not len(edges.points):
        return {name: (np.empty(0), np.empty(0)) for name in images_hu}
    reference = fit_edge_widths(edges.sample(reference_hu))
    paired = {}
    for name, image in images_hu.items():
        widths = fit_edge_widths(edges.sample(image))
        both = np.isfinite(reference) & np.isfinite(widths)
        paired[name] = (reference[both], widths[both])
    return paired
