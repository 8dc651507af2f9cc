"""SPOS: single-path one-shot supernet training as a LightningModule (Guo et al., "Single Path
One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020).

Every training step trains the supernet along one path drawn uniformly from the space
(``space.sample``), optionally only among paths within hardware limits: a drawn path whose
cost (FLOPs, parameters, latency from ``metric_hooks``) breaks ``constraints`` is drawn
again, as the paper does for its FLOPs range. The architecture search is a separate step:
evolution over the trained supernet's inherited accuracy with batch-norm recalibration,
``lightning-nas search`` with :class:`~lightning_nas.search.supernet_evaluator.
SupernetEvaluator` on this checkpoint (``configs/search/spos_*``).

Draws are pure functions of (seed, global step, attempt): every DDP rank trains the same
path without communication (rank 0's accept/reject decision is broadcast, so a latency
measured differently on two ranks cannot split them), and a resumed run continues the same
sequence. Gradients of the path's weights are averaged in one all-reduce; weights off the
path keep ``grad=None`` (no weight decay or momentum step for them).

Each validation epoch scores ``eval_paths`` fixed paths (drawn once with the seed, within
the constraints) on the validation split: ``val/acc`` is their mean accuracy,
``val/acc_best`` the best one's, which is the current architecture (``arch.json``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_nas.callbacks.export import default_export
from lightning_nas.data.base import mix_seed
from lightning_nas.hardware.objective import Constraints
from lightning_nas.spaces.base import Arch, SearchSpace
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.supernet import supernet_of
from lightning_nas.strategies.common import (
    ScoredArch,
    checkpoint_record,
    cosine_schedule,
    path_gradients,
    prepare_step,
    raise_if_not_finite,
    set_path_gradients,
    set_rng_state,
    supernet_meta,
    supernet_options,
)
from lightning_nas.strategies.sync_bn import globalise_batchnorm

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
MetricHook = Callable[[Arch, Any], Mapping[str, Any]]
_TRAIN, _EVAL = 21, 22


def spos_weight_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD lr 0.025, Nesterov momentum 0.9, weight decay 5e-4: NAS-Bench-201's one-shot
    settings (SPOS's ImageNet recipe is lr 0.5 for batch 1024, weight decay 4e-5)."""
    return torch.optim.SGD(params, lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)


class SPOS(L.LightningModule):
    """Single-path one-shot supernet training (module docstring).

    Expects plain batches ``(x, y)`` (``search=False``; validation on held-out images with
    ``val_fraction > 0``, which the evolutionary search must also hold out).

    Args:
        num_classes, in_channels: linked from the data module by the CLI.
        space: the space (DARTS cells by default; NB201, MobileNetV3).
        channels, layers: supernet width and (DARTS space) cells; None: the space's default.
        weight_optimizer: optimiser factory; cosine schedule to ``lr_min``.
        lr_min: final learning rate.
        grad_clip: max global gradient norm; 0 disables.
        label_smoothing: cross-entropy label smoothing (SPOS on ImageNet: 0.1).
        metric_hooks: ``hook(arch, network) -> {metric: value}`` for the constraints, e.g.
            :class:`~lightning_nas.hardware.costs.CostHook` (params, FLOPs, latency) or a
            latency table; each is called with the standalone network (``space.build``
            with the data's classes and channels) and cached per architecture.
        constraints: limits on those metrics (``max_flops``, ``max_params``,
            ``max_latency_ms``); a path outside them is drawn again.
        max_draws: draws per step before the constraints count as unsatisfiable.
        eval_paths: fixed paths scored each validation epoch.
        sync_batchnorm: under DDP, normalise with the statistics of all ranks' batches
            (:class:`~lightning_nas.strategies.sync_bn.GlobalBatchNorm2d`).
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
        weight_optimizer: OptimizerFactory = spos_weight_optimizer,
        lr_min: float = 0.001,
        grad_clip: float = 5.0,
        label_smoothing: float = 0.0,
        metric_hooks: Sequence[MetricHook] = (),
        constraints: Constraints | None = None,
        max_draws: int = 1000,
        eval_paths: int = 5,
        sync_batchnorm: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if grad_clip < 0 or lr_min < 0 or not 0.0 <= label_smoothing < 1.0:
            raise ValueError("grad_clip and lr_min must be >= 0, label_smoothing in [0, 1)")
        if max_draws < 1 or eval_paths < 1:
            raise ValueError(f"max_draws and eval_paths must be >= 1, got {max_draws}, "
                             f"{eval_paths}")
        if constraints is not None and constraints.active and not metric_hooks:
            raise ValueError(f"constraints {constraints.active} need metrics: add a metric hook "
                             "(e.g. lightning_nas.hardware.CostHook with flops / latency)")
        self.save_hyperparameters(ignore=["space", "weight_optimizer", "metric_hooks",
                                          "constraints"])
        self.automatic_optimization = False
        self.space = space or DartsSpace()
        self.weight_optimizer_factory = weight_optimizer
        self.metric_hooks = list(metric_hooks)
        self.constraints = constraints if constraints is not None and constraints.active \
            else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # one op per edge: small activations, no recomputation, NCHW
        self.supernet_options = supernet_options(self.space, num_classes=num_classes,
                                                 in_channels=in_channels, channels=channels,
                                                 layers=layers, checkpoint_cells=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet = supernet_of(self.space, strategy="SPOS", **self.supernet_options)
        self._costs: dict[Arch, dict[str, Any]] = {}
        self.eval_archs: list[Arch] = []  # drawn in setup, once the data's shape is known
        self.best_arch: Arch | None = None
        self.rejected = 0  # draws rejected by the constraints in this process
        self.sampled: deque[str] = deque(maxlen=10_000)  # paths of the last training steps

    def setup(self, stage: str) -> None:
        """Cost hooks without an input shape measure the data's ``(C, H, W)``; then the
        fixed evaluation paths are drawn."""
        from lightning_nas.search.evaluators import data_input_shape

        if self.hparams.sync_batchnorm and self.trainer.world_size > 1:
            globalise_batchnorm(self.supernet)
        shape = data_input_shape(getattr(self.trainer, "datamodule", None))
        for hook in self.metric_hooks:
            if getattr(hook, "input_shape", False) is None:
                if shape is None:
                    raise ValueError(f"metric hook {hook!r} has no input_shape and the data "
                                     "module does not tell its image size; set input_shape")
                hook.input_shape = tuple(shape)
        if not self.eval_archs:
            self.eval_archs = [self.draw(_EVAL, n) for n in range(self.hparams.eval_paths)]
        if self.best_arch is None:
            self.best_arch = self.eval_archs[0]

    # -- drawing paths ----------------------------------------------------------------------
    def costs(self, arch: Arch) -> dict[str, Any]:
        """The hooks' metrics of ``arch``'s standalone network (cached)."""
        if arch not in self._costs:
            net = None
            if any(getattr(h, "needs_network", True) for h in self.metric_hooks):
                net = self.space.build(arch, num_classes=self.hparams.num_classes,
                                       in_channels=self.hparams.in_channels)
            out: dict[str, Any] = {}
            for hook in self.metric_hooks:
                out.update(hook(arch, net))
            self._costs[arch] = out
        return self._costs[arch]

    def allowed(self, arch: Arch) -> bool:
        return self.constraints is None or not self.constraints.check(self.costs(arch))

    def _first_allowed(self, salt: int, n: int) -> int:
        for attempt in range(self.hparams.max_draws):
            rng = random.Random(mix_seed(self.hparams.seed, salt, n, attempt))
            if self.allowed(self.space.sample(rng)):
                return attempt
        raise RuntimeError(f"{self.hparams.max_draws} paths in a row broke the constraints "
                           f"{self.constraints.active}; loosen them (model.constraints) or raise "
                           "model.max_draws")

    def draw(self, salt: int, n: int) -> Arch:
        """The first path within the constraints drawn with the generators of
        (seed, salt, n, attempt); rank 0 decides which attempt under DDP."""
        attempt = self._first_allowed(salt, n)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            attempt = int(trainer.strategy.broadcast(attempt, src=0))
        self.rejected += attempt
        return self.space.sample(random.Random(mix_seed(self.hparams.seed, salt, n, attempt)))

    def current_arch(self) -> Arch:
        """The best of the ``eval_paths`` fixed paths at the last validation."""
        return self.best_arch

    def scored_architectures(self) -> list[ScoredArch]:
        """Every fixed evaluation path with its inherited accuracy at the last validation,
        the best first (callbacks: latency profiling, Pareto front)."""
        acc = getattr(self, "eval_accuracy", None) or [None] * len(self.eval_archs)
        order = sorted(range(len(self.eval_archs)),
                       key=lambda k: -(acc[k] if acc[k] is not None else -1.0))
        return [ScoredArch(f"path{k}", self.eval_archs[k], acc[k]) for k in order]

    # -- training ---------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.weight_optimizer_factory(self.supernet.parameters())
        schedule = cosine_schedule(self, opt, self.hparams.lr_min)
        return [opt], [schedule]

    def configure_callbacks(self):
        return default_export(self.trainer)

    def training_step(self, batch, batch_idx: int) -> None:
        if isinstance(batch, Mapping):
            raise TypeError("SPOS trains on plain (x, y) batches: give the data module "
                            "search=False (and val_fraction > 0 for the later search)")
        x, y = batch
        opt = self.optimizers()
        arch = self.draw(_TRAIN, self.global_step)
        self.sampled.append(self.space.to_string(arch))
        params = list(self.supernet.parameters())
        loss = self.criterion(self.supernet.forward_path(x, arch), y)
        raise_if_not_finite("training loss", loss.detach(), epoch=self.current_epoch,
                            step=self.global_step, advice="lower the learning rate "
                            "(model.weight_optimizer)")
        grads = path_gradients(self.trainer, loss, params)
        set_path_gradients(params, grads)
        if self.hparams.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None],
                                     self.hparams.grad_clip)
        prepare_step(self.trainer, params)
        opt.step()
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                 sync_dist=True)

    def on_train_epoch_end(self) -> None:
        schedule = self.lr_schedulers()
        self.log("lr", schedule.get_last_lr()[0])
        schedule.step()
        self.log("train/rejected_draws", float(self.rejected))

    # -- validation: the fixed paths --------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._correct = torch.zeros(len(self.eval_archs), device=self.device)
        self._seen = torch.zeros((), device=self.device)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        for k, arch in enumerate(self.eval_archs):
            self._correct[k] += (self.supernet.forward_path(x, arch).argmax(-1) == y).sum()
        self._seen += y.numel()

    def on_validation_epoch_end(self) -> None:
        correct, seen = self._correct, self._seen
        if self.trainer.world_size > 1:
            correct = self.trainer.strategy.reduce(correct, reduce_op="sum")
            seen = self.trainer.strategy.reduce(seen, reduce_op="sum")
        acc = correct / seen.clamp_min(1)  # (eval_paths,) fractions
        self.eval_accuracy = acc.tolist()
        self.best_arch = self.eval_archs[int(acc.argmax())]
        self.log("val/acc", acc.mean(), prog_bar=True)
        self.log("val/acc_best", acc.max())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the current architecture's path."""
        return self.supernet.forward_path(x, self.best_arch)

    # -- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightning_nas"] = checkpoint_record(
            self, self.best_arch, supernet_spec=supernet_meta(self.space, self.supernet_options),
            constraints=self.constraints.active if self.constraints else None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lightning_nas", {})
        if "arch" in state:
            self.best_arch = self.space.validate(Arch.from_dict(state["arch"]))
        if "rng" in state:
            set_rng_state(state["rng"])
        rank_zero_info(f"resuming SPOS from epoch {checkpoint.get('epoch')}")


__all__ = ["SPOS", "spos_weight_optimizer"]
