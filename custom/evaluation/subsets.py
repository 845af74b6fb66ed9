"""Which slices a figure is computed on when it uses fewer than a split or series holds.

`score_model.py --max-slices`, `benchmark_quality.py --max-test-slices` (and its tuning and real-series slices) and
`measure_noise.py` take their subsets with this one rule, so the same count of the same split names the same slices.
`score_model.py --real-slices` does not: it spreads its slices between margins of up to 8 slices at each end of the
series (`custom.evaluation.model_scoring.score_real_series`), so its real-series figures name other slices than
`benchmark_quality.py --real-low-dose-slices`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")


def evenly_spaced(items: Sequence[Item], limit: int | None) -> list[Item]:
    """`limit` items spread evenly over `items`, the first and last included; all of them without a smaller limit."""
    if not limit or limit >= len(items):
        return list(items)
    return [items[int(position)] for position in np.linspace(0, len(items) - 1, limit).round()]
