"""MLflow runs in a real SQLite store: a crashed run is closed, never continued by accident; names never collide;
a resumed training continues its own run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import MLFlowHandler

from custom.tracking.mlflow_logging import (
    CHECKPOINT_KEY,
    ENDED_TAG,
    PROCESS_TAG,
    enrich_mlflow_handlers,
    process_tags,
    writer_alive,
)

EXPERIMENT = "ldct_test"


def handler(store: Path, run_name: str | None = None) -> MLFlowHandler:
    return MLFlowHandler(tracking_uri=f"sqlite:///{store}", experiment_name=EXPERIMENT, run_name=run_name)


def runs(store: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def dead_process_tags() -> dict[str, str]:
    """This host's tags for a process that has ended."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return {**process_tags(), PROCESS_TAG: process.stdout.strip()}


@pytest.mark.faults
def test_run_left_running_by_a_killed_training_is_marked_killed_and_not_reused(tmp_path: Path) -> None:
    store = tmp_path / "mlruns.db"
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    experiment_id = client.create_experiment(EXPERIMENT)
    crashed = client.create_run(experiment_id, run_name="crashed", tags=dead_process_tags())
    live = client.create_run(experiment_id, run_name="live", tags=process_tags())  # this process: alive
    assert not writer_alive(client.get_run(crashed.info.run_id))

    trainer, validator = handler(store), handler(store)
    assert enrich_mlflow_handlers([trainer, validator], {"lambda_gp": 10.0}) == 2
    assert trainer.cur_run is validator.cur_run  # both log into one new run
    assert trainer.cur_run.info.run_id not in (crashed.info.run_id, live.info.run_id)
    statuses = {run.info.run_name: run.info.status for run in runs(store)}
    assert statuses["crashed"] == "KILLED" and statuses["live"] == "RUNNING"
    assert "killed or crashed" in client.get_run(crashed.info.run_id).data.tags[ENDED_TAG]


def test_run_name_collisions_get_a_suffix(tmp_path: Path) -> None:
    store = tmp_path / "mlruns.db"
    for _ in range(3):
        enrich_mlflow_handlers([handler(store, run_name="baseline")], {})
    assert [run.info.run_name for run in runs(store)] == ["baseline", "baseline_2", "baseline_3"]


def test_resumed_training_continues_the_run_recorded_in_its_checkpoint(tmp_path: Path) -> None:
    store = tmp_path / "mlruns.db"
    first = handler(store)
    enrich_mlflow_handlers([first], {"max_epochs": 2})
    first.start(Engine(lambda engine, batch: None))  # logs the params, as at the start of training
    run_id = first.cur_run.info.run_id
    mlflow.MlflowClient(f"sqlite:///{store}").set_terminated(run_id, "KILLED")
    checkpoint = tmp_path / "checkpoint_4.pt"
    torch.save({CHECKPOINT_KEY: {"run_id": run_id}, "trainer": {"iteration": 4}}, checkpoint)

    resumed = handler(store)
    enrich_mlflow_handlers([resumed], {"max_epochs": 4, "seed": 0}, resume_checkpoint=str(checkpoint))
    assert resumed.cur_run.info.run_id == run_id
    assert resumed.cur_run.info.status == "RUNNING"
    assert resumed.experiment_param == {"seed": 0}  # a param cannot change value in MLflow: the first one stays
    assert len(runs(store)) == 1
