"""Shared fixtures: the repository root, the command-line scripts, and the optional shared real CT."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from custom.conventions import REPO_ROOT, SHARED_CT_DIR

torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def script() -> Callable[[str], ModuleType]:
    """Import ``scripts/<name>.py`` (scripts are command-line files, not a package) to call its ``main(argv)``."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"script_{name}", REPO_ROOT / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def shared_ct_dir() -> Path:
    """The developers' real CT slices (../shared/data/ct); tests that need them skip cleanly without them."""
    if not (SHARED_CT_DIR / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared real CT data not found at {SHARED_CT_DIR}")
    return SHARED_CT_DIR


@pytest.fixture(scope="session")
def default_datalist(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The embedded default dataset as the first command builds it (real simulation), built once per session."""
    from custom.data.default_dataset import build_default_datalist

    return build_default_datalist(str(tmp_path_factory.mktemp("bundle") / "data" / "default"))
