"""An exponential moving average of the generator's weights, for validation and the saved model.

GAN generators oscillate from step to step; their weight average denoises better and more steadily than the last
weights (as in ProGAN/StyleGAN and ESRGAN-style training). ignite's `EMAHandler` does the averaging; this only
gives it a warm start that depends on nothing but the iteration count, so that short runs are not stuck near their
initial weights and a resumed run continues the same average. The warm start can begin again at a given iteration:
the whole-slice phase (`custom.engines.patch_schedule`) changes how the generator treats far context, and an
average that still holds a thousand iterations of patch-trained weights would bring that back.
"""

from __future__ import annotations

from typing import Any

from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from ignite.handlers import EMAHandler


class WarmStartEMA(EMAHandler):
    """`EMAHandler` with momentum max(momentum, 9 / (10 + iteration)), the warm-up of timm's `ModelEmaV3`.

    The average follows the model closely at first (momentum 0.82 at iteration 1, 0.08 at 100) and settles to
    `momentum` (0.001: a half-life of about 700 iterations) once 9 / (10 + iteration) falls below it. After
    `restart_iteration` the iteration is counted from there, so the earlier average fades within some 20 steps
    (as the initial weights do at the start of a run).
    """

    def __init__(self, *args: Any, restart_iteration: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restart_iteration = restart_iteration

    def attach(
        self,
        engine: Engine,
        name: str = "ema_momentum",
        warn_if_exists: bool = True,
        event: str | Events | CallableEventWithFilter | EventsList = Events.ITERATION_COMPLETED,
    ) -> None:
        # registered first, so the momentum is set before ignite's handler averages with it
        engine.add_event_handler(event, self._set_momentum, name)
        super().attach(engine, name, warn_if_exists=False, event=event)

    def _set_momentum(self, engine: Engine, name: str) -> None:
        iteration = engine.state.iteration
        if self.restart_iteration is not None and iteration > self.restart_iteration:
            iteration -= self.restart_iteration
        setattr(engine.state, name, max(self.momentum, 9.0 / (10.0 + iteration)))
