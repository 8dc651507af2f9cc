"""Recent zero-cost proxies: ZiCo, SWAP, Zen-score and the AZ-NAS ensemble.

Each function scores an *untrained* network on one batch without modifying it (a deep copy
in train mode is scored, as in :mod:`lightning_nas.estimation.zero_cost`). Definitions:

* :func:`zico` -- Li, Yang, Wang, Marculescu, "ZiCo: Zero-shot NAS via inverse Coefficient
  of Variation on Gradients", ICLR 2023, Sec. 3 (the ZiCo definition, written out here):
  ``ZiCo = sum_l log( sum_{theta in layer l} E[|g_theta|] / sqrt(Var[g_theta]) )`` with
  ``g_theta`` the loss gradient of weight ``theta`` on each of N batches (mean and variance
  over the batches).
* :func:`swap` -- Peng, Song, Xu, Tan, Abdelfattah, "SWAP-NAS: Sample-Wise Activation
  Patterns for Ultra-fast NAS", ICLR 2024, Sec. 3: the number of distinct *sample-wise*
  activation patterns, one binary vector per ReLU unit over the S inputs of the batch
  (not the paper's regularised variant, which steers the model size).
* :func:`zen_score` -- Lin, Wang, Sun, Chen, Sun, Qian, Li, Jin, "Zen-NAS: A Zero-Shot NAS
  for High-Performance Image Recognition", ICCV 2021, Sec. 3 (the Zen-score definition):
  ``Zen = log E||f(x) - f(x + alpha eps)||_F + sum_i log sigma_i`` with ``f`` the feature
  map before global average pooling, Gaussian ``x`` and ``eps``, ``alpha = 0.01``, weights
  drawn from N(0, 1), and ``sigma_i = sqrt(mean_j sigma_ij^2)`` over the channels j of the
  i-th BatchNorm layer (its batch standard deviations).
* :func:`az_nas` and :func:`az_nas_aggregate` -- Lee & Ham, "AZ-NAS: Assembling Zero-Cost
  Proxies for Network Architecture Search", CVPR 2024, Sec. 3 (definitions checked against
  the authors' released scoring code): expressivity (sum over
  feature maps of the entropy of the normalised eigenvalues of the channel covariance),
  progressivity (the smallest increase of that entropy between consecutive feature maps),
  trainability (mean over consecutive feature maps of ``2 - sigma - 1/sigma``, sigma the
  largest singular value of the block's Jacobian estimated with a Rademacher probe) and
  complexity (FLOPs), combined by the non-linear ranking aggregation
  ``s = sum_m log(rank_m / N)``.

The papers' code differs from their text in places; where it does, the comment says which
one is followed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.estimation.zero_cost import (
    LossFn,
    ProxyError,
    _check_batch,
    _check_net,
    _check_targets_range,
    _copy_for_scoring,
    _forward,
    _require_weights,
    _weight_layers,
    flops,
)

__all__ = ["RECENT_PROXIES", "AZ_NAS_PROXIES", "zico", "swap", "zen_score", "az_nas",
           "az_nas_aggregate", "default_feature_modules"]

#: The proxies of this module (AZ-NAS gives four scores; their aggregate needs a population).
RECENT_PROXIES: tuple[str, ...] = ("zico", "swap", "zen", "az_expressivity",
                                   "az_progressivity", "az_trainability", "az_complexity")
AZ_NAS_PROXIES: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability",
                                   "az_complexity")
_RELUS = (nn.ReLU, nn.ReLU6)


# ---------------------------------------------------------------------------------------
def zico(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, n_batches: int = 2,
         loss_fn: LossFn = F.cross_entropy) -> float:
    """ZiCo (Li et al. 2023): inverse coefficient of variation of the weight gradients.

    The batch is split into ``n_batches`` equal chunks (the paper uses N = 2 batches); on
    each, the loss gradient ``g`` of every Conv/Linear weight is taken (train-mode copy).
    Per layer l, over the weights with a non-zero standard deviation:
    ``S_l = sum_theta mean_n |g_n,theta| / std_n(g_n,theta)``, and ``ZiCo = sum_l log S_l``
    over layers with ``S_l > 0``. The standard deviation is that of the signed gradient
    (population, ``np.std``), as the authors' code computes it; the paper writes the
    variance of ``|g|``.

    Args:
        net: the network (not modified).
        inputs: (B, ...) with B divisible by ``n_batches``.
        targets: (B,) class labels.
        n_batches: N >= 2.
        loss_fn: cross-entropy as in the paper.
    """
    _check_net(net)
    if n_batches < 2:
        raise ProxyError(f"zico needs n_batches >= 2 (a variance over batches), got {n_batches}")
    _check_batch(inputs, targets, True, n_batches)
    if inputs.shape[0] % n_batches:
        raise ProxyError(f"zico splits the batch into {n_batches} equal parts; the batch of "
                         f"{inputs.shape[0]} is not divisible by {n_batches}")
    _require_weights(net, "zico")
    clone = _copy_for_scoring(net, inputs.device)
    weights = [m.weight for _, m in _weight_layers(clone)]
    grads: list[list[torch.Tensor]] = [[] for _ in weights]  # per layer, per batch: (P,)
    for x, y in zip(inputs.chunk(n_batches), targets.chunk(n_batches)):
        logits = _forward(clone, x)
        _check_targets_range(logits, y)
        got = torch.autograd.grad(loss_fn(logits, y), weights, allow_unused=True)
        for k, (w, g) in enumerate(zip(weights, got)):
            grads[k].append((torch.zeros_like(w) if g is None else g).detach().double().flatten())
    total = 0.0
    for per_batch in grads:
        g = torch.stack(per_batch)          # (N, P)
        std = g.std(dim=0, unbiased=False)  # (P,)
        keep = std > 0
        s = float((g.abs().mean(dim=0)[keep] / std[keep]).sum())
        if s > 0:
            total += math.log(s)
    return total


# ---------------------------------------------------------------------------------------
def _relu_patterns(clone: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """(units, B) bool: 1[pre-activation > 0] of every unit of every ReLU that runs."""
    rows: list[torch.Tensor] = []

    def hook(module, args, output):
        rows.append((args[0].detach().flatten(1) > 0).T)  # (units, B)

    handles = [m.register_forward_hook(hook) for m in clone.modules() if isinstance(m, _RELUS)]
    try:
        with torch.no_grad():
            _forward(clone, inputs)
    finally:
        for h in handles:
            h.remove()
    if not rows:
        raise ProxyError("swap needs ReLU modules (nn.ReLU/ReLU6) in the network; none ran")
    return torch.cat(rows)


def swap(net: nn.Module, inputs: torch.Tensor) -> float:
    """SWAP (Peng et al. 2024, Sec. 3): the number of distinct sample-wise activation
    patterns.

    Every ReLU unit n (each channel and position of each ReLU's input) has the pattern
    ``p_n = (1[z_n(x_1) > 0], ..., 1[z_n(x_S) > 0])`` over the S inputs of the batch;
    ``SWAP = |{p_n}|``, the size of the set of patterns (at most ``min(units, 2**S)``).
    """
    _check_net(net)
    _check_batch(inputs, None, False, 1)
    clone = _copy_for_scoring(net, inputs.device)
    patterns = _relu_patterns(clone, inputs)  # (units, S)
    if patterns.shape[1] <= 62:  # one int64 code per pattern: a 1-D unique (much faster)
        weights = 2 ** torch.arange(patterns.shape[1], dtype=torch.int64)
        return float(torch.unique(patterns.long() @ weights).numel())
    return float(torch.unique(patterns, dim=0).shape[0])


# ---------------------------------------------------------------------------------------
def _pre_pool_hook(clone: nn.Module, store: list[torch.Tensor]):
    pools = [m for m in clone.modules() if isinstance(m, (nn.AdaptiveAvgPool2d,
                                                          nn.AdaptiveAvgPool1d))]
    if not pools:
        raise ProxyError("zen_score reads the feature map before global average pooling, and "
                         "the network has no nn.AdaptiveAvgPool2d")
    return pools[-1].register_forward_hook(lambda m, args, out: store.append(args[0]))


def zen_score(net: nn.Module, inputs: torch.Tensor, *, alpha: float = 0.01,
              noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
              gaussian_init: bool = True) -> float:
    """Zen-score (Lin et al. 2021, Sec. 3).

    ``Delta = mean_i ||f(x_i) - f(x_i + alpha eps_i)||_F`` over the batch, ``f`` the input of
    the network's last ``nn.AdaptiveAvgPool2d`` (the pre-GAP feature map), and for every
    BatchNorm layer ``sigma_i = sqrt(mean_j var_j)`` of its batch variances on the forward
    pass of ``x`` (train mode); ``Zen = log Delta + sum_i log sigma_i``. The paper's norm is
    the Frobenius norm (the authors' code sums absolute differences instead). BN layers with
    a constant input (variance 0, e.g. behind NB201 'none' edges) are left out of the sum.

    Args:
        net: the network (not modified).
        inputs: x (B, ...): the paper draws it from N(0, 1) (the score is data-free).
        alpha: perturbation size (0.01).
        noise: eps, shaped like ``inputs`` (default: drawn from N(0, 1) with ``generator``).
        generator: for ``noise`` and the N(0, 1) weights.
        gaussian_init: re-draw every Conv/Linear weight from N(0, 1), biases 0, BN weight 1
            and bias 0 on the copy, as the paper does; False scores the weights as they are.
    """
    _check_net(net)
    _check_batch(inputs, None, False, 1)
    if alpha <= 0:
        raise ProxyError(f"alpha must be > 0, got {alpha}")
    if noise is not None and noise.shape != inputs.shape:
        raise ProxyError(f"noise must have the shape of inputs {tuple(inputs.shape)}, got "
                         f"{tuple(noise.shape)}")
    clone = _copy_for_scoring(net, inputs.device)
    if gaussian_init:
        with torch.no_grad():
            for m in clone.modules():
                if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
    if noise is None:
        noise = torch.randn(inputs.shape, generator=generator).to(inputs)
    variances: list[torch.Tensor] = []

    def bn_hook(module, args):
        x = args[0].detach().double()
        dims = [0, *range(2, x.dim())]
        variances.append(x.var(dim=dims, unbiased=False).mean())  # mean_j sigma_ij^2

    features: list[torch.Tensor] = []
    handle = _pre_pool_hook(clone, features)
    bn_handles = [m.register_forward_pre_hook(bn_hook) for m in clone.modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        with torch.no_grad():
            _forward(clone, inputs)
            for h in bn_handles:
                h.remove()
            _forward(clone, inputs + alpha * noise)
    finally:
        handle.remove()
        for h in bn_handles:
            h.remove()
    diff = (features[0] - features[1]).double().flatten(1)  # (B, C*H*W)
    delta = float(diff.norm(dim=1).mean())
    if delta <= 0:
        return -math.inf
    # A BN layer whose input is constant over the batch (variance 0: a branch fed only by
    # NB201 'none' ops) is left out; log 0 would make every such network -inf.
    return math.log(delta) + sum(0.5 * math.log(float(v)) for v in variances if float(v) > 0)


# ---------------------------------------------------------------------------------------
def default_feature_modules(net: nn.Module) -> list[nn.Module]:
    """The modules whose outputs AZ-NAS reads: ``net.stem`` then every module of
    ``net.cells`` (the NB201 and DARTS networks of this project, as the authors' NB201
    code reads the stem and every cell, the residual reduction blocks included)."""
    stem, cells = getattr(net, "stem", None), getattr(net, "cells", None)
    if not isinstance(stem, nn.Module) or not isinstance(cells, (nn.ModuleList, nn.Sequential)):
        raise ProxyError(f"az_nas needs the feature maps of the network's blocks: a "
                         f"{type(net).__name__} has no .stem and .cells; pass "
                         "feature_modules=[...] (the modules whose outputs are the feature maps, "
                         "in order)")
    return [stem, *cells]


def _entropy_of_covariance(feat: torch.Tensor) -> float:
    """AZ-NAS expressivity of one feature map (B, C, H, W): the channel covariance over the
    B*H*W positions (centred, divided by their number), its eigenvalues normalised to sum
    to 1, and their entropy ``-sum p log(p + 1e-8)`` (Lee & Ham 2024, Sec. 3)."""
    x = feat.detach().double()
    x = x.movedim(1, -1).reshape(-1, x.shape[1])  # (B*H*W, C)
    x = x - x.mean(dim=0, keepdim=True)
    cov = x.T @ x / x.shape[0]
    eig = torch.linalg.eigvalsh(cov).clamp_min(0.0)
    if float(eig.sum()) <= 0:
        return 0.0
    p = eig / eig.sum()
    return float(-(p * torch.log(p + 1e-8)).sum())


def _block_trainability(f_in: torch.Tensor, f_out: torch.Tensor,
                        generator: torch.Generator | None) -> float:
    """``2 - sigma - 1/sigma`` for the block f_in -> f_out (Lee & Ham 2024, Sec. 3).

    sigma is the largest singular value of ``M = G_in^T G_out / (B*H*W)``: ``G_out`` a
    Rademacher probe (B*H*W, C_out) at the block's output, ``G_in = J^T G_out`` its
    vector-Jacobian product at the block's input (spatially down-sampled blocks: the input
    gradient is pixel-unshuffled to the output's resolution, as the authors' code). A block
    whose Jacobian-vector product returns the probe unchanged (an identity block) scores
    -inf, as in the authors' code. Returns 0 - 1e6 + 2 when sigma is 0 (no dependence)."""
    probe = torch.randint(0, 2, f_out.shape, generator=generator).to(f_out) * 2 - 1
    (g_in,) = torch.autograd.grad(f_out, f_in, probe, retain_graph=True, allow_unused=True)
    if g_in is None:
        g_in = torch.zeros_like(f_in)
    if g_in.shape == probe.shape and torch.equal(g_in, probe):
        return -math.inf
    if g_in.dim() == 4 and g_in.shape[2] != probe.shape[2]:
        g_in = F.pixel_unshuffle(g_in, g_in.shape[2] // probe.shape[2])
    g_out = probe.movedim(1, -1).reshape(-1, probe.shape[1]).double()
    g_in = g_in.movedim(1, -1).reshape(-1, g_in.shape[1]).double()
    mat = g_in.T @ g_out / g_out.shape[0]
    sigma = float(torch.linalg.svdvals(mat).max())
    return 2.0 - sigma - 1.0 / (sigma + 1e-6)


def az_nas(net: nn.Module, inputs: torch.Tensor, *,
           feature_modules: Sequence[nn.Module] | None = None,
           generator: torch.Generator | None = None, kaiming_init: bool = True
           ) -> dict[str, float]:
    """The four AZ-NAS proxies of one network (Lee & Ham 2024, Sec. 3).

    With ``f_0, ..., f_L`` the outputs of ``feature_modules`` (default
    :func:`default_feature_modules`: the stem and every cell) on ``inputs``, and ``E_l``
    the covariance-eigenvalue entropy of ``f_l``:

    * ``az_expressivity = sum_l E_l``;
    * ``az_progressivity = min_l (E_l - E_{l-1})``;
    * ``az_trainability = mean_l (2 - sigma_l - 1/sigma_l)``, sigma_l the spectral norm of
      the Jacobian of ``f_l`` w.r.t. ``f_{l-1}`` (one Rademacher probe);
    * ``az_complexity`` = FLOPs of one sample (:func:`~lightning_nas.estimation.zero_cost.flops`).

    Args:
        net: the network (not modified; the copy is re-initialised with Kaiming-normal
            fan-in weights, zero biases, BN weight 1 and bias 0, as the authors' code, unless
            ``kaiming_init=False``).
        inputs: one batch (B, C, H, W). The authors' NB201 code scores AZ-NAS on a
            Gaussian N(0, 1) batch of 64 (``torch.randn``), not on training images (their
            notebook passes real images only to ZiCo, SNIP, GraSP, TE-NAS, GradSign); on
            NB201 CIFAR-10 that matters: with a normalised CIFAR-10 batch progressivity
            falls from rho ~0.6 to ~0.2 and the aggregate from ~0.89 to ~0.79
            (``scripts/results/zero_cost_recent_nb201``).
        feature_modules: modules of ``net`` whose outputs are the feature maps, in order;
            their counterparts in the scored copy are found by name.
        generator: for the initialisation and the Rademacher probes.
    """
    _check_net(net)
    _check_batch(inputs, None, False, 1)
    modules = list(feature_modules) if feature_modules is not None else \
        default_feature_modules(net)
    if len(modules) < 2:
        raise ProxyError(f"az_nas needs at least 2 feature maps (progressivity and "
                         f"trainability compare consecutive ones), got {len(modules)}")
    names = {id(m): name for name, m in net.named_modules()}
    missing = [type(m).__name__ for m in modules if id(m) not in names]
    if missing:
        raise ProxyError(f"feature_modules must be modules of the network; not found: {missing}")
    clone = _copy_for_scoring(net, inputs.device)
    if kaiming_init:
        with torch.no_grad():
            for m in clone.modules():
                if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                    std = math.sqrt(2.0 / nn.init._calculate_correct_fan(m.weight, "fan_in"))
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * std)
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
    by_name = dict(clone.named_modules())
    features: list[torch.Tensor | None] = [None] * len(modules)

    def keep(k):
        def hook(module, args, output):
            if features[k] is None:  # a module run twice: its first output
                features[k] = output
        return hook

    handles = [by_name[names[id(m)]].register_forward_hook(keep(k)) for k, m in enumerate(modules)]
    try:
        with torch.enable_grad():
            _forward(clone, inputs.detach())
    finally:
        for h in handles:
            h.remove()
    if any(f is None for f in features):
        raise ProxyError("some feature_modules did not run in the forward pass")
    entropies = [_entropy_of_covariance(f) for f in features]
    progress = min(b - a for a, b in zip(entropies, entropies[1:]))
    train = [_block_trainability(features[k - 1], features[k], generator)
             for k in reversed(range(1, len(features)))]
    return {"az_expressivity": float(sum(entropies)), "az_progressivity": float(progress),
            "az_trainability": float(np.mean(train)),
            "az_complexity": flops(net, inputs[:1])}


def az_nas_aggregate(scores: Mapping[str, Sequence[float]],
                     names: Sequence[str] = AZ_NAS_PROXIES,
                     weights: Mapping[str, float] | None = None) -> np.ndarray:
    """AZ-NAS non-linear ranking aggregation (Lee & Ham 2024, Sec. 3):
    ``s(a) = sum_m log(rank_m(a) / N)`` over the proxies m, ``rank_m`` the ascending rank
    of network a among the N scored ones (1 = lowest score, N = highest; ties get their
    average rank, NaN and -inf rank lowest). A network must rank high on *every* proxy to
    score high: one low rank costs log(rank/N), unbounded below.

    ``weights`` (not in the paper; default 1 for every proxy) gives
    ``s(a) = sum_m w_m log(rank_m(a) / N)``, e.g. weights chosen on a labelled split of
    cells; a proxy missing from ``weights`` has weight 1, and weights must be finite and >= 0.

    Returns:
        (N,) aggregate scores (<= 0; 0 only for a network best on every proxy).
    """
    from scipy.stats import rankdata

    if not names:
        raise ProxyError("az_nas_aggregate needs at least one proxy name")
    missing = [n for n in names if n not in scores]
    if missing:
        raise ProxyError(f"az_nas_aggregate: no scores for {missing}; have {sorted(scores)}")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ProxyError(f"az_nas_aggregate: weights for proxies not aggregated: {unknown}")
    bad = {k: w for k, w in weights.items() if not (math.isfinite(w) and w >= 0)}
    if bad:
        raise ProxyError(f"az_nas_aggregate: weights must be finite and >= 0, got {bad}")
    total = None
    for name in names:
        values = np.asarray(scores[name], dtype=np.float64)
        values = np.where(np.isnan(values), -np.inf, values)
        ranks = rankdata(values)  # ascending, average ties; -inf lowest
        part = float(weights.get(name, 1.0)) * np.log(ranks / len(values))
        total = part if total is None else total + part
    return total
