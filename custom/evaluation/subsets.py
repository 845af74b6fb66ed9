"""Which slices a figure is computed on when it uses fewer than a split or series holds.

Every script that scores a subset (`score_model.py --max-slices`, `benchmark_quality.py --max-test-slices` and its
real-series slices, `measure_noise.py`) takes it with this one rule, so figures from different scripts that name the
same count name the same slices.
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
