"""Score the model with zero-cost proxies at the start of training and log the scores.

The proxies (:mod:`lightning_nas.estimation.zero_cost`) run on a deep copy of the network
before the first optimiser step, on one training batch, so training is unaffected: the
network's weights, buffers, gradients and mode are left as they were, the data module's
augmentation counters are not advanced (the batch is normalised without augmentation), and
the global RNG is restored afterwards.

Example::

    trainer = L.Trainer(callbacks=[ZeroCostScoring(proxies=("synflow", "naswot"))])
    trainer.fit(model, datamodule=dm)   # logs zero_cost/synflow, zero_cost/naswot at step 0
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_nas.estimation.zero_cost import PROXIES, compute_proxies

__all__ = ["ZeroCostScoring", "first_batch"]


def first_batch(datamodule: Any, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch of a data module as normalised float ``(x, y)`` on ``device``.

    Uses ``datamodule.transform_batch(batch, train=False)`` when it has one (the project's
    image data modules: normalisation without augmentation, no RNG advanced); otherwise the
    batch must already be float. In search mode (``{"weights": ..., "arch": ...}``) the
    weights half is used.
    """
    not_loaded = hasattr(datamodule, "_train_set") and datamodule._train_set is None
    if not_loaded or getattr(datamodule, "trainer", None) is None:
        datamodule.setup("fit")  # idempotent for the project's data modules
    loader = datamodule.train_dataloader()
    if isinstance(loader, Mapping):
        loader = loader.get("weights", next(iter(loader.values())))
    batch = next(iter(loader))
    if isinstance(batch, Mapping):
        batch = batch.get("weights", next(iter(batch.values())))
    x, y = batch[0], batch[1]
    x, y = x.to(device), y.to(device)
    if hasattr(datamodule, "transform_batch"):
        x, y = datamodule.transform_batch((x, y), train=False)
    if not x.is_floating_point():
        raise TypeError(f"the first training batch is {x.dtype}; the data module must yield "
                        "float inputs or provide transform_batch(batch, train=False)")
    return x, y


class ZeroCostScoring(Callback):
    """Zero-cost proxies of the model at the start of training, logged once.

    Args:
        proxies: names from :data:`~lightning_nas.estimation.zero_cost.PROXIES`.
        network_attr: attribute of the LightningModule holding the network (e.g. ``"net"``);
            None = ``net`` when the module has one, else the LightningModule itself (its
            ``forward`` must return logits or ``(logits, ...)``).
        batch: an explicit ``(x, y)`` batch (normalised float x); default: the first batch
            of the data module's training loader, or of the trainer's training loader.
        log_prefix: prefix of the logged metric names.
        max_batch: use at most this many samples of the batch (64 as in the papers).

    Attributes:
        scores: ``{proxy: value}`` of the last fit (empty before it).
        seconds: wall time of the scoring.
    """

    def __init__(self, proxies: Sequence[str] = ("synflow", "naswot", "jacob_cov", "snip",
                                                 "grad_norm"), *,
                 network_attr: str | None = None,
                 batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 log_prefix: str = "zero_cost/", max_batch: int = 64):
        super().__init__()
        unknown = [p for p in proxies if p not in PROXIES]
        if not proxies or unknown:
            raise ValueError(f"proxies must be a non-empty subset of {list(PROXIES)}; unknown: "
                             f"{unknown}")
        if max_batch < 2:
            raise ValueError(f"max_batch must be >= 2, got {max_batch}")
        self.proxies = tuple(proxies)
        self.network_attr = network_attr
        self.batch = batch
        self.log_prefix = log_prefix
        self.max_batch = max_batch
        self.scores: dict[str, float] = {}
        self.seconds = 0.0

    def _network(self, pl_module: L.LightningModule) -> nn.Module:
        if self.network_attr is not None:
            net = getattr(pl_module, self.network_attr, None)
            if not isinstance(net, nn.Module):
                raise AttributeError(f"the LightningModule has no network attribute "
                                     f"{self.network_attr!r}")
            return net
        net = getattr(pl_module, "net", None)
        return net if isinstance(net, nn.Module) else pl_module

    def _batch(self, trainer: L.Trainer, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch is not None:
            x, y = self.batch
            return x.to(device), y.to(device)
        if trainer.datamodule is not None:
            return first_batch(trainer.datamodule, device)
        loader = trainer.train_dataloader
        if isinstance(loader, Mapping):
            loader = next(iter(loader.values()))
        if isinstance(loader, Sequence):
            loader = loader[0]
        batch = next(iter(loader))
        x, y = batch[0].to(device), batch[1].to(device)
        return x, y

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        start = time.perf_counter()
        x, y = self._batch(trainer, pl_module.device)
        x, y = x[: self.max_batch], y[: self.max_batch]
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda"
                                   else []):
            self.scores = compute_proxies(self._network(pl_module), x, y, proxies=self.proxies)
        self.seconds = time.perf_counter() - start
        named = {f"{self.log_prefix}{k}": v for k, v in self.scores.items()}
        named[f"{self.log_prefix}seconds"] = self.seconds
        for logger in trainer.loggers:
            logger.log_metrics(named, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in named.items()})
        rank_zero_info("zero-cost proxies: " + ", ".join(f"{k}={v:.4g}"
                                                          for k, v in self.scores.items()))

    def state_dict(self) -> dict[str, Any]:
        return {"scores": dict(self.scores), "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores = dict(state.get("scores", {}))
        self.seconds = float(state.get("seconds", 0.0))
