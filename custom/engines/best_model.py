"""Keep the best generator as a model file: replaced atomically, never deleted first, remembered across resumes.

MONAI's `CheckpointSaver(save_key_metric=True)` deletes the previous best file before writing the new one in place,
and its best value starts from scratch after `--resume_from`, so the first validation of a resumed run replaces a
better model with a worse one. This handler writes through `custom.io.atomic_output` (old file until the new one is
complete) and is itself a checkpoint object: its best value and epoch travel in the training checkpoints.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from torch import nn

from custom.networks.model_file import save_model_file

logger = logging.getLogger(__name__)


class BestModelSaver:
    """On each evaluation, save `network` to `path` when the evaluator's key metric beats the best so far.

    Args:
        network: the network to save (the EMA generator), with its record (`custom.networks.model_file`).
        path: the model file, e.g. bundle/models/model.pt.
        hu_window: the HU window the network's inputs are scaled with, recorded in the file.
        higher_is_better: direction of the key metric (PSNR: True).
    """

    def __init__(
        self, network: nn.Module, path: str | Path, hu_window: tuple[float, float], higher_is_better: bool = True
    ) -> None:
        self.network = network
        self.path = Path(path)
        self.hu_window = (float(hu_window[0]), float(hu_window[1]))
        self.sign = 1.0 if higher_is_better else -1.0
        self.best_metric = -math.inf * self.sign
        self.best_epoch = 0

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.COMPLETED, self)

    def __call__(self, evaluator: Engine) -> None:
        name = getattr(evaluator.state, "key_metric_name", None)
        if name is None or name not in evaluator.state.metrics:
            raise RuntimeError("BestModelSaver needs an evaluator with a key metric (SupervisedEvaluator key_val_metric)")
        value = float(evaluator.state.metrics[name])
        if not math.isfinite(value) or self.sign * (value - self.best_metric) <= 0:
            return
        save_model_file(self.path, self.network, self.hu_window)
        self.best_metric, self.best_epoch = value, int(evaluator.state.epoch)
        logger.info(f"saved the best model so far ({name} {value:.4f} at epoch {self.best_epoch}) to {self.path}")

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
