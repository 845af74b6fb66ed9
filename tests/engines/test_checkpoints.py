"""Checkpoints: bounded rotation across restarts, `latest`, and nothing valid lost to a kill or a full disk."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from builders import wait_while_running
from ignite.engine import Engine

from custom.engines.checkpoints import (
    PREVIOUS_RUN_FOLDER,
    RotatingCheckpointSaver,
    checkpoint_problem,
    checkpoints_in,
    latest_checkpoint,
    resolve_resume,
)
from custom.errors import BundleInputError


def run_saving(folder: Path, iterations: int, resume_from: str = "", keep: int = 2) -> Engine:
    """An engine of `iterations` one-iteration epochs whose checkpoint holds a small network and the trainer."""
    engine = Engine(lambda engine, batch: None)
    save_dict = {"network": torch.nn.Linear(4, 4), "trainer": engine}
    RotatingCheckpointSaver(folder, save_dict, keep=keep, resume_from=resume_from).attach(engine)
    engine.run([0], max_epochs=iterations)
    return engine


def test_rotation_keeps_the_newest_and_counts_files_of_earlier_runs(tmp_path: Path) -> None:
    run_saving(tmp_path, 5)
    assert [step for step, _ in checkpoints_in(tmp_path)] == [4, 5]
    # a resumed run continues the rotation of the files it found: disk use stays at `keep` files
    engine = Engine(lambda engine, batch: None)
    saver = RotatingCheckpointSaver(tmp_path, {"trainer": engine}, keep=2, resume_from=str(tmp_path / "checkpoint_5.pt"))
    saver.attach(engine)
    engine.load_state_dict({"iteration": 5, "max_epochs": 9, "epoch_length": 1})
    engine.run([0], max_epochs=9)
    assert [step for step, _ in checkpoints_in(tmp_path)] == [8, 9]
    assert not (tmp_path / PREVIOUS_RUN_FOLDER).exists()


def test_fresh_run_moves_the_previous_runs_checkpoints_aside_once(tmp_path: Path) -> None:
    run_saving(tmp_path, 6)
    (tmp_path / "checkpoint_final.pt").write_bytes(b"MONAI CheckpointSaver file of an earlier version")
    run_saving(tmp_path, 3)  # a new training into the same folder
    assert [step for step, _ in checkpoints_in(tmp_path)] == [2, 3]
    assert [step for step, _ in checkpoints_in(tmp_path / PREVIOUS_RUN_FOLDER)] == [5, 6]
    assert (tmp_path / PREVIOUS_RUN_FOLDER / "checkpoint_final.pt").is_file()
    run_saving(tmp_path, 1)  # only one earlier generation is kept: bounded whatever the number of restarts
    assert [step for step, _ in checkpoints_in(tmp_path / PREVIOUS_RUN_FOLDER)] == [2, 3]
    assert len(list(tmp_path.rglob("*.pt"))) == 3


@pytest.mark.faults
def test_full_disk_during_a_save_keeps_the_older_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_saving(tmp_path, 2)
    before = {path.name: path.read_bytes() for _, path in checkpoints_in(tmp_path)}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    engine = Engine(lambda engine, batch: None)
    saver = RotatingCheckpointSaver(tmp_path, {"trainer": engine}, resume_from=str(tmp_path / "checkpoint_2.pt"))
    saver.attach(engine)
    engine.load_state_dict({"iteration": 2, "max_epochs": 3, "epoch_length": 1})
    with pytest.raises(OSError, match="No space left"):
        engine.run([0], max_epochs=3)
    # the rotated-out file is removed only after a save succeeded; no partial file is left behind
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


@pytest.mark.faults
def test_truncated_checkpoint_is_skipped_by_latest_and_named_when_asked_for(tmp_path: Path) -> None:
    run_saving(tmp_path, 3)
    newest = tmp_path / "checkpoint_3.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # as a kill in the middle of a non-atomic save would leave it
    assert checkpoint_problem(newest) is not None
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_2.pt"
    assert resolve_resume("latest", tmp_path) == str(tmp_path / "checkpoint_2.pt")
    with pytest.raises(BundleInputError, match=r"checkpoint_3\.pt.*does not load"):
        resolve_resume(str(newest), tmp_path)
    with pytest.raises(BundleInputError, match="no such file"):
        resolve_resume(str(tmp_path / "missing.pt"), tmp_path)
    assert resolve_resume("latest", tmp_path / "empty") == ""  # nothing to resume: a fresh run
    assert resolve_resume("", tmp_path) == ""


SAVING_LOOP = """
import sys, torch
from ignite.engine import Engine
from custom.engines.checkpoints import RotatingCheckpointSaver
engine = Engine(lambda engine, batch: None)
# about 16 MB per checkpoint, so a kill lands inside a save often
save_dict = {"network": torch.nn.Linear(2000, 2000), "trainer": engine}
RotatingCheckpointSaver(sys.argv[1], save_dict, keep=2).attach(engine)
print("ready", flush=True)
engine.run([0], max_epochs=10**6)
"""


@pytest.mark.faults
def test_sigkill_at_any_moment_of_saving_leaves_only_loadable_checkpoints(tmp_path: Path, repo_root: Path) -> None:
    for delay in (0.4, 0.9):  # seconds after the first save: inside a save, or between two
        process = subprocess.Popen([sys.executable, "-c", SAVING_LOOP, str(tmp_path)], cwd=repo_root, stdout=subprocess.PIPE)
        assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
        wait_while_running(process, lambda: bool(checkpoints_in(tmp_path)), "a first complete checkpoint", 120.0)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        found = checkpoints_in(tmp_path)
        assert found, "the kill left no checkpoint"
        assert [path.name for _, path in found if checkpoint_problem(path) is not None] == []
        assert len(found) <= 2
        assert latest_checkpoint(tmp_path) == found[-1][1]
        # the next run's saver removes what the kill interrupted (ignite's temporary files)
        engine = Engine(lambda engine, batch: None)
        RotatingCheckpointSaver(tmp_path, {"trainer": engine}, resume_from=str(found[-1][1])).attach(engine)
        assert [path.name for path in tmp_path.iterdir() if path.is_file() and not path.name.startswith("checkpoint_")] == []
