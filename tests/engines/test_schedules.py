"""Training schedules: the EMA of the generator and the late switch to larger patches."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import RandWeightedCropd

from custom.engines.ema import WarmStartEMA
from custom.engines.patch_schedule import LatePatchSize
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
    LatePatchSize(crop, patch_size=128, start_iteration=5).attach(engine)
    engine.run(range(4), max_epochs=3)  # iterations 1-4, 5-8, 9-12: the switch comes at the start of epoch 3
    assert shapes[:8] == [(8, 1, 64, 64)] * 8
    assert shapes[8:] == [(2, 1, 128, 128)] * 4


def test_random_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    states = RandomStates()
    torch.save({"random_states": states.state_dict()}, tmp_path / "checkpoint.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    states.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["random_states"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
