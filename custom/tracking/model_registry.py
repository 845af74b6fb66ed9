"""What MLflow keeps of a training beyond its curves: the code and data it came from, and the model it made.

MONAI's `MLFlowHandler` logs params, metrics and the executed config. To compare runs and reuse their results a
user also needs the git commit (and whether the tree was dirty), the datalist as a dataset input with its content
hash, the final generator as an MLflow model that `mlflow.pyfunc.load_model(uri).predict(hu)` runs on HU
arrays (optionally registered under a name), and the machine's load while it trained (MLflow's system metrics:
CPU, memory, disk, network, GPU, sampled by a thread; they need `psutil`). `RunRecords` adds all of it to the run
the handlers log to.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import tempfile
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from ignite.engine import Engine, Events
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import Schema, TensorSpec

from custom.conventions import REPO_ROOT
from custom.tracking.mlflow_logging import only_mlflow_handlers

logger = logging.getLogger(__name__)

GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag: the UI links the run to its commit
GIT_DIRTY_TAG = "ldct.git_dirty"
MODEL_NAME = "denoiser"  # the logged model's name within the run
MODEL_FILE_ARTIFACT = "model_file"
# (batch, 1, height, width) HU in and out, any batch, height and width; unnamed, so predict() gets the array itself
HU_SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, -1, -1))]),
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, -1, -1))]),
)


def git_state(folder: Path = REPO_ROOT) -> dict[str, str]:
    """The commit of `folder`'s git checkout and whether it has uncommitted changes; {} outside a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {GIT_COMMIT_TAG: commit.stdout.strip(), GIT_DIRTY_TAG: str(bool(status.stdout.strip())).lower()}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (the datalist: which pairs, in which splits)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def datalist_input(datalist_file: str | Path, context: str = "training") -> DatasetInput:
    """The datalist as an MLflow dataset input: its path as source, its content hash as digest."""
    path = Path(datalist_file).resolve()
    # MLflow's typing marks MetaDataset abstract; it is the documented class for a dataset known by source and digest
    dataset = MetaDataset(source=resolve_dataset_source(str(path)), name=path.parent.name, digest=file_digest(path)[:32])  # type: ignore[abstract]
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


class HUDenoiser(PythonModel):
    """MLflow pyfunc model: (batch, 1, height, width) float32 HU in, denoised HU out, any height and width."""

    def load_context(self, context: PythonModelContext) -> None:
        from custom.conventions import CHANNELS_LAST
        from custom.networks.memory_format import use_channels_last
        from custom.networks.model_file import build_generator, load_weights, read_model_file

        model = read_model_file(context.artifacts[MODEL_FILE_ARTIFACT])
        self.network = use_channels_last(load_weights(build_generator(model), model).eval(), CHANNELS_LAST)
        self.hu_window = model.hu_window

    def predict(self, context: PythonModelContext, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        import torch

        low, high = self.hu_window
        image = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        scaled = ((image - low) / (high - low)).clamp(0.0, 1.0)
        with torch.no_grad():
            denoised = self.network(scaled) * (high - low) + low
        # outside the model's window the input passes through, as in the bundle's inference
        outside = (image < low) | (image > high)
        return torch.where(outside, image, denoised).numpy()


def log_generator(client: MlflowClient, run_id: str, model_file: str | Path, registered_name: str = "") -> str:
    """Log `model_file` to run `run_id` as a pyfunc model with the package's code; returns the model's artifact URI.

    Written with `save_model` and the client (not MLflow's fluent API), so it works on a run another handler has
    already closed and leaves no global active run behind.
    """
    import custom

    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / MODEL_NAME
        mlflow.pyfunc.save_model(
            path=str(local),
            python_model=HUDenoiser(),
            artifacts={MODEL_FILE_ARTIFACT: str(model_file)},
            code_paths=[str(Path(custom.__file__).parent)],
            signature=HU_SIGNATURE,
            # pinned from this environment: MLflow's own inference of requirements loads the model in a subprocess
            pip_requirements=[f"{name}=={version(name)}" for name in ("torch", "timm", "monai", "numpy")],
        )
        client.log_artifacts(run_id, str(local), MODEL_NAME)
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_NAME}"
    if registered_name:
        if not client.search_registered_models(filter_string=f"name = '{registered_name}'"):
            client.create_registered_model(registered_name)
        client.create_model_version(registered_name, source, run_id=run_id)
    return source


class RunRecords:
    """At the start of a training: git and dataset lineage on the MLflow run; at its end: the best model file as an
    MLflow model (and a registered version with `register_model`).

    Args:
        handlers: the bundle's handlers; the MLflow run is the one the first `MLFlowHandler` logs to.
        datalist_file: the training datalist (logged as the run's dataset input with its hash).
        model_file: the model file training leaves (`bundle/models/model.pt`), logged when the run completes.
        register_model: also register the logged model under this name ('' for no registration).
        system_metrics_interval: seconds between samples of MLflow's system metrics (`system/...`); 0 for none.
    """

    def __init__(
        self,
        handlers: Iterable[Any],
        datalist_file: str,
        model_file: str,
        register_model: str = "",
        system_metrics_interval: float = 10.0,
    ) -> None:
        self.handlers = only_mlflow_handlers(handlers)
        self.datalist_file = datalist_file
        self.model_file = Path(model_file)
        self.register_model = register_model
        self.system_metrics_interval = system_metrics_interval
        self.system_metrics: Any = None  # mlflow's SystemMetricsMonitor while it samples
        self.run_id = ""
        self.tracking_uri = ""

    def attach(self, engine: Engine) -> None:
        if self.handlers:
            engine.add_event_handler(Events.STARTED, self.record_lineage)
            engine.add_event_handler(Events.STARTED, self.start_system_metrics)
            engine.add_event_handler(Events.COMPLETED, self.stop_system_metrics)
            engine.add_event_handler(Events.COMPLETED, self.log_model)

    def start_system_metrics(self, engine: Engine) -> None:
        """Sample the machine's load into the run; a resumed training continues the run's system-metric steps.
        The sampling thread also stops by itself once the run is no longer RUNNING (a crashed training)."""
        if not self.run_id or self.system_metrics_interval <= 0:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError as error:  # psutil is a requirement; a hand-made environment may lack it
            logger.warning(f"no MLflow system metrics: {error}")
            return
        self.system_metrics = SystemMetricsMonitor(
            self.run_id, sampling_interval=self.system_metrics_interval, resume_logging=True, tracking_uri=self.tracking_uri
        )
        self.system_metrics.start()

    def stop_system_metrics(self, engine: Engine) -> None:
        if self.system_metrics is not None:
            self.system_metrics.finish()
            self.system_metrics = None

    def record_lineage(self, engine: Engine) -> None:
        handler = self.handlers[0]
        if handler.cur_run is None:
            return
        self.run_id = handler.cur_run.info.run_id
        self.tracking_uri = handler.client.tracking_uri
        for key, value in git_state().items():
            handler.client.set_tag(self.run_id, key, value)
        handler.client.log_inputs(self.run_id, datasets=[datalist_input(self.datalist_file)])

    def log_model(self, engine: Engine) -> None:
        if not self.run_id or not self.model_file.is_file():
            return
        # a client of its own: MONAI's handler may have closed its store at completion already
        source = log_generator(MlflowClient(self.tracking_uri), self.run_id, self.model_file, self.register_model)
        registered = f", registered as '{self.register_model}'" if self.register_model else ""
        logger.info(f"logged {self.model_file} to MLflow run {self.run_id} as a model at {source}{registered}")
