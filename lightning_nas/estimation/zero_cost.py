"""Zero-cost proxies: score an *untrained* network from one minibatch, without training.

Definitions follow the papers and their reference code:

* Abdelfattah, Mehrotra, Dudziak & Lane, "Zero-Cost Proxies for Lightweight NAS", ICLR 2021
  (Sec. 3 and the ``foresight`` library that accompanies it): ``grad_norm``, ``snip``,
  ``grasp``, ``fisher``, ``synflow`` and ``jacob_cov``, each summed over all weights of the
  network (the paper's "sum over all parameters" aggregation, Sec. 3).
* Mellor, Turner, Storkey & Crowley, "Neural Architecture Search without Training", ICML 2021
  (Sec. 3): ``naswot``, the log-determinant of the ReLU activation-pattern kernel.
* ``params`` and ``flops`` as the baselines both papers compare against.

Conventions shared by every proxy (as in ``foresight``'s ``find_measures``, which scores a
fresh copy of the network put in training mode):

* The caller's network is never modified: proxies run on a ``copy.deepcopy`` in **train
  mode** (BatchNorm normalises with batch statistics, as in both papers' code), so weights,
  gradients (``.grad``), buffers (BN running statistics) and ``training`` flags of the
  original are left exactly as they were.
* "Weights" are the ``weight`` tensors of every convolution and ``nn.Linear`` layer that
  require grad (biases and BN affine parameters are not scored; ``foresight`` mode='param').
* The network may return logits (B, K) or a tuple whose first element is the logits (DARTS
  networks return ``(logits, aux_logits)``).
* Everything runs on the inputs' device (CPU or GPU); the network copy is moved there.

:func:`compute_proxies` computes several proxies from one shared forward pass (one forward,
one backward -- with ``create_graph`` when GRASP is asked for --, one Hessian-vector
backward and one input-Jacobian backward), which gives exactly the values of the
standalone functions (same copy, same data, same train-mode BN) at about a third of the
cost. The standalone functions (:func:`grad_norm`, :func:`snip`, ...) are thin wrappers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PROXIES",
    "DATA_FREE_PROXIES",
    "HIGHER_IS_BETTER",
    "ProxyError",
    "compute_proxies",
    "grad_norm",
    "snip",
    "grasp",
    "fisher",
    "synflow",
    "jacob_cov",
    "naswot",
    "naswot_kernel",
    "params",
    "flops",
    "jacob_cov_from_jacobian",
    "rank_combination",
]

#: Every proxy this module computes, in the order of the papers' tables.
PROXIES: tuple[str, ...] = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov",
                            "naswot", "params", "flops")
#: Proxies that need no data (only the input shape).
DATA_FREE_PROXIES: frozenset[str] = frozenset({"synflow", "params", "flops"})
#: Proxies that read the loss gradient (need targets and trainable weights).
_LOSS_PROXIES = frozenset({"grad_norm", "snip", "grasp", "fisher"})
#: For every proxy, a larger score predicts a better network (as used in both papers).
HIGHER_IS_BETTER: dict[str, bool] = {name: True for name in PROXIES}

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
_RELUS = (nn.ReLU, nn.ReLU6)
#: jacob_cov's regulariser k (Mellor et al. 2020 arXiv v1, Eq. 2; foresight ``eval_score``).
JACOB_COV_K = 1e-5


class ProxyError(ValueError):
    """Bad input to a proxy (no trainable weights, a batch of the wrong shape, ...)."""


# ---------------------------------------------------------------------------------------
# input checks and helpers
# ---------------------------------------------------------------------------------------
def _logits(output) -> torch.Tensor:
    """The logits of a network output: a tensor, or the first element of a tuple/list."""
    if isinstance(output, (tuple, list)):
        if not output:
            raise ProxyError("the network returned an empty tuple; expected logits (B, K)")
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ProxyError(f"the network returned a {type(output).__name__}; expected logits "
                         "(B, K) or a tuple (logits, ...)")
    return output


def _check_net(net: nn.Module) -> None:
    if not isinstance(net, nn.Module):
        raise ProxyError(f"a proxy scores an nn.Module, got {type(net).__name__}")


def _weight_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every Conv/Linear layer whose weight requires grad, in module order."""
    return [(name, m) for name, m in net.named_modules()
            if isinstance(m, _WEIGHT_LAYERS)
            and isinstance(getattr(m, "weight", None), nn.Parameter)
            and m.weight.requires_grad]


def _require_weights(net: nn.Module, proxy: str) -> None:
    if not any(p.requires_grad for p in net.parameters()):
        raise ProxyError(f"{proxy} needs trainable parameters, but the network has none (all "
                         "parameters are frozen or there are none); unfreeze them or score it "
                         "with naswot/jacob_cov, which only need activations")
    if not _weight_layers(net):
        raise ProxyError(f"{proxy} scores the weights of Conv/Linear layers, and the network "
                         "has no trainable Conv/Linear layer")


def _check_batch(inputs: torch.Tensor, targets: torch.Tensor | None, need_targets: bool,
                 min_batch: int) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise ProxyError(f"inputs must be a tensor (B, ...), got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise ProxyError(f"inputs must be a floating-point tensor (normalised images), got "
                         f"{inputs.dtype}; convert uint8 images with the data module's "
                         "transform first")
    if inputs.dim() < 2:
        raise ProxyError(f"inputs must have a batch dimension: (B, C, H, W) for images, got "
                         f"shape {tuple(inputs.shape)}")
    if inputs.shape[0] < min_batch:
        raise ProxyError(f"this proxy needs a batch of at least {min_batch} inputs, got "
                         f"{inputs.shape[0]}")
    if not torch.isfinite(inputs).all():
        raise ProxyError("inputs hold NaN or inf values")
    if need_targets:
        if targets is None:
            raise ProxyError("grad_norm, snip, grasp and fisher need targets (B,) class labels")
        if not isinstance(targets, torch.Tensor) or targets.shape != (inputs.shape[0],):
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets)
            raise ProxyError(f"targets must be a tensor of shape ({inputs.shape[0]},) (one "
                             f"class label per input), got {shape}")
        if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ProxyError(f"targets must be integer class labels, got {targets.dtype}")


def _forward(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    try:
        out = net(inputs)
    except RuntimeError as err:
        raise ProxyError(f"the network cannot run on inputs of shape {tuple(inputs.shape)} "
                         f"({inputs.dtype}): {err}") from err
    logits = _logits(out)
    if logits.dim() != 2 or logits.shape[0] != inputs.shape[0]:
        raise ProxyError(f"the network must return logits (B, K) with B = {inputs.shape[0]}, "
                         f"got shape {tuple(logits.shape)}")
    return logits


def _copy_for_scoring(net: nn.Module, device: torch.device, dtype: torch.dtype | None = None
                      ) -> nn.Module:
    """A deep copy in train mode on ``device`` (and ``dtype``), with no stale gradients."""
    clone = copy.deepcopy(net)
    for p in clone.parameters():
        p.grad = None
    clone = clone.to(device=device, dtype=dtype) if dtype is not None else clone.to(device)
    clone.train()
    return clone


def _check_targets_range(logits: torch.Tensor, targets: torch.Tensor) -> None:
    k = logits.shape[1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= k):
        raise ProxyError(f"targets span [{int(targets.min())}, {int(targets.max())}] but the "
                         f"network has {k} outputs")


# ---------------------------------------------------------------------------------------
# the shared pass
# ---------------------------------------------------------------------------------------
@dataclass
class _Recorder:
    """Forward hooks: outputs of weight layers (for fisher), ReLU kernels (for naswot)."""

    want_acts: bool
    want_kernel: bool
    acts: list[torch.Tensor] = field(default_factory=list)
    kernel: torch.Tensor | None = None  # (B, B) float64, sum over ReLU modules
    relu_units: int = 0
    handles: list = field(default_factory=list)

    def attach(self, net: nn.Module, layers: Sequence[nn.Module]) -> None:
        if self.want_acts:
            for layer in layers:
                self.handles.append(layer.register_forward_hook(self._act_hook))
        if self.want_kernel:
            for m in net.modules():
                if isinstance(m, _RELUS):
                    self.handles.append(m.register_forward_hook(self._relu_hook))

    def _act_hook(self, module, inputs, output):
        # Keep the layer output a and hand a copy to the rest of the network, so a later
        # in-place op (e.g. ReLU(inplace=True)) cannot change the a whose gradient we take.
        self.acts.append(output)
        return output.clone()

    def _relu_hook(self, module, inputs, output):
        # Mellor et al. 2021, Sec. 3: binary code c_i = 1[x > 0] of the units of this ReLU for
        # input i; K_H = sum_modules (c c^T + (1 - c)(1 - c)^T) = N_A - Hamming(c_i, c_j).
        x = inputs[0].detach().flatten(1)  # (B, units)
        c = (x > 0).float()
        k = c @ c.T + (1.0 - c) @ (1.0 - c).T  # exact integers in float32 (< 2**24 units)
        k = k.double()
        self.kernel = k if self.kernel is None else self.kernel + k
        self.relu_units += x.shape[1]

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _shared_pass(clone: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None,
                 names: set[str], loss_fn: LossFn) -> dict[str, float]:
    """Compute the data-dependent proxies in ``names`` on a prepared train-mode copy."""
    out: dict[str, float] = {}
    named_layers = _weight_layers(clone)
    layers = [m for _, m in named_layers]
    weights = [m.weight for m in layers]
    need_loss = bool(names & _LOSS_PROXIES)
    recorder = _Recorder(want_acts="fisher" in names, want_kernel="naswot" in names)
    recorder.attach(clone, layers)
    x = inputs.detach().clone()
    if "jacob_cov" in names:
        x.requires_grad_(True)
    try:
        grad_ctx = torch.enable_grad() if (need_loss or "jacob_cov" in names) else torch.no_grad()
        with grad_ctx:
            logits = _forward(clone, x)
    finally:
        recorder.detach()
    if "naswot" in names:
        out["naswot"] = _logdet(recorder.kernel, recorder.relu_units)
    if need_loss:
        _check_targets_range(logits, targets)
        loss = loss_fn(logits, targets)
        acts = recorder.acts if "fisher" in names else []
        grasp = "grasp" in names
        keep = grasp or "jacob_cov" in names
        grads = torch.autograd.grad(loss, weights + acts, create_graph=grasp,
                                    retain_graph=keep, allow_unused=True)
        g_w = [torch.zeros_like(w) if g is None else g
               for w, g in zip(weights, grads[: len(weights)])]
        if "grad_norm" in names:
            # Abdelfattah et al. 2021, Sec. 3 / foresight grad_norm: sum over layers of the
            # Euclidean norm of dL/dW (one norm per layer, then summed).
            out["grad_norm"] = float(sum(g.detach().double().norm() for g in g_w))
        if "snip" in names:
            # Lee et al. 2019 (SNIP), Eq. 6 without normalisation; Abdelfattah Eq. 1:
            # S(theta) = |dL/dtheta * theta|, summed.
            out["snip"] = float(sum((g.detach() * w.detach()).double().abs().sum()
                                    for g, w in zip(g_w, weights)))
        if "fisher" in names:
            out["fisher"] = _fisher_from(acts, grads[len(weights):])
        if grasp:
            # Wang et al. 2020 (GraSP), Eq. 8; Abdelfattah Eq. 2: S = -theta * (H g), with
            # H the Hessian of the loss w.r.t. the weights and g = dL/dtheta (held constant).
            # H g = d/dtheta (g_const . dL/dtheta) (Pearlmutter's trick).
            z = sum((g.detach() * g_graph).sum() for g, g_graph in zip(g_w, grads[:len(weights)])
                    if g_graph is not None)
            if not isinstance(z, torch.Tensor) or not z.requires_grad:
                hg = [torch.zeros_like(w) for w in weights]
            else:
                hg = torch.autograd.grad(z, weights, retain_graph="jacob_cov" in names,
                                         allow_unused=True)
                hg = [torch.zeros_like(w) if h is None else h for w, h in zip(weights, hg)]
            out["grasp"] = float(sum((-w.detach() * h.detach()).double().sum()
                                     for w, h in zip(weights, hg)))
    if "jacob_cov" in names:
        # Mellor et al. 2020 (arXiv v1), Sec. 3 / foresight get_batch_jacobian: J_i =
        # d(sum of all outputs)/d x_i, one row per input (train-mode BN couples the inputs of
        # the batch, as in the reference code).
        (jac,) = torch.autograd.grad(logits.sum(), x, allow_unused=True)
        if jac is None:
            jac = torch.zeros_like(x)
        out["jacob_cov"] = jacob_cov_from_jacobian(jac.detach().flatten(1))
    return out


def _fisher_from(acts: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> float:
    """Fisher pruning saliency (Theis et al. 2018, Eq. 8; Abdelfattah Eq. 3; foresight).

    For each Conv/Linear output activation a (B, C, *spatial) with gradient dL/da:
    Delta_c = 1/2 * mean_n (sum_spatial a * dL/da)^2 per channel c, summed over channels
    and layers.
    """
    total = torch.zeros((), dtype=torch.float64)
    for a, g in zip(acts, grads):
        if g is None:
            continue
        prod = (a.detach() * g.detach()).double()
        g_nc = prod.sum(dim=tuple(range(2, prod.dim()))) if prod.dim() > 2 else prod  # (B, C)
        total = total + 0.5 * g_nc.pow(2).mean(0).sum().cpu()
    return float(total)


def _logdet(kernel: torch.Tensor | None, units: int) -> float:
    if kernel is None or units == 0:
        raise ProxyError("naswot needs ReLU modules (nn.ReLU/ReLU6) in the network; none ran "
                         "in the forward pass")
    sign, logabsdet = torch.linalg.slogdet(kernel.cpu())
    # K is a Gram matrix (positive semi-definite): a singular K gives -inf (worst score).
    return float(logabsdet) if float(sign) > 0 else -math.inf


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def compute_proxies(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None,
                    *, proxies: Iterable[str] = PROXIES, loss_fn: LossFn = F.cross_entropy,
                    synflow_batchnorm: str = "remove") -> dict[str, float]:
    """Several zero-cost proxies of ``net`` on one batch, sharing the forward/backward passes.

    Args:
        net: an untrained network returning logits (B, K) or ``(logits, ...)``. It is not
            modified (a train-mode deep copy is scored).
        inputs: one minibatch (B, ...) of normalised inputs, e.g. (64, 3, 32, 32).
        targets: (B,) class labels; needed for grad_norm, snip, grasp and fisher.
        proxies: names from :data:`PROXIES`.
        loss_fn: ``loss(logits, targets)``; cross-entropy as in the papers.
        synflow_batchnorm: see :func:`synflow`.

    Returns:
        ``{proxy: score}``, larger = predicted better for every proxy. Scores may be
        ``-inf`` (naswot with a singular kernel) or NaN (jacob_cov when an input's Jacobian
        is constant, i.e. the output does not depend on the input).

    Raises:
        ProxyError: unknown proxy, no trainable weights, a batch the network cannot run on,
            targets of the wrong shape or range.
    """
    _check_net(net)
    names = list(dict.fromkeys(proxies))
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ProxyError(f"unknown proxies {unknown}; the proxies are {', '.join(PROXIES)}")
    wanted = set(names)
    min_batch = 2 if wanted & {"jacob_cov", "naswot"} else 1
    _check_batch(inputs, targets, bool(wanted & _LOSS_PROXIES), min_batch)
    for name in names:
        if name in _LOSS_PROXIES or name == "synflow":
            _require_weights(net, name)
    results: dict[str, float] = {}
    shared = wanted - DATA_FREE_PROXIES
    if shared:
        clone = _copy_for_scoring(net, inputs.device)
        results.update(_shared_pass(clone, inputs, targets, shared, loss_fn))
        del clone
    if "synflow" in wanted:
        results["synflow"] = synflow(net, inputs, batchnorm=synflow_batchnorm)
    if "params" in wanted:
        results["params"] = params(net)
    if "flops" in wanted:
        results["flops"] = flops(net, inputs)
    return {n: results[n] for n in names}


def grad_norm(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
              loss_fn: LossFn = F.cross_entropy) -> float:
    """Sum over Conv/Linear layers of ``||dL/dW||_2`` (Abdelfattah et al. 2021, Sec. 3).

    One norm per layer weight, then summed (foresight ``grad_norm``), on a train-mode copy.
    """
    return compute_proxies(net, inputs, targets, proxies=("grad_norm",), loss_fn=loss_fn)[
        "grad_norm"]


def snip(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
         loss_fn: LossFn = F.cross_entropy) -> float:
    """SNIP saliency ``sum |dL/dW * W|`` (Lee et al. 2019, Eq. 6; Abdelfattah et al. Eq. 1).

    The connection-sensitivity of a mask c on W (dL/dc at c = 1) is ``dL/dW * W``; its
    absolute values are summed over all Conv/Linear weights. No normalisation (the paper's
    Eq. 6 normalisation only matters for pruning thresholds, not for ranking networks).
    """
    return compute_proxies(net, inputs, targets, proxies=("snip",), loss_fn=loss_fn)["snip"]


def grasp(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
          loss_fn: LossFn = F.cross_entropy) -> float:
    """GraSP ``sum -(H g) * W`` (Wang et al. 2020, Eq. 8; Abdelfattah et al. Eq. 2).

    ``g = dL/dW`` and ``H`` the Hessian of the loss over the Conv/Linear weights (biases and
    BN parameters held fixed, as foresight does); ``H g`` by double backpropagation.
    """
    return compute_proxies(net, inputs, targets, proxies=("grasp",), loss_fn=loss_fn)["grasp"]


def fisher(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
           loss_fn: LossFn = F.cross_entropy) -> float:
    """Fisher channel saliency (Theis et al. 2018, Eq. 8; Abdelfattah et al. Eq. 3).

    For the output activation ``a`` (B, C, ...) of every Conv/Linear layer:
    ``sum_c 1/2 * mean_n (sum_spatial a * dL/da)^2`` -- the activations are the layer
    outputs before BN, as in foresight (which inserts an identity after each layer).
    """
    return compute_proxies(net, inputs, targets, proxies=("fisher",), loss_fn=loss_fn)["fisher"]


def jacob_cov(net: nn.Module, inputs: torch.Tensor) -> float:
    """Score of the input-Jacobian correlations (Mellor et al. 2020, arXiv v1, Eq. 2).

    ``J`` (B, D): row i is ``d(sum_k y_k)/dx_i`` (backward of the summed outputs, train-mode
    copy). With ``Sigma = corrcoef(J)`` (B, B) and its eigenvalues ``s_1..s_B``:
    ``score = -sum_i [log(s_i + k) + 1 / (s_i + k)]``, ``k = 1e-5`` (the paper's formula,
    as in foresight ``jacob_cov``). Higher = Jacobians less correlated = better.
    NaN when an input's Jacobian is constant (zero variance; the correlation is undefined).
    """
    return compute_proxies(net, inputs, proxies=("jacob_cov",))["jacob_cov"]


def jacob_cov_from_jacobian(jac: torch.Tensor, k: float = JACOB_COV_K) -> float:
    """The jacob_cov score of a Jacobian matrix ``jac`` (B, D); see :func:`jacob_cov`."""
    j = jac.detach().double().cpu()
    centred = j - j.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1)
    if not bool(torch.all(norms > 0)):
        return math.nan
    unit = centred / norms[:, None]
    corr = unit @ unit.T  # (B, B) Pearson correlation of the rows (np.corrcoef)
    # corr is symmetric PSD: eigvalsh (real); clip rounding noise below 0 so log(s + k) is
    # defined (the reference uses np.linalg.eig and would give NaN there).
    eig = torch.linalg.eigvalsh(corr).clamp_min(0.0)
    return float(-(torch.log(eig + k) + 1.0 / (eig + k)).sum())


def naswot_kernel(net: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The NASWOT kernel ``K_H`` (B, B) float64 and ``N_A``, the number of ReLU units.

    ``K_H[i, j] = N_A - d_H(c_i, c_j)`` with ``c_i`` the binary pattern (x > 0) of all ReLU
    units for input i (Mellor et al. 2021, Sec. 3), summed over every ``nn.ReLU``/``ReLU6``
    module that runs (a ReLU module used twice counts twice, as with the paper's hooks).
    Computed on a train-mode copy, without gradients.
    """
    _check_net(net)
    _check_batch(inputs, None, False, 1)
    clone = _copy_for_scoring(net, inputs.device)
    recorder = _Recorder(want_acts=False, want_kernel=True)
    recorder.attach(clone, [])
    try:
        with torch.no_grad():
            _forward(clone, inputs)
    finally:
        recorder.detach()
    if recorder.kernel is None:
        raise ProxyError("naswot needs ReLU modules (nn.ReLU/ReLU6) in the network; none ran "
                         "in the forward pass")
    return recorder.kernel, recorder.relu_units


def naswot(net: nn.Module, inputs: torch.Tensor) -> float:
    """NASWOT score ``log|det K_H|`` (Mellor et al. 2021, Eq. 2); ``-inf`` if K_H is singular.

    See :func:`naswot_kernel`. Unlike the ICML code, every ReLU that runs is counted, not
    only those the backward pass visits; in NB201 and DARTS networks every ReLU output
    reaches the logits (even 'none' edges multiply by 0), so the two agree there.
    """
    _check_batch(inputs, None, False, 2)
    kernel, units = naswot_kernel(net, inputs)
    return _logdet(kernel, units)


def synflow(net: nn.Module, inputs: torch.Tensor | Sequence[int], *,
            batchnorm: str = "remove") -> float:
    """SynFlow ``sum |W * dR/dW|`` with ``R = 1^T (prod_l |W_l|) 1`` (Tanaka et al. 2020, Eq. 2).

    Data-free: a deep copy in float64 (the product of many layers overflows float32) gets
    every parameter and buffer replaced by its absolute value, and one all-ones input of a
    single sample's shape goes through it; ``R`` is the sum of the outputs, and the score is
    ``sum |W * dR/dW|`` over Conv/Linear weights (Abdelfattah et al. 2021, Eq. 4).

    Args:
        net: the network (not modified).
        inputs: a batch (only ``inputs.shape[1:]``, dtype and device are used) or the shape
            of one sample, e.g. ``(3, 32, 32)``.
        batchnorm: ``"remove"`` (default) replaces every BatchNorm by an identity, as
            Abdelfattah et al. do (foresight builds the network with ``bn=False`` for
            synflow); ``"eval"`` keeps BN in eval mode with absolute running statistics;
            ``"train"`` keeps BN in train mode (normalising a batch of one all-ones input
            would give zeros, so this is only meaningful for 1-D BN layers on (1, D)).

    Returns:
        The score (float, >= 0); 0.0 when the output does not depend on the weights.
    """
    _check_net(net)
    _require_weights(net, "synflow")
    if batchnorm not in ("remove", "eval", "train"):
        raise ProxyError(f"batchnorm must be 'remove', 'eval' or 'train', got {batchnorm!r}")
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() < 2:
            raise ProxyError(f"inputs must have a batch dimension (B, ...), got shape "
                             f"{tuple(inputs.shape)}; or pass the shape of one sample")
        shape, device = tuple(inputs.shape[1:]), inputs.device
    else:
        try:
            shape = tuple(int(s) for s in inputs)
        except TypeError:
            raise ProxyError(f"inputs must be a tensor or a sample shape, got {inputs!r}") from None
        if not shape or min(shape) < 1:
            raise ProxyError(f"a sample shape needs positive sizes, got {shape}")
        device = next(net.parameters()).device
    clone = _copy_for_scoring(net, device, torch.float64)
    if batchnorm == "remove":
        _remove_batchnorm(clone)
    elif batchnorm == "eval":
        for m in clone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    with torch.no_grad():  # linearise: theta <- |theta| (signs are never restored: a copy)
        for tensor in list(clone.parameters()) + list(clone.buffers()):
            if tensor.is_floating_point():
                tensor.abs_()
    ones = torch.ones((1, *shape), dtype=torch.float64, device=device)  # all-ones input
    r = _forward(clone, ones).sum()
    weights = [m.weight for _, m in _weight_layers(clone)]
    grads = torch.autograd.grad(r, weights, allow_unused=True)
    score = sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads) if g is not None)
    return float(score) if isinstance(score, torch.Tensor) else 0.0


def _remove_batchnorm(net: nn.Module) -> None:
    for name, child in list(net.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            _remove_batchnorm(child)


def params(net: nn.Module) -> float:
    """Number of trainable parameters (baseline; ``hardware.metrics.count_parameters``)."""
    from lightning_nas.hardware.metrics import count_parameters

    _check_net(net)
    return float(count_parameters(net))


def flops(net: nn.Module, inputs: torch.Tensor | Sequence[int]) -> float:
    """FLOPs of one sample's forward pass (baseline; ``hardware.metrics.count_flops``).

    Counted on a copy in eval mode with ``FlopCounterMode`` (2 FLOPs per multiply-add;
    convolutions and matrix products only).
    """
    from lightning_nas.hardware.metrics import count_flops

    _check_net(net)
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() < 2:
            raise ProxyError(f"inputs must have a batch dimension (B, ...), got shape "
                             f"{tuple(inputs.shape)}")
        sample = inputs[:1]
    else:
        sample = tuple(int(s) for s in inputs)
    clone = copy.deepcopy(net)
    try:
        count = count_flops(clone, sample)
    except RuntimeError as err:
        raise ProxyError(f"the network cannot run on one sample of shape "
                         f"{tuple(sample.shape) if isinstance(sample, torch.Tensor) else sample}: "
                         f"{err}") from err
    return float(count.flops_per_sample)


def rank_combination(scores: dict[str, Sequence[float]], names: Sequence[str]) -> np.ndarray:
    """Rank-sum ensemble of proxies: sum over ``names`` of each proxy's rank (higher = better).

    Ranks are average ranks over the candidates (scipy ``rankdata``); NaN scores rank
    lowest. This is the kind of vote Abdelfattah et al. (Sec. 5) and later work use to
    combine proxies.

    Args:
        scores: ``{proxy: scores of the same N candidates}``.
        names: proxies to combine.

    Returns:
        (N,) array of summed ranks.
    """
    from scipy.stats import rankdata

    total = None
    for name in names:
        values = np.asarray(scores[name], dtype=np.float64)
        values = np.where(np.isnan(values), -np.inf, values)
        ranks = rankdata(values)
        total = ranks if total is None else total + ranks
    if total is None:
        raise ProxyError("rank_combination needs at least one proxy name")
    return total
