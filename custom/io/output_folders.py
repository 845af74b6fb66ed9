"""Check an output folder before any work is done: a file in its place or no write permission is reported at once,
not after minutes of caching and training ("Errno 17: File exists" from deep inside a saver)."""

from __future__ import annotations

import os
from pathlib import Path

from custom.errors import BundleInputError


def writable_folder(path: str | os.PathLike, purpose: str) -> Path:
    """Create `path` if needed and return it; raise `BundleInputError` naming it and `purpose` if it cannot hold output."""
    folder = Path(path).expanduser()
    blocking = next((parent for parent in (folder, *folder.parents) if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise BundleInputError(f"{purpose} '{folder}' cannot be created: '{blocking}' is a file, not a folder; pass another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BundleInputError(f"{purpose} '{folder}' cannot be created: {error.strerror}") from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BundleInputError(f"{purpose} '{folder}' is not writable by this user; pass another path")
    return folder
