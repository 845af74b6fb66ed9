"""Write-then-rename, so that no reader ever sees a half-written output and a failed write leaves nothing behind.

Files and whole folders (a DICOM series: a PACS import of a folder with 6 of 28 slices looks like a complete series).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# outputs are readable by the group and others, like files written with the usual umask (mkstemp makes them 0600)
OUTPUT_FILE_MODE = 0o644
OUTPUT_FOLDER_MODE = 0o755


@contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path in `target`'s folder and move it onto `target` only once writing succeeded.

    The temporary name is hidden and ends with `target`'s name, so format-by-extension writers (nibabel) still work
    and folder scans skip it; readers of `target` never see a half-written file. The data are fsynced before the
    rename and the folder after it, so a crash leaves the old file or the new one, never an empty one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=f"-{target.name}")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, OUTPUT_FILE_MODE)
        flush_to_disk(Path(temporary))
        os.replace(temporary, target)
        flush_to_disk(target.parent)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `target`; once filled without error, it replaces `target` whole.

    A kill while the folder is filled leaves `target` as it was (the hidden `.tmp-*` folder is the only trace). An
    existing `target` is moved aside, the new folder renamed into place, then the old one deleted: a kill between
    the two renames leaves the complete old folder as a hidden `.old-*` folder, never a partial one under `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-", suffix=f"-{target.name}"))
    try:
        yield temporary
        for file in temporary.iterdir():
            flush_to_disk(file)
        os.chmod(temporary, OUTPUT_FOLDER_MODE)
        previous = None
        if target.exists():
            previous = Path(tempfile.mkdtemp(dir=target.parent, prefix=".old-", suffix=f"-{target.name}"))
            os.replace(target, previous / target.name)
        os.replace(temporary, target)
        flush_to_disk(target.parent)
        if previous is not None:
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


@contextmanager
def atomic_files(target: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder inside `target`; the files written there then replace their namesakes in
    `target` one by one, each by a rename, so every file is old or new, never half-written. For writers that take
    a folder and write several files (MONAI's `MetricsSaver`); other files in `target` are left alone."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target, prefix=".tmp-"))
    try:
        yield staging
        for file in sorted(staging.iterdir()):
            os.chmod(file, OUTPUT_FILE_MODE)
            flush_to_disk(file)
            os.replace(file, target / file.name)
        flush_to_disk(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def flush_to_disk(path: Path) -> None:
    """fsync a file or folder, so that a rename is not committed before the data it names (power loss, kill -9)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_text_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through :func:`atomic_output`."""
    with atomic_output(target) as temporary:
        temporary.write_text(text)


def print_json_report(report: object, target: Path | None) -> None:
    """Print a command's JSON report and, with `target`, also write it there atomically."""
    text = json.dumps(report, indent=2)
    print(text)
    if target is not None:
        write_text_atomically(target, text + "\n")
