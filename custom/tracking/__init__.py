"""Experiment tracking: MLflow enrichment of MONAI's ``MLFlowHandler`` (params, tags, run names)."""
