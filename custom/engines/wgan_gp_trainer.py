"""A MONAI/ignite trainer for paired WGAN-GP denoising.

MONAI's `GanTrainer` draws fakes from latent noise, and its `AdversarialTrainer` takes one critic step and treats
the input as the real image; here the generator is conditioned on the low-dose image, the full-dose image is the
real one, and the critic takes `n_critic` steps (with gradient penalty) before every generator step. The critic
steps reuse the iteration's batch with fresh interpolates, as paired WGAN-GP denoisers commonly do (WGAN-VGG),
so one engine iteration is one generator step and `epoch_length` keeps its usual meaning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from ignite.engine import Engine, EventEnum
from ignite.metrics import Metric
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.transforms import Transform
from monai.utils import CommonKeys
from torch import nn
from torch.nn.utils import get_total_norm
from torch.optim import Optimizer

from custom.losses.wgan_gp import GeneratorLoss, gradient_penalty, random_interpolates, wasserstein_estimate


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: training stopped before the optimiser step that would have spread it."""


class WGANGPTrainer(Trainer):
    """Per iteration: `n_critic` critic steps on (full dose, G(low dose)), then one generator step.

    `engine.state.output` carries `image`, `label`, `pred`, `loss` (the generator's total) and each term:
    `loss_adv`, `loss_l1`, `loss_mse`, `loss_perceptual` (those with non-zero weight), and when the critic is
    trained `loss_critic`, `gradient_penalty` and `wasserstein_distance` from the last critic step.
    `engine.state.critic_iterations` counts critic steps.

    A non-finite loss or gradient stops training cleanly before the optimiser step, so the weights (and the last
    checkpoint) stay the last good ones; `engine.state.nonfinite_loss` then names the term.

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, prepare_batch, iteration_update,
        postprocessing, key_train_metric, additional_metrics, metric_cmp_fn, train_handlers, event_names,
        event_to_attr, decollate, to_kwargs: as in `monai.engines.SupervisedTrainer`.
        generator: the denoiser, low dose in, full-dose estimate out.
        critic: the WGAN critic (needed when the generator loss has an adversarial term).
        g_optimizer, c_optimizer: optimisers of the generator and the critic.
        g_loss_function: the generator's multi-term loss.
        n_critic: critic steps per generator step; ignored when the loss has no adversarial term.
        adversarial_warmup: generator iterations trained on the other terms alone before the critic and the
            adversarial term start. A critic that starts against an untrained generator pushes it towards texture
            and intensity offsets that the reference does not have; warming up on L1 (+ perceptual) first, as
            ESRGAN-style training does, starts the adversarial game from a denoiser.
        adversarial_end: the generator iteration after which the critic and the adversarial term stop; None for
            never (the default recipe). Ending the game where the whole-slice phase starts makes that phase three
            times faster and validates well, but moved real quarter-dose means by up to 1.6 HU; the recipe keeps
            the critic on crops instead (`critic_crops`; bundle/docs/benchmarks.md, section 6).
        critic_crops: what the critic scores of (full dose, output) pairs, e.g. `CriticCrops`, which crops images
            larger than the critic's training patches; None scores the whole images.
        freeze_batch_norm: keep the generator's BatchNorm statistics as they are (its BatchNorm layers normalise
            with their running statistics and do not update them; their scale and shift still train). For
            fine-tuning a trained generator: its weights fit the statistics it was trained with (the recipe ends
            on whole slices), and re-estimating them from a few small patch batches cost the shipped model 1.2 dB
            on whole slices (bundle/docs/training_and_evaluation.md).
        lambda_gp: weight of the gradient penalty in the critic loss.
        amp: mixed precision; float16 with loss scaling on CUDA, bfloat16 on CPU.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | torch.utils.data.DataLoader,
        generator: nn.Module,
        g_optimizer: Optimizer,
        g_loss_function: GeneratorLoss,
        critic: nn.Module | None = None,
        c_optimizer: Optimizer | None = None,
        n_critic: int = 5,
        lambda_gp: float = 10.0,
        adversarial_warmup: int = 0,
        adversarial_end: int | None = None,
        critic_crops: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        freeze_batch_norm: bool = False,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        to_kwargs: dict | None = None,
    ) -> None:
        if g_loss_function.uses_critic and (critic is None or c_optimizer is None or n_critic < 1):
            raise ValueError("an adversarial generator loss (lambda_adv > 0) needs a critic, its optimiser and n_critic >= 1")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
        )
        self.generator = generator
        self.critic = critic
        self.g_optimizer = g_optimizer
        self.c_optimizer = c_optimizer
        self.g_loss_function = g_loss_function
        self.n_critic = n_critic if g_loss_function.uses_critic else 0
        self.lambda_gp = lambda_gp
        if adversarial_warmup < 0:
            raise ValueError(f"adversarial_warmup must be >= 0 iterations, got {adversarial_warmup}")
        self.adversarial_warmup = adversarial_warmup
        if adversarial_end is not None and self.n_critic and adversarial_end <= adversarial_warmup:
            raise ValueError(
                f"adversarial_end ({adversarial_end}) must come after adversarial_warmup ({adversarial_warmup}): the "
                "critic would never train; raise --adversarial_end or shorten the warm-up, or pass --lambda_adv 0 "
                "--n_critic 0 to train without a critic"
            )
        self.adversarial_end = adversarial_end
        self.critic_crops = critic_crops
        self.freeze_batch_norm = freeze_batch_norm
        # the generator's optimiser is the one MONAI handlers (LrScheduleHandler, MLflow lr logging) look for
        self.optimizer = g_optimizer
        self.state.critic_iterations = 0
        self.state.nonfinite_loss = None
        self.state_dict_user_keys.append("critic_iterations")  # saved with the trainer in checkpoints
        # loss scalers (active for float16 on CUDA); attributes from the start so checkpoints can save and restore them
        device_type = torch.device(device).type
        scaling = amp and device_type == "cuda"
        self.g_scaler = torch.amp.GradScaler(device_type, enabled=scaling)
        self.c_scaler = torch.amp.GradScaler(device_type, enabled=scaling)

    def run(self) -> None:  # type: ignore[override]
        """Train; raise NonFiniteLossError after a clean stop (handlers completed, last good weights kept) on NaN/Inf,
        so that `python -m monai.bundle run training` exits non-zero."""
        total = self.state.max_epochs * (self.state.epoch_length or len(self.data_loader))  # type: ignore[arg-type]
        if self.n_critic and self.adversarial_warmup >= total > self.state.iteration:
            raise ValueError(
                f"adversarial_warmup ({self.adversarial_warmup} iterations) is not shorter than the run ({total} "
                "iterations): the critic would never train; shorten the warm-up or pass --lambda_adv 0 --n_critic 0"
            )
        Engine.run(self, data=self.data_loader, max_epochs=self.state.max_epochs)
        if self.state.nonfinite_loss is not None:
            raise NonFiniteLossError(
                f"training stopped at iteration {self.state.iteration}: {self.state.nonfinite_loss} was not finite; "
                "the weights and checkpoints are those of the last good step (lower learning_rate, or disable amp)"
            )

    def _adversarial(self, iteration: int) -> bool:
        """Whether generator iteration `iteration` (counted from 1) plays the adversarial game."""
        started = iteration > self.adversarial_warmup
        ended = self.adversarial_end is not None and iteration > self.adversarial_end
        return bool(self.n_critic) and started and not ended

    def _critic_view(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the critic scores of a (full dose, output) batch: `critic_crops`' crops, or the images themselves."""
        return self.critic_crops(real, fake) if self.critic_crops is not None else (real, fake)

    def _autocast(self) -> contextlib.AbstractContextManager:
        device_type = torch.device(self.state.device).type
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=torch.float16 if device_type == "cuda" else torch.bfloat16)

    def _stop_if_nonfinite(self, terms: dict[str, torch.Tensor]) -> bool:
        """Terminate before the optimiser step when a loss is NaN or infinite; True if it did."""
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                self.state.nonfinite_loss = name
                self.logger.error(
                    f"non-finite {name} at iteration {self.state.iteration}: training stops, weights are kept "
                    "from the last good step (lower learning_rate, or disable amp)"
                )
                self.terminate()
                return True
        return False

    def _gradients_finite(self, module: nn.Module, scaler: torch.amp.GradScaler, name: str) -> bool:
        """False, and training stopped, if `module`'s gradients hold NaN/Inf while its loss was finite (the square
        root in a gradient penalty can do that); with loss scaling the scaler skips such steps itself."""
        if scaler.is_enabled():
            return True
        gradients = [parameter.grad.detach() for parameter in module.parameters() if parameter.grad is not None]
        return not gradients or not self._stop_if_nonfinite({name: get_total_norm(gradients)})

    def _critic_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic update (skipped, and training stopped, if its loss is not finite); returns its terms."""
        assert self.critic is not None and self.c_optimizer is not None
        self.c_optimizer.zero_grad(set_to_none=True)
        interpolates = random_interpolates(real, fake)
        with self._autocast():
            # one forward over real, fake and interpolates: one backward per forward, as DDP expects
            real_scores, fake_scores, interpolate_scores = self.critic(torch.cat([real, fake, interpolates])).chunk(3)
            penalty = gradient_penalty(interpolate_scores, interpolates, grad_scale=self.c_scaler.get_scale())
        distance = wasserstein_estimate(real_scores, fake_scores)
        loss = -distance + self.lambda_gp * penalty
        terms = {"loss_critic": loss, "gradient_penalty": penalty, "wasserstein_distance": distance}
        if not self._stop_if_nonfinite(terms):
            self.c_scaler.scale(loss).backward()
            if self._gradients_finite(self.critic, self.c_scaler, "critic gradient"):
                self.c_scaler.step(self.c_optimizer)
                self.c_scaler.update()
                self.state.critic_iterations += 1
        return {name: value.detach() for name, value in terms.items()}

    def _complete(self, output: dict) -> dict | list:
        """Run the MODEL_COMPLETED handlers (decollation, postprocessing) and return what they made of the output."""
        self.state.output = output
        self.fire_event(IterationEvents.MODEL_COMPLETED)
        return self.state.output

    # MONAI types _iteration as returning a dict, but it returns state.output, which decollation makes a list
    def _iteration(self, engine: WGANGPTrainer, batchdata: dict[str, torch.Tensor]) -> dict | list:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        inputs, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)[:2]
        output: dict[str, Any] = {CommonKeys.IMAGE: inputs, CommonKeys.LABEL: targets}
        engine.state.output = output
        engine.generator.train()
        if engine.freeze_batch_norm:
            for module in engine.generator.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        # ignite counts iterations from 1 and has already counted this one
        adversarial = engine._adversarial(engine.state.iteration)

        if adversarial:
            assert engine.critic is not None  # n_critic > 0 only with a critic, checked in __init__
            engine.critic.train()
            with torch.no_grad(), engine._autocast():
                fake = engine.generator(inputs)
            real, fake = engine._critic_view(targets, fake)
            for _ in range(engine.n_critic):
                output.update(engine._critic_step(real, fake))
                if engine.should_terminate:
                    output["loss"] = output["loss_critic"]
                    return engine._complete(output)
            # the generator step needs gradients through, not of, the critic; the bare module keeps DDP's
            # gradient synchronisation out of a backward pass that must not update the critic
            critic_module = getattr(engine.critic, "module", engine.critic)
            critic_module.requires_grad_(False)

        engine.g_optimizer.zero_grad(set_to_none=True)
        with engine._autocast():
            prediction = engine.generator(inputs)
            fake_scores = critic_module(engine._critic_view(targets, prediction)[1]) if adversarial else None
        terms = engine.g_loss_function(prediction, targets, fake_scores, adversarial=adversarial)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if adversarial:
            critic_module.requires_grad_(True)
        output[CommonKeys.PRED] = prediction.detach()
        if not engine._stop_if_nonfinite(terms):
            engine.g_scaler.scale(terms["loss"]).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if engine._gradients_finite(engine.generator, engine.g_scaler, "generator gradient"):
                engine.g_scaler.step(engine.g_optimizer)
                engine.g_scaler.update()
        output.update({name: value.detach() for name, value in terms.items()})
        return engine._complete(output)
