"""Crops of whole slices for the critic, so that it keeps scoring what it was trained on.

The recipe trains its critic on 64² and 128² body patches (`custom.engines.patch_schedule`), then ends on whole
slices. Fed whole 512² slices there, the critic scores an input it has never seen (mostly air and table at the
border, anatomy at a scale its features never met), and its gradient-penalty pass over three 512² batches makes a
whole-slice iteration three times as slow as the fidelity terms alone. This takes instead a few crops of the
late-patch size at the same places from the full dose and the generator's output, centred on body pixels as the
training patches are.
"""

from __future__ import annotations

import torch


class CriticCrops:
    """Same-place crops of full dose and output, `count` per image, where the images are larger than `size`.

    Images no larger than `size` (the patch phases) pass through unchanged. Crop centres are drawn with torch's
    global generator (saved in the training checkpoints) among the pixels whose full dose exceeds
    `body_threshold` (model intensity units), or anywhere when an image has none.

    Args:
        size: side of the square crops, in pixels (the recipe's late patch size).
        count: crops per image.
        body_threshold: full-dose intensity above which a pixel is body (the patch sampler's threshold).
    """

    def __init__(self, size: int, count: int, body_threshold: float) -> None:
        if size < 1 or count < 1:
            raise ValueError(f"critic crops need size >= 1 and count >= 1, got size {size} and count {count}")
        self.size = int(size)
        self.count = int(count)
        self.body_threshold = float(body_threshold)

    def __call__(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = real.shape[-2:]
        if height <= self.size and width <= self.size:
            return real, fake
        crop_height, crop_width = min(self.size, height), min(self.size, width)
        real_crops, fake_crops = [], []
        for real_image, fake_image in zip(real, fake, strict=True):
            # the top-left corners whose crop lies inside the image, weighted by body at the crop's centre
            centres = real_image[
                0, crop_height // 2 : height - (crop_height - 1) // 2, crop_width // 2 : width - (crop_width - 1) // 2
            ]
            weights = (centres > self.body_threshold).flatten().float()
            if not weights.any():
                weights = torch.ones_like(weights)
            corners = torch.multinomial(weights, self.count, replacement=True)
            for corner in corners.tolist():
                top, left = divmod(corner, centres.shape[-1])
                real_crops.append(real_image[..., top : top + crop_height, left : left + crop_width])
                fake_crops.append(fake_image[..., top : top + crop_height, left : left + crop_width])
        return torch.stack(real_crops), torch.stack(fake_crops)
