"""Engines: the WGAN-GP trainer (a MONAI ``Trainer``: n_critic critic steps, then one generator step per iteration)."""

from custom.engines.wgan_gp_trainer import NonFiniteLossError, WGANGPTrainer

__all__ = ["NonFiniteLossError", "WGANGPTrainer"]
