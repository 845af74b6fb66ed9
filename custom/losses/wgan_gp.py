"""WGAN-GP objectives: the critic's loss with gradient penalty and the generator's multi-term loss.

The paper's generator loss is adversarial + λ₂·L1 + λ₃·perceptual; the critic loss is the Wasserstein estimate
plus λ·GP on random interpolates between real and generated images (Gulrajani et al. 2017).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def random_interpolates(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """x̂ = εx + (1−ε)x̃ with one ε ~ U(0, 1) per sample, ready for differentiation."""
    epsilon = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    return (epsilon * real.detach() + (1 - epsilon) * fake.detach()).requires_grad_(True)


def gradient_penalty(interpolate_scores: torch.Tensor, interpolates: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """E[(‖∇D(x̂)‖₂ − 1)²] from the critic's scores of the interpolates.

    Under AMP the scores are multiplied by the loss scale before differentiating (so small gradients do not
    underflow in half precision) and `grad_scale` divides it back out, as PyTorch's AMP recipe for gradient
    penalties prescribes; the norm is taken in float32.
    """
    (gradients,) = torch.autograd.grad(interpolate_scores.sum() * grad_scale, interpolates, create_graph=True)
    gradients = gradients.float() / grad_scale
    return ((gradients.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def wasserstein_estimate(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """E[D(real)] − E[D(fake)]: the critic's estimate of the Wasserstein-1 distance (the critic maximises it)."""
    return real_scores.float().mean() - fake_scores.float().mean()


class GeneratorLoss(nn.Module):
    """λ_adv·(−E[D(G(x))]) + λ_l1·L1 + λ_mse·MSE + λ_perceptual·perceptual, with every term reported.

    A term whose weight is zero is not computed, so the same module serves the paper's loss and its ablations
    (L1 + perceptual, L1 only) and RED-CNN's MSE objective.
    """

    def __init__(
        self,
        lambda_adv: float = 1e-3,
        lambda_l1: float = 1.0,
        lambda_perceptual: float = 0.1,
        lambda_mse: float = 0.0,
        perceptual: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if lambda_perceptual and perceptual is None:
            raise ValueError("lambda_perceptual > 0 needs a perceptual network (set lambda_perceptual 0 to drop it)")
        self.weights = {"adv": lambda_adv, "l1": lambda_l1, "mse": lambda_mse, "perceptual": lambda_perceptual}
        self.perceptual = perceptual if lambda_perceptual else None

    @property
    def uses_critic(self) -> bool:
        return bool(self.weights["adv"])

    def forward(
        self,
        prediction: torch.Tensor,
        target: torch.Tensor,
        fake_scores: torch.Tensor | None = None,
        adversarial: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Return {"loss": total, "loss_<term>": unweighted term, ...} for the terms with a non-zero weight.

        `adversarial=False` leaves the adversarial term out for this step (the trainer's warm-up).
        """
        prediction, target = prediction.float(), target.float()
        terms: dict[str, torch.Tensor] = {}
        if self.weights["adv"] and adversarial:
            if fake_scores is None:
                raise ValueError("lambda_adv > 0 needs the critic's scores of the generated images")
            terms["adv"] = -fake_scores.float().mean()
        if self.weights["l1"]:
            terms["l1"] = F.l1_loss(prediction, target)
        if self.weights["mse"]:
            terms["mse"] = F.mse_loss(prediction, target)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(prediction, target)
        if not terms:
            raise ValueError("every generator loss weight is zero: set at least one of lambda_l1, lambda_mse, ...")
        # `terms` is not empty, so the sum is a tensor, never sum()'s start value 0
        total = cast(torch.Tensor, sum(self.weights[name] * value for name, value in terms.items()))
        return {"loss": total, **{f"loss_{name}": value for name, value in terms.items()}}
