"""Deployment: ONNX export, the HU-preserving MONAI Deploy bundle operator and the MONAI Deploy application."""
