"""Z-block datalists from one full-dose volume: contiguous blocks, gaps, aligned simulated pairs, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from custom.data.simulated_pairs import InputError
from custom.data.volume_split import build_volume_datalist, zblock_split
from custom.simulation.low_dose import SimulateLowDose


def test_blocks_are_contiguous_disjoint_and_gapped() -> None:
    blocks = zblock_split(140, {"training": 0.7, "validation": 0.1, "test": 0.2}, gap=2)
    assert sum(map(len, blocks.values())) == 140 - 2 * 2
    for indices in blocks.values():
        assert indices == list(range(indices[0], indices[-1] + 1))
    ordered = [blocks[name] for name in ("training", "validation", "test")]
    for before, after in zip(ordered, ordered[1:]):
        assert after[0] - before[-1] - 1 >= 2  # at least two unused slabs between blocks


def test_order_and_tiny_volumes() -> None:
    blocks = zblock_split(20, gap=3, order=("test", "validation", "training"))
    assert blocks["test"][0] == 0 and blocks["training"][-1] == 19
    assert all(blocks.values())
    with pytest.raises(ValueError, match="cannot hold"):
        zblock_split(4, gap=2)
    with pytest.raises(ValueError, match="gap"):
        zblock_split(40, gap=-1)


def disc_volume(size: int = 48, slabs: int = 12) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - size / 2
    body = np.where(x**2 + y**2 < (0.4 * size) ** 2, 40.0, -1000.0).astype(np.float32)
    return np.repeat(body[:, :, None], slabs, axis=2) + np.arange(slabs, dtype=np.float32)[None, None]


def test_volume_datalist_pairs_are_aligned_and_split_by_block(tmp_path: Path) -> None:
    source = tmp_path / "input" / "P1.nii.gz"
    source.parent.mkdir()
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    nib.save(nib.Nifti1Image(disc_volume(), affine), str(source))
    output = tmp_path / "out"
    simulator = SimulateLowDose(dose_fraction=0.25, num_views=32, seed=0)
    datalist = build_volume_datalist(source, output, simulator, gap=2)
    written = json.loads((output / "datalist.json").read_text())
    assert written == datalist and set(written) == {"training", "validation", "test"}
    slabs = {split: [int(entry["slab"]) for entry in entries] for split, entries in written.items()}
    assert max(slabs["training"]) + 2 < min(slabs["validation"]) and max(slabs["validation"]) + 2 < min(slabs["test"])
    for entries in written.values():
        for entry in entries:
            full, low = (nib.load(str(output / entry[key])) for key in ("full_dose", "low_dose"))
            np.testing.assert_allclose(full.get_fdata(), disc_volume()[:, :, int(entry["slab"])])
            assert low.shape == full.shape == (48, 48)
            np.testing.assert_allclose(full.affine[:3, :3], affine[:3, :3])
            assert full.affine[2, 3] == pytest.approx(3.0 * int(entry["slab"]))
            assert np.abs(low.get_fdata() - full.get_fdata()).mean() > 0.5  # noise was inserted


def test_training_realisations_can_each_have_a_dose_of_their_own(tmp_path: Path) -> None:
    source = tmp_path / "input" / "P3.nii.gz"
    source.parent.mkdir()
    nib.save(nib.Nifti1Image(disc_volume(), np.diag([0.7, 0.7, 3.0, 1.0])), str(source))
    output = tmp_path / "out"
    simulator = SimulateLowDose(dose_fraction=0.25, num_views=32, seed=0)
    datalist = build_volume_datalist(source, output, simulator, gap=2, training_dose_fractions=[0.125, 0.5, 0.75])
    training_slabs = {entry["slab"] for entry in datalist["training"]}
    assert len(datalist["training"]) == 3 * len(training_slabs)
    noise: dict[str, list[float]] = {}
    for entry in datalist["training"]:
        full, low = (nib.load(str(output / entry[key])).get_fdata() for key in ("full_dose", "low_dose"))
        noise.setdefault(entry["dose_fraction"], []).append(float((low - full)[16:32, 16:32].std()))
    assert set(noise) == {"0.125", "0.5", "0.75"}
    assert np.mean(noise["0.125"]) > 1.5 * np.mean(noise["0.5"]) > 1.5 * np.mean(noise["0.75"])  # each its own dose
    assert {entry["dose_fraction"] for split in ("validation", "test") for entry in datalist[split]} == {"0.25"}
    info = json.loads((output / "split_info.json").read_text())
    assert info["training_dose_fractions"] == [0.125, 0.5, 0.75] and info["training_realisations"] == 3


@pytest.mark.parametrize(
    ("doses", "realisations", "message"),
    [([0.25, 1.0], 1, "doses in \\(0, 1\\)"), ([], 1, "one or more"), ([0.1, 0.5], 3, "must match")],
)
def test_bad_training_doses_are_named_before_any_slab(
    tmp_path: Path, doses: list[float], realisations: int, message: str
) -> None:
    source = tmp_path / "input" / "P4.nii.gz"
    source.parent.mkdir()
    nib.save(nib.Nifti1Image(disc_volume(), np.eye(4)), str(source))
    simulator = SimulateLowDose(num_views=16)
    with pytest.raises(ValueError, match=message):
        build_volume_datalist(
            source, tmp_path / "out", simulator, training_realisations=realisations, training_dose_fractions=doses
        )
    assert not (tmp_path / "out").exists()


def test_bad_volumes_are_named(tmp_path: Path) -> None:
    simulator = SimulateLowDose(num_views=16)
    inputs = tmp_path / "in"
    inputs.mkdir()
    flat = inputs / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), str(flat))
    with pytest.raises(InputError, match="flat.nii.gz.*3D"):
        build_volume_datalist(flat, tmp_path / "o1", simulator)
    mr = inputs / "mr.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 300.0, np.float32), np.eye(4)), str(mr))
    with pytest.raises(InputError, match="mr.nii.gz.*HU"):
        build_volume_datalist(mr, tmp_path / "o2", simulator)
    with pytest.raises(ValueError, match="input folder"):
        build_volume_datalist(mr, inputs / "out", simulator)
    air_slab = inputs / "air_slab.nii.gz"
    volume = np.full((16, 16, 12), 40.0, np.float32)
    volume[:, :, 9] = -1000.0
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(air_slab))
    with pytest.raises(InputError, match="air_slab.nii.gz: slab 9: no body"):
        build_volume_datalist(air_slab, tmp_path / "o3", simulator, gap=0)
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


def test_prepare_volume_script_writes_a_reproducible_split_and_rejects_bad_settings(script, tmp_path: Path) -> None:
    source = tmp_path / "input" / "P2.nii.gz"
    source.parent.mkdir()
    nib.save(nib.Nifti1Image(disc_volume(slabs=10), np.diag([0.7, 0.7, 3.0, 1.0])), str(source))
    prepare_volume = script("prepare_volume")
    fast = ["--num-views", "32", "--gap", "1", "--seed", "5", "--training-realisations", "2"]
    for name in ("a", "b"):
        assert prepare_volume.main([str(source), str(tmp_path / name), *fast]) == 0
    info = json.loads((tmp_path / "a" / "split_info.json").read_text())
    assert info["simulation"]["num_views"] == 32 and info["simulation"]["seed"] == 5 and info["gap_slabs"] == 1
    datalist = json.loads((tmp_path / "a" / "datalist.json").read_text())
    training = datalist["training"]
    assert len(training) == 2 * len({entry["slab"] for entry in training})  # two noise draws per training slab
    assert training[0]["full_dose"] == training[1]["full_dose"] and training[0]["low_dose"] != training[1]["low_dose"]
    entry = datalist["test"][0]
    first, second = (nib.load(str(tmp_path / name / entry["low_dose"])).get_fdata() for name in ("a", "b"))
    np.testing.assert_array_equal(first, second)  # same seed, same noise
    with pytest.raises(SystemExit, match="incident_flux"):
        prepare_volume.main([str(source), str(tmp_path / "c"), "--incident-flux", "-5"])
    with pytest.raises(SystemExit, match="dose_fraction"):
        prepare_volume.main([str(source), str(tmp_path / "d"), "--dose-fraction", "1.5"])
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
