"""Inference helpers for the bundle: an autocast slice inferer and the HU pass-through outside the model's window."""
