"""The best-model file: written only on improvement, replaced atomically, and its best value survives a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import perturbed_tiny_generator
from ignite.engine import Engine, Events

from custom.engines.best_model import BestModelSaver
from custom.io import atomic_output
from custom.networks.model_file import read_model_file


def evaluation(saver: BestModelSaver, psnr: float, epoch: int) -> None:
    evaluator = Engine(lambda engine, batch: None)
    evaluator.state.key_metric_name = "psnr_w400"
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: engine.state.metrics.update(psnr_w400=psnr))
    saver.attach(evaluator)
    evaluator.run([0], max_epochs=epoch)


def test_only_improvements_are_saved_and_a_resumed_saver_remembers_the_best(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    saver = BestModelSaver(perturbed_tiny_generator(), path, (-1024.0, 3072.0))
    evaluation(saver, 30.0, epoch=1)
    first = path.stat().st_mtime_ns
    evaluation(saver, 29.0, epoch=2)
    assert path.stat().st_mtime_ns == first and saver.state_dict() == {"best_metric": 30.0, "best_epoch": 1}
    resumed = BestModelSaver(perturbed_tiny_generator(seed=1), path, (-1024.0, 3072.0))
    resumed.load_state_dict(saver.state_dict())  # as CheckpointLoader does with the training checkpoint
    evaluation(resumed, 29.5, epoch=3)
    assert path.stat().st_mtime_ns == first, "a resumed run replaced a better model with a worse one"
    evaluation(resumed, 31.0, epoch=4)
    assert resumed.best_epoch == 4 and read_model_file(path).record is not None


def test_a_failed_save_keeps_the_previous_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    saver = BestModelSaver(perturbed_tiny_generator(), path, (-1024.0, 3072.0))
    evaluation(saver, 30.0, epoch=1)
    before = path.read_bytes()

    def disk_full(_path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_output, "flush_to_disk", disk_full)
    with pytest.raises(OSError, match="No space"):
        evaluation(saver, 31.0, epoch=2)
    assert path.read_bytes() == before and saver.best_epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
