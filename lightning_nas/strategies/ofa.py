"""Once-for-All: train one elastic supernet with progressive shrinking (Cai et al., ICLR 2020).

The supernet (:class:`~lightning_nas.spaces.mobilenet_supernet.OFASupernet`) is trained in
*phases* given in the config (Sec. 3.2, Fig. 2): first the full network, then elastic kernel,
then elastic depth, then elastic width (expand ratio), each with its epochs, learning rate and
the choices that become active. Every training step samples ``subnets_per_step`` subnets from
the phase's active choices (optionally by the sandwich rule: the largest, the smallest and
random ones; Yu & Huang 2019), sums their losses' gradients and takes one optimiser step, as
OFA's ``train_one_epoch`` does. From the first phase after the full network on, the loss adds
knowledge distillation from the full network (a frozen copy of the largest subnet taken when
that phase starts; soft cross-entropy, ``kd_ratio`` 1 in the paper). Before the first phase
with several expand ratios the expanded channels are sorted by importance.

Determinism and DDP: the subnets of a step are drawn from ``random.Random(f"{seed}|{step}")``
(a pure function of the seed and the global step), so every rank draws the same subnets and a
resumed run continues the same schedule; gradients are computed with ``torch.autograd.grad``
and averaged across ranks with one all-reduce, so DDP's reducer (which cannot handle the
parameters an inactive block leaves unused) is never involved.

Within a phase the learning rate follows a cosine from ``phase.lr`` to ``lr_min`` (after an
optional linear warm-up), and the optimiser state (momentum) is reset when a phase begins
(OFA trains each phase as a new run from the previous phase's weights).

Validation evaluates named subnets of the *whole* space (largest / middle / smallest by
default) as standalone extracted networks whose batch-norm statistics are recalibrated on
the epoch's first training batches (OFA's ``set_running_statistics``).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.spaces.base import Arch, ArchError, SearchSpace
from lightning_nas.spaces.mobilenet import MobileNetV3Network, MobileNetV3Space
from lightning_nas.spaces.mobilenet_supernet import OFASupernet, recalibrate_bn, resize_to
from lightning_nas.strategies.common import (
    ScoredArch,
    logged_value,
    average_gradients,
    data_input_shape,
    overflow_skips_step,
    prepare_step,
    raise_if_not_finite,
    scaled_grad,
    rng_state,
    set_rng_state,
)
from lightning_nas.strategies.global_dropout import global_batch_masks, globalise_dropout
from lightning_nas.strategies.sync_bn import globalise_batchnorm

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
DIMENSIONS = ("kernels", "depths", "expands", "resolutions")
#: steps whose subnet strings ``OnceForAll.sampled`` keeps (about 1 KB per step)
SAMPLED_HISTORY = 20_000


def ofa_weight_optimizer(params: Iterable[Any]) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9 and weight decay 3e-5 (OFA's ``train_ofa_net.py``); the
    learning rate is set every step from the phase schedule."""
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=3e-5)


@dataclass
class Phase:
    """One phase of progressive shrinking.

    Attributes:
        name: shown in logs (``full``, ``kernel``, ``depth``, ``expand``, ...).
        epochs: training epochs of the phase (>= 1).
        lr: peak learning rate of the phase's cosine schedule.
        kernels, depths, expands, resolutions: the active choices; ``None`` activates only
            the largest choice of the space (the full network in that dimension).
        subnets_per_step: subnets sampled per step, their gradients summed (OFA: 1 for
            kernel, 2 for depth and expand).
        sandwich: the largest and the smallest active subnets are always among them.
        kd_ratio: weight of the distillation loss; ``None`` uses the strategy's ``kd_ratio``
            (never in the first phase: the teacher is what it trains).
        warmup_epochs: linear warm-up from 0 to ``lr`` at the start of the phase.
        sort_channels: sort expanded channels by importance when the phase begins; ``None``:
            when this is the first phase with several expand ratios.
    """

    name: str
    epochs: int
    lr: float
    kernels: list[int] | None = None
    depths: list[int] | None = None
    expands: list[int] | None = None
    resolutions: list[int] | None = None
    subnets_per_step: int = 1
    sandwich: bool = False
    kd_ratio: float | None = None
    warmup_epochs: int = 0
    sort_channels: bool | None = None


#: OFA's MobileNetV3 schedule on ImageNet (``train_ofa_net.py``; per-GPU batch 64 x 32 GPUs):
#: the full network, elastic kernel, depth in two stages, expand in two stages.
PAPER_PHASES: tuple[Phase, ...] = (
    Phase("full", 180, 0.08, resolutions=[128, 160, 192, 224]),
    Phase("kernel", 120, 0.03, kernels=[3, 5, 7], resolutions=[128, 160, 192, 224],
          warmup_epochs=5),
    Phase("depth-1", 25, 0.0025, kernels=[3, 5, 7], depths=[3, 4],
          resolutions=[128, 160, 192, 224], subnets_per_step=2),
    Phase("depth-2", 120, 0.0075, kernels=[3, 5, 7], depths=[2, 3, 4],
          resolutions=[128, 160, 192, 224], subnets_per_step=2, warmup_epochs=5),
    Phase("expand-1", 25, 0.0025, kernels=[3, 5, 7], depths=[2, 3, 4], expands=[4, 6],
          resolutions=[128, 160, 192, 224], subnets_per_step=2),
    Phase("expand-2", 120, 0.0075, kernels=[3, 5, 7], depths=[2, 3, 4], expands=[3, 4, 6],
          resolutions=[128, 160, 192, 224], subnets_per_step=2, warmup_epochs=5),
)


@dataclass
class _Resolved:
    """A phase with its active choices resolved against the space."""

    phase: Phase
    index: int
    start_epoch: int
    choices: dict[str, tuple[int, ...]] = field(default_factory=dict)
    kd_ratio: float = 0.0
    sort_channels: bool = False


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c q_c log p_c: (B, C), (B, C) -> scalar (OFA's KD loss)."""
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(1).mean()


class OnceForAll(L.LightningModule):
    """Once-for-All supernet training with progressive shrinking (module docstring).

    Expects ``(x, y)`` batches (a data module with ``search=False``).

    Args:
        num_classes, in_channels: linked from the data module by the CLI.
        space: the elastic space; ``MobileNetV3Space.cifar()`` by default.
        phases: the progressive-shrinking schedule (:class:`Phase` list, YAML list of dicts);
            default :data:`PAPER_PHASES` (ImageNet).
        weight_optimizer: optimiser factory (gets two parameter groups: with weight decay,
            and batch-norm/bias parameters without, as in OFA); SGD Nesterov by default.
        lr_min: final learning rate of each phase's cosine.
        kd_ratio: distillation weight of phases that do not set their own (OFA: 1.0).
        label_smoothing: of the hard-label cross-entropy (OFA: 0.1).
        grad_clip: max global gradient norm, 0 disables (OFA: none).
        dropout: before the classifier (OFA: 0.1).
        eval_subnets: name -> ``"largest"``, ``"middle"``, ``"smallest"`` or an arch string;
            each is extracted, recalibrated and evaluated every validation epoch, logged as
            ``val/acc_<name>``; ``val/acc`` is the first one's.
        bn_calibration_batches: training batches (the first of each epoch) used to
            recalibrate batch-norm statistics of evaluated subnets.
        channels_last: NHWC activations (faster depthwise convolutions on CPU).
        sync_batchnorm: under DDP, normalise with the statistics of all ranks' batches
            (:class:`~lightning_nas.strategies.sync_bn.GlobalBatchNorm2d`, elastic width
            included), so a 2-rank step equals the single-process step on both batches;
            False keeps per-rank statistics, as OFA's Horovod training does.
        seed: seeds the initialisation, the subnet draws and the dropout masks.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        space: MobileNetV3Space | None = None,
        phases: Sequence[Phase] | None = None,
        weight_optimizer: OptimizerFactory = ofa_weight_optimizer,
        lr_min: float = 0.0,
        kd_ratio: float = 1.0,
        label_smoothing: float = 0.1,
        grad_clip: float = 0.0,
        dropout: float = 0.1,
        eval_subnets: Mapping[str, str] | None = None,
        bn_calibration_batches: int = 4,
        channels_last: bool = True,
        sync_batchnorm: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, "
                             f"{in_channels}")
        if lr_min < 0 or kd_ratio < 0 or grad_clip < 0 or not 0 <= label_smoothing < 1:
            raise ValueError("lr_min, kd_ratio and grad_clip must be >= 0 and label_smoothing "
                             "in [0, 1)")
        if bn_calibration_batches < 1:
            raise ValueError(f"bn_calibration_batches must be >= 1, got {bn_calibration_batches}")
        self.automatic_optimization = False
        self.space = space or MobileNetV3Space.cifar()
        if not isinstance(self.space, MobileNetV3Space):
            raise TypeError(f"OnceForAll needs a MobileNetV3Space, got {type(self.space).__name__}")
        phases = list(PAPER_PHASES if phases is None else phases)
        self.phases = self._resolve_phases([p if isinstance(p, Phase) else Phase(**p)
                                            for p in phases], kd_ratio)
        self.total_epochs = sum(r.phase.epochs for r in self.phases)
        self.eval_archs = self._resolve_eval_subnets(eval_subnets or {
            "largest": "largest", "middle": "middle", "smallest": "smallest"})
        self.save_hyperparameters(ignore=["space", "weight_optimizer", "phases"])
        self.weight_optimizer_factory = weight_optimizer
        self.channels_last = channels_last
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet = OFASupernet(self.space, num_classes=num_classes,
                                        in_channels=in_channels, dropout=dropout)
            self.teacher = self.space.build(self.space.largest(), num_classes=num_classes,
                                            in_channels=in_channels, dropout=dropout)
        self.teacher.requires_grad_(False)
        # dropout masks by the image's place in the global batch (same on 1 or N ranks)
        globalise_dropout(self.supernet)
        globalise_dropout(self.teacher)
        self.register_buffer("teacher_ready", torch.zeros((), dtype=torch.bool))
        if channels_last:
            self.supernet.to(memory_format=torch.channels_last)
            self.teacher.to(memory_format=torch.channels_last)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.val_acc = nn.ModuleDict({name: MulticlassAccuracy(num_classes, average="micro")
                                      for name in self.eval_archs})
        self.test_acc = nn.ModuleDict({name: MulticlassAccuracy(num_classes, average="micro")
                                       for name in self.eval_archs})
        self._calibration: list[torch.Tensor] = []
        self._eval_nets: dict[str, MobileNetV3Network] = {}
        # subnet strings of this process's most recent steps (tests, compute accounting)
        self.sampled: deque[list[str]] = deque(maxlen=SAMPLED_HISTORY)

    # -- configuration -----------------------------------------------------------------------
    def _resolve_phases(self, phases: list[Phase], kd_default: float) -> list[_Resolved]:
        if not phases:
            raise ValueError("phases is empty: give at least one phase (e.g. the full network)")
        space_choices = {"kernels": self.space.kernels, "depths": self.space.depths,
                         "expands": self.space.expands, "resolutions": self.space.resolutions}
        resolved, start, previous_expands = [], 0, 1
        for index, phase in enumerate(phases):
            where = f"phase {index} ({phase.name!r})"
            if phase.epochs < 1 or not phase.lr > 0 or phase.warmup_epochs < 0:
                raise ValueError(f"{where}: epochs must be >= 1, lr > 0 and warmup_epochs >= 0; "
                                 f"got {phase.epochs}, {phase.lr}, {phase.warmup_epochs}")
            if phase.warmup_epochs >= phase.epochs:
                raise ValueError(f"{where}: warmup_epochs ({phase.warmup_epochs}) must be "
                                 f"fewer than epochs ({phase.epochs})")
            if phase.subnets_per_step < 1 or (phase.sandwich and phase.subnets_per_step < 2):
                raise ValueError(f"{where}: subnets_per_step must be >= 1, and >= 2 with the "
                                 f"sandwich rule; got {phase.subnets_per_step}")
            choices = {}
            for dim in DIMENSIONS:
                given, allowed = getattr(phase, dim), space_choices[dim]
                if given is None:
                    choices[dim] = (allowed[-1],)
                    continue
                if not given or len(set(given)) != len(given):
                    raise ValueError(f"{where}: {dim} must be a non-empty list of distinct "
                                     f"choices, got {given!r}")
                outside = [v for v in given if v not in allowed]
                if outside:
                    raise ValueError(f"{where} activates {dim} {outside}, which the space does "
                                     f"not have: its {dim} are {list(allowed)}. Use choices of "
                                     f"the space or widen the space (model.space)")
                choices[dim] = tuple(sorted(given))
            kd = kd_default if phase.kd_ratio is None else phase.kd_ratio
            if kd < 0:
                raise ValueError(f"{where}: kd_ratio must be >= 0, got {kd}")
            if index == 0:
                if phase.kd_ratio:
                    raise ValueError(f"{where}: the first phase cannot distil (kd_ratio "
                                     f"{phase.kd_ratio}); the teacher is the full network it "
                                     "trains. Put kd_ratio on later phases")
                kd = 0.0
            sort = (phase.sort_channels if phase.sort_channels is not None
                    else len(choices["expands"]) > 1 and previous_expands == 1)
            previous_expands = max(previous_expands, len(choices["expands"]))
            resolved.append(_Resolved(phase, index, start, choices, kd, bool(sort)))
            start += phase.epochs
        return resolved

    def _resolve_eval_subnets(self, named: Mapping[str, str]) -> dict[str, Arch]:
        out = {}
        for name, value in named.items():
            if value in ("largest", "smallest", "middle"):
                out[name] = self.reference_subnet(value)
            else:
                try:
                    out[name] = self.space.parse(value)
                except ArchError as err:
                    raise ValueError(f"eval_subnets[{name!r}]: {err}") from None
        if not out:
            raise ValueError("eval_subnets is empty; name at least one subnet to validate")
        return out

    def reference_subnet(self, which: str) -> Arch:
        """The ``largest``, ``smallest`` or ``middle`` (median choice everywhere) subnet of the
        whole space."""
        pick = {"largest": lambda c: c[-1], "smallest": lambda c: c[0],
                "middle": lambda c: c[(len(c) - 1) // 2]}[which]
        s = self.space
        return self._subnet({"resolutions": s.resolutions, "depths": s.depths,
                             "kernels": s.kernels, "expands": s.expands}, pick)

    def phase_at(self, epoch: int) -> _Resolved:
        """The phase that trains ``epoch`` (0-based); the last one beyond the schedule."""
        for r in self.phases:
            if epoch < r.start_epoch + r.phase.epochs:
                return r
        return self.phases[-1]

    # -- subnet sampling ---------------------------------------------------------------------
    def _subnet(self, choices: Mapping[str, tuple[int, ...]],
                pick: Callable[[tuple[int, ...]], int]) -> Arch:
        s = self.space
        n = len(s.block_keys)
        return s.make(pick(choices["resolutions"]),
                      [pick(choices["depths"]) for _ in s.stages],
                      [pick(choices["kernels"]) for _ in range(n)],
                      [pick(choices["expands"]) for _ in range(n)])

    def sample_subnets(self, phase: _Resolved, step: int) -> list[Arch]:
        """The subnets trained at global step ``step`` (identical on every rank and on
        resume: drawn from ``random.Random(f"{seed}|{step}")``)."""
        rng = random.Random(f"{self.hparams.seed}|{step}")
        archs = []
        if phase.phase.sandwich:
            archs += [self._subnet(phase.choices, lambda c: c[-1]),
                      self._subnet(phase.choices, lambda c: c[0])]
        while len(archs) < phase.phase.subnets_per_step:
            archs.append(self._subnet(phase.choices, rng.choice))
        return archs

    # -- optimisation ------------------------------------------------------------------------
    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.supernet.parameters() if p.requires_grad]

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.supernet.named_parameters():
            bn_or_bias = name.endswith("bias") or p.dim() == 1
            (no_decay if bn_or_bias else decay).append(p)
        return self.weight_optimizer_factory([{"params": decay},
                                              {"params": no_decay, "weight_decay": 0.0}])

    def learning_rate(self, phase: _Resolved, epoch: int, batch_idx: int,
                      batches_per_epoch: int) -> float:
        """Linear warm-up then cosine from ``phase.lr`` to ``lr_min`` within the phase."""
        p, lr_min = phase.phase, self.hparams.lr_min
        t = (epoch - phase.start_epoch) * batches_per_epoch + batch_idx  # steps into the phase
        warm = p.warmup_epochs * batches_per_epoch
        if t < warm:
            return p.lr * (t + 1) / warm
        total = max(1, p.epochs * batches_per_epoch - warm)
        return lr_min + 0.5 * (p.lr - lr_min) * (1 + math.cos(math.pi * min(1.0, (t - warm)
                                                                              / total)))

    def _input(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        x = resize_to(x, resolution)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def setup(self, stage: str) -> None:
        if self.hparams.sync_batchnorm and self.trainer.world_size > 1:
            globalise_batchnorm(self.supernet)  # the teacher runs in train mode too
            globalise_batchnorm(self.teacher)

    def on_fit_start(self) -> None:
        trainer = self.trainer
        size = getattr(getattr(trainer, "datamodule", None), "image_size", None)
        if isinstance(size, int) and size < max(self.space.resolutions):
            rank_zero_warn(f"the data module's images are {size} pixels but the space's largest "
                           f"resolution is {max(self.space.resolutions)}: every batch is "
                           "upsampled; set data.image_size to the largest resolution")
        if trainer.fast_dev_run or trainer.max_steps not in (-1, None):
            return
        if trainer.max_epochs is not None and trainer.max_epochs > self.total_epochs:
            raise ValueError(
                f"trainer.max_epochs is {trainer.max_epochs} but the phases cover "
                f"{self.total_epochs} epochs ({', '.join(f'{r.phase.name}: {r.phase.epochs}' for r in self.phases)}); "
                f"set --trainer.max_epochs {self.total_epochs} or lengthen the phases")

    def on_train_epoch_start(self) -> None:
        self._calibration = []
        phase = self.phase_at(self.current_epoch)
        if self.current_epoch == phase.start_epoch:
            self._begin_phase(phase)

    def _begin_phase(self, phase: _Resolved) -> None:
        """Sort channels, take the teacher, reset momentum (runs on every rank alike)."""
        notes = []
        if phase.sort_channels:
            self.supernet.sort_channels()
            notes.append("channels sorted by importance")
        if phase.kd_ratio > 0 and not bool(self.teacher_ready):
            state = self.supernet.extract(self.space.largest()).state_dict()
            self.teacher.load_state_dict(state)
            self.teacher_ready.fill_(True)
            notes.append("teacher = the full network")
        optimizer = self.optimizers()
        optimizer = getattr(optimizer, "optimizer", optimizer)
        optimizer.state.clear()
        choices = ", ".join(f"{k} {list(v)}" for k, v in phase.choices.items())
        rank_zero_info(f"OFA phase {phase.index} {phase.phase.name!r} (epochs "
                       f"{phase.start_epoch}-{phase.start_epoch + phase.phase.epochs - 1}): "
                       f"{choices}; {phase.phase.subnets_per_step} subnet(s)/step"
                       f"{', sandwich' if phase.phase.sandwich else ''}, kd {phase.kd_ratio}"
                       f"{'; ' + ', '.join(notes) if notes else ''}")

    def _subnet_gradients(self, subnets: Sequence[Arch], phase: _Resolved, x: torch.Tensor,
                          y: torch.Tensor, params: list[nn.Parameter]
                          ) -> tuple[list[torch.Tensor | None], float]:
        """Summed gradients of the subnets' losses (None for parameters no subnet used) and
        the summed loss value."""
        grads: list[torch.Tensor | None] = [None] * len(params)
        teacher_out: dict[int, torch.Tensor] = {}
        total = 0.0
        for arch in subnets:
            r = int(arch["resolution"])
            xr = self._input(x, r)
            self.supernet.set_active(arch)
            logits = self.supernet(xr)
            loss = self.criterion(logits, y)
            if phase.kd_ratio > 0:
                if r not in teacher_out:
                    with torch.no_grad():  # OFA runs its teacher in train mode, without grad
                        self.teacher.train()
                        teacher_out[r] = F.softmax(self.teacher(xr), dim=1)
                loss = loss + phase.kd_ratio * soft_cross_entropy(logits, teacher_out[r])
            for i, g in enumerate(scaled_grad(self._trainer, loss, params, allow_unused=True)):
                if g is not None:  # OFA sums the subnets' gradients
                    grads[i] = g if grads[i] is None else grads[i] + g
            total += float(loss.detach())
        return grads, total

    def training_step(self, batch, batch_idx: int) -> None:
        if isinstance(batch, dict):
            raise TypeError("OnceForAll takes (x, y) batches: give the data module search=False")
        x, y = batch
        if len(self._calibration) < self.hparams.bn_calibration_batches:
            self._calibration.append(x.detach())
        phase = self.phase_at(self.current_epoch)
        optimizer = self.optimizers()
        lr = self.learning_rate(phase, self.current_epoch, batch_idx,
                                max(1, int(self.trainer.num_training_batches)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        subnets = self.sample_subnets(phase, self.global_step)
        self.sampled.append([self.space.to_string(a) for a in subnets])

        params = self.trainable()
        # dropout masks come from a generator seeded by (seed, step) on every rank, each rank
        # keeping its images' rows of the global batch's mask (global_dropout.py); any other
        # random draw from one seeded by (seed, step, rank): resumable anywhere
        devices = [x.device] if x.device.type == "cuda" else []
        masks_seed = random.Random(f"{self.hparams.seed}|{self.global_step}|dropout")
        with torch.random.fork_rng(devices=devices), global_batch_masks(
                [self.supernet, self.teacher], masks_seed.getrandbits(63),
                rank=self.global_rank, world_size=self.trainer.world_size, device=x.device):
            torch.manual_seed(random.Random(f"{self.hparams.seed}|{self.global_step}|"
                                            f"{self.global_rank}|rng").getrandbits(63))
            grads, total = self._subnet_gradients(subnets, phase, x, y, params)
        used = [i for i, g in enumerate(grads) if g is not None]  # same on all ranks
        # one all-reduce for the gradients and the loss; checked after it, so every rank
        # raises together
        averaged = average_gradients(self.trainer, [grads[i] for i in used] +
                                     [torch.tensor([total], device=x.device)])
        mean_loss = averaged.pop()
        # under 16-mixed, overflowing gradients make the precision plugin skip the step
        checked = [mean_loss] if overflow_skips_step(self.trainer) else \
            [mean_loss, *(g.reshape(-1) for g in averaged)]
        raise_if_not_finite("training loss or gradient", torch.cat(checked),
                            epoch=self.current_epoch, step=self.global_step,
                            advice=f"lower the learning rate of phase {phase.phase.name!r} "
                            "(model.phases) or set model.grad_clip")
        for p in params:
            p.grad = None
        for i, g in zip(used, averaged):
            params[i].grad = g
        if self.hparams.grad_clip > 0:
            nn.utils.clip_grad_norm_([params[i] for i in used], self.hparams.grad_clip)
        prepare_step(self.trainer, params)
        optimizer.step()
        self.log("train/loss", float(mean_loss) / len(subnets), on_step=True, on_epoch=True,
                 prog_bar=True)
        self.log("lr", lr, on_step=True, on_epoch=False)
        self.log("phase", float(phase.index), on_step=False, on_epoch=True)

    # -- evaluation --------------------------------------------------------------------------
    def extract(self, arch: Arch, batches: Sequence[torch.Tensor] | None = None
                ) -> MobileNetV3Network:
        """Standalone network of ``arch`` with inherited weights, batch-norm statistics
        recalibrated on ``batches`` (default: this epoch's first training batches), eval mode."""
        net = self.supernet.extract(arch)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        batches = self._calibration if batches is None else batches
        if batches:
            recalibrate_bn(net, [self._input(b, int(arch["resolution"])) for b in batches])
        return net.eval()

    def _prepare_eval(self) -> None:
        self._eval_nets = {name: self.extract(arch) for name, arch in self.eval_archs.items()}

    def on_validation_epoch_start(self) -> None:
        self._prepare_eval()

    def on_test_epoch_start(self) -> None:
        self._prepare_eval()

    def _evaluate(self, batch, metrics: nn.ModuleDict, stage: str) -> None:
        x, y = batch
        first = next(iter(self.eval_archs))
        for name, net in self._eval_nets.items():
            logits = net(self._input(x, net.resolution))
            metrics[name](logits, y)
            self.log(f"{stage}/acc_{name}", metrics[name], prog_bar=name == first)
            self.log(f"{stage}/loss_{name}", F.cross_entropy(logits, y), sync_dist=True)
            if name == first:
                self.log(f"{stage}/acc", metrics[name])

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_acc, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_acc, "test")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the active subnet (input resized to its resolution)."""
        return self.supernet(self._input(x, int(self.supernet.active["resolution"])))

    def current_arch(self) -> Arch:
        return self.space.largest()

    def scored_architectures(self) -> list[ScoredArch]:
        """The tracked subnets (``eval_subnets``) with their validation accuracy after BN
        recalibration (callbacks: latency profiling, Pareto front)."""
        return [ScoredArch(name, arch, logged_value(self, f"val/acc_{name}"))
                for name, arch in self.eval_archs.items()]

    # -- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        arch = self.space.largest()
        phase = self.phase_at(self.current_epoch)
        checkpoint["lightning_nas"] = {
            "strategy": f"{type(self).__module__}.{type(self).__qualname__}",
            "arch": arch.to_dict(),
            "string": self.space.to_string(arch),
            "space": self.space.config(),
            "supernet": {"num_classes": self.supernet.num_classes,
                         "in_channels": self.supernet.in_channels,
                         "dropout": self.supernet.dropout_p},
            "phases": [asdict(r.phase) for r in self.phases],
            "phase": phase.index,
            "input_shape": data_input_shape(self),
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lightning_nas", {})
        saved = state.get("space")
        if saved is not None and saved != self.space.config():
            raise ValueError("this checkpoint's supernet was trained on another space "
                             f"({saved}); configure model.space the same way to resume")
        if "rng" in state:
            set_rng_state(state["rng"])
        rank_zero_info(f"resuming Once-for-All from epoch {checkpoint.get('epoch')} "
                       f"(phase {state.get('phase')})")


def load_supernet(path: str | Path) -> tuple[MobileNetV3Space, OFASupernet]:
    """The space and the trained supernet of an :class:`OnceForAll` checkpoint (CPU, eval)."""
    from lightning_nas.checkpoints import CheckpointError
    from lightning_nas.strategies.common import load_supernet as load_any

    try:
        space, supernet, _ = load_any(path)
    except CheckpointError as err:
        if "holds no supernet" not in str(err):
            raise
        supernet = None
    if not isinstance(supernet, OFASupernet):
        what = f"its supernet is a {type(supernet).__name__}" if supernet is not None else \
            "no supernet metadata"
        raise CheckpointError(f"{path} is not a Once-for-All checkpoint ({what}); use a "
                              "checkpoint written by `lightning-nas fit` with OnceForAll")
    return space, supernet


def save_subnet(net: nn.Module, space: SearchSpace, out_dir: str | Path,
                **extra: Any) -> dict[str, Path]:
    """Write an extracted standalone subnet (Once-for-All, NAS-Bench-201) as ``arch.json`` +
    ``subnet.ckpt`` in ``out_dir``.

    ``subnet.ckpt`` has Lightning's ``state_dict`` layout with the ``net.`` prefix, so
    :class:`~lightning_nas.strategies.fixed.FixedArchitecture` takes it as ``init_from``
    (fine-tuning) with ``arch`` = the ``arch.json`` and the same ``space``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch_path = net.arch.save(out / "arch.json", string=space.to_string(net.arch), **extra)
    ckpt = {"state_dict": {f"net.{k}": v.detach().cpu() for k, v in net.state_dict().items()},
            "lightning_nas": {"strategy": "lightning_nas.strategies.ofa.save_subnet",
                              "arch": net.arch.to_dict(), "string": space.to_string(net.arch),
                              "space": space.config()}}
    ckpt_path = out / "subnet.ckpt"
    torch.save(ckpt, ckpt_path)
    return {"arch": arch_path, "weights": ckpt_path}


__all__ = [
    "PAPER_PHASES",
    "OnceForAll",
    "Phase",
    "load_supernet",
    "ofa_weight_optimizer",
    "save_subnet",
    "soft_cross_entropy",
]
