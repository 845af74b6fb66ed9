"""Start every epoch on a fresh pass of the data loader, so that a resumed run draws exactly the batches the
uninterrupted run would have drawn.

With `epoch_length` shorter or longer than the loader, ignite carries a loader iterator across epoch ends, and a
checkpoint cannot hold an iterator: after a resume the batches differ from the uninterrupted run's. Restarting the
loader at each epoch start makes an epoch's batches depend only on the random states saved with the checkpoint
(`custom.engines.random_states`). Each epoch then sees a fresh random selection of the training pairs.
"""

from __future__ import annotations

from ignite.engine import Engine, Events


class RestartDataEachEpoch:
    """At every epoch start, begin a new pass over the trainer's data loader (after any handler that changed it)."""

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.dataloader is not None:  # set by Engine.run before any epoch starts
            engine.set_data(engine.state.dataloader)
