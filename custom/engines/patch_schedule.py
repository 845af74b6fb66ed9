"""What the trainer crops over a run: small patches, larger patches late, whole slices at the end.

A generator trained only on 64x64 patches sees, in its stride-16 and stride-32 features, mostly the zero padding of
the patch border; on a whole slice the same features see anatomy, and its output is measurably worse than that of
64x64 tiles (0.4 dB on the L067 test block, bundle/docs/training_and_evaluation.md). Training a later part of the
run on larger patches (same pixels per batch: fewer patches per slice) narrows that gap, while most iterations keep
the cheap, diverse small patches of the paper's recipe.

128x128 patches do not close it. EfficientNetV2's stride-32 stages see hundreds of pixels, and whether a network
carries what lies beyond its training patch (air, table, the body outline) into the organs is left to chance: of
three seeds trained alike, one lost 1.4 dB on whole validation slices against its own 64x64 tiles, and a 128x128
region of its output got worse as the input around it grew past 256 pixels. A short final phase on whole slices
trains the network on exactly what inference gives it; 150 L1 steps on whole slices gave that seed's generator its
tiles' PSNR back (bundle/docs/benchmarks.md, section 6).
"""

from __future__ import annotations

import math

from ignite.engine import Engine, Events
from monai.transforms import RandWeightedCropd
from torch.utils.data import DataLoader


def whole_slice_start(total_iterations: int, iterations_per_epoch: int, fraction: float) -> int | None:
    """The iteration the whole-slice phase starts at: the last whole epochs within `fraction` of the run, or None.

    On an epoch boundary, because the crop size changes only between passes over the loader.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"whole_slice_fraction must be in [0, 1), got {fraction}")
    epochs = math.floor(total_iterations * fraction / iterations_per_epoch)
    return total_iterations - epochs * iterations_per_epoch if epochs else None


class PatchSchedule:
    """From `late_iteration` on crop `late_patch_size` patches; from `whole_slice_iteration` on, whole slices.

    Each switch happens at the first epoch start at or after its iteration (also when a resumed run is already
    past it). Larger patches come fewer per slice (the count divided by the growth in patch area, at least 1), so a
    batch holds about as many pixels as before. Whole slices come one per batch, which also lets slices of different
    sizes train together. Loader workers crop with the new size from the next pass over the loader, which
    `custom.engines.epoch_data.RestartDataEachEpoch` (attached after this handler) begins at the same epoch start.

    Args:
        crop: the training crop transform (its size and number of samples are changed in place).
        late_patch_size: the late patch size; the current size or less means no late switch.
        late_iteration: generator iterations trained before the late switch.
        loader: the training data loader, whose batches become one slice in the whole-slice phase.
        whole_slice_iteration: generator iterations trained before the whole-slice phase; None for no such phase.
    """

    def __init__(
        self,
        crop: RandWeightedCropd,
        late_patch_size: int,
        late_iteration: int,
        loader: DataLoader | None = None,
        whole_slice_iteration: int | None = None,
    ) -> None:
        for name, iteration in (("late_iteration", late_iteration), ("whole_slice_iteration", whole_slice_iteration)):
            if iteration is not None and iteration < 0:
                raise ValueError(f"patch schedule: {name} must be >= 0, got {iteration}")
        if whole_slice_iteration is not None and loader is None:
            raise ValueError("patch schedule: a whole-slice phase needs the training loader (its batch size changes)")
        self.crop = crop
        self.late_patch_size = int(late_patch_size)
        self.late_iteration = int(late_iteration)
        self.loader = loader
        self.whole_slice_iteration = whole_slice_iteration

    @property
    def whole_slices(self) -> bool:
        """True once the crops are whole slices."""
        return min(self.crop.cropper.spatial_size) <= 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if self.whole_slices:
            return
        iteration = engine.state.iteration
        if self.whole_slice_iteration is not None and iteration >= self.whole_slice_iteration:
            self._crop_whole_slices(engine)
        elif iteration >= self.late_iteration and min(self.crop.cropper.spatial_size) < self.late_patch_size:
            self._crop_larger_patches(engine)

    def _crop_larger_patches(self, engine: Engine) -> None:
        cropper = self.crop.cropper
        area_growth = (self.late_patch_size / min(cropper.spatial_size)) ** 2
        cropper.num_samples = max(1, round(cropper.num_samples / area_growth))
        cropper.spatial_size = (self.late_patch_size,) * len(cropper.spatial_size)
        engine.logger.info(
            f"iteration {engine.state.iteration}: training on {self.late_patch_size}-pixel patches, "
            f"{cropper.num_samples} per slice"
        )

    def _crop_whole_slices(self, engine: Engine) -> None:
        assert self.loader is not None and self.loader.batch_sampler is not None  # checked in __init__
        cropper = self.crop.cropper
        cropper.num_samples = 1
        cropper.spatial_size = (-1,) * len(cropper.spatial_size)  # MONAI: a size <= 0 takes the image's own
        # DataLoader forbids setting its batch_size after construction; its batch sampler's is read on every pass
        self.loader.batch_sampler.batch_size = 1  # type: ignore[attr-defined]
        engine.logger.info(f"iteration {engine.state.iteration}: training on whole slices, one per batch")
