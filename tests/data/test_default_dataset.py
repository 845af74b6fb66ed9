"""The embedded default dataset: built from pydicom's CT test slices, cached, and loadable by MONAI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from custom.data import default_dataset


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[warnings.WarningMessage]]:
    """One real build, shared by the tests of this file (it is the slow part)."""
    cache_dir = tmp_path_factory.mktemp("bundle") / "data" / "default"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datalist_file = Path(default_dataset.build_default_datalist(str(cache_dir)))
    return datalist_file, json.loads(datalist_file.read_text()), caught


def cheap_simulation(full_dose_hu: torch.Tensor, *args, realisations: int = 1, **kwargs) -> torch.Tensor:
    """Stands in for the projector where a test checks only the caching."""
    return full_dose_hu.repeat_interleave(realisations, dim=0) + 1.0


def test_datalist_is_split_patient_wise_with_several_training_realisations(built) -> None:
    datalist_file, datalist, caught = built
    assert datalist_file.name == default_dataset.DATALIST_NAME
    patients = {split: {entry["patient"] for entry in datalist[split]} for split in default_dataset.SPLITS}
    assert patients["validation"] == {"693_UNCR"} and patients["test"] == {"explicit_VR-UN"}
    assert {"CT_small", "J2K_pixelrep_mismatch"} <= patients["training"]
    assert len(datalist["training"]) == default_dataset.TRAINING_REALISATIONS * len(patients["training"])
    assert len(datalist["validation"]) == len(datalist["test"]) == 1
    for entry in (entry for split in default_dataset.SPLITS for entry in datalist[split]):
        assert Path(entry["low_dose"]).is_absolute() and Path(entry["low_dose"]).is_file()
        assert Path(entry["full_dose"]).parent == datalist_file.parent
    if "bad_sequence" not in patients["training"]:  # undecodable without the GPL JPEG plugin: skipped, with a warning
        assert any("bad_sequence.dcm" in str(warning.message) for warning in caught)


def test_pairs_load_with_monai_as_channel_first_hu(built) -> None:
    _, datalist, _ = built
    load = Compose([LoadImaged(keys=["low_dose", "full_dose"]), EnsureChannelFirstd(keys=["low_dose", "full_dose"])])
    test_pair = load(datalist["test"][0])  # explicit_VR-UN.dcm: abdomen, 512 x 512, 0.859375 mm pixels
    full_dose, low_dose = test_pair["full_dose"], test_pair["low_dose"]
    assert full_dose.shape == low_dose.shape == (1, 512, 512) and full_dose.dtype == torch.float32
    np.testing.assert_allclose(full_dose.pixdim[:2], [0.859375, 0.859375])
    assert float(full_dose.min()) == -1024 and 1000 < float(full_dose.max()) < 1300
    body = full_dose > -200
    noise = (low_dose - full_dose)[body]
    assert 5 < float(noise.std()) < 100 and abs(float(noise.mean())) < 5
    small = load(next(entry for entry in datalist["training"] if entry["patient"] == "CT_small"))
    assert small["full_dose"].shape == (1, 128, 128)


def test_training_realisations_differ(built) -> None:
    _, datalist, _ = built
    load = LoadImaged(keys="low_dose", image_only=True)
    realisations = [load(entry)["low_dose"] for entry in datalist["training"] if entry["patient"] == "CT_small"]
    assert len(realisations) == default_dataset.TRAINING_REALISATIONS
    assert not torch.allclose(realisations[0], realisations[1])


def test_second_call_uses_the_cache(built, monkeypatch: pytest.MonkeyPatch) -> None:
    datalist_file, _, _ = built
    before = {path: path.stat().st_mtime_ns for path in datalist_file.parent.iterdir()}

    def no_rebuild(*args, **kwargs) -> None:
        raise AssertionError("the cache was complete, nothing should be rebuilt")

    monkeypatch.setattr(default_dataset, "build_into", no_rebuild)
    assert default_dataset.build_default_datalist(str(datalist_file.parent)) == str(datalist_file)
    assert {path: path.stat().st_mtime_ns for path in datalist_file.parent.iterdir()} == before
    assert not list(datalist_file.parent.parent.glob(".default-*"))  # no build folders left behind


def test_incomplete_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_dataset, "simulate_low_dose_hu", cheap_simulation)
    cache_dir = tmp_path / "default"
    datalist = json.loads(Path(default_dataset.build_default_datalist(str(cache_dir))).read_text())
    missing = Path(datalist["training"][1]["low_dose"])
    missing.unlink()
    assert not default_dataset.is_complete(cache_dir)
    default_dataset.build_default_datalist(str(cache_dir))
    assert missing.is_file() and default_dataset.is_complete(cache_dir)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["default"]


def test_a_build_that_loses_the_race_keeps_the_winners_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_dataset, "simulate_low_dose_hu", cheap_simulation)
    cache_dir = tmp_path / "default"
    default_dataset.build_default_datalist(str(cache_dir))
    winner = (cache_dir / default_dataset.DATALIST_NAME).stat().st_mtime_ns
    late_build = tmp_path / ".late-build"
    late_build.mkdir()
    default_dataset.build_into(late_build, cache_dir)
    default_dataset.publish(late_build, cache_dir)  # another process published first: keep its cache
    assert (cache_dir / default_dataset.DATALIST_NAME).stat().st_mtime_ns == winner
    assert default_dataset.is_complete(cache_dir)
