"""Model files that record their network: rebuilt from the file, one-line errors for the wrong network or a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import TINY_BACKBONE, perturbed_tiny_generator

from custom.conventions import SHIPPED_MODEL_FILE
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.model_file import (
    ModelFileError,
    build_generator,
    export_model_file,
    load_weights,
    read_model_file,
    save_model_file,
)


def test_a_saved_generator_is_rebuilt_from_its_record_alone(tmp_path: Path) -> None:
    original = perturbed_tiny_generator()
    path = save_model_file(tmp_path / "model.pt", original, hu_window=(-1000.0, 2000.0))
    model = read_model_file(path)
    assert model.settings["backbone"] == TINY_BACKBONE and model.hu_window == (-1000.0, 2000.0)
    rebuilt = load_weights(build_generator(model), model).eval()
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(image), original(image))


def test_half_precision_files_are_half_the_size_and_load_into_float32(tmp_path: Path) -> None:
    generator = perturbed_tiny_generator()
    full = save_model_file(tmp_path / "full.pt", generator)
    half = save_model_file(tmp_path / "half.pt", generator, dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    model = read_model_file(half)
    rebuilt = load_weights(build_generator(model), model)
    assert next(rebuilt.parameters()).dtype == torch.float32


def test_a_file_for_another_backbone_is_refused_in_one_line_with_the_override(tmp_path: Path) -> None:
    path = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    with pytest.raises(ModelFileError) as error:
        load_weights(EfficientNetV2Denoiser("tf_efficientnetv2_b1"), read_model_file(path))
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert f"--backbone {TINY_BACKBONE}" in message and "tf_efficientnetv2_b1" in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "does not exist"), (b"not a torch file", "not a readable torch file"), ("truncate", "not a readable")],
)
def test_missing_or_corrupt_files_are_named(tmp_path: Path, content: bytes | str | None, problem: str) -> None:
    path = tmp_path / "model.pt"
    if content == "truncate":
        save_model_file(path, perturbed_tiny_generator())
        path.write_bytes(path.read_bytes()[:4096])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=problem) as error:
        read_model_file(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_bare_state_dicts_of_older_runs_still_load(tmp_path: Path) -> None:
    generator = perturbed_tiny_generator()
    torch.save(generator.state_dict(), tmp_path / "bare.pt")
    model = read_model_file(tmp_path / "bare.pt")
    assert model.record is None
    load_weights(build_generator(model, backbone=TINY_BACKBONE), model)
    with pytest.raises(ModelFileError, match="missing"):
        load_weights(EfficientNetV2Denoiser("tf_efficientnetv2_b1"), model)


@pytest.mark.skipif(not SHIPPED_MODEL_FILE.is_file(), reason="the shipped model is not in this checkout")
def test_the_shipped_model_fits_its_size_limit_and_records_its_network() -> None:
    assert SHIPPED_MODEL_FILE.stat().st_size <= 25 * 2**20
    model = read_model_file(SHIPPED_MODEL_FILE)
    assert model.record is not None and model.settings["backbone"]
    load_weights(build_generator(model), model)


def test_export_writes_half_precision_and_never_overwrites_by_accident(tmp_path: Path, script) -> None:
    source = save_model_file(tmp_path / "model.pt", perturbed_tiny_generator())
    target = tmp_path / "shipped" / "model.pt"
    report = export_model_file(source, target)
    assert report["target_bytes"] < 0.55 * report["source_bytes"] and report["output_change_hu"]["mean"] < 1.0
    before = target.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        export_model_file(source, target)
    assert script("export_model_file").main([str(source), str(source)]) == 2  # the input itself
    assert target.read_bytes() == before and read_model_file(source).weights
