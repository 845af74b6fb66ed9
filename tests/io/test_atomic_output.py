"""Write-then-rename for files, groups of files and folders: a failure mid-write leaves the previous output whole."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from custom.io.atomic_output import atomic_files, atomic_folder, atomic_output


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.faults
def test_a_failed_write_leaves_the_previous_file_folder_and_reports(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_text("old model")
    with pytest.raises(OSError, match="No space"), atomic_output(tmp_path / "model.pt") as temporary:
        temporary.write_text("half a mod")
        raise disk_full()

    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "slice_0001.dcm").write_text("old slice")
    with pytest.raises(OSError, match="No space"), atomic_folder(tmp_path / "dicom") as temporary:
        (temporary / "slice_0001.dcm").write_text("new slice")
        raise disk_full()

    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "psnr_raw.csv").write_text("old table")
    (tmp_path / "evaluation" / "figure.png").write_text("a figure")
    with pytest.raises(OSError, match="No space"), atomic_files(tmp_path / "evaluation") as temporary:
        (temporary / "psnr_raw.csv").write_text("new ta")
        raise disk_full()

    assert {path.relative_to(tmp_path).as_posix(): path.read_text() for path in tmp_path.rglob("*") if path.is_file()} == {
        "model.pt": "old model",
        "dicom/slice_0001.dcm": "old slice",
        "evaluation/psnr_raw.csv": "old table",
        "evaluation/figure.png": "a figure",
    }
    assert sorted(path.name for path in tmp_path.rglob(".*")) == []  # no temporary file or folder left


def test_completed_writes_replace_the_old_outputs_and_keep_other_files(tmp_path: Path) -> None:
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "figure.png").write_text("a figure")
    with atomic_files(tmp_path / "evaluation") as temporary:
        (temporary / "psnr_raw.csv").write_text("new table")
    with atomic_folder(tmp_path / "dicom") as temporary:
        (temporary / "slice_0001.dcm").write_text("first")
    with atomic_folder(tmp_path / "dicom") as temporary:
        (temporary / "slice_0001.dcm").write_text("second")
    assert (tmp_path / "evaluation" / "psnr_raw.csv").read_text() == "new table"
    assert (tmp_path / "evaluation" / "figure.png").read_text() == "a figure"
    assert [path.read_text() for path in (tmp_path / "dicom").iterdir()] == ["second"]
    assert sorted(path.name for path in tmp_path.rglob(".*")) == []
