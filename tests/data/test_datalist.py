"""The paired datalist reader: path resolution and the errors a user sees for a broken datalist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custom.data.datalist import load_paired_datalist


def write_datalist(folder: Path, content) -> Path:
    path = folder / "datalist.json"
    path.write_text(json.dumps(content))
    return path


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_relative_paths_resolve_against_the_datalist_folder(tmp_path: Path) -> None:
    touch(tmp_path, "ld.nii.gz", "fd.nii.gz")
    datalist = write_datalist(tmp_path, {"training": [{"low_dose": "ld.nii.gz", "full_dose": "fd.nii.gz", "patient": "L067"}]})
    (entry,) = load_paired_datalist(datalist, "training")
    assert entry == {"image": str(tmp_path / "ld.nii.gz"), "label": str(tmp_path / "fd.nii.gz"), "patient": "L067"}


def test_base_dir_overrides_the_datalist_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    touch(data, "ld.IMA", "fd.IMA")
    datalist = write_datalist(tmp_path, {"test": [{"low_dose": "ld.IMA", "full_dose": "fd.IMA"}]})
    (entry,) = load_paired_datalist(datalist, "test", base_dir=data)
    assert entry["image"] == str(data / "ld.IMA") and entry["patient"] == ""


@pytest.mark.parametrize(
    "content,split,error,match",
    [
        ({"training": []}, "validation", KeyError, "no 'validation' split"),
        ({"training": []}, "training", ValueError, "is empty"),
        ({"training": [{"low_dose": "ld.npy"}]}, "training", KeyError, r"training\[0\]: missing \['full_dose'\]"),
        ({"training": [{"low_dose": "ld.npy", "full_dose": "nowhere.npy"}]}, "training", FileNotFoundError, "nowhere.npy"),
        ({"training": [{"low_dose": "ld.npy", "full_dose": "fd.dcm"}]}, "training", ValueError, "misaligned"),
    ],
)
def test_broken_datalists_name_the_problem(tmp_path: Path, content, split, error, match) -> None:
    touch(tmp_path, "ld.npy", "fd.dcm")
    datalist = write_datalist(tmp_path, content)
    with pytest.raises(error, match=match):
        load_paired_datalist(datalist, split)


def test_unreadable_datalist_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_paired_datalist(tmp_path / "missing.json", "training")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
        load_paired_datalist(broken, "training")
