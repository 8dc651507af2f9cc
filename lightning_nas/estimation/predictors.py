"""Accuracy predictors: regression from an architecture encoding to its accuracy.

Encodings (:func:`encode`):

* ``"one_hot"``: ``space.one_hot(arch)``, the concatenated one-hot vectors of the space's
  categorical decisions (any space with a categorical view);
* ``"path"``: the NB201 path encoding of White, Neiswanger & Savani, "BANANAS", AAAI 2021
  (Sec. 4): one indicator per sequence of operations along an input-to-output path of the
  cell; paths through a ``none`` edge do not exist. NB201 has 4 routes (3<-0, 1<-0-3,
  2<-0-3, 1<-0-2-3) and 4 non-zero ops: 4 + 16 + 64 = 84 features;
* ``"one_hot+path"``: both, concatenated.

Models, all with ``fit(x, y)`` and ``predict(x) -> Prediction(mean, std)``:

* :class:`MLPEnsemble`: independently initialised MLPs (BANANAS' neural ensemble); the
  uncertainty is the standard deviation over members;
* :class:`GradientBoosting`: scikit-learn gradient-boosted trees, an ensemble of
  ``members`` models with row subsampling and different seeds (std over members);
* :class:`GaussianProcess`: scikit-learn GP regression (constant x RBF + white noise, ARD
  off), predictive std from the posterior.

:class:`ArchPredictor` binds a model to a space and an encoding (``fit(archs, y)``,
``predict(archs)``), and :meth:`ArchPredictor.surrogate` adapts any model to the
``fit(x, y, generator)`` / ``predict(x) -> (E, N)`` interface of
:class:`lightning_nas.search.BayesianOptimization`'s surrogate. Asking any model to predict
before it is fitted raises :class:`NotFittedError`.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_nas.spaces.base import Arch, SearchSpace

__all__ = [
    "ENCODINGS",
    "ArchPredictor",
    "GaussianProcess",
    "GradientBoosting",
    "MLPEnsemble",
    "NotFittedError",
    "Prediction",
    "Predictor",
    "encode",
    "make_predictor",
    "nb201_path_encoding",
]

ENCODINGS = ("one_hot", "path", "one_hot+path")


class NotFittedError(RuntimeError):
    """A predictor was asked to predict before it was trained."""


@dataclass
class Prediction:
    """Predicted means and standard deviations, both (N,) in target units."""

    mean: np.ndarray
    std: np.ndarray

    def __len__(self) -> int:
        return len(self.mean)


# ---------------------------------------------------------------------------------------
# encodings
# ---------------------------------------------------------------------------------------
def _nb201_routes() -> list[tuple[str, ...]]:
    return [("3<-0",), ("1<-0", "3<-1"), ("2<-0", "3<-2"), ("1<-0", "2<-1", "3<-2")]


def nb201_path_encoding(archs: Sequence[Arch]) -> np.ndarray:
    """BANANAS path encoding of NB201 cells: (N, 84) float32 indicators.

    Feature ``offset(L) + index of (op_1, ..., op_L)`` in base 4 over the non-zero ops
    (skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3) is 1 when some input-to-output
    route of length L carries exactly those ops (White et al., AAAI 2021, Sec. 4).
    """
    from lightning_nas.spaces.nb201 import OPS

    ops = [op for op in OPS if op != "none"]
    offsets = {1: 0, 2: len(ops), 3: len(ops) + len(ops) ** 2}
    width = len(ops) + len(ops) ** 2 + len(ops) ** 3
    out = np.zeros((len(archs), width), dtype=np.float32)
    for row, arch in enumerate(archs):
        if arch.space != "nb201":
            raise ValueError(f"the path encoding is defined for NB201 cells, got a "
                             f"{arch.space!r} architecture")
        for route in _nb201_routes():
            names = [arch[edge] for edge in route]
            if "none" in names:
                continue
            index = 0
            for name in names:
                index = index * len(ops) + ops.index(name)
            out[row, offsets[len(route)] + index] = 1.0
    return out


def encode(space: SearchSpace, archs: Sequence[Arch], encoding: str = "one_hot") -> np.ndarray:
    """Encode ``archs`` as a float32 matrix (N, D) (see the module docstring)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if not archs:
        raise ValueError("nothing to encode: the list of architectures is empty")
    parts = []
    if encoding in ("one_hot", "one_hot+path"):
        parts.append(np.stack([space.one_hot(a).numpy() for a in archs]).astype(np.float32))
    if encoding in ("path", "one_hot+path"):
        parts.append(nb201_path_encoding(archs))
    return np.concatenate(parts, axis=1)


# ---------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------
def _as_xy(x, y=None) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be a matrix (N, D), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x holds NaN or inf")
    if y is None:
        return x, None
    y = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y,
                   dtype=np.float64).reshape(-1)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have one value per row of x ({x.shape[0]}), got shape "
                         f"{y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y holds NaN or inf (failed trials must be left out of the "
                         "training data)")
    if len(y) < 2:
        raise ValueError(f"a predictor needs at least 2 training examples, got {len(y)}")
    return x, y


class Predictor(ABC):
    """A regressor ``x (N, D) -> accuracy`` with an uncertainty; see the module docstring."""

    name = "predictor"

    def __init__(self) -> None:
        self.in_dim: int | None = None

    @property
    @abstractmethod
    def fitted(self) -> bool: ...

    def fit(self, x, y) -> Predictor:
        """Train on ``x`` (N, D) and targets ``y`` (N,); returns self."""
        x, y = _as_xy(x, y)
        self.in_dim = x.shape[1]
        self._fit(x, y)
        return self

    def predict(self, x) -> Prediction:
        """Mean and std of the prediction for every row of ``x`` (N, D)."""
        if not self.fitted:
            raise NotFittedError(f"{type(self).__name__}.predict was called before fit: train "
                                 "the predictor on evaluated architectures first")
        x, _ = _as_xy(x)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"x has {x.shape[1]} features, the predictor was trained on "
                             f"{self.in_dim}")
        return self._predict(x)

    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray) -> None: ...

    @abstractmethod
    def _predict(self, x: np.ndarray) -> Prediction: ...


class MLPEnsemble(Predictor):
    """``members`` independently initialised MLPs (White et al., BANANAS, AAAI 2021, Sec. 4).

    Each member is ``D -> hidden... -> 1`` with ReLU, trained full-batch with Adam on the
    mean squared error of standardised targets; the prediction is the members' mean and the
    uncertainty their standard deviation.

    Args:
        members: ensemble size (5 in BANANAS).
        hidden: hidden widths.
        epochs: full-batch Adam steps.
        learning_rate: Adam learning rate.
        weight_decay: L2 penalty.
        seed: seeds the members' initialisations (member i uses ``seed * 1000 + i``).
    """

    name = "mlp_ensemble"

    def __init__(self, *, members: int = 5, hidden: Sequence[int] = (64, 64),
                 epochs: int = 500, learning_rate: float = 3e-3, weight_decay: float = 1e-4,
                 seed: int = 0):
        super().__init__()
        if members < 1 or epochs < 1 or learning_rate <= 0 or any(h < 1 for h in hidden):
            raise ValueError("need members >= 1, epochs >= 1, learning_rate > 0 and hidden "
                             f"widths >= 1; got {members}, {epochs}, {learning_rate}, "
                             f"{list(hidden)}")
        self.members = members
        self.hidden = tuple(hidden)
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.seed = seed
        self.nets: list[nn.Module] = []
        self.y_mean, self.y_std = 0.0, 1.0

    @property
    def fitted(self) -> bool:
        return bool(self.nets)

    def _make(self, in_dim: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_dim
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        return nn.Sequential(*layers)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) if float(y.std()) > 1e-12 else 1.0
        xt = torch.as_tensor(x, dtype=torch.float32)
        yt = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        nets = []
        for i in range(self.members):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1000 + i)
                net = self._make(x.shape[1])
            opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate,
                                   weight_decay=self.weight_decay)
            for _ in range(self.epochs):
                opt.zero_grad(set_to_none=True)
                loss = torch.mean((net(xt).squeeze(1) - yt) ** 2)
                loss.backward()
                opt.step()
            net.requires_grad_(False)
            nets.append(net.eval())
        self.nets = nets

    def members_predict(self, x) -> np.ndarray:
        """Every member's prediction in target units: (members, N)."""
        if not self.fitted:
            raise NotFittedError("MLPEnsemble.members_predict was called before fit")
        x, _ = _as_xy(x)
        xt = torch.as_tensor(x, dtype=torch.float32)
        with torch.no_grad():
            preds = torch.stack([net(xt).squeeze(1) for net in self.nets])
        return preds.numpy().astype(np.float64) * self.y_std + self.y_mean

    def _predict(self, x: np.ndarray) -> Prediction:
        preds = self.members_predict(x)
        std = preds.std(0, ddof=1) if len(preds) > 1 else np.zeros(preds.shape[1])
        return Prediction(preds.mean(0), std)


class GradientBoosting(Predictor):
    """Gradient-boosted regression trees (scikit-learn), an ensemble over seeds.

    ``members`` ``GradientBoostingRegressor`` models with row subsampling (stochastic
    gradient boosting, Friedman 2002) and different random states; the prediction is their
    mean, the uncertainty their standard deviation (0 with one member).

    Args:
        members: models in the ensemble.
        n_estimators, learning_rate, max_depth, subsample: the sklearn hyper-parameters.
        seed: member i uses ``random_state = seed * 1000 + i``.
    """

    name = "gradient_boosting"

    def __init__(self, *, members: int = 5, n_estimators: int = 300,
                 learning_rate: float = 0.05, max_depth: int = 3, subsample: float = 0.8,
                 seed: int = 0):
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.members = members
        self.params = dict(n_estimators=n_estimators, learning_rate=learning_rate,
                           max_depth=max_depth, subsample=subsample)
        self.seed = seed
        self.models: list[Any] = []

    @property
    def fitted(self) -> bool:
        return bool(self.models)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.ensemble import GradientBoostingRegressor

        self.models = [GradientBoostingRegressor(random_state=(self.seed * 1000 + i) % 2 ** 32,
                                                 **self.params).fit(x, y)
                       for i in range(self.members)]

    def _predict(self, x: np.ndarray) -> Prediction:
        preds = np.stack([m.predict(x) for m in self.models])
        std = preds.std(0, ddof=1) if len(preds) > 1 else np.zeros(preds.shape[1])
        return Prediction(preds.mean(0), std)


class GaussianProcess(Predictor):
    """Gaussian-process regression (scikit-learn) with ``C * RBF(l) + White`` kernel.

    Hyper-parameters (signal variance, one length scale in [0.5, 20], noise) are fitted by
    maximising
    the marginal likelihood (``n_restarts`` restarts); targets are standardised
    (``normalize_y``). The predictive std includes the fitted noise.
    """

    name = "gaussian_process"

    def __init__(self, *, length_scale: float = 2.0, noise: float = 0.1, n_restarts: int = 2,
                 seed: int = 0):
        super().__init__()
        self.length_scale = length_scale
        self.noise = noise
        self.n_restarts = n_restarts
        self.seed = seed
        self.model: Any = None

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        # length scale >= 0.5: one-hot codes differ by sqrt(2) per changed decision; a
        # shorter scale makes every training point an island and the fit collapses to noise
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(self.length_scale, (0.5, 20.0)) + \
            WhiteKernel(self.noise, (1e-6, 1e1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model = GaussianProcessRegressor(kernel, normalize_y=True,
                                                  n_restarts_optimizer=self.n_restarts,
                                                  random_state=self.seed % 2 ** 32).fit(x, y)

    def _predict(self, x: np.ndarray) -> Prediction:
        mean, std = self.model.predict(x, return_std=True)
        return Prediction(np.asarray(mean, float), np.asarray(std, float))


_MODELS = {"mlp_ensemble": MLPEnsemble, "gradient_boosting": GradientBoosting,
           "gaussian_process": GaussianProcess}


def make_predictor(name: str, **kwargs: Any) -> Predictor:
    """A predictor by name: ``mlp_ensemble``, ``gradient_boosting`` or ``gaussian_process``."""
    if name not in _MODELS:
        raise ValueError(f"unknown predictor {name!r}; choose from {sorted(_MODELS)}")
    return _MODELS[name](**kwargs)


# ---------------------------------------------------------------------------------------
# architectures in, predictions out
# ---------------------------------------------------------------------------------------
class ArchPredictor:
    """A predictor over architectures of one space: ``fit(archs, y)``, ``predict(archs)``.

    Args:
        space: the space (its ``one_hot`` encodes; validates the architectures).
        model: a :class:`Predictor` (default :class:`MLPEnsemble`).
        encoding: one of :data:`ENCODINGS` (``path`` needs the NB201 space).
    """

    def __init__(self, space: SearchSpace, model: Predictor | None = None, *,
                 encoding: str = "one_hot",
                 zero_cost: Callable[[Arch], Mapping[str, float]] | None = None,
                 zero_cost_proxies: Sequence[str] | None = None):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if "path" in encoding and space.name != "nb201":
            raise ValueError(f"the path encoding is defined for NB201 only, not {space.name!r}")
        if zero_cost is not None and not callable(zero_cost):
            raise TypeError(f"zero_cost must be a scorer arch -> {{proxy: score}}, got "
                            f"{type(zero_cost).__name__}")
        self.space = space
        self.model = model if model is not None else MLPEnsemble()
        self.encoding = encoding
        self.zero_cost = zero_cost
        self.zero_cost_proxies = tuple(zero_cost_proxies) if zero_cost_proxies else None
        self._zc_scale: tuple[np.ndarray, np.ndarray] | None = None  # (mean, std) per proxy

    @property
    def fitted(self) -> bool:
        return self.model.fitted

    def zero_cost_matrix(self, archs: Sequence[Arch]) -> np.ndarray:
        """The raw zero-cost scores (N, P) of ``archs`` (NaN where the scorer has none), in
        the order of ``zero_cost_proxies`` (default: the scorer's keys for the first arch,
        fixed then)."""
        raw = [self.zero_cost(a) for a in archs]
        if self.zero_cost_proxies is None:
            self.zero_cost_proxies = tuple(k for k in raw[0] if not k.endswith("_seconds"))
        return np.array([[float(r.get(p, math.nan)) for p in self.zero_cost_proxies]
                         for r in raw], dtype=np.float64)

    def features(self, archs: Sequence[Arch], *, fit_scaling: bool = False) -> np.ndarray:
        """The encoding (N, D), and with ``zero_cost`` its P scores appended (N, D + P).

        NAS-Bench-Suite-Zero's recipe (Krishnakumar et al., NeurIPS 2022 Datasets and
        Benchmarks, Sec. 5): the architecture encoding concatenated with the zero-cost
        scores. Each score is put through ``sign(v) log(1 + |v|)`` (synflow spans 1e27 to
        1e44, SWAP 1e4 to 1e5) and standardised with the mean and standard deviation of the
        training cells (``fit_scaling=True`` at fit time); a missing or non-finite score
        becomes 0, the training mean.
        """
        archs = [self.space.validate(a) for a in archs]
        x = encode(self.space, archs, self.encoding)
        if self.zero_cost is None:
            return x
        z = self.zero_cost_matrix(archs)
        z = np.sign(z) * np.log1p(np.abs(z))
        z[~np.isfinite(z)] = np.nan
        if fit_scaling or self._zc_scale is None:
            with np.errstate(all="ignore"):
                mean, std = np.nanmean(z, axis=0), np.nanstd(z, axis=0)
            mean = np.where(np.isfinite(mean), mean, 0.0)
            std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
            self._zc_scale = (mean, std)
        mean, std = self._zc_scale
        z = np.nan_to_num((z - mean) / std, nan=0.0)
        return np.concatenate([x, z.astype(np.float32)], axis=1)

    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> ArchPredictor:
        """Train on evaluated architectures and their accuracies (finite values only)."""
        if len(archs) != len(y):
            raise ValueError(f"{len(archs)} architectures but {len(y)} targets")
        self.model.fit(self.features(archs, fit_scaling=True), y)
        return self

    def predict(self, archs: Sequence[Arch]) -> Prediction:
        if not self.fitted:
            raise NotFittedError("ArchPredictor.predict was called before fit: train it on "
                                 "evaluated architectures first")
        return self.model.predict(self.features(archs))

    def surrogate(self) -> _SurrogateAdapter:
        """This model behind the BO sampler's surrogate interface (tensor in, tensor out).

        ``fit(x, y, generator)`` takes the sampler's one-hot matrix (N, D) (with the
        ``one_hot+path`` or ``path`` encoding the one-hot rows are decoded back to
        architectures and re-encoded); ``predict(x)`` returns (E, N): an ensemble's members,
        or for a single-model predictor the two rows ``mean -+ std / sqrt(2)``, whose
        mean and (unbiased) standard deviation over dim 0 are exactly the prediction's.
        """
        return _SurrogateAdapter(self)


class _SurrogateAdapter:
    def __init__(self, owner: ArchPredictor):
        self.owner = owner
        self._data: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def fitted(self) -> bool:
        return self.owner.fitted

    def _features(self, x: torch.Tensor, fit_scaling: bool = False) -> np.ndarray:
        if self.owner.encoding == "one_hot" and self.owner.zero_cost is None:
            return x.detach().cpu().numpy()
        sizes = [len(o) for _, o in self.owner.space.decisions()]
        bounds = [0, *itertools.accumulate(sizes)]
        archs = [self.owner.space.decode([int(torch.argmax(row[a:b])) for a, b in
                                          zip(bounds[:-1], bounds[1:])]) for row in x]
        return self.owner.features(archs, fit_scaling=fit_scaling)

    def fit(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
            ) -> float:
        model = self.owner.model
        if generator is not None and hasattr(model, "seed"):
            model.seed = int(torch.randint(0, 2 ** 20, (1,), generator=generator))
        feats = self._features(x, fit_scaling=True)
        model.fit(feats, y.detach().cpu().numpy())
        self._data = (x.detach().clone(), y.detach().clone())
        pred = model.predict(feats)
        return float(np.mean((pred.mean - y.detach().cpu().numpy()) ** 2))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        model = self.owner.model
        feats = self._features(x)
        if isinstance(model, MLPEnsemble):
            return torch.as_tensor(model.members_predict(feats), dtype=torch.float32)
        pred = model.predict(feats)
        if isinstance(model, GradientBoosting):
            return torch.as_tensor(np.stack([m.predict(feats) for m in model.models]),
                                   dtype=torch.float32)
        half = pred.std / math.sqrt(2.0)
        return torch.as_tensor(np.stack([pred.mean - half, pred.mean + half]),
                               dtype=torch.float32)

    def state_dict(self) -> dict:
        """The training data and seed (the model is refitted on load, deterministically)."""
        return {"data": None if self._data is None else [t.clone() for t in self._data],
                "seed": getattr(self.owner.model, "seed", 0)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("data") is None:
            return
        if hasattr(self.owner.model, "seed"):
            self.owner.model.seed = int(state["seed"])
        x, y = state["data"]
        self.owner.model.fit(self._features(x, fit_scaling=True), y.numpy())
        self._data = (x.clone(), y.clone())
