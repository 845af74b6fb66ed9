"""The embedded default dataset: real redistributable CT in the project, simulated low dose, cached, loadable by MONAI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from custom.conventions import EMBEDDED_DATA_DIR
from custom.data import default_dataset
from custom.simulation.noise_texture import local_noise_hu, paired_noise, soft_tissue_mask


def cheap_simulation(full_dose_hu: torch.Tensor, *args, realisations: int = 1, **kwargs) -> torch.Tensor:
    """Stands in for the projector where a test checks only the split and the caching."""
    offsets = torch.arange(1, realisations + 1, dtype=full_dose_hu.dtype).view(-1, 1, 1, 1)
    return full_dose_hu.repeat_interleave(realisations, dim=0) + offsets


def build(cache_dir: Path) -> Path:
    return Path(default_dataset.build_default_datalist(str(cache_dir), str(EMBEDDED_DATA_DIR)))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One build with a stand-in simulation, shared by the tests of this file."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(default_dataset, "simulate_low_dose_hu", cheap_simulation)
        datalist_file = build(tmp_path_factory.mktemp("bundle") / "data" / "default")
    return datalist_file, json.loads(datalist_file.read_text())


def test_the_embedded_sources_carry_their_licences() -> None:
    notice = (EMBEDDED_DATA_DIR / "NOTICE.md").read_text()
    assert default_dataset.SOURCE_SERIES in notice and any((EMBEDDED_DATA_DIR / default_dataset.SOURCE_SERIES).iterdir())
    assert "Apache License" in (EMBEDDED_DATA_DIR / "LICENSE-Apache-2.0.txt").read_text()
    assert "mayo" not in " ".join(path.name.lower() for path in EMBEDDED_DATA_DIR.rglob("*"))


def test_the_splits_are_contiguous_blocks_with_a_gap_after_training(built) -> None:
    datalist_file, datalist = built
    assert datalist_file.name == default_dataset.DATALIST_NAME
    slices = {
        split: sorted({int(Path(entry["full_dose"]).name.split("_")[-3]) for entry in datalist[split]})
        for split in default_dataset.SPLITS
    }
    assert slices == {"training": list(range(12)), "validation": [14, 15, 16], "test": [17, 18, 19]}
    assert len(datalist["training"]) == default_dataset.TRAINING_REALISATIONS * default_dataset.TRAINING_SLICES
    for entry in (entry for split in default_dataset.SPLITS for entry in datalist[split]):
        assert Path(entry["low_dose"]).is_absolute() and Path(entry["low_dose"]).is_file()
        assert Path(entry["full_dose"]).parent == datalist_file.parent


def test_pairs_load_with_monai_as_channel_first_hu_and_realisations_differ(built) -> None:
    _, datalist = built
    load = Compose([LoadImaged(keys=["low_dose", "full_dose"]), EnsureChannelFirstd(keys=["low_dose", "full_dose"])])
    test_pair = load(datalist["test"][0])  # Siemens abdomen: 512 x 512, 0.9765625 mm pixels
    assert test_pair["full_dose"].shape == test_pair["low_dose"].shape == (1, 512, 512)
    np.testing.assert_allclose(test_pair["full_dose"].pixdim[:2], [0.9765625, 0.9765625], rtol=1e-5)
    first, second = (load(entry)["low_dose"] for entry in datalist["training"][:2])
    assert not torch.equal(first, second)


@pytest.mark.slow
def test_the_real_build_gives_mayo_quarter_dose_noise(default_datalist: str) -> None:
    datalist = json.loads(Path(default_datalist).read_text())
    load = LoadImaged(keys=["low_dose", "full_dose"], image_only=True)
    for split in ("validation", "test"):
        pair = load(datalist[split][0])
        low_dose, full_dose = np.asarray(pair["low_dose"]), np.asarray(pair["full_dose"])
        inserted = local_noise_hu(paired_noise(low_dose, full_dose), soft_tissue_mask(full_dose))
        assert 18 < inserted < 36, f"{split}: {inserted:.1f} HU inserted, real Mayo quarter dose has about 26"


def test_second_call_uses_the_cache(built, monkeypatch: pytest.MonkeyPatch) -> None:
    datalist_file, _ = built
    before = {path: path.stat().st_mtime_ns for path in datalist_file.parent.iterdir()}

    def no_rebuild(*args, **kwargs) -> None:
        raise AssertionError("the cache was complete, nothing should be rebuilt")

    monkeypatch.setattr(default_dataset, "build_into", no_rebuild)
    assert build(datalist_file.parent) == datalist_file
    assert {path: path.stat().st_mtime_ns for path in datalist_file.parent.iterdir()} == before
    assert not list(datalist_file.parent.parent.glob(".default-*"))  # no build folders left behind


def test_incomplete_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_dataset, "simulate_low_dose_hu", cheap_simulation)
    cache_dir = tmp_path / "default"
    datalist = json.loads(build(cache_dir).read_text())
    missing = Path(datalist["training"][1]["low_dose"])
    missing.unlink()
    assert not default_dataset.is_complete(cache_dir)
    build(cache_dir)
    assert missing.is_file() and default_dataset.is_complete(cache_dir)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["default"]


def test_a_build_that_loses_the_race_keeps_the_winners_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_dataset, "simulate_low_dose_hu", cheap_simulation)
    cache_dir = tmp_path / "default"
    build(cache_dir)
    winner = (cache_dir / default_dataset.DATALIST_NAME).stat().st_mtime_ns
    late_build = tmp_path / ".late-build"
    late_build.mkdir()
    default_dataset.build_into(late_build, cache_dir, EMBEDDED_DATA_DIR)
    default_dataset.publish(late_build, cache_dir)  # another process published first: keep its cache
    assert (cache_dir / default_dataset.DATALIST_NAME).stat().st_mtime_ns == winner
    assert default_dataset.is_complete(cache_dir)
