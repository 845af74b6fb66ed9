"""Shared fixtures: the repository root on sys.path and the optional shared real-CT folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CT_DIR = REPO_ROOT.parent / "shared" / "data" / "ct"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_ct_dir() -> Path:
    """The developers' real CT slices (../shared/data/ct); tests that need them skip cleanly without them."""
    if not (SHARED_CT_DIR / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared real CT data not found at {SHARED_CT_DIR}")
    return SHARED_CT_DIR
