"""Make the MLflow handlers that `--tracking mlflow` attaches record what a GAN run needs, in the right run.

MONAI's default trainer handler logs only `loss` and the epoch count. For comparing WGAN-GP runs a user needs
every loss term per iteration and every hyperparameter; this hooks both into the handlers MONAI attached, so
plain `--tracking mlflow` gives the full record and nothing is logged when tracking is off.

MONAI's handler also picks its run by itself: without `--run_name` it attaches to the newest run of the
experiment that is not FINISHED, so a run left RUNNING by a killed training is continued by the next, unrelated
one. Here the run is chosen before the handlers start: a new one (a unique name), or, for `--resume_from`, the
run recorded in the checkpoint; runs whose process has died are marked KILLED first.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from ignite.engine import Engine
from mlflow import MlflowClient
from mlflow.entities import Experiment, Run, RunStatus
from monai.handlers import MLFlowHandler

logger = logging.getLogger(__name__)

# tags that tie a run to the process that writes it, so a run whose process died can be told from a live one
HOST_TAG = "ldct.host"
PROCESS_TAG = "ldct.pid"
PROCESS_START_TAG = "ldct.process_start"
ENDED_TAG = "ldct.ended"
CHECKPOINT_KEY = "mlflow_run"  # train.json's checkpoint dict entry holding the run id

# the scalar entries of WGANGPTrainer's output that are worth a curve
LOSS_TERMS = (
    "loss",
    "loss_adv",
    "loss_l1",
    "loss_mse",
    "loss_perceptual",
    "loss_critic",
    "gradient_penalty",
    "wasserstein_distance",
)


def loss_terms_logger(handler: MLFlowHandler) -> Callable[[Engine], None]:
    """An `iteration_logger` that logs each loss term present in the (decollated) trainer output."""

    def log(engine: Engine) -> None:
        # ignite types State.output as int | None; a trainer's output is its (decollated) dict of results
        output = cast("dict[str, Any] | list[dict[str, Any]] | None", engine.state.output)
        if not output:  # an iteration that produced nothing (a stopped run)
            return
        first = output[0] if isinstance(output, list) else output
        values = {name: float(first[name]) for name in LOSS_TERMS if name in first}
        handler._log_metrics({f"train_{name}": value for name, value in values.items()}, step=engine.state.iteration)

    return log


def only_mlflow_handlers(handlers: Iterable[Any]) -> list[MLFlowHandler]:
    """The MLFlowHandlers among a config's handlers (none when tracking is off)."""
    return [handler for handler in handlers if isinstance(handler, MLFlowHandler)]


def enrich_mlflow_handlers(handlers: Iterable[Any], params: Mapping[str, Any], resume_checkpoint: str = "") -> int:
    """Point every attached MLFlowHandler at one run and give it the hyperparameters and per-iteration loss terms.

    The run is new, or the one recorded in `resume_checkpoint` (reopened). Returns how many handlers were enriched
    (0 when tracking is off), so the config can call it unconditionally.
    """
    mlflow_handlers = only_mlflow_handlers(handlers)
    if not mlflow_handlers:
        return 0
    first = mlflow_handlers[0]
    experiment = open_experiment(first)
    mark_dead_runs(first.client, experiment)
    resumed_id = run_id_in_checkpoint(resume_checkpoint)
    run = reopen_run(first.client, resumed_id) if resumed_id else create_run(first.client, experiment, first.run_name)
    logged = run.data.params
    new_params = {key: _param(value) for key, value in params.items() if key not in logged}
    changed = sorted(key for key, value in params.items() if key in logged and logged[key] != str(_param(value)))
    if changed:
        logger.warning(f"MLflow run {run.info.run_id} keeps its first values of {changed} (MLflow params cannot change)")
    for handler in mlflow_handlers:
        handler.experiment, handler.cur_run = experiment, run  # type: ignore[assignment]
        handler.experiment_param = {**(handler.experiment_param or {}), **new_params}
        if handler.iteration_log and handler.iteration_logger is None:
            handler.iteration_logger = loss_terms_logger(handler)
    return len(mlflow_handlers)


def open_experiment(handler: MLFlowHandler) -> Experiment:
    """The handler's experiment, created (with the handler's artifact location) if it does not exist."""
    client: MlflowClient = handler.client
    experiment = client.get_experiment_by_name(handler.experiment_name)
    if experiment is None:
        experiment = client.get_experiment(client.create_experiment(handler.experiment_name, handler.artifact_location))
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"MLflow experiment '{handler.experiment_name}' is deleted; restore it or pass --experiment_name")
    return experiment


def process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from Linux's /proc), '' if it does not exist or is unknown."""
    try:
        # the fields after the parenthesised command name; starttime is field 22 of the line, 20 of these
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_tags() -> dict[str, str]:
    """Tags naming this process, so that a later run can tell whether the run's writer is still alive."""
    return {HOST_TAG: socket.gethostname(), PROCESS_TAG: str(os.getpid()), PROCESS_START_TAG: process_start(os.getpid())}


def writer_alive(run: Run) -> bool:
    """Whether the process that wrote `run` (by its tags) still runs; True when that cannot be known (another host,
    no tags: a run of another tool)."""
    tags = run.data.tags
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PROCESS_TAG, "").isdigit():
        return True
    pid = int(tags[PROCESS_TAG])
    if tags.get(PROCESS_START_TAG):
        return process_start(pid) == tags[PROCESS_START_TAG]  # a reused pid has another start time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead_runs(client: MlflowClient, experiment: Experiment) -> list[str]:
    """Mark KILLED the RUNNING runs of `experiment` whose writing process on this host has ended; returns their ids."""
    running = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")
    dead = [run for run in running if not writer_alive(run)]
    for run in dead:
        client.set_tag(run.info.run_id, ENDED_TAG, "its process ended without closing the run (killed or crashed)")
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
        logger.warning(f"MLflow run '{run.info.run_name}' was left RUNNING by a process that has ended: marked KILLED")
    return [run.info.run_id for run in dead]


def create_run(client: MlflowClient, experiment: Experiment, run_name: str | None) -> Run:
    """A new run named `run_name` (a time stamp by default); a name already used gets a suffix: _2, _3 ..."""
    base = run_name or f"run_{time.strftime('%Y%m%d_%H%M%S')}"
    taken = {run.info.run_name for run in client.search_runs([experiment.experiment_id])}
    name = base
    suffix = 2
    while name in taken:
        name, suffix = f"{base}_{suffix}", suffix + 1
    if name != base:
        logger.warning(f"MLflow run name '{base}' is taken in experiment '{experiment.name}': this run is '{name}'")
    return client.create_run(experiment.experiment_id, run_name=name, tags=process_tags())


def reopen_run(client: MlflowClient, run_id: str) -> Run:
    """The run a resumed training continues, RUNNING again and tagged with this process."""
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    for key, value in process_tags().items():
        client.set_tag(run_id, key, value)
    logger.info(f"continuing MLflow run {run_id}")
    return client.get_run(run_id)


def run_id_in_checkpoint(checkpoint: str) -> str:
    """The MLflow run id recorded in a training checkpoint ('' for no checkpoint or none recorded)."""
    if not checkpoint:
        return ""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return str(content.get(CHECKPOINT_KEY, {}).get("run_id", ""))


class TrackedRun:
    """Checkpoint object recording the MLflow run the training logs to, so that `--resume_from` continues that run.

    Loading does nothing: the run must be chosen before the handlers start, so `enrich_mlflow_handlers` reads it from
    the checkpoint file (`run_id_in_checkpoint`) while the config is initialised.
    """

    def __init__(self, handlers: Iterable[Any]) -> None:
        self.handlers = only_mlflow_handlers(handlers)

    def state_dict(self) -> dict[str, str]:
        run = next((handler.cur_run for handler in self.handlers if handler.cur_run is not None), None)
        return {"run_id": run.info.run_id if run is not None else ""}

    def load_state_dict(self, state: dict[str, str]) -> None:
        """Nothing to restore here (see the class docstring)."""


def _param(value: Any) -> Any:
    """MLflow params are strings; keep numbers and booleans readable, devices and paths as text."""
    return value if isinstance(value, (int, float, bool, str)) or value is None else str(value)
