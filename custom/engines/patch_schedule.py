"""Larger training patches late in training, so that whole slices are denoised as well as the patches were.

A generator trained only on 64x64 patches sees, in its stride-16 and stride-32 features, mostly the zero padding of
the patch border; on a whole slice the same features see anatomy, and its output is measurably worse than that of
64x64 tiles (0.4 dB on the L067 test block, bundle/docs/training_and_evaluation.md). Training the last part of the
run on larger patches (same pixels per batch: fewer patches per slice) removes that gap at its cause, while most
iterations keep the cheap, diverse small patches of the paper's recipe.
"""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.transforms import RandWeightedCropd


class LatePatchSize:
    """From `start_iteration` on (at the next epoch start), crop `patch_size` patches, fewer per slice.

    The number of patches per slice is divided by the growth in patch area (at least 1), so a batch holds about as
    many pixels as before. Loader workers crop with the new size from the next pass over the loader, which
    `custom.engines.epoch_data.RestartDataEachEpoch` (attached after this handler) begins at the same epoch start.

    Args:
        crop: the training crop transform (its size and number of samples are changed in place).
        patch_size: the late patch size; the current size or less means no switch.
        start_iteration: generator iterations trained before the switch; the switch happens at the first epoch
            start at or after it (also when a resumed run is already past it).
    """

    def __init__(self, crop: RandWeightedCropd, patch_size: int, start_iteration: int) -> None:
        if start_iteration < 0:
            raise ValueError(f"late patch size: start_iteration must be >= 0, got {start_iteration}")
        self.crop = crop
        self.patch_size = int(patch_size)
        self.start_iteration = int(start_iteration)

    @property
    def pending(self) -> bool:
        """True while the crops are still smaller than the late patch size."""
        return min(self.crop.cropper.spatial_size) < self.patch_size

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.pending or engine.state.iteration < self.start_iteration:
            return
        cropper = self.crop.cropper
        area_growth = (self.patch_size / min(cropper.spatial_size)) ** 2
        cropper.num_samples = max(1, round(cropper.num_samples / area_growth))
        cropper.spatial_size = (self.patch_size,) * len(cropper.spatial_size)
        engine.logger.info(
            f"iteration {engine.state.iteration}: training on {self.patch_size}-pixel patches, {cropper.num_samples} per slice"
        )
