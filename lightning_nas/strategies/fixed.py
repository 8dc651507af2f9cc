"""Train or fine-tune one discovered architecture (the DARTS evaluation recipe by default)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.checkpoints import load_checkpoint
from lightning_nas.spaces.base import Arch, SearchSpace
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.strategies.common import (
    ScoredArch,
    data_input_shape,
    logged_value,
    raise_if_not_finite,
    rng_state,
    set_rng_state,
    space_spec,
)
from lightning_nas.strategies.darts import OptimizerFactory, paper_weight_optimizer

#: Name fragments of output layers that are re-initialised when the class count changes.
HEAD_KEYS = ("classifier",)


class FixedArchitecture(L.LightningModule):
    """Train one architecture from scratch, or fine-tune it from a checkpoint.

    Defaults follow the DARTS CIFAR-10 evaluation (Liu et al. 2019, Sec. 3.3 / A.2): SGD
    0.025 momentum 0.9 weight decay 3e-4 with a cosine schedule, gradient clipping 5,
    auxiliary loss weight 0.4, drop-path probability 0.2 rising linearly over the epochs
    (cutout is the data module's ``cutout=16``).

    Args:
        arch: an ``arch.json`` path, a preset name (e.g. ``DARTS_V2``) or the string form.
        space: the space that builds the network; its constructor holds the network
            defaults (e.g. ``DartsSpace(channels=36, layers=20, auxiliary=True)``).
        num_classes, in_channels: linked from the data module by the CLI.
        weight_optimizer: optimiser factory; cosine schedule to ``lr_min`` over
            ``schedule_epochs``.
        schedule_epochs: epochs the cosine schedule and the drop-path ramp span (default
            ``None``: the trainer's ``max_epochs``). A fixed value makes a shorter run the
            exact prefix of the full one, which is what continuing a multi-fidelity
            promotion needs (``TrainingEvaluator(continue_training=True)``).
        auxiliary_weight: weight of the auxiliary head's loss (when the network has one).
        drop_path_prob: final drop-path probability (scaled by epoch / schedule epochs).
        grad_clip: max global gradient norm; 0 disables.
        label_smoothing: cross-entropy label smoothing.
        init_from: a checkpoint whose weights initialise the network (fine-tuning); output
            layers whose shape differs (another class count) are left freshly initialised.
        seed: seeds the network initialisation.
    """

    def __init__(
        self,
        *,
        arch: str,
        space: SearchSpace | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        weight_optimizer: OptimizerFactory = paper_weight_optimizer,
        lr_min: float = 0.0,
        schedule_epochs: int | None = None,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.2,
        grad_clip: float = 5.0,
        label_smoothing: float = 0.0,
        init_from: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if not 0.0 <= drop_path_prob < 1.0:
            raise ValueError(f"drop_path_prob must be in [0, 1), got {drop_path_prob}")
        if schedule_epochs is not None and (isinstance(schedule_epochs, bool) or not
                                            isinstance(schedule_epochs, int) or
                                            schedule_epochs < 1):
            raise ValueError(f"schedule_epochs must be an int >= 1 or None (the trainer's "
                             f"max_epochs), got {schedule_epochs!r}")
        if auxiliary_weight < 0 or grad_clip < 0 or not 0.0 <= label_smoothing < 1.0:
            raise ValueError("auxiliary_weight and grad_clip must be >= 0, label_smoothing in "
                             "[0, 1)")
        self.space = space or DartsSpace(channels=36, layers=20, auxiliary=True)
        self.arch: Arch = self.space.load(arch)
        self.save_hyperparameters(ignore=["space", "weight_optimizer"])
        self.weight_optimizer_factory = weight_optimizer
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = self.space.build(self.arch, **self._build_kwargs(num_classes, in_channels))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        rank_zero_info(f"architecture: {self.space.to_string(self.arch)} "
                       f"({sum(p.numel() for p in self.net.parameters()) / 1e6:.3f} M parameters)")
        if init_from:
            self.load_weights(init_from)

    def _build_kwargs(self, num_classes: int, in_channels: int) -> dict[str, Any]:
        accepted = inspect.signature(self.space.build).parameters
        kwargs = {"num_classes": num_classes, "in_channels": in_channels}
        if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            return kwargs
        return {k: v for k, v in kwargs.items() if k in accepted}

    def load_weights(self, path: str | Path) -> None:
        """Copy matching weights from a checkpoint; re-initialise mismatched output layers."""
        checkpoint = load_checkpoint(path)
        saved = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items()
                 if k.startswith("net.")}
        if not saved:
            raise RuntimeError(f"{path} holds no fixed-architecture network weights ('net.*'); "
                               "fine-tune from a checkpoint of `lightning-nas fit` with "
                               "FixedArchitecture")
        own = self.net.state_dict()
        skipped = [k for k, v in saved.items()
                   if k in own and own[k].shape != v.shape and any(h in k for h in HEAD_KEYS)]
        wrong = [k for k, v in saved.items()
                 if k in own and own[k].shape != v.shape and k not in skipped]
        missing = [k for k in own if k not in saved]
        if wrong or missing:
            raise RuntimeError(
                f"checkpoint {path} does not fit this architecture: {len(wrong)} tensors with "
                f"other shapes (e.g. {wrong[:3]}) and {len(missing)} missing (e.g. "
                f"{missing[:3]}); was it trained with the same arch and space settings?"
            )
        self.net.load_state_dict({k: v for k, v in saved.items() if k not in skipped},
                                 strict=False)
        rank_zero_info(f"initialised from {path}; new output layers: {skipped or 'none'}")

    # ---------------------------------------------------------------------------------------
    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs at the architecture's own resolution when it has one (elastic-resolution
        spaces such as Once-for-All's): (B, C, H, W) -> (B, C, r, r), bilinear."""
        r = getattr(self.net, "resolution", None)
        if r is None or (x.shape[-2] == r and x.shape[-1] == r):
            return x
        return torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear",
                                               align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self._resized(x))
        return out[0] if isinstance(out, tuple) else out

    def configure_optimizers(self):
        opt = self.weight_optimizer_factory(self.net.parameters())
        epochs = self.schedule_epochs
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs,
                                                              eta_min=self.hparams.lr_min)
        return {"optimizer": opt, "lr_scheduler": schedule}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        clip = gradient_clip_val or self.hparams.grad_clip
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    @property
    def schedule_epochs(self) -> int:
        """Epochs of the learning-rate schedule and drop-path ramp."""
        fixed = self.hparams.get("schedule_epochs")
        return int(fixed) if fixed else max(1, self.trainer.max_epochs or 1)

    def on_train_epoch_start(self) -> None:
        epochs = self.schedule_epochs
        if hasattr(self.net, "drop_path_prob"):
            self.net.drop_path_prob = self.hparams.drop_path_prob * self.current_epoch / epochs

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.net(self._resized(x))
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = self.criterion(logits, y)
        if aux is not None and self.hparams.auxiliary_weight > 0:
            loss = loss + self.hparams.auxiliary_weight * self.criterion(aux, y)
        raise_if_not_finite("training loss", loss.detach(), epoch=self.current_epoch,
                            step=self.global_step, advice="lower the learning rate "
                            "(model.weight_optimizer) or keep gradient clipping on")
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

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

    def current_arch(self) -> Arch:
        return self.arch

    def scored_architectures(self) -> list[ScoredArch]:
        """The trained architecture with its validation accuracy (callbacks)."""
        return [ScoredArch("arch", self.arch, logged_value(self, "val/acc"))]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightning_nas"] = {
            "strategy": f"{type(self).__module__}.{type(self).__qualname__}",
            "arch": self.arch.to_dict(),
            "string": self.space.to_string(self.arch),
            # what `lightning-nas export` needs to rebuild the network without the config
            "space": space_spec(self.space) if hasattr(self.space, "config") else None,
            "input_shape": data_input_shape(self),
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lightning_nas", {})
        if "rng" in state:
            set_rng_state(state["rng"])
