"""Self-ensemble: each view is undone exactly, sizes are the groups 1, 2, 4, 8, and the mean over views is kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from custom.inference.self_ensemble import DIHEDRAL_VIEWS, _unview, _view, check_self_ensemble, self_ensemble


def test_every_view_is_undone_exactly() -> None:
    image = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    for transpose, flips in DIHEDRAL_VIEWS:
        assert torch.equal(_unview(_view(image, transpose, flips), transpose, flips), image)
    assert len({_view(image, *view).numpy().tobytes() for view in DIHEDRAL_VIEWS}) == 8  # eight different views


def test_a_network_that_commutes_with_the_views_is_unchanged() -> None:
    image = torch.rand(1, 1, 16, 16)
    pointwise = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        for size in (1, 2, 4, 8):
            torch.testing.assert_close(self_ensemble(pointwise, image, size), pointwise(image))


def test_the_ensemble_is_the_mean_of_the_undone_outputs() -> None:
    torch.manual_seed(0)
    network = nn.Conv2d(1, 1, 3, padding=1)  # a random kernel: not symmetric, so every view gives another output
    image = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        left_right = network(image.flip(-1)).flip(-1)
        torch.testing.assert_close(self_ensemble(network, image, 2), (network(image) + left_right) / 2)
        transposed = network(image.transpose(-2, -1)).transpose(-2, -1)
        eight = self_ensemble(network, image, 8)
        assert not torch.allclose(eight, self_ensemble(network, image, 4))
        assert not torch.allclose(transposed, network(image))
        assert self_ensemble(network, image, 1).equal(network(image))


@pytest.mark.parametrize("size", [0, 3, 16])
def test_a_size_that_is_not_a_group_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match=f"self-ensemble size {size}: must be one of"):
        check_self_ensemble(size)
