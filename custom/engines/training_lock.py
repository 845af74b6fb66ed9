"""One training at a time per output folder: a second run into the same folder would mix checkpoints and models.

The lock is an advisory `flock` on `<folder>/.training.lock`, held for the life of the process; the operating
system releases it when the process ends, however it ends (SIGKILL included), so a killed run never blocks the
next one. Where `fcntl` does not exist (Windows) no lock is taken.
"""

from __future__ import annotations

import os
from pathlib import Path

from custom.errors import BundleInputError
from custom.io.output_folders import writable_folder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".training.lock"


class TrainingLock:
    """Hold an exclusive lock on `folder` (created if needed) while this object lives, or raise if another process does.

    Args:
        folder: the training's model folder (train.json: `ckpt_dir`).
        enabled: False for processes that do not write there (the non-zero ranks of a multi-GPU run).
    """

    def __init__(self, folder: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.descriptor: int | None = None
        if not enabled:
            return
        writable_folder(folder, "model folder (ckpt_dir)")
        if fcntl is None:
            return
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 64).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise BundleInputError(
                f"another training (process {holder}) is writing to '{Path(folder)}': wait for it to end, or give "
                "this one its own --bundle_root (or --ckpt_dir)"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        self.descriptor = descriptor

    def release(self) -> None:
        """Release the lock now (it is released at exit anyway)."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
