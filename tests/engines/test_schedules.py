"""Training schedules: the EMA of the generator, and the patch schedule (larger patches late, whole slices last)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.transforms import RandWeightedCropd

from custom.engines.ema import WarmStartEMA
from custom.engines.patch_schedule import PatchSchedule, whole_slice_start
from custom.engines.random_states import RandomStates


def test_the_ema_follows_the_model_closely_at_first_and_slowly_later() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    ema = WarmStartEMA(model, momentum=0.001)
    engine = Engine(lambda engine, batch: model.weight.data.add_(1.0))
    ema.attach(engine)
    momenta: list[float] = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: momenta.append(e.state.ema_momentum))
    engine.run(range(10000), max_epochs=1)
    assert momenta[0] == 9 / 11 and momenta[1999] == 9 / 2010 and momenta[-1] == 0.001
    lag = float(model.weight - ema.ema_model.weight)
    assert 500 < lag < 2000, "at momentum 0.001 the average lags weights that move by 1 per iteration by ~1000"


def test_late_patch_size_switches_once_at_the_epoch_after_its_start() -> None:
    crop = RandWeightedCropd(keys="image", w_key="weight", spatial_size=(64, 64), num_samples=8)
    image = {"image": torch.rand(1, 256, 256), "weight": torch.ones(1, 256, 256)}
    shapes: list[tuple[int, ...]] = []
    engine = Engine(lambda engine, batch: shapes.append((len(crop(image)), *crop(image)[0]["image"].shape)))
    PatchSchedule(crop, late_patch_size=128, late_iteration=5).attach(engine)
    engine.run(range(4), max_epochs=3)  # iterations 1-4, 5-8, 9-12: the switch comes at the start of epoch 3
    assert shapes[:8] == [(8, 1, 64, 64)] * 8
    assert shapes[8:] == [(2, 1, 128, 128)] * 4


def test_a_restarted_ema_forgets_the_earlier_average_within_some_twenty_steps() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    ema = WarmStartEMA(model, momentum=0.001, restart_iteration=1000)
    engine = Engine(lambda engine, batch: model.weight.data.fill_(0.0 if engine.state.iteration <= 1000 else 1.0))
    ema.attach(engine)
    weights: list[float] = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: weights.append(ema.ema_model.weight.item()))
    engine.run(range(1030), max_epochs=1)
    assert abs(weights[999]) < 1e-9, "before the restart the average holds the constant weights"
    assert weights[1000] == pytest.approx(9 / 11), (
        "the first step after the restart weighs the model as the first step of a run does"
    )
    assert weights[-1] > 0.999, "thirty steps later the patch-trained average has faded"


def test_without_a_restart_the_ema_keeps_a_thousand_iterations_of_history() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    ema = WarmStartEMA(model, momentum=0.001)
    engine = Engine(lambda engine, batch: model.weight.data.fill_(0.0 if engine.state.iteration <= 1000 else 1.0))
    ema.attach(engine)
    engine.run(range(1030), max_epochs=1)
    assert ema.ema_model.weight.item() < 0.3, "most of the average is still the earlier weights"


def test_the_patch_schedule_ends_on_whole_slices_one_per_batch() -> None:
    crop = RandWeightedCropd(keys="image", w_key="weight", spatial_size=(64, 64), num_samples=8)
    slices = [
        {"image": torch.rand(1, 128 + 32 * index, 128), "weight": torch.ones(1, 128 + 32 * index, 128)} for index in range(4)
    ]
    loader = torch.utils.data.DataLoader(slices, batch_size=2, collate_fn=lambda batch: [crop(item) for item in batch])
    shapes: list[list[tuple[int, ...]]] = []
    engine = Engine(lambda engine, batch: shapes.append([tuple(patch["image"].shape) for item in batch for patch in item]))
    schedule = PatchSchedule(crop, late_patch_size=128, late_iteration=2, loader=loader, whole_slice_iteration=4)
    schedule.attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED, lambda engine: engine.set_data(loader))  # RestartDataEachEpoch
    engine.run(loader, max_epochs=4, epoch_length=2)
    assert shapes[0] == [(1, 64, 64)] * 16
    assert shapes[2] == [(1, 128, 128)] * 4, "128-pixel patches, a quarter as many per slice"
    assert shapes[4:] == [[(1, 128, 128)], [(1, 160, 128)], [(1, 128, 128)], [(1, 160, 128)]], "whole slices, one a batch"
    assert schedule.whole_slices


def test_the_whole_slice_phase_is_the_last_whole_epochs_within_its_fraction() -> None:
    assert whole_slice_start(2000, 200, 0.1) == 1800
    assert whole_slice_start(2000, 200, 0.15) == 1800, "an epoch boundary: crops change only between loader passes"
    assert whole_slice_start(2000, 300, 0.1) is None, "less than one epoch: no whole-slice phase"
    assert whole_slice_start(2000, 200, 0.0) is None
    with pytest.raises(ValueError, match="whole_slice_fraction"):
        whole_slice_start(2000, 200, 1.0)


def test_a_whole_slice_phase_without_the_loader_is_refused() -> None:
    crop = RandWeightedCropd(keys="image", w_key="weight", spatial_size=(64, 64), num_samples=8)
    with pytest.raises(ValueError, match="training loader"):
        PatchSchedule(crop, late_patch_size=128, late_iteration=5, whole_slice_iteration=10)


def test_random_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    states = RandomStates()
    torch.save({"random_states": states.state_dict()}, tmp_path / "checkpoint.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    states.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["random_states"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
