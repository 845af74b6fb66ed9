"""Training pairs are checked before any compute: unusable pairs are named with both files and the problem."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import abdomen_phantom

from custom.data.pair_checks import check_training_inputs, correlation_peak
from custom.errors import BundleInputError

AFFINE = np.diag([0.7, 0.7, 3.0, 1.0])


def save(path: Path, hu: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), path)
    return str(path)


def pair(folder: Path, name: str, low: np.ndarray | None = None, full: np.ndarray | None = None, **kwargs) -> dict:
    """A pair entry: full dose with 5 HU noise, low dose of the same anatomy with 30 HU noise unless given."""
    full = abdomen_phantom(0, noise_hu=5.0) if full is None else full
    low = abdomen_phantom(1, noise_hu=30.0) if low is None else low
    return {"image": save(folder / f"{name}_low.nii.gz", low, **kwargs), "label": save(folder / f"{name}_full.nii.gz", full)}


def test_aligned_pairs_pass_and_the_correlation_finds_a_known_shift(tmp_path: Path) -> None:
    good = [pair(tmp_path, "a"), pair(tmp_path, "b")]
    assert check_training_inputs(good, good[:1], 64, [tmp_path / "out"]) == 3
    assert (tmp_path / "out").is_dir()
    full = abdomen_phantom(0, noise_hu=5.0)
    shift, peak, at_zero = correlation_peak(np.roll(full, (3, -5), axis=(0, 1)), full)
    assert shift == (-3, 5) and peak > 0.99 > at_zero


@pytest.mark.faults
def test_misaligned_pair_is_named_with_both_files_and_the_shift(tmp_path: Path) -> None:
    entries = [pair(tmp_path, "good"), pair(tmp_path, "bad", low=np.roll(abdomen_phantom(1, noise_hu=30.0), 4, axis=1))]
    with pytest.raises(BundleInputError) as error:
        check_training_inputs(entries, [], 64, [])
    message = str(error.value)
    assert message.startswith("datalist training[1]: ")
    assert entries[1]["image"] in message and entries[1]["label"] in message
    assert "shifted by 0 rows and -4 columns" in message


@pytest.mark.faults
@pytest.mark.parametrize(
    "make_low, make_kwargs, problem",
    [
        (lambda hu: np.where(np.arange(hu.size).reshape(hu.shape) == 77, np.nan, hu), {}, "1 voxels are NaN or infinite"),
        (lambda hu: hu[:, :120], {}, "differ in shape"),
        (lambda hu: hu, {"affine": np.diag([0.8, 0.8, 3.0, 1.0])}, "differ in voxel spacing"),
        (
            lambda hu: hu,
            {"affine": np.array([[0.7, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 3.0, 6.0], [0, 0, 0, 1]])},
            "placed differently",
        ),
        (lambda hu: (hu + 1024) / 4096, {}, "not HU"),
        (lambda hu: np.random.default_rng(0).normal(0.0, 300.0, hu.shape), {}, "do not show the same anatomy"),
    ],
)
def test_unusable_pair_is_named(tmp_path: Path, make_low, make_kwargs: dict, problem: str) -> None:
    entry = pair(tmp_path, "case", low=make_low(abdomen_phantom(1, noise_hu=30.0)), **make_kwargs)
    with pytest.raises(BundleInputError, match=problem) as error:
        check_training_inputs([], [entry], 64, [])
    assert "validation[0]" in str(error.value) and "case_" in str(error.value)


@pytest.mark.faults
def test_patch_larger_than_the_image_and_an_output_path_that_is_a_file_stop_before_compute(tmp_path: Path) -> None:
    entry = pair(tmp_path, "small")  # 160 x 160
    with pytest.raises(BundleInputError, match=r"smaller than the training patch \(256\)"):
        check_training_inputs([entry], [], 256, [])
    (tmp_path / "eval").write_text("not a folder")
    with pytest.raises(BundleInputError, match=f"'{tmp_path / 'eval'}' is a file"):
        check_training_inputs([entry], [], 64, [tmp_path / "eval" / "figures"])
