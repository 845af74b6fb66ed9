"""The calibrated simulation still inserts the noise it was calibrated to insert, on real Siemens slices.

Any change to the projector, the kernel, the bowtie or the flux that moves the noise level or texture fails
here until scripts/calibrate_simulation.py is re-run (it checks the change against real Mayo quarter dose) and
these figures are updated from its output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from custom.evaluation.noise_measurement import read_series
from custom.evaluation.simulation_calibration import TEST_TOLERANCES, calibration_test_constants

# From bundle/docs/simulation_calibration.json, "test_constants" (written by scripts/calibrate_simulation.py at
# incident flux 2.2e5, B30f-like kernel, 288 views): quarter dose of TotalSegmentator slices 6, 10 and 14, seed 0
# each, measured as simulated minus full dose. Relative tolerances: TEST_TOLERANCES (5 %, 5 %, 25 %).
EXPECTED = {"local_noise_hu_p10": 54.9, "noise_std_hu": 86.7, "peak_cycles_per_pixel": 0.173}


def test_quarter_dose_noise_matches_the_calibration(shared_ct_dir: Path) -> None:
    measured = calibration_test_constants(read_series(shared_ct_dir / "totalsegmentator_abdomen_siemens"))
    for key, expected in EXPECTED.items():
        assert measured[key] == pytest.approx(expected, rel=TEST_TOLERANCES[key]), key
