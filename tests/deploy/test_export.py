"""Exports of the generator against eager PyTorch: the TorchScript bundle (`monai.bundle ckpt_export`) and ONNX.

The generator is a randomly initialised tf_efficientnetv2_b0 whose zero-initialised noise head is replaced by random
weights, so the output is not simply the input. Tolerances: TorchScript 1e-5 (same kernels, CPU float32; observed
exactly 0), ONNX Runtime 1e-4 (its own kernels; observed 6e-8).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import onnx
import pytest
import torch
from builders import TINY_BACKBONE, export_torchscript_bundle, perturbed_tiny_generator

from custom.networks.generator import EfficientNetV2Denoiser

TORCHSCRIPT_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4

ScriptLoader = Callable[[str], ModuleType]


@pytest.fixture(scope="module")
def generator() -> EfficientNetV2Denoiser:
    return perturbed_tiny_generator()


@pytest.fixture(scope="module")
def torchscript_bundle(generator: EfficientNetV2Denoiser, tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    return export_torchscript_bundle(generator, tmp_path_factory.mktemp("torchscript"))


@pytest.fixture(scope="module")
def scripted(torchscript_bundle: Path) -> torch.jit.ScriptModule:
    return torch.jit.load(torchscript_bundle).eval()


def test_ckpt_export_embeds_metadata_and_inference_config(torchscript_bundle: Path, repo_root: Path) -> None:
    extra_files = {"metadata.json": "", "inference.json": ""}
    torch.jit.load(torchscript_bundle, _extra_files=extra_files)
    configs = repo_root / "bundle" / "configs"
    assert json.loads(extra_files["inference.json"]) == json.loads((configs / "inference.json").read_text())
    metadata = json.loads(extra_files["metadata.json"])
    assert metadata["network_data_format"] == json.loads((configs / "metadata.json").read_text())["network_data_format"]


@pytest.mark.parametrize("shape", [(1, 1, 512, 512), (1, 1, 500, 333), (2, 1, 250, 170)], ids=["512", "500x333", "250x170"])
def test_torchscript_matches_eager(
    generator: EfficientNetV2Denoiser, scripted: torch.jit.ScriptModule, shape: tuple[int, ...]
) -> None:
    image = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = generator(image), scripted(image)
    assert actual.shape == image.shape
    assert (expected - image).abs().max() > 1e-3, "the perturbed generator should not be the identity"
    assert (actual - expected).abs().max() <= TORCHSCRIPT_TOLERANCE


def test_onnx_export_matches_eager_with_dynamic_shapes(
    script: ScriptLoader, generator: EfficientNetV2Denoiser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt_file = tmp_path / "model.pt"
    torch.save(generator.state_dict(), ckpt_file)
    onnx_file = tmp_path / "model.onnx"
    argv = ["--ckpt_file", str(ckpt_file), "--backbone", TINY_BACKBONE, "--output", str(onnx_file)]
    shapes = ["512x512", "500x333", "2x250x170"]  # sizes that are not multiples of 32 are padded inside the graph
    status = script("export_onnx").main([*argv, "--check_shapes", *shapes, "--tolerance", str(ONNX_TOLERANCE)])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["passed"]
    assert [check["input_shape"] for check in report["checks"]] == [[1, 1, 512, 512], [1, 1, 500, 333], [2, 1, 250, 170]]
    assert report["max_abs_diff"] <= ONNX_TOLERANCE
    model = onnx.load(onnx_file)
    dims = [dim.dim_param for dim in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    properties = {prop.key: prop.value for prop in model.metadata_props}
    assert properties["size_multiple"] == "32" and properties["backbone"] == TINY_BACKBONE
    assert not list(tmp_path.glob(".tmp-*")), "the temporary export file was left behind"


def test_onnx_export_names_a_checkpoint_that_does_not_fit(
    script: ScriptLoader, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt_file = tmp_path / "other.pt"
    torch.save({"unrelated.weight": torch.zeros(1)}, ckpt_file)
    with pytest.raises(SystemExit) as exit_info:
        script("export_onnx").main(
            ["--ckpt_file", str(ckpt_file), "--backbone", TINY_BACKBONE, "--output", str(tmp_path / "m.onnx")]
        )
    assert exit_info.value.code == 2
    assert "other.pt does not fit" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_parse_shape(script: ScriptLoader) -> None:
    assert script("export_onnx").parse_shape("64x96") == (1, 1, 64, 96)
    assert script("export_onnx").parse_shape("3x32x64") == (3, 1, 32, 64)
    for bad in ("64", "ax64", "0x64"):
        with pytest.raises(Exception, match=bad):
            script("export_onnx").parse_shape(bad)
