"""A small ensemble of MLP regressors: the surrogate of :class:`BayesianOptimization`.

BANANAS (White, Neiswanger & Savani, AAAI 2021) predicts accuracy with an ensemble of
independently initialised MLPs and uses the spread of their predictions as uncertainty.
This one keeps all members in batched weight tensors (``torch.baddbmm``), so training the
whole ensemble is one full-batch Adam loop. It is kept apart from the sampler so it can be
swapped for a predictor with the same ``fit`` / ``predict`` / ``state_dict`` interface:
:class:`PredictorSurrogate` puts any model of :mod:`lightning_nas.estimation.predictors`
(Gaussian process, gradient boosting, MLP ensemble) with any encoding in its place.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from lightning_nas.estimation.predictors import ENCODINGS, ArchPredictor, Predictor
from lightning_nas.spaces.base import SearchSpace


class MLPEnsemble:
    """``members`` MLPs ``in_dim -> hidden... -> 1`` with ReLU, trained on standardised targets.

    Args:
        in_dim: input features (e.g. the length of ``space.one_hot(arch)``).
        members: ensemble size (5 in BANANAS).
        hidden: hidden layer widths.
        epochs: full-batch Adam steps per :meth:`fit`.
        learning_rate: Adam learning rate.
        weight_decay: L2 penalty (Adam ``weight_decay``).
        num_threads: torch intra-op threads while fitting and predicting (restored after).
            The matrices are tiny, and on a loaded machine extra threads only contend:
            fitting with 2 threads on 2 busy cores was about 8x slower than with 1. ``None``
            leaves torch's setting alone (it is process-wide, so other threads see it too).
    """

    def __init__(self, in_dim: int, *, members: int = 5, hidden: Sequence[int] = (32, 32),
                 epochs: int = 200, learning_rate: float = 0.01, weight_decay: float = 0.0,
                 num_threads: int | None = 1):
        if in_dim < 1 or members < 1 or epochs < 1 or learning_rate <= 0:
            raise ValueError(f"need in_dim, members, epochs >= 1 and learning_rate > 0; got "
                             f"{in_dim}, {members}, {epochs}, {learning_rate}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be >= 1, got {list(hidden)}")
        self.in_dim = in_dim
        self.members = members
        self.hidden = tuple(int(h) for h in hidden)
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.num_threads = num_threads
        self.weights: list[torch.Tensor] = []  # (E, d_in, d_out) per layer
        self.biases: list[torch.Tensor] = []   # (E, 1, d_out) per layer
        self.y_mean = 0.0
        self.y_std = 1.0

    @property
    def fitted(self) -> bool:
        return bool(self.weights)

    def _init(self, generator: torch.Generator) -> None:
        dims = (self.in_dim, *self.hidden, 1)
        self.weights, self.biases = [], []
        for d_in, d_out in itertools.pairwise(dims):
            bound = d_in ** -0.5  # the default nn.Linear init range
            w = (torch.rand(self.members, d_in, d_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(self.members, 1, d_out, generator=generator) * 2 - 1) * bound
            self.weights.append(w.requires_grad_())
            self.biases.append(b.requires_grad_())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, in_dim) -> (E, N) standardised predictions."""
        h = x.unsqueeze(0).expand(self.members, -1, -1)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if k < last:
                h = torch.relu(h)
        return h.squeeze(-1)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        before = torch.get_num_threads()
        if self.num_threads is not None and self.num_threads != before:
            torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def fit(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        with self._threads():
            return self._fit(x, y, generator)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        """Re-initialise from ``generator`` and train on ``x`` (N, in_dim), ``y`` (N,).

        Returns the final training MSE in standardised units.
        """
        if x.ndim != 2 or x.shape[1] != self.in_dim or y.shape != (x.shape[0],):
            raise ValueError(f"expected x (N, {self.in_dim}) and y (N,), got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        x, y = x.float(), y.float()
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) if len(y) > 1 and float(y.std()) > 1e-8 else 1.0
        target = ((y - self.y_mean) / self.y_std).expand(self.members, -1)
        self._init(generator)
        params = self.weights + self.biases
        opt = torch.optim.Adam(params, lr=self.learning_rate, weight_decay=self.weight_decay,
                               foreach=True)
        loss = torch.zeros(())
        for _ in range(self.epochs):
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((self._forward(x) - target) ** 2)
            loss.backward()
            opt.step()
        for t in params:
            t.requires_grad_(False)
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions of every member in target units: (E, N)."""
        if not self.fitted:
            raise RuntimeError("MLPEnsemble.predict before fit")
        with self._threads():
            return self._forward(x.float()) * self.y_std + self.y_mean

    def state_dict(self) -> dict:
        return {"weights": [w.detach().clone() for w in self.weights],
                "biases": [b.detach().clone() for b in self.biases],
                "y_mean": self.y_mean, "y_std": self.y_std}

    def load_state_dict(self, state: dict) -> None:
        self.weights = [w.clone() for w in state["weights"]]
        self.biases = [b.clone() for b in state["biases"]]
        self.y_mean = float(state["y_mean"])
        self.y_std = float(state["y_std"])


class PredictorSurrogate:
    """A surrogate factory for :class:`~lightning_nas.search.BayesianOptimization` from an
    accuracy predictor of :mod:`lightning_nas.estimation.predictors`.

    The sampler calls it as ``factory(in_dim, space)`` on every reset and gets
    ``ArchPredictor(space, <fresh copy of model>, encoding=encoding).surrogate()``: it takes
    the sampler's one-hot rows and, for the ``path`` and ``one_hot+path`` encodings,
    decodes them to architectures and re-encodes them. The model is copied per reset, so
    one factory serves several samplers and ``reset`` starts from an unfitted model.

    YAML (``lightning-nas search``)::

        sampler:
          class_path: lightning_nas.search.samplers.BayesianOptimization
          init_args:
            surrogate:
              class_path: lightning_nas.search.surrogate.PredictorSurrogate
              init_args:
                model:
                  class_path: lightning_nas.estimation.predictors.GaussianProcess
                encoding: one_hot+path

    Args:
        model: a :class:`~lightning_nas.estimation.predictors.Predictor`
            (``GaussianProcess``, ``GradientBoosting`` or ``MLPEnsemble``); default a
            ``GaussianProcess``. Its ``seed`` is re-drawn from the sampler's RNG at every
            fit.
        encoding: ``"one_hot"``, ``"path"`` or ``"one_hot+path"`` (path: NB201 only).
        zero_cost: a scorer ``arch -> {proxy: score}`` (e.g.
            :class:`~lightning_nas.search.zero_cost_evaluator.ScoreTable` of precomputed
            scores, or a ``ZeroCostEvaluator``): its scores are appended to the encoding
            (NAS-Bench-Suite-Zero's recipe; :meth:`ArchPredictor.features`).
    """

    def __init__(self, model: Predictor | None = None, encoding: str = "one_hot",
                 zero_cost: Callable[[Any], Any] | None = None):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if model is not None and not isinstance(model, Predictor):
            raise TypeError(f"model must be a lightning_nas.estimation.predictors.Predictor, "
                            f"got {type(model).__name__}")
        if model is None:
            from lightning_nas.estimation.predictors import GaussianProcess

            model = GaussianProcess()
        self.model = model
        self.encoding = encoding
        self.zero_cost = zero_cost

    def __call__(self, in_dim: int, space: SearchSpace) -> Any:
        surrogate = ArchPredictor(space, copy.deepcopy(self.model), encoding=self.encoding,
                                  zero_cost=self.zero_cost).surrogate()
        width = sum(len(options) for _, options in space.decisions())
        if in_dim != width:
            raise ValueError(f"the sampler's rows have {in_dim} features, the {space.name!r} "
                             f"space's one-hot encoding {width}")
        return surrogate

    def __repr__(self) -> str:
        zc = "" if self.zero_cost is None else f", zero_cost={self.zero_cost!r}"
        return (f"PredictorSurrogate({type(self.model).__name__}, "
                f"encoding={self.encoding!r}{zc})")
