"""Unit tests of the generator, critic, losses and the WGAN-GP trainer's iteration."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from builders import perturbed_tiny_generator
from ignite.engine import Events
from torch import nn

from custom.engines.critic_crops import CriticCrops
from custom.engines.wgan_gp_trainer import NonFiniteLossError, WGANGPTrainer
from custom.losses.perceptual import PerceptualLoss
from custom.losses.wgan_gp import GeneratorLoss, gradient_penalty, random_interpolates, wasserstein_estimate
from custom.networks.critic import WGANCritic
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.model_file import ModelFileError, save_model_file

SMALL_BACKBONE = "tf_efficientnetv2_b0"


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is exactly (‖w‖ − 1)²."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(1)


@pytest.mark.parametrize("grad_scale", [1.0, 1024.0])
def test_gradient_penalty_equals_analytic_value_on_linear_critic(grad_scale: float) -> None:
    torch.manual_seed(0)
    weight = torch.randn(1, 1, 8, 8)
    critic = LinearCritic(weight)
    real, fake = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    interpolates = random_interpolates(real, fake)
    penalty = gradient_penalty(critic(interpolates), interpolates, grad_scale=grad_scale)
    expected = (weight.norm() - 1) ** 2
    torch.testing.assert_close(penalty, expected, rtol=1e-5, atol=1e-6)
    penalty.backward()  # differentiable in the critic's weights (double backward)
    assert critic.weight.grad is not None and torch.isfinite(critic.weight.grad).all()


def test_gradient_penalty_is_zero_for_unit_norm_critic() -> None:
    weight = torch.randn(1, 1, 4, 4)
    critic = LinearCritic(weight / weight.norm())
    interpolates = random_interpolates(torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4))
    assert gradient_penalty(critic(interpolates), interpolates).item() == pytest.approx(0.0, abs=1e-10)


def test_wasserstein_estimate_sign() -> None:
    assert wasserstein_estimate(torch.tensor([3.0, 5.0]), torch.tensor([1.0, 1.0])).item() == 3.0


def test_generator_loss_reports_only_weighted_terms() -> None:
    prediction, target = torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
    terms = GeneratorLoss(lambda_adv=0.5, lambda_l1=2.0, lambda_perceptual=0.0)(prediction, target, torch.tensor([1.0, 3.0]))
    assert set(terms) == {"loss", "loss_adv", "loss_l1"}
    assert terms["loss_adv"].item() == -2.0
    assert terms["loss"].item() == pytest.approx(0.5 * -2.0 + 2.0 * 1.0)
    with pytest.raises(ValueError, match="critic's scores"):
        GeneratorLoss(lambda_adv=1.0, lambda_perceptual=0.0)(prediction, target)
    with pytest.raises(ValueError, match="perceptual network"):
        GeneratorLoss(lambda_perceptual=0.1)


def test_critic_gives_one_score_per_image_of_any_size() -> None:
    critic = WGANCritic(base_channels=8, num_layers=3)
    assert critic(torch.rand(5, 1, 64, 64)).shape == (5,)
    assert critic(torch.rand(2, 1, 40, 56)).shape == (2,)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())


@pytest.mark.parametrize("height,width", [(37, 53), (64, 64), (5, 100)])
def test_generator_round_trips_odd_sizes_and_starts_as_identity(height: int, width: int) -> None:
    generator = EfficientNetV2Denoiser(SMALL_BACKBONE).eval()
    x = torch.rand(2, 1, height, width)
    with torch.no_grad():
        y = generator(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x)  # zero-initialised noise head: an untrained generator is the identity
    torch.nn.init.normal_(generator.noise_head.weight, std=0.1)
    with torch.no_grad():
        assert not torch.allclose(generator(x), x)


def test_generator_taps_the_papers_stages() -> None:
    generator = EfficientNetV2Denoiser(SMALL_BACKBONE)
    info = generator.encoder.feature_info
    assert info.reduction() == [2, 4, 8, 16, 32]
    assert info.module_name()[2:4] == ["blocks.2", "blocks.4"]


def test_pretrained_weights_fail_with_instructions_offline(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EfficientNetV2Denoiser(SMALL_BACKBONE, pretrained=str(tmp_path / "missing.pth"))
    broken = tmp_path / "broken.pth"
    torch.save({"not": torch.zeros(1)}, broken)
    with pytest.raises(RuntimeError, match="perceptual_pretrained=false"):
        PerceptualLoss("vgg19", pretrained=str(broken))


def test_perceptual_loss_on_ct_features_of_a_saved_generator(tmp_path: Path) -> None:
    """A model file as the perceptual network: the saved encoder's stride-8 features, frozen, no download and no
    random-features warning."""
    generator = perturbed_tiny_generator()
    path = save_model_file(tmp_path / "ct_features.pt", generator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = PerceptualLoss(str(path), pretrained=False)
    loss.train()
    target = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = generator.encoder((target - generator.input_mean) / generator.input_std)[2]
    torch.testing.assert_close(loss.features(target), expected)
    assert all(not p.requires_grad for p in loss.parameters()) and not loss.features.training
    prediction = torch.rand(2, 1, 64, 64, requires_grad=True)
    value = loss(prediction, target)
    value.backward()
    assert value.item() > 0 and prediction.grad is not None and loss(target, target).item() == 0
    with pytest.raises(ModelFileError, match="does not exist"):
        PerceptualLoss(str(tmp_path / "missing.pt"))


def test_perceptual_loss_with_random_features_warns_and_is_frozen() -> None:
    with pytest.warns(UserWarning, match="random features"):
        loss = PerceptualLoss(SMALL_BACKBONE, pretrained="false")
    loss.train()
    assert not loss.features.training
    assert all(not p.requires_grad for p in loss.parameters())
    prediction = torch.rand(2, 1, 32, 32, requires_grad=True)
    value = loss(prediction, torch.rand(2, 1, 32, 32))
    value.backward()
    assert value.item() > 0 and prediction.grad is not None


class CountingAdam(torch.optim.Adam):
    """Adam that counts its steps, to check the critic/generator schedule."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps = 0

    def step(self, closure=None):  # type: ignore[override]
        self.steps += 1
        return super().step(closure)


def make_trainer(
    n_critic: int,
    batches: list[dict],
    lambda_adv: float = 1e-3,
    adversarial_warmup: int = 0,
    adversarial_end: int | None = None,
    critic_crops: CriticCrops | None = None,
    freeze_batch_norm: bool = False,
) -> WGANGPTrainer:
    torch.manual_seed(0)
    generator = EfficientNetV2Denoiser(SMALL_BACKBONE, decoder_channels=(32, 16, 16, 8, 8), stem_channels=8)
    critic = WGANCritic(base_channels=8, num_layers=3)
    return WGANGPTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=batches,
        generator=generator,
        critic=critic,
        g_optimizer=CountingAdam(generator.parameters(), lr=1e-4),
        c_optimizer=CountingAdam(critic.parameters(), lr=1e-4),
        g_loss_function=GeneratorLoss(lambda_adv=lambda_adv, lambda_perceptual=0.0),
        n_critic=n_critic,
        adversarial_warmup=adversarial_warmup,
        adversarial_end=adversarial_end,
        critic_crops=critic_crops,
        freeze_batch_norm=freeze_batch_norm,
    )


def random_batches(count: int) -> list[dict]:
    return [{"image": torch.rand(2, 1, 32, 32), "label": torch.rand(2, 1, 32, 32)} for _ in range(count)]


@pytest.mark.parametrize("n_critic", [1, 3])
def test_critic_takes_n_critic_steps_per_generator_step(n_critic: int) -> None:
    trainer = make_trainer(n_critic, random_batches(2))
    critic_before = [p.detach().clone() for p in trainer.critic.parameters()]
    trainer.run()
    assert trainer.g_optimizer.steps == 2
    assert trainer.c_optimizer.steps == 2 * n_critic
    assert trainer.state.critic_iterations == 2 * n_critic
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, trainer.critic.parameters()))
    output = trainer.state.output[0]  # decollated: one dict per sample, scalars replicated
    for key in ("loss", "loss_adv", "loss_l1", "loss_critic", "gradient_penalty", "wasserstein_distance", "pred"):
        assert key in output


def test_no_adversarial_term_trains_no_critic() -> None:
    trainer = make_trainer(5, random_batches(2), lambda_adv=0.0)
    trainer.run()
    assert trainer.c_optimizer.steps == 0 and trainer.g_optimizer.steps == 2
    assert "loss_adv" not in trainer.state.output[0]


def test_adversarial_warmup_trains_the_generator_alone_first() -> None:
    trainer = make_trainer(3, random_batches(3), adversarial_warmup=2)
    seen: list[bool] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: seen.append("loss_adv" in engine.state.output[0]))
    trainer.run()
    assert trainer.g_optimizer.steps == 3
    assert trainer.c_optimizer.steps == trainer.state.critic_iterations == 3  # iteration 3 only
    assert seen == [False, False, True]
    with pytest.raises(ValueError, match="adversarial_warmup"):
        make_trainer(3, random_batches(1), adversarial_warmup=-1)


def test_adversarial_end_trains_the_generator_alone_again_afterwards() -> None:
    trainer = make_trainer(2, random_batches(4), adversarial_warmup=1, adversarial_end=3)
    seen: list[bool] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: seen.append("loss_adv" in engine.state.output[0]))
    critic_before: list[torch.Tensor] = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(once=3),
        lambda _: critic_before.extend(p.detach().clone() for p in trainer.critic.parameters()),
    )
    trainer.run()
    assert seen == [False, True, True, False]
    assert trainer.g_optimizer.steps == 4
    assert trainer.c_optimizer.steps == trainer.state.critic_iterations == 4  # iterations 2 and 3, 2 steps each
    assert all(torch.equal(a, b) for a, b in zip(critic_before, trainer.critic.parameters()))  # untouched at 4
    with pytest.raises(ValueError, match="adversarial_end"):
        make_trainer(2, random_batches(1), adversarial_warmup=2, adversarial_end=2)


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_batch_norm_keeps_its_statistics_and_trains_its_scale(freeze: bool) -> None:
    trainer = make_trainer(1, random_batches(2), freeze_batch_norm=freeze)
    norms = [m for m in trainer.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    statistics_before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms]
    scales_before = [m.weight.detach().clone() for m in norms]
    trainer.run()
    statistics_kept = [
        torch.equal(mean, m.running_mean) and torch.equal(var, m.running_var) and count == int(m.num_batches_tracked)
        for (mean, var, count), m in zip(statistics_before, norms, strict=True)
    ]
    assert norms and all(statistics_kept) == freeze and any(statistics_kept) == freeze
    assert any(not torch.equal(before, m.weight) for before, m in zip(scales_before, norms, strict=True))
    assert trainer.generator.training  # the rest of the generator trains as usual (dropout, stochastic depth)


def test_the_critic_scores_crops_of_larger_images_in_both_steps() -> None:
    trainer = make_trainer(1, random_batches(1), critic_crops=CriticCrops(size=16, count=3, body_threshold=0.0))
    seen: list[tuple[int, ...]] = []
    trainer.critic.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    trainer.run()
    # critic step: real, fake and interpolates of 2 images x 3 crops; generator step: the output's crops
    assert seen == [(18, 1, 16, 16), (6, 1, 16, 16)]


def test_a_warmup_as_long_as_the_run_is_refused_before_training() -> None:
    trainer = make_trainer(3, random_batches(2), adversarial_warmup=2)
    with pytest.raises(ValueError, match="not shorter than the run"):
        trainer.run()
    assert trainer.state.iteration == 0


def test_adversarial_loss_without_critic_steps_is_refused() -> None:
    with pytest.raises(ValueError, match="n_critic >= 1"):
        make_trainer(0, random_batches(1))


@pytest.mark.faults
def test_nonfinite_loss_stops_training_and_keeps_weights() -> None:
    batches = random_batches(3)
    batches[1]["label"][0, 0, 0, 0] = float("nan")
    trainer = make_trainer(2, batches)
    with pytest.raises(NonFiniteLossError, match="iteration 2: loss_critic was not finite"):
        trainer.run()
    assert trainer.state.nonfinite_loss is not None
    assert trainer.state.iteration == 2  # stopped in the second iteration, the third never ran
    assert trainer.g_optimizer.steps == 1
    assert all(torch.isfinite(p).all() for p in trainer.generator.parameters())
    assert all(torch.isfinite(p).all() for p in trainer.critic.parameters())


@pytest.mark.faults
def test_nonfinite_gradient_of_a_finite_loss_stops_training_and_keeps_weights() -> None:
    trainer = make_trainer(1, random_batches(3), lambda_adv=0.0)
    first = next(trainer.generator.parameters())
    first.register_hook(lambda grad: grad * float("nan") if trainer.state.iteration == 2 else grad)
    with pytest.raises(NonFiniteLossError, match="iteration 2: generator gradient was not finite"):
        trainer.run()
    assert trainer.g_optimizer.steps == 1
    assert all(torch.isfinite(p).all() for p in trainer.generator.parameters())


def test_amp_iteration_on_cpu_uses_bfloat16_and_stays_finite() -> None:
    trainer = make_trainer(2, random_batches(2))
    trainer.amp = True
    assert trainer._autocast().fast_dtype == torch.bfloat16
    trainer.run()
    output = trainer.state.output[0]
    assert trainer.g_optimizer.steps == 2 and trainer.c_optimizer.steps == 4
    assert all(math.isfinite(float(output[k])) for k in ("loss", "gradient_penalty", "wasserstein_distance"))


def test_unreachable_hub_explains_the_offline_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def no_internet(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.models, "vgg19", no_internet)
    with pytest.raises(RuntimeError, match=r"perceptual_pretrained=/path/to/weights.pth.*perceptual_pretrained=false"):
        PerceptualLoss("vgg19", pretrained=True)
