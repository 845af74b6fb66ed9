"""A self-contained MONAI bundle in the model-zoo layout, built from this repository.

The repository keeps the bundle's configs under `bundle/` and its code in the installable package `custom/`
(design card); a MONAI user expects one folder that runs on its own: `configs/` (with `bundle_root` "."),
`models/model.pt`, `docs/README.md`, `LICENSE`, and the code it imports. This module writes that folder: the
package is copied beside the configs (run from inside the folder, `$import custom...` finds it first), the shipped
model file becomes `models/model.pt`, the embedded real CT comes along for training's default dataset, and
`metadata.json` states the versions installed where the package was built.
"""

from __future__ import annotations

import json
import platform
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from custom.conventions import BUNDLE_DIR, CONFIG_DIR, EMBEDDED_DATA_DIR, META_FILE, REPO_ROOT, SHIPPED_MODEL_FILE
from custom.errors import BundleInputError
from custom.io.atomic_output import atomic_folder
from custom.networks.model_file import read_model_file

PACKAGE_SOURCE = REPO_ROOT / "custom"
CONFIG_FILES = (
    "metadata.json",
    "metadata_schema.json",
    "train.json",
    "evaluate.json",
    "inference.json",
    "multi_gpu_train.json",
    "logging.conf",
)
TOP_LEVEL_FILES = {
    "LICENSE": REPO_ROOT / "LICENSE",
    "requirements.txt": REPO_ROOT / "requirements.txt",
    # the MONAI Deploy application; run inside the package it imports the package's own `custom`
    "monai_deploy_app.py": REPO_ROOT / "scripts" / "monai_deploy_app.py",
    # the MONAI Label app; started from inside the package it serves the package
    "monai_label_app/main.py": REPO_ROOT / "scripts" / "monai_label_app" / "main.py",
}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def installed_versions(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` with the MONAI, PyTorch, NumPy and required package versions of this environment."""
    required = {}
    for name in metadata.get("required_packages_version", {}):
        try:
            required[name] = version(name)
        except PackageNotFoundError as error:
            raise BundleInputError(f"metadata.json requires '{name}', which is not installed here: install it first") from error
    return {
        **metadata,
        "monai_version": version("monai"),
        "pytorch_version": version("torch").split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": required,
    }


# metadata.json's version fields and the distribution each one states
METADATA_VERSION_FIELDS = {"monai_version": "monai", "pytorch_version": "torch", "numpy_version": "numpy"}


def requirement_conflicts(metadata: dict[str, Any], requirements_file: Path = REPO_ROOT / "requirements.txt") -> list[str]:
    """The versions `metadata` states that the requirements file does not allow (or does not list), one line each:
    a bundle must not claim to be tested with versions its own install would never give."""
    requirements = {}
    for line in requirements_file.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            requirement = Requirement(text)
            requirements[canonicalize_name(requirement.name)] = requirement
    stated = {name: metadata[field] for field, name in METADATA_VERSION_FIELDS.items() if field in metadata}
    stated.update(metadata.get("required_packages_version", {}))
    problems = []
    for name, stated_version in stated.items():
        allowed = requirements.get(canonicalize_name(name))
        if allowed is None:
            if name not in METADATA_VERSION_FIELDS.values():  # MONAI's own fields may be indirect (numpy)
                problems.append(f"{name} {stated_version}: required by metadata.json, not listed in {requirements_file.name}")
        elif not allowed.specifier.contains(stated_version, prereleases=True):
            problems.append(f"{name} {stated_version}: outside {requirements_file.name}'s '{allowed}'")
    return problems


def write_configs(target: Path) -> None:
    """The bundle's configs with `bundle_root` "." and metadata versions of this environment."""
    target.mkdir()
    for name in CONFIG_FILES:
        source = CONFIG_DIR / name
        if name == META_FILE.name:
            metadata = installed_versions(json.loads(source.read_text()))
            metadata["packaged_with"] = {"python": platform.python_version(), "source": "scripts/package_bundle.py"}
            (target / name).write_text(json.dumps(metadata, indent=4) + "\n")
        elif source.suffix == ".json" and '"bundle_root"' in source.read_text():
            config = json.loads(source.read_text())
            config["bundle_root"] = "."
            (target / name).write_text(json.dumps(config, indent=4) + "\n")
        else:
            shutil.copy2(source, target / name)


def package_bundle(output: str | Path, model_file: str | Path = SHIPPED_MODEL_FILE) -> Path:
    """Write the self-contained bundle to `output` (a new or empty folder) and return it.

    The folder appears complete or not at all (written beside it, then renamed); an existing non-empty `output` is
    refused, so nothing is overwritten.
    """
    target = Path(output).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BundleInputError(f"package folder '{target}' exists and is not empty; choose a new folder (nothing was written)")
    model = Path(model_file)
    read_model_file(model)  # a missing, damaged or bare weights file stops here, before anything is written
    with atomic_folder(target) as folder:
        write_configs(folder / "configs")
        shutil.copytree(PACKAGE_SOURCE, folder / "custom", ignore=IGNORED)
        (folder / "models").mkdir()
        shutil.copy2(model, folder / "models" / "model.pt")
        shutil.copytree(BUNDLE_DIR / "docs", folder / "docs", ignore=IGNORED)
        shutil.copytree(EMBEDDED_DATA_DIR, folder / "data" / "embedded", ignore=IGNORED)
        for name, source in TOP_LEVEL_FILES.items():
            (folder / name).parent.mkdir(exist_ok=True)
            shutil.copy2(source, folder / name)
    return target
