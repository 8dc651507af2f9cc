"""GDAS: gradient-based search with a differentiable sampler (Dong & Yang, "Searching for A
Robust Neural Architecture in Four GPU Hours", CVPR 2019).

DARTS's bilevel loop (:class:`~lightning_nas.strategies.darts.DartsSearch`, first order),
but every training forward samples **one op per edge** with the Gumbel-softmax trick
(Eq. 3-5): ``p = softmax((log_softmax(alpha) + g) / tau)`` with Gumbel noise ``g``, the
forward runs only ``argmax p`` of each edge, weighted by the straight-through value
``h = onehot - stop_gradient(p) + p`` (1 in value, ``p``'s gradient), and the ops that do not
run add their ``h_k`` (0 in value), so every alpha of an edge gets a gradient, as the
authors' code does. A step therefore costs about one op per edge instead of all of them.

The temperature ``tau`` falls linearly from ``tau_max`` (10) to ``tau_min`` (0.1) over the
search (epoch e of E: ``tau_max - (tau_max - tau_min) e / (E - 1)``), a function of the epoch,
so a resumed run continues the schedule. Gumbel noise comes from a generator seeded by
(seed, global step, draw): every DDP rank samples the same ops and a resumed run draws the
same noise. Validation runs the derived architecture's path (the strongest op per edge;
DARTS-space cells keep the top-2 edges per node).

Left out: the paper's hand-designed reduction cell option for the DARTS space (here the
reduction cell is searched like the normal one).
"""

from __future__ import annotations

from typing import Any

import torch

from lightning_nas.data.base import mix_seed
from lightning_nas.spaces.base import Arch
from lightning_nas.strategies.darts import DartsSearch

_GUMBEL = 31


class GDAS(DartsSearch):
    """GDAS (module docstring). Takes every :class:`DartsSearch` argument (first order only)
    and:

    Args:
        tau_max: Gumbel-softmax temperature of the first epoch (10 in the paper).
        tau_min: temperature of the last epoch (0.1); must not exceed ``tau_max``.
    """

    def __init__(self, *, tau_max: float = 10.0, tau_min: float = 0.1, **kwargs: Any):
        if kwargs.get("order", 1) != 1:
            raise ValueError("GDAS is first order: it samples the architecture, there is no "
                             "unrolled weight step to differentiate (set order: 1)")
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"the temperature must fall from tau_max to tau_min > 0; got "
                             f"tau_max={tau_max}, tau_min={tau_min} (a schedule that rises "
                             "would sharpen, then soften the samples)")
        super().__init__(**kwargs)
        self.tau = float(tau_max)
        self._draws = 0  # Gumbel draws in this step

    def tau_at(self, epoch: int) -> float:
        """The temperature of ``epoch`` (linear from ``tau_max`` to ``tau_min``)."""
        epochs = max(1, (self.trainer.max_epochs or 1) if self._trainer is not None else 1)
        hp = self.hparams
        if epochs == 1:
            return float(hp.tau_max)
        return hp.tau_max - (hp.tau_max - hp.tau_min) * min(epoch, epochs - 1) / (epochs - 1)

    def on_train_epoch_start(self) -> None:
        self.tau = self.tau_at(self.current_epoch)
        self.log("gdas/tau", self.tau)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._draws = 0

    def sample(self) -> tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]:
        """Straight-through one-hot weights and the op index each edge runs (Eq. 5)."""
        weights, active = {}, {}
        for n, (cell, alpha) in enumerate(self.alpha.items()):
            g = torch.Generator().manual_seed(
                mix_seed(self.hparams.seed, _GUMBEL, self.global_step, self._draws, n))
            gumbel = -torch.empty(alpha.shape).exponential_(generator=g).log()  # Gumbel(0, 1)
            probs = ((alpha.log_softmax(-1) + gumbel.to(alpha.device)) / self.tau).softmax(-1)
            index = probs.argmax(-1)
            one_hot = torch.zeros_like(probs).scatter_(-1, index[:, None], 1.0)
            weights[cell] = one_hot - probs.detach() + probs
            active[cell] = [[k] for k in index.tolist()]
        self._draws += 1
        return weights, active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training: a sampled op per edge; evaluation: the derived architecture's path."""
        if self.training:
            weights, active = self.sample()
            return self.supernet.forward_weighted(x, weights, active)
        return self.supernet.forward_path(x, self.current_arch())

    def current_arch(self) -> Arch:
        return self.supernet.derive(self.mixing_weights())

    def arch_summary(self) -> dict[str, Any]:
        return {**super().arch_summary(), "tau": self.tau}


__all__ = ["GDAS"]
