"""Make the MLflow handlers that `--tracking mlflow` attaches record what a GAN run needs.

MONAI's default trainer handler logs only `loss` and the epoch count. For comparing WGAN-GP runs a user needs
every loss term per iteration and every hyperparameter; this hooks both into the handlers MONAI attached, so
plain `--tracking mlflow` gives the full record and nothing is logged when tracking is off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from ignite.engine import Engine
from monai.handlers import MLFlowHandler

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
        output = cast("dict[str, Any] | list[dict[str, Any]]", engine.state.output)
        first = output[0] if isinstance(output, list) else output
        values = {name: float(first[name]) for name in LOSS_TERMS if name in first}
        handler._log_metrics({f"train_{name}": value for name, value in values.items()}, step=engine.state.iteration)

    return log


def enrich_mlflow_handlers(handlers: Iterable[Any], params: Mapping[str, Any]) -> int:
    """Give every attached MLFlowHandler the run's hyperparameters and per-iteration loss terms.

    Returns how many handlers were enriched (0 when tracking is off), so the config can call it unconditionally.
    """
    enriched = 0
    for handler in handlers:
        if not isinstance(handler, MLFlowHandler):
            continue
        handler.experiment_param = {**(handler.experiment_param or {}), **{k: _param(v) for k, v in params.items()}}
        if handler.iteration_log and handler.iteration_logger is None:
            handler.iteration_logger = loss_terms_logger(handler)
        enriched += 1
    return enriched


def _param(value: Any) -> Any:
    """MLflow params are strings; keep numbers and booleans readable, devices and paths as text."""
    return value if isinstance(value, (int, float, bool, str)) or value is None else str(value)
