"""Inference helpers for the bundle: an autocast slice inferer, the denoising strength and the HU pass-through
outside the model's window."""
