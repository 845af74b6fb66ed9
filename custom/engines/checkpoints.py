"""Training checkpoints that survive kills, full disks and resumes: atomic files, bounded rotation, `latest`.

MONAI's `CheckpointSaver` wraps ignite's `Checkpoint` and `DiskSaver`; three of its behaviours lose work here:
its rotation forgets the files of a run before a resume or a kill (disk use grows with every restart), it deletes
the oldest file before the new one is written (a kill or a full disk in between leaves one checkpoint fewer), and
`--resume_from` needs a path the user has to find. This module keeps ignite's `Checkpoint` with an atomic
`DiskSaver` (temporary file, then rename) and adds what it lacks: the rotation starts from the files on disk,
old files are removed only after the new one is complete, and `resolve_resume("latest", ...)` picks the newest
checkpoint that loads.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from custom.errors import BundleInputError

logger = logging.getLogger(__name__)

CHECKPOINT_FOLDER = "checkpoints"
CHECKPOINT_FORMAT = "checkpoint_{global_step}.{ext}"  # the step is the generator iteration
CHECKPOINT_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")
PREVIOUS_RUN_FOLDER = "previous_run"  # checkpoints of the run before a fresh start (one generation is kept)
LATEST = "latest"
PARTIAL_SAVE_NAME = re.compile(r"^tmp[a-z0-9_]{8}$")  # tempfile.NamedTemporaryFile's names, as DiskSaver uses them


def checkpoints_in(folder: str | Path) -> list[tuple[int, Path]]:
    """The checkpoint files directly in `folder` as (iteration, path), oldest first."""
    found = []
    for path in Path(folder).glob("checkpoint_*.pt"):
        match = CHECKPOINT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` cannot be resumed from (truncated, not a checkpoint), or None if it loads."""
    try:
        # mmap: only the archive's index is read, so checking a large checkpoint costs milliseconds
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises RuntimeError, pickle errors, zipfile errors ... for a damaged file
        return f"it does not load ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    if not isinstance(content, Mapping) or "trainer" not in content:
        return "it is not a training checkpoint (no 'trainer' entry)"
    return None


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint in `folder` that loads; damaged ones (a kill during a save) are skipped with a warning."""
    for _, path in reversed(checkpoints_in(folder)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning(f"skipping checkpoint '{path}': {problem}")
    return None


def resolve_resume(resume_from: str, folder: str | Path) -> str:
    """The checkpoint to resume from: '' for a fresh run, the newest loadable one for 'latest', else the given path.

    'latest' with nothing to resume from starts a fresh run (so one command both starts and continues a training);
    an explicit path that is missing or damaged is an error before anything is built.
    """
    if not resume_from:
        return ""
    if resume_from == LATEST:
        path = latest_checkpoint(folder)
        if path is None:
            logger.info(f"--resume_from latest: no checkpoint in '{folder}', starting a new training")
            return ""
        logger.info(f"--resume_from latest: resuming from '{path}'")
        return str(path)
    path = Path(resume_from)
    if not path.is_file():
        raise BundleInputError(f"--resume_from '{path}': no such file (pass 'latest' to use the newest in '{folder}')")
    problem = checkpoint_problem(path)
    if problem:
        raise BundleInputError(f"--resume_from '{path}': {problem}; pass 'latest' to use the newest one that loads")
    return str(path)


class _SaveThenRemoveDiskSaver(DiskSaver):
    """ignite's atomic `DiskSaver`, except that a rotated-out file is removed only after the next save completed."""

    def __init__(self, dirname: Path) -> None:
        super().__init__(dirname, atomic=True, create_dir=True, require_empty=False)
        self.pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, filename, metadata)
        for name in self.pending_removals:
            if name != filename:
                (Path(self.dirname) / name).unlink(missing_ok=True)
        self.pending_removals = []

    def remove(self, filename: str) -> None:
        self.pending_removals.append(filename)


class RotatingCheckpointSaver:
    """Save `save_dict` at every `epoch_interval`-th epoch end and at the end of the run; keep the newest `keep`.

    Files are `checkpoint_<iteration>.pt` in `save_dir`. When the run resumes from one of them, the older ones join
    the rotation and newer ones (an abandoned continuation) move to `previous_run/`; a fresh run moves all existing
    checkpoints there (replacing that folder's content), so disk use stays bounded by 2 x `keep` files whatever
    happens, and nothing of the last run is deleted by starting a new one.

    Args:
        save_dir: the checkpoint folder (train.json: `<ckpt_dir>/checkpoints`).
        save_dict: objects with `state_dict` (networks, optimisers, the trainer ...), as for ignite's `Checkpoint`.
        keep: how many checkpoints to keep (at least 1).
        resume_from: the checkpoint this run resumes from ('' for a fresh run), as given by `resolve_resume`.
        epoch_interval: save every this many epochs.
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: Mapping[str, Any],
        keep: int = 2,
        resume_from: str | Path = "",
        epoch_interval: int = 1,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1 checkpoint, got {keep}")
        self.save_dir = Path(save_dir)
        self.save_dict = save_dict
        self.keep = keep
        self.resume_from = Path(resume_from) if str(resume_from) else None
        self.epoch_interval = epoch_interval
        self.saved_iterations: set[int] = set()

    def attach(self, engine: Engine) -> None:
        self.checkpoint = Checkpoint(
            dict(self.save_dict),
            _SaveThenRemoveDiskSaver(self.save_dir),
            filename_pattern=CHECKPOINT_FORMAT,
            n_saved=self.keep,
            global_step_transform=lambda engine, _event: engine.state.iteration,
        )
        self._remove_partial_saves()
        self.checkpoint.load_state_dict({"_saved": [(step, path.name) for step, path in self._continued_files()]})
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.epoch_interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.iteration in self.saved_iterations:  # the last epoch's end is also the run's end
            return
        self.checkpoint(engine)
        self.saved_iterations.add(engine.state.iteration)

    def _remove_partial_saves(self) -> None:
        """Delete the temporary files of saves a kill interrupted (ignite's `DiskSaver` names them tmp*; the
        training lock guarantees that no other run is saving into this folder)."""
        for path in self.save_dir.glob("tmp*"):
            if path.is_file() and PARTIAL_SAVE_NAME.match(path.name):
                path.unlink()
                logger.info(f"removed '{path}', left by a save that was interrupted")

    def _continued_files(self) -> list[tuple[int, Path]]:
        """The checkpoints this run continues; the others are moved to `previous_run/`."""
        existing = checkpoints_in(self.save_dir)
        resumed = CHECKPOINT_NAME.match(self.resume_from.name) if self.resume_from else None
        in_folder = self.resume_from is not None and self.resume_from.parent.resolve() == self.save_dir.resolve()
        last = int(resumed.group(1)) if resumed and in_folder else -1
        continued = [(step, path) for step, path in existing if step <= last]
        others = [path for step, path in existing if step > last]
        # files of MONAI's CheckpointSaver (checkpoint_epoch=N.pt, checkpoint_final.pt) from earlier versions
        others += [path for path in self.save_dir.glob("checkpoint_*.pt") if not CHECKPOINT_NAME.match(path.name)]
        if others:
            previous = self.save_dir / PREVIOUS_RUN_FOLDER
            shutil.rmtree(previous, ignore_errors=True)
            previous.mkdir(parents=True)
            for path in others:
                path.rename(previous / path.name)
            logger.info(f"moved {len(others)} checkpoint(s) of an earlier run to '{previous}'")
        return continued
