"""One training per model folder; a killed training never blocks the next."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from custom.engines.training_lock import TrainingLock
from custom.errors import BundleInputError

HOLD_LOCK = """
import sys, time
from custom.engines.training_lock import TrainingLock
lock = TrainingLock(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.faults
def test_second_training_is_refused_while_the_first_runs_and_admitted_after_a_kill(tmp_path: Path, repo_root: Path) -> None:
    first = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], cwd=repo_root, stdout=subprocess.PIPE)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == b"locked"
        with pytest.raises(BundleInputError, match=f"another training \\(process {first.pid}\\) is writing to '{tmp_path}'"):
            TrainingLock(tmp_path)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    TrainingLock(tmp_path).release()  # the operating system released the killed process's lock


def test_lock_on_a_path_that_is_a_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("")
    with pytest.raises(BundleInputError, match=f"'{tmp_path / 'models'}' is a file"):
        TrainingLock(tmp_path / "models" / "run1")
    TrainingLock(tmp_path / "other", enabled=False)  # ranks other than 0 take no lock and create nothing
    assert not (tmp_path / "other").exists()
