"""PC-DARTS: partially-connected DARTS (Xu et al., "PC-DARTS: Partial Channel Connections for
Memory-Efficient Architecture Search", ICLR 2020).

Two changes to DARTS (:class:`~lightning_nas.strategies.darts.DartsSearch`, whose bilevel
loop this strategy keeps):

* **partial channel connections** (Sec. 3.1): on every edge the mixed op sees only the
  first 1/K of the channels; the rest bypass it (max-pooled on a reduction edge) and the
  concatenation is channel-shuffled with K groups. Memory and compute of the mixed ops drop
  about K times, so the paper searches with batch 256 (K=4 on CIFAR-10);
* **edge normalisation** (Sec. 3.2): every edge's output is weighted by ``softmax(beta)``
  over the incoming edges of its node, which offsets the noise of sampling channels; the
  derived genotype ranks edges by ``softmax(alpha) * softmax(beta)``.

With ``partial_channels=1`` and ``edge_normalization=False`` it is exactly DARTS (tested:
same forward and gradients). Runs on every weighted supernet (the DARTS cell space and
NAS-Bench-201). The paper's CIFAR-10 settings are in ``configs/pc_darts/darts_cifar10.yaml``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lightning_nas.spaces.base import Arch
from lightning_nas.strategies.darts import DartsSearch


class PCDarts(DartsSearch):
    """PC-DARTS (module docstring). Takes every :class:`DartsSearch` argument and:

    Args:
        partial_channels: K, the inverse of the share of channels the mixed ops see (4 on
            CIFAR-10, 2 on ImageNet in the paper); must divide the channels of every cell.
        edge_normalization: weight each edge by ``softmax(beta)`` over its node's incoming
            edges.
    """

    def __init__(self, *, partial_channels: int = 4, edge_normalization: bool = True,
                 **kwargs: Any):
        super().__init__(partial_channels=partial_channels, **kwargs)
        self.edge_normalization = edge_normalization
        self.groups = self.supernet.edge_groups()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hparams.seed + 1)
            # (num_edges,) per cell type, N(0, 1e-3) as the alphas (PC-DARTS code)
            self.beta = nn.ParameterDict({
                cell: nn.Parameter(1e-3 * torch.randn(shape[0]))
                for cell, shape in self.supernet.alpha_shapes().items()})

    @property
    def alphas(self) -> list[nn.Parameter]:
        """Alphas, then (with edge normalisation) the betas: the architecture optimiser's."""
        betas = list(self.beta.values()) if self.edge_normalization else []
        return [*self.alpha.values(), *betas]

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """``softmax(beta)`` within each node's incoming edges, (num_edges,) per cell type
        (None without edge normalisation)."""
        if not self.edge_normalization:
            return None
        out = {}
        for cell, beta in self.beta.items():
            weights = torch.empty_like(beta)
            for rows in self.groups[cell]:
                weights[rows] = beta[rows].softmax(-1)
            out[cell] = weights
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_weighted(x, self.mixing_weights(),
                                              edge_weights=self.edge_weights())

    def current_arch(self) -> Arch:
        """DARTS' discretisation of ``softmax(alpha) * softmax(beta)`` (PC-DARTS Sec. 3.2)."""
        return self.supernet.derive(self.mixing_weights(), edge_weights=self.edge_weights())

    def arch_summary(self) -> dict[str, Any]:
        summary = super().arch_summary()
        edges = self.edge_weights()
        if edges is not None:
            summary["edge_weights"] = {cell: w.tolist() for cell, w in edges.items()}
        return summary


__all__ = ["PCDarts"]
