"""What makes an array usable as CT in Hounsfield units: finite, on the HU scale, not blank.

Training pairs (`custom.data.pair_checks`) and inference inputs (`custom.io.ct_series_loader`) are refused by the
same rule, before any compute, with the reason this module gives.
"""

from __future__ import annotations

import numpy as np

PLAUSIBLE_HU = (-10000.0, 40000.0)  # beyond it the values are raw stored values or garbage, not HU
MIN_HU_SPREAD = 50.0  # a CT image spans air to tissue; less than this is blank or already normalised


def value_problem(hu: np.ndarray) -> str | None:
    """Why `hu` is not a usable CT image in HU, or None."""
    bad = int(np.count_nonzero(~np.isfinite(hu)))
    if bad:
        return f"{bad} voxels are NaN or infinite"
    low, high = float(hu.min()), float(hu.max())
    if low < PLAUSIBLE_HU[0] or high > PLAUSIBLE_HU[1]:
        return f"values span [{low:g}, {high:g}], not HU (rescale slope/intercept not applied?)"
    if high - low < MIN_HU_SPREAD:
        return f"values span only [{low:g}, {high:g}]: the image is blank or already normalised, not HU"
    return None
