"""Engines: the WGAN-GP trainer (a MONAI ``Trainer``: n_critic critic steps, then one generator step per iteration) and
its handlers: EMA, patch-size schedule, per-epoch data restart, best model, checkpoints, random states, the lock."""
