"""Model files that know their network: weights saved with the settings that rebuild the generator.

A bare state_dict loaded into another network fails with hundreds of lines of missing and unexpected keys. Every
model file this bundle writes holds ``{"network": record, "model": state_dict}``: the record names the generator's
settings (backbone, decoder widths, ...), the HU window its inputs are scaled with and its output mode, so
inference builds the right network from the file and a mismatch is one line that says what to override.
Files are read with ``torch.load(weights_only=True)``; bare state_dicts of older runs still load.
"""

from __future__ import annotations

import importlib.metadata
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from pydoc import locate
from typing import Any

import torch
from torch import nn

from custom.conventions import BUNDLE_DIR, MODEL_HU_WINDOW, NOISE_STRENGTH_RAMP_HU, SHIPPED_MODEL_FILE
from custom.errors import BundleInputError
from custom.io.atomic_output import atomic_output
from custom.networks.generator import EfficientNetV2Denoiser

MODEL_FILE_FORMAT = "ldct_effnetv2_wgangp.generator"
MODEL_FILE_VERSION = 1
DISTRIBUTION_NAME = "ldct_effnetv2_wgangp"
RECORD_KEY = "network"
WEIGHTS_KEY = "model"
NOISE_RAMP_KEY = "noise_strength_ramp_hu"  # optional: the model's own ramp for strength "auto"
# settings that change the weights' shapes; the others (pooling window, mean removal) only change the computation
SHAPE_SETTINGS = ("class", "backbone", "in_channels", "decoder_channels", "stem_channels", "channels", "kernel_size")
# the package whose networks a model file may name (nothing else is imported from a file's record)
NETWORKS_PACKAGE = "custom.networks."
DEFAULT_CLASS = f"{EfficientNetV2Denoiser.__module__}.{EfficientNetV2Denoiser.__qualname__}"
# the generator predicts the noise and subtracts it from its input
OUTPUT_MODE = "input minus predicted noise"


class ModelFileError(BundleInputError):
    """A model file that is missing, unreadable, or made for another network; the message is one line."""


def package_version() -> str:
    """The installed version of this project, recorded in model files."""
    try:
        return importlib.metadata.version(DISTRIBUTION_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / AveragedModel wrappers."""
    return getattr(network, "module", network)


def network_settings(network: nn.Module) -> dict[str, Any]:
    """The class and settings a network was built with (its `settings` attribute)."""
    module = unwrap(network)
    settings = getattr(module, "settings", None)
    if not isinstance(settings, dict):
        raise TypeError(f"{type(module).__name__} does not record its settings (needs a `settings` dict)")
    return {"class": f"{type(module).__module__}.{type(module).__qualname__}", **settings}


def network_record(
    network: nn.Module, hu_window: tuple[float, float] = MODEL_HU_WINDOW, noise_ramp_hu: Sequence[float] | None = None
) -> dict[str, Any]:
    """What a model file records beside the weights: format, versions, network class and settings, HU window, and
    the noise ramp of strength "auto" where the model was calibrated."""
    record = {
        "format": MODEL_FILE_FORMAT,
        "version": MODEL_FILE_VERSION,
        "package_version": package_version(),
        "settings": network_settings(network),
        "hu_window": [float(hu_window[0]), float(hu_window[1])],
        "output": OUTPUT_MODE,
    }
    return record if noise_ramp_hu is None else with_noise_ramp(record, noise_ramp_hu)


def with_noise_ramp(record: Mapping[str, Any], noise_ramp_hu: Sequence[float]) -> dict[str, Any]:
    """`record` with the noise ramp of strength "auto" recorded."""
    return {**record, NOISE_RAMP_KEY: [float(level) for level in noise_ramp_hu]}


def check_settings(held: Mapping[str, Any], wanted: Mapping[str, Any], source: str) -> None:
    """Raise ModelFileError (one line) when the weights' shapes cannot fit the wanted network."""
    different = {key: (held.get(key), wanted.get(key)) for key in SHAPE_SETTINGS if held.get(key) != wanted.get(key)}
    if not different:
        return
    holds = ", ".join(f"{key}={file_value!r}" for key, (file_value, _) in different.items())
    asked = ", ".join(f"{key}={config_value!r}" for key, (_, config_value) in different.items())
    overrides = " ".join(f"--{key} {file_value}" for key, (file_value, _) in different.items() if key != "class")
    raise ModelFileError(
        f"{source} holds a network with {holds}, the config asked for {asked}: "
        + (f"pass {overrides} to use the file " if overrides else "use a config for that network ")
        + "(or, for training, --from_scratch true to start without it)"
    )


@dataclass
class ModelFile:
    """A model file read into memory: its path, its record (None for a bare state_dict) and its weights."""

    path: Path
    record: dict[str, Any] | None
    weights: dict[str, torch.Tensor] = field(repr=False)

    @property
    def settings(self) -> dict[str, Any]:
        """The class and settings the network was saved with; the default generator's class for a bare state_dict."""
        return {"class": DEFAULT_CLASS} if self.record is None else {"class": DEFAULT_CLASS, **self.record["settings"]}

    @property
    def hu_window(self) -> tuple[float, float]:
        """The HU window the generator's inputs were scaled with (the bundle's convention for a bare state_dict)."""
        low, high = self.record["hu_window"] if self.record is not None else MODEL_HU_WINDOW
        return float(low), float(high)

    def setting(self, key: str, default: Any) -> Any:
        """One recorded setting, or `default` when the file does not record it."""
        return self.settings.get(key, default)

    @property
    def recorded_noise_ramp_hu(self) -> list[float] | None:
        """The noise ramp of strength "auto" the file records, if it was calibrated."""
        return (self.record or {}).get(NOISE_RAMP_KEY)

    @property
    def noise_strength_ramp_hu(self) -> tuple[float, float]:
        """The noise levels (HU) at which strength "auto" reaches 0 and 1: the file's calibration, else the bundle's."""
        low, high = self.recorded_noise_ramp_hu or NOISE_STRENGTH_RAMP_HU
        return float(low), float(high)


def shipped_model_path(bundle_root: str | Path) -> str:
    """The shipped model: the bundle's own copy under `bundle_root`, else the one installed with this package.

    Runs that point `bundle_root` at an output folder (tests, benchmarks, `--bundle_root /scratch/run1`) still
    start from the shipped weights.
    """
    bundled = Path(bundle_root) / SHIPPED_MODEL_FILE.relative_to(BUNDLE_DIR)
    return str(bundled if bundled.is_file() else SHIPPED_MODEL_FILE)


def read_model_file(path: str | Path) -> ModelFile:
    """Read a model file safely (`weights_only=True`); ModelFileError names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        reason = str(error).split(". ")[0] if str(error) else type(error).__name__
        raise ModelFileError(f"model file {path} is not a readable torch file (truncated or corrupt?): {reason}") from None
    if not isinstance(content, dict):
        raise ModelFileError(f"model file {path} holds a {type(content).__name__}, not a generator's weights")
    if WEIGHTS_KEY in content and isinstance(content[WEIGHTS_KEY], dict):
        record = content.get(RECORD_KEY)
        if record is not None and record.get("format") != MODEL_FILE_FORMAT:
            raise ModelFileError(f"model file {path} has format {record.get('format')!r}, not {MODEL_FILE_FORMAT!r}")
        return ModelFile(path, record, content[WEIGHTS_KEY])
    if content and all(isinstance(value, torch.Tensor) for value in content.values()):
        return ModelFile(path, None, content)  # a bare state_dict of an older run
    raise ModelFileError(f"model file {path} holds neither a generator record nor a state_dict (keys: {list(content)[:5]})")


def load_weights(network: nn.Module, model_file: ModelFile | None) -> nn.Module:
    """Load the file's weights into `network` (returned); nothing to do for None. Mismatches raise one line."""
    if model_file is None:
        return network
    if model_file.record is not None:
        check_settings(model_file.settings, network_settings(network), f"model file {model_file.path}")
    target = unwrap(network)
    try:
        target.load_state_dict(model_file.weights, strict=True)
    except RuntimeError as error:
        missing, unexpected = _key_differences(target, model_file.weights)
        raise ModelFileError(
            f"model file {model_file.path} does not fit the {network_settings(network).get('backbone', 'configured')} network "
            f"({missing} missing, {unexpected} unexpected tensors, {str(error).count('size mismatch')} of another "
            "shape): pass the --backbone it was trained with"
        ) from None
    return network


def _key_differences(network: nn.Module, weights: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    expected = set(network.state_dict())
    return len(expected - set(weights)), len(set(weights) - expected)


def build_generator(model_file: ModelFile, **overrides: Any) -> nn.Module:
    """The network the file records, with its settings (overrides that are not None win), untrained.

    Only classes of `custom.networks` are built; the EfficientNetV2 generator without ImageNet weights (the file
    has weights).
    """
    settings = {**model_file.settings, **{key: value for key, value in overrides.items() if value is not None}}
    class_path = settings.pop("class")
    if not class_path.startswith(NETWORKS_PACKAGE):
        raise ModelFileError(f"model file {model_file.path} names network class {class_path!r}, not one of {NETWORKS_PACKAGE}*")
    network_class = locate(class_path)
    if not isinstance(network_class, type) or not issubclass(network_class, nn.Module):
        raise ModelFileError(f"model file {model_file.path} names network class {class_path!r}, which is not a network class")
    if network_class is EfficientNetV2Denoiser:
        settings["pretrained"] = False
    return network_class(**settings)


def save_model_file(
    path: str | Path,
    network: nn.Module,
    hu_window: tuple[float, float] = MODEL_HU_WINDOW,
    dtype: torch.dtype | None = None,
    noise_ramp_hu: Sequence[float] | None = None,
) -> Path:
    """Write `network`'s weights with their record, atomically; `dtype` (e.g. float16) shrinks floating tensors."""
    weights = {
        name: (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).detach().cpu()
        for name, tensor in unwrap(network).state_dict().items()
    }
    return write_model_file(path, network_record(network, hu_window, noise_ramp_hu), weights)


def write_model_file(path: str | Path, record: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> Path:
    """Write a record and its weights as a model file, atomically."""
    path = Path(path)
    with atomic_output(path) as temporary:
        torch.save({RECORD_KEY: dict(record), WEIGHTS_KEY: dict(weights)}, temporary)
    return path


def save_with_noise_ramp(model_file: ModelFile, target: str | Path, noise_ramp_hu: tuple[float, float]) -> Path:
    """Write `model_file`'s weights and record to `target` (not the source) with `noise_ramp_hu` recorded, atomically."""
    target = Path(target)
    if target.resolve() == model_file.path.resolve():
        raise FileExistsError(f"{target} is the input model file: write the calibrated copy elsewhere")
    if model_file.record is None:
        raise ModelFileError(f"model file {model_file.path} is a bare state_dict: export it with its record first")
    return write_model_file(target, with_noise_ramp(model_file.record, noise_ramp_hu), model_file.weights)


def check_phantom_hu(size: int = 256, seed: int = 0) -> torch.Tensor:
    """A CT-like test image in HU: air (-1000) around a soft-tissue disc (40 HU) with 30 HU of white noise."""
    rows, columns = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    radius = torch.hypot(rows - size / 2, columns - size / 2)
    noise = torch.randn(size, size, generator=torch.Generator().manual_seed(seed)) * 30.0
    return torch.where(radius < 0.4 * size, 40.0 + noise, torch.full_like(noise, -1000.0))


def export_model_file(
    source: str | Path, target: str | Path, dtype: str = "float16", backbone: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Rewrite `source` as `target` in `dtype` with its record; return sizes and how much the output changes (HU).

    The change is measured on a noisy soft-tissue disc in air (`check_phantom_hu`), so a dtype that spoils the model
    shows before it is shipped. `target` must differ from `source` and not exist unless `force`.
    """
    source, target = Path(source), Path(target)
    if target.resolve() == source.resolve():
        raise FileExistsError(f"{target} is the input: write the export elsewhere")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists: pass --force to replace it")
    model = read_model_file(source)
    network = load_weights(build_generator(model, backbone=backbone), model).eval()
    save_model_file(target, network, model.hu_window, dtype=getattr(torch, dtype), noise_ramp_hu=model.recorded_noise_ramp_hu)
    exported = read_model_file(target)
    rebuilt = load_weights(build_generator(exported), exported).eval()
    low, high = model.hu_window
    image = ((check_phantom_hu() - low) / (high - low)).clamp(0.0, 1.0)[None, None]
    with torch.no_grad():
        change = (rebuilt(image) - network(image)).abs().flatten() * (high - low)
    low, high = model.hu_window
    return {
        "source": str(source),
        "target": str(target),
        "dtype": dtype,
        "source_bytes": source.stat().st_size,
        "target_bytes": target.stat().st_size,
        "settings": exported.settings,
        "output_change_hu": {
            "phantom": "256x256: air, a 40 HU disc with 30 HU Gaussian noise",
            "mean": float(change.mean()),
            "p99_9": float(change.quantile(0.999)),
            "max": float(change.max()),
        },
    }
