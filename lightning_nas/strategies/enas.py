"""ENAS: an LSTM controller trained with REINFORCE over a weight-sharing supernet, as a
LightningModule (Pham et al., "Efficient Neural Architecture Search via Parameter Sharing",
ICML 2018; the micro (cell) search).

Every epoch has two phases:

1. **shared weights**: each training batch of the weights half trains the supernet along one
   path sampled from the controller (SGD, one path per batch);
2. **controller** (after the last weight batch): ``controller_steps`` Adam steps, each
   aggregating ``controller_aggregate`` sampled paths; a path's reward is its accuracy on a
   batch of the architecture half (batch-norm on batch statistics, no augmentation), the
   baseline a moving average of the rewards (decay 0.99, updated before the advantage as in
   ENAS), and the loss ``-(R - b) log p(path) - entropy_weight * H(policy)``.

Then ``eval_samples`` paths from the controller (``final_samples`` after the last epoch) are
scored on the same ``eval_batches`` batches of the architecture half and the best becomes the
current architecture (``arch.json``): "we sample several models from the trained policy and
keep the best on validation data" (Sec. 2.3).

The controller is :class:`~lightning_nas.strategies.controller.Controller` over the
supernet's path decisions, so ENAS runs on the DARTS cell space, NAS-Bench-201 and the
MobileNetV3 space alike. Every draw uses a generator seeded by (seed, epoch, step, sample),
so all DDP ranks sample the same paths without communication and a resumed run continues the
same sequence; rewards count the correct images of all ranks, so the controller's update is
the single-process update on the ranks' batches together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.callbacks.export import default_export
from lightning_nas.data.base import mix_seed
from lightning_nas.hardware.cell_latency import LatencyLoss, table_for_training
from lightning_nas.spaces.base import Arch, SearchSpace
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.supernet import supernet_of
from lightning_nas.strategies.common import (
    ScoredArch,
    logged_value,
    checkpoint_record,
    cosine_schedule,
    assign_gradients,
    average_gradients,
    overflow_skips_step,
    path_gradients,
    prepare_step,
    raise_if_not_finite,
    set_path_gradients,
    set_rng_state,
    supernet_meta,
    supernet_options,
)
from lightning_nas.strategies.controller import Controller, reinforce_loss
from lightning_nas.strategies.sync_bn import globalise_batchnorm

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
#: Salts of the sampling generators (weight steps, controller steps, evaluation draws).
_WEIGHTS, _CONTROLLER, _EVAL = 11, 12, 13


def enas_weight_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD lr 0.05, Nesterov momentum 0.9, weight decay 1e-4 (ENAS micro search script)."""
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)


def enas_controller_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam lr 0.0035, beta1 0, epsilon 1e-3 (ENAS code's controller optimiser)."""
    return torch.optim.Adam(params, lr=0.0035, betas=(0.0, 0.999), eps=1e-3)


class ENAS(L.LightningModule):
    """ENAS search (module docstring).

    Expects search-mode data (``search=True``): training batches ``{"weights": (x, y),
    "arch": (x, y)}`` (the weight steps use the weights half; the controller draws its own
    batches of the architecture half with the data module's ``split_batches``), validation
    batches of the architecture half.

    Args:
        num_classes, in_channels: linked from the data module by the CLI.
        space: the space (DARTS cells by default; NB201, MobileNetV3).
        channels, layers: supernet width and (DARTS space) cells; None: the space's default.
        weight_optimizer: shared weights' optimiser; cosine schedule to ``lr_min``.
        controller_optimizer: the controller's optimiser.
        lr_min: final learning rate of the weights (ENAS: 0.0005).
        grad_clip: max global norm of the shared weights' gradient (ENAS: 5); 0 disables.
        hidden: controller LSTM units (100 in the paper).
        temperature, tanh_constant, op_tanh_reduce: the controller's logit shaping (5.0,
            1.10, 2.5 in ENAS's micro search).
        entropy_weight: weight of the policy entropy in the controller loss (1e-4).
        baseline_decay: decay of the reward's moving average (0.99).
        controller_steps: controller updates per epoch (ENAS: 30).
        controller_aggregate: sampled paths per controller update (ENAS: 10).
        controller_batch_size: images of a reward batch (None: the data's batch size).
        eval_samples: paths drawn each epoch to pick the current architecture.
        final_samples: paths drawn after the last epoch to pick the final architecture.
        eval_batches: batches of the architecture half every such path is scored on.
        loss: training criterion (cross-entropy by default).
        sync_batchnorm: under DDP, normalise with the statistics of all ranks' batches
            (:class:`~lightning_nas.strategies.sync_bn.GlobalBatchNorm2d`), so a step equals
            the single-process step on the ranks' batches together.
        latency: a latency term in the reward (MnasNet-style ``ACC * (LAT/T)^-w`` or
            ``ACC - w LAT/T``, :class:`~lightning_nas.hardware.cell_latency.LatencyLoss`), the
            path's latency from the per-op table of the cell space.
        seed: initialisation and every draw.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        space: SearchSpace | None = None,
        channels: int | None = None,
        layers: int | None = None,
        weight_optimizer: OptimizerFactory = enas_weight_optimizer,
        controller_optimizer: OptimizerFactory = enas_controller_optimizer,
        lr_min: float = 0.0005,
        grad_clip: float = 5.0,
        hidden: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 1.10,
        op_tanh_reduce: float = 2.5,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        controller_steps: int = 30,
        controller_aggregate: int = 10,
        controller_batch_size: int | None = None,
        eval_samples: int = 10,
        final_samples: int = 100,
        eval_batches: int = 1,
        loss: nn.Module | None = None,
        sync_batchnorm: bool = True,
        latency: LatencyLoss | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        if entropy_weight < 0 or grad_clip < 0 or lr_min < 0:
            raise ValueError("entropy_weight, grad_clip and lr_min must be >= 0")
        for name, value in (("controller_steps", controller_steps),
                            ("controller_aggregate", controller_aggregate),
                            ("eval_samples", eval_samples), ("final_samples", final_samples),
                            ("eval_batches", eval_batches)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if controller_batch_size is not None and controller_batch_size < 1:
            raise ValueError(f"controller_batch_size must be >= 1, got {controller_batch_size}")
        self.save_hyperparameters(ignore=["space", "loss", "weight_optimizer",
                                          "controller_optimizer", "latency"])
        self.latency = latency
        self.latency_table = None  # loaded in setup, once the data's shape is known
        self.automatic_optimization = False
        self.space = space or DartsSpace()
        self.weight_optimizer_factory = weight_optimizer
        self.controller_optimizer_factory = controller_optimizer
        self.criterion = loss or nn.CrossEntropyLoss()
        # one op per edge: small activations, no recomputation, NCHW
        self.supernet_options = supernet_options(self.space, num_classes=num_classes,
                                                 in_channels=in_channels, channels=channels,
                                                 layers=layers, checkpoint_cells=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet = supernet_of(self.space, strategy="ENAS", **self.supernet_options)
            self.controller = Controller(self.supernet.decisions(), hidden=hidden,
                                         temperature=temperature, tanh_constant=tanh_constant,
                                         op_tanh_reduce=op_tanh_reduce)
        self.register_buffer("baseline", torch.zeros(()))
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.best_arch: Arch = self._draw(_EVAL, -1, 0)[0]
        self.best_reward: float | None = None
        self.last_phase: dict[str, float] = {}  # the last controller phase's means
        self.sampled: deque[str] = deque(maxlen=10_000)  # paths of the last weight steps

    def setup(self, stage: str) -> None:
        if self.hparams.sync_batchnorm and self.trainer.world_size > 1:
            globalise_batchnorm(self.supernet)
        if self.latency_table is None:
            self.latency_table = table_for_training(self.latency, self.space, self.trainer)

    def _reward(self, arch: Arch, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """The path's accuracy on ``batches``, with the latency term when configured."""
        accuracy = self._accuracy(arch, batches)
        if self.latency_table is None:
            return accuracy
        return self.latency.reward(accuracy, self.latency_table.predict(arch))

    # -- sampling ---------------------------------------------------------------------------
    def _generator(self, *key: int) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(self.hparams.seed, *[k + 1 for k in key]))

    def _draw(self, salt: int, epoch: int, n: int):
        """A path drawn from the controller with the generator of (salt, epoch, n)."""
        sampled = self.controller.sample(self._generator(salt, epoch, n))
        return self.supernet.arch_of(sampled.choices), sampled

    def current_arch(self) -> Arch:
        """The best of the paths drawn after the last controller phase."""
        return self.best_arch

    def scored_architectures(self) -> list[ScoredArch]:
        """The current best path with its validation accuracy (callbacks)."""
        return [ScoredArch("best", self.best_arch, logged_value(self, "val/acc"))]

    def arch_summary(self) -> dict[str, Any]:
        """For history.jsonl: the baseline, the best path's reward and the last controller
        phase's mean reward (fraction) and entropy (nats per path)."""
        return {"baseline": float(self.baseline), "best_reward": self.best_reward,
                **self.last_phase}

    # -- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        w_opt = self.weight_optimizer_factory(self.supernet.parameters())
        c_opt = self.controller_optimizer_factory(self.controller.parameters())
        schedule = cosine_schedule(self, w_opt, self.hparams.lr_min)
        return [w_opt, c_opt], [schedule]

    def configure_callbacks(self):
        return default_export(self.trainer)

    def _where(self) -> dict[str, int]:
        return {"epoch": self.current_epoch, "step": self.global_step}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not isinstance(batch, dict) or "weights" not in batch:
            raise TypeError("ENAS needs search-mode batches {'weights': (x, y), 'arch': (x, y)}: "
                            "give the data module search=True (e.g. --data.init_args.search true)")
        w_opt, c_opt = self.optimizers()
        x, y = batch["weights"]
        arch, _ = self._draw(_WEIGHTS, self.current_epoch, batch_idx)
        self.sampled.append(self.space.to_string(arch))
        params = list(self.supernet.parameters())
        logits = self.supernet.forward_path(x, arch)
        loss = self.criterion(logits, y)
        raise_if_not_finite("training loss", loss.detach(), **self._where(),
                            advice="lower the weight learning rate (model.weight_optimizer)")
        grads = path_gradients(self.trainer, loss, params)
        set_path_gradients(params, grads)
        if self.hparams.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None],
                                     self.hparams.grad_clip)
        prepare_step(self.trainer, params)
        w_opt.step()
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        if batch_idx + 1 >= self.trainer.num_training_batches:  # the epoch's weight phase ends
            self._controller_phase(c_opt)
            last = self.current_epoch + 1 >= (self.trainer.max_epochs or 0)
            self._select(self.hparams.final_samples if last else self.hparams.eval_samples)

    # -- the controller ---------------------------------------------------------------------
    def _reward_batches(self, salt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless normalised batches of the architecture half (no augmentation)."""
        dm = self.trainer.datamodule
        if dm is None or not callable(getattr(dm, "split_batches", None)):
            raise TypeError("ENAS draws reward batches from the data module's architecture "
                            "half (split_batches); use a lightning-nas data module with "
                            "search=True")
        stream = dm.split_batches("arch", epoch=mix_seed(self.current_epoch, salt),
                                  rank=self.global_rank, world_size=self.trainer.world_size,
                                  batch_size=self.hparams.controller_batch_size)
        for x, y in stream:
            yield dm.transform_batch((x.to(self.device), y.to(self.device)), train=False)

    @torch.no_grad()
    def _accuracy(self, arch: Arch, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Accuracy (fraction) of ``arch``'s path on ``batches`` of all ranks together."""
        correct = torch.zeros((), device=self.device)
        total = torch.zeros((), device=self.device)
        for x, y in batches:
            correct += (self.supernet.forward_path(x, arch).argmax(-1) == y).sum()
            total += y.numel()
        if self.trainer.world_size > 1:
            correct = self.trainer.strategy.reduce(correct, reduce_op="sum")
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
        return float(correct / total)

    def _controller_phase(self, c_opt) -> None:
        """``controller_steps`` REINFORCE updates of ``controller_aggregate`` paths each."""
        hp = self.hparams
        batches = self._reward_batches(_CONTROLLER)
        params = list(self.controller.parameters())
        rewards, entropies = [], []
        for step in range(hp.controller_steps):
            total = [torch.zeros_like(p) for p in params]
            for k in range(hp.controller_aggregate):
                arch, sampled = self._draw(_CONTROLLER, self.current_epoch,
                                           step * hp.controller_aggregate + k)
                reward = self._reward(arch, [next(batches)])
                # ENAS: the baseline moves first, then the advantage uses it
                self.baseline.mul_(hp.baseline_decay).add_((1 - hp.baseline_decay) * reward)
                loss = reinforce_loss(sampled, reward - float(self.baseline), hp.entropy_weight)
                # parameters a space never uses (the attention without input decisions) get 0
                for t, g in zip(total, torch.autograd.grad(loss, params, allow_unused=True)):
                    if g is not None:
                        t.add_(g / hp.controller_aggregate)
                rewards.append(reward)
                entropies.append(float(sampled.entropy))
            grads = average_gradients(self.trainer, total)  # equal on every rank already
            if not overflow_skips_step(self.trainer):
                raise_if_not_finite("controller gradient",
                                    torch.cat([g.reshape(-1) for g in grads]), **self._where(),
                                    advice="lower the controller learning rate")
            c_opt.zero_grad()
            assign_gradients(params, grads)
            prepare_step(self.trainer, params)  # the 16-mixed plugin's step unscales
            c_opt.step()
        self.last_phase = {"reward": sum(rewards) / len(rewards),  # fraction
                           "entropy": sum(entropies) / len(entropies)}  # nats per path
        for key, value in (*self.last_phase.items(), ("baseline", float(self.baseline))):
            self.log(f"controller/{key}", value, on_step=False, on_epoch=True)

    @torch.no_grad()
    def _select(self, n: int) -> None:
        """The best of ``n`` paths from the controller on the same evaluation batches."""
        stream = self._reward_batches(_EVAL)
        batches = [next(stream) for _ in range(self.hparams.eval_batches)]
        best, best_reward = None, -math.inf
        for j in range(n):
            arch, _ = self._draw(_EVAL, self.current_epoch, j)
            reward = self._reward(arch, batches)
            if reward > best_reward:
                best, best_reward = arch, reward
        self.best_arch, self.best_reward = best, best_reward
        self.log("controller/best_reward", best_reward, on_step=False, on_epoch=True)

    # -- evaluation -------------------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        schedule = self.lr_schedulers()
        self.log("lr", schedule.get_last_lr()[0])
        schedule.step()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the current architecture's path."""
        return self.supernet.forward_path(x, self.best_arch)

    def _evaluate(self, batch, metric: MulticlassAccuracy, stage: str) -> None:
        x, y = batch
        logits = self(x)
        metric(logits, y)
        self.log(f"{stage}/loss", self.criterion(logits, y), prog_bar=stage == "val",
                 sync_dist=True)
        self.log(f"{stage}/acc", metric, prog_bar=stage == "val")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_acc, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_acc, "test")

    # -- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightning_nas"] = checkpoint_record(
            self, self.best_arch, best_reward=self.best_reward,
            supernet_spec=supernet_meta(self.space, self.supernet_options))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lightning_nas", {})
        if "arch" in state:
            self.best_arch = self.space.validate(Arch.from_dict(state["arch"]))
            self.best_reward = state.get("best_reward")
        if "rng" in state:
            set_rng_state(state["rng"])
        rank_zero_info(f"resuming ENAS from epoch {checkpoint.get('epoch')}")


__all__ = ["ENAS", "enas_controller_optimizer", "enas_weight_optimizer"]
