"""The critic's crops of whole slices: same place in full dose and output, centred on body, patches untouched."""

from __future__ import annotations

import pytest
import torch

from custom.engines.critic_crops import CriticCrops


def coordinates(height: int, width: int) -> torch.Tensor:
    """An image whose pixel value is its flat index, so a crop tells where it was taken."""
    return torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)


def test_images_no_larger_than_the_crop_pass_through() -> None:
    real, fake = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    cropped_real, cropped_fake = CriticCrops(size=16, count=4, body_threshold=0.5)(real, fake)
    assert cropped_real is real and cropped_fake is fake


def test_crops_are_taken_at_the_same_place_inside_the_image_and_centred_on_body() -> None:
    torch.manual_seed(0)
    height, width, size = 40, 48, 8
    real = torch.zeros(2, 1, height, width)
    real[0, 0, 30:, :6] = 1.0  # body only in a corner: crops must hug it
    real[1, 0, 5:9, 20:30] = 1.0
    fake = coordinates(height, width).expand(2, 1, height, width)
    real_crops, fake_crops = CriticCrops(size=size, count=20, body_threshold=0.5)(real, fake)
    assert real_crops.shape == fake_crops.shape == (40, 1, size, size)
    for index, (real_crop, fake_crop) in enumerate(zip(real_crops, fake_crops, strict=True)):
        top, left = divmod(int(fake_crop[0, 0, 0]), width)
        assert 0 <= top <= height - size and 0 <= left <= width - size
        assert torch.equal(fake_crop[0], fake[0, 0, top : top + size, left : left + size])
        assert torch.equal(real_crop[0], real[index // 20, 0, top : top + size, left : left + size])
        assert real_crop[0, size // 2, size // 2] == 1.0  # the centre is body


def test_an_image_without_body_is_cropped_anywhere() -> None:
    real_crops, fake_crops = CriticCrops(size=8, count=5, body_threshold=0.5)(torch.zeros(1, 1, 20, 20), coordinates(20, 20))
    assert real_crops.shape == fake_crops.shape == (5, 1, 8, 8)


@pytest.mark.parametrize("size, count", [(0, 4), (8, 0)])
def test_empty_crops_are_refused(size: int, count: int) -> None:
    with pytest.raises(ValueError, match="critic crops"):
        CriticCrops(size=size, count=count, body_threshold=0.5)
