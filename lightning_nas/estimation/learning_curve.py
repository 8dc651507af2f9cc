"""Learning-curve extrapolation with an ensemble of parametric models.

Domhan, Springenberg & Hutter, "Speeding up Automatic Hyperparameter Optimization of Deep
Neural Networks by Extrapolation of Learning Curves", IJCAI 2015 (Sec. 3, Table 1), fit a
weighted combination of parametric curve families to the first epochs of a validation
curve and stop a run when the probability that it beats the best result so far is small.

This module keeps their model families and their decision rule but replaces the MCMC over
the combined model by a cheaper approximation (documented here, since it changes the
numbers):

1. every family is fitted by bounded least squares (``scipy.optimize.least_squares``,
   trust-region reflective, a few starting points; the best sum of squared residuals wins);
2. its predictive distribution at the target epoch is Gaussian: the mean is the fitted
   curve there and the variance is the observation noise plus the parameter uncertainty
   propagated by the delta method (Laplace approximation: ``Cov = s^2 (J^T J)^+``, with
   ``s^2 = SSR / max(n - p, 1)`` floored at ``noise_floor^2``; capped at the whole range);
   families with fewer than ``min_dof`` (2) residual degrees of freedom are not fitted;
3. the families are combined as a mixture with Bayesian-model-averaging weights
   ``w_m ~ exp(-BIC_m / 2)``, ``BIC = n log(SSR/n) + p log n`` (or by inverse residual
   variance, or uniformly). Families whose prediction is not finite or leaves the
   ``[0, upper]`` range get weight 0 (Domhan et al. likewise reject curves that predict
   more than 100% accuracy).

Values may be fractions in [0, 1] or percentages in [0, 100] (``upper``, inferred when not
given). Epochs count from 1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.special import ndtr

__all__ = [
    "CURVE_MODELS",
    "DEFAULT_MODELS",
    "CurveError",
    "CurveFit",
    "CurveModel",
    "Extrapolation",
    "check_curve",
    "extrapolate",
    "fit_curve_model",
]


class CurveError(ValueError):
    """A learning curve that cannot be extrapolated (NaN, too few points, out of range)."""


@dataclass(frozen=True)
class CurveModel:
    """One parametric family ``f(x; theta)`` of Domhan et al. (2015), Table 1.

    Attributes:
        name: the paper's name for it.
        func: ``f(x, *theta)`` with ``x`` the epoch (>= 1), values as fractions of ``upper``.
        lower, upper: box bounds of the parameters.
        starts: ``starts(x, y) -> list of initial theta`` (several starting points).
        formula: the formula, for docs and reports.
    """

    name: str
    func: Callable[..., np.ndarray]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    starts: Callable[[np.ndarray, np.ndarray], list[tuple[float, ...]]]
    formula: str

    @property
    def n_params(self) -> int:
        return len(self.lower)


def _top(y: np.ndarray) -> float:
    return float(min(0.999, max(y.max() + 0.05, 0.05)))


def _clip(theta: Sequence[float], lo: Sequence[float], hi: Sequence[float]) -> tuple[float, ...]:
    eps = 1e-9
    return tuple(float(min(max(t, l + eps), h - eps)) for t, l, h in zip(theta, lo, hi))


# --- the families (x: epoch, values in fractions of the upper bound) ------------------------
def _pow3(x, c, a, alpha):
    return c - a * np.power(x, -alpha)


def _pow4(x, c, a, b, alpha):
    return c - np.power(a * x + b, -alpha)


def _log_power(x, a, b, c):
    return a / (1.0 + np.power(x / np.exp(b), c))


def _exp3(x, c, a, b):
    return c - np.exp(-a * x + b)


def _exp4(x, c, a, alpha, b):
    return c - np.exp(-a * np.power(x, alpha) + b)


def _janoschek(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) * np.exp(-kappa * np.power(x, delta))


def _weibull(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) * np.exp(-np.power(kappa * x, delta))


def _mmf(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) / (1.0 + np.power(kappa * x, delta))


def _vapor_pressure(x, a, b, c):
    return np.exp(a + b / x + c * np.log(x))


def _ilog2(x, c, a):
    # Domhan's ilog2 is c - a / log(x) with x counting from 2; our epochs count from 1
    return c - a / np.log(x + 1.0)


def _starts_pow3(x, y):
    c = _top(y)
    return [(c, max(c - y[0], 1e-3), 0.5), (c, max(c - y[0], 1e-3), 1.5)]


def _starts_pow4(x, y):
    c = _top(y)
    return [(c, 1.0, 0.5, 0.5), (c, 0.2, 1.0, 1.0)]


def _starts_log_power(x, y):
    return [(_top(y), 0.0, -1.0), (_top(y), math.log(max(x[-1], 1.0)), -2.0)]


def _starts_exp3(x, y):
    c = _top(y)
    return [(c, a, math.log(max(c - y[0], 1e-3)) + a * x[0]) for a in (0.1, 0.5)]


def _starts_exp4(x, y):
    c = _top(y)
    return [(c, 0.5, 0.8, math.log(max(c - y[0], 1e-3)) + 0.5)]


def _starts_sat(x, y):
    a = _top(y)
    b = max(0.0, float(y[0]) - 0.1)
    return [(a, b, 0.5, 1.0), (a, b, 0.2, 0.5)]


def _starts_vapor(x, y):
    return [(math.log(max(y[-1], 1e-3)), -0.5, 0.0), (math.log(max(y[-1], 1e-3)), -1.0, 0.05)]


def _starts_ilog2(x, y):
    c = _top(y)
    return [(c, max((c - y[0]) * math.log(2.0), 1e-3))]


#: The families (Domhan et al. 2015, Table 1), by name.
CURVE_MODELS: dict[str, CurveModel] = {m.name: m for m in (
    CurveModel("pow3", _pow3, (0.0, 0.0, 0.0), (1.0, 10.0, 10.0), _starts_pow3,
               "c - a x^-alpha"),
    CurveModel("pow4", _pow4, (0.0, 1e-6, 1e-6, 0.0), (1.0, 50.0, 50.0, 10.0), _starts_pow4,
               "c - (a x + b)^-alpha"),
    CurveModel("log_power", _log_power, (0.0, -10.0, -20.0), (1.0, 20.0, 0.0),
               _starts_log_power, "a / (1 + (x / e^b)^c)"),
    CurveModel("exp3", _exp3, (0.0, 0.0, -20.0), (1.0, 10.0, 20.0), _starts_exp3,
               "c - exp(-a x + b)"),
    CurveModel("exp4", _exp4, (0.0, 0.0, 0.0, -20.0), (1.0, 10.0, 5.0, 20.0), _starts_exp4,
               "c - exp(-a x^alpha + b)"),
    CurveModel("janoschek", _janoschek, (0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 20.0, 10.0),
               _starts_sat, "alpha - (alpha - beta) exp(-kappa x^delta)"),
    CurveModel("weibull", _weibull, (0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 20.0, 10.0), _starts_sat,
               "alpha - (alpha - beta) exp(-(kappa x)^delta)"),
    CurveModel("mmf", _mmf, (0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 20.0, 10.0), _starts_sat,
               "alpha - (alpha - beta) / (1 + (kappa x)^delta)"),
    CurveModel("vapor_pressure", _vapor_pressure, (-20.0, -20.0, -5.0), (5.0, 20.0, 5.0),
               _starts_vapor, "exp(a + b / x + c log x)"),
    CurveModel("ilog2", _ilog2, (0.0, 0.0), (1.0, 10.0), _starts_ilog2, "c - a / log(x + 1)"),
)}
#: Families used by default (all of them).
DEFAULT_MODELS: tuple[str, ...] = tuple(CURVE_MODELS)
WEIGHTINGS = ("bic", "inverse_variance", "uniform")


@dataclass
class CurveFit:
    """One family fitted to a curve (values in fractions of ``upper``).

    Attributes:
        model: the family.
        theta: fitted parameters.
        ssr: sum of squared residuals (fraction units).
        n: number of points fitted.
        sigma: residual standard deviation ``sqrt(SSR / max(n - p, 1))``, floored.
        cov: parameter covariance ``sigma^2 (J^T J)^+`` (Laplace approximation).
    """

    model: CurveModel
    theta: np.ndarray
    ssr: float
    n: int
    sigma: float
    cov: np.ndarray

    @property
    def bic(self) -> float:
        """Schwarz criterion ``n log(SSR/n) + p log n`` (SSR floored by the noise floor)."""
        mse = max(self.ssr / self.n, self.sigma_floor ** 2)
        return self.n * math.log(mse) + self.model.n_params * math.log(self.n)

    sigma_floor: float = 0.0

    def predict(self, x: float | np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.model.func(np.asarray(x, dtype=float), *self.theta)

    def predictive(self, x: float) -> tuple[float, float]:
        """Mean and std of the curve at epoch ``x``: noise plus delta-method parameter term."""
        mean = float(self.predict(x))
        grad = _num_grad(lambda th: float(self.model.func(np.asarray(x, float), *th)), self.theta)
        var_param = float(grad @ self.cov @ grad) if np.all(np.isfinite(grad)) else math.inf
        return mean, math.sqrt(max(var_param, 0.0) + self.sigma ** 2)


def _num_grad(f: Callable[[np.ndarray], float], theta: np.ndarray) -> np.ndarray:
    """Central differences, step relative to each parameter (f is cheap and smooth)."""
    grad = np.empty(len(theta))
    with np.errstate(all="ignore"):
        for i in range(len(theta)):
            h = 1e-6 * max(1.0, abs(theta[i]))
            up, down = theta.copy(), theta.copy()
            up[i] += h
            down[i] -= h
            grad[i] = (f(up) - f(down)) / (2 * h)
    return grad


@dataclass
class Extrapolation:
    """The combined prediction of a curve at ``target_epoch`` (in the curve's own units).

    Attributes:
        mean: predicted value at the target epoch (mixture mean).
        std: mixture standard deviation (``inf`` when no family gave a usable fit).
        target_epoch: the epoch predicted.
        upper: the value range's upper bound (1 or 100).
        models: per family ``{"mean", "std", "weight", "ssr"}`` (units of the curve), for
            the families that were fitted.
        n_points: points the prediction was made from.
    """

    mean: float
    std: float
    target_epoch: float
    upper: float
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    n_points: int = 0

    @property
    def informative(self) -> bool:
        """Whether at least one family contributed (else ``mean`` is the last value)."""
        return math.isfinite(self.std)

    def prob_greater(self, value: float) -> float:
        """P(value at the target epoch > ``value``) under the mixture of Gaussians.

        0.5 when the prediction is uninformative (no usable family).
        """
        if not self.informative:
            return 0.5
        total = 0.0
        for m in self.models.values():
            if m["weight"] <= 0:
                continue
            s = max(m["std"], 1e-12)
            total += m["weight"] * float(ndtr((m["mean"] - value) / s))
        return float(min(max(total, 0.0), 1.0))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "target_epoch": self.target_epoch,
                "upper": self.upper, "n_points": self.n_points, "models": self.models}


# ---------------------------------------------------------------------------------------
def check_curve(values: Sequence[float], epochs: Sequence[float] | None = None, *,
                min_points: int = 3, upper: float | None = None
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Validate a curve; return ``(epochs, values, upper)`` as float arrays.

    Raises:
        CurveError: NaN/inf values, fewer than ``min_points`` points, epochs that are not
            strictly increasing or < 1, values outside ``[0, upper]``.
    """
    y = np.asarray(values, dtype=float).reshape(-1)
    if min_points < 2:
        raise CurveError(f"min_points must be >= 2, got {min_points}")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise CurveError(f"the learning curve holds NaN/inf at position(s) {bad[:5].tolist()} "
                         "(a diverged run?); extrapolate only finite values")
    if y.size < min_points:
        raise CurveError(f"too few points to extrapolate: {y.size} value(s), need at least "
                         f"{min_points} (observe more epochs first)")
    x = np.arange(1, y.size + 1, dtype=float) if epochs is None else \
        np.asarray(epochs, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise CurveError(f"{x.size} epochs for {y.size} values")
    if not np.all(np.isfinite(x)) or x.min() < 1 or np.any(np.diff(x) <= 0):
        raise CurveError("epochs must be finite, >= 1 and strictly increasing")
    if upper is None:
        upper = 1.0 if y.max() <= 1.0 else 100.0
    if upper <= 0:
        raise CurveError(f"upper must be > 0, got {upper}")
    if y.min() < 0 or y.max() > upper:
        raise CurveError(f"values must lie in [0, {upper}] (accuracies as fractions or "
                         f"percent); got [{y.min():.4g}, {y.max():.4g}]")
    return x, y, float(upper)


def fit_curve_model(name: str, epochs: np.ndarray, values: np.ndarray, *,
                    noise_floor: float = 0.005) -> CurveFit | None:
    """Fit one family to ``values`` (fractions in [0, 1]) at ``epochs``; None if it fails.

    Args:
        name: a key of :data:`CURVE_MODELS`.
        epochs: (n,) epochs >= 1.
        values: (n,) values in [0, 1].
        noise_floor: lower bound on the residual std (fraction units), so a perfect fit of
            few points does not claim zero uncertainty.
    """
    if name not in CURVE_MODELS:
        raise CurveError(f"unknown curve model {name!r}; the models are "
                         f"{', '.join(CURVE_MODELS)}")
    model = CURVE_MODELS[name]
    x, y = np.asarray(epochs, float), np.asarray(values, float)
    lo, hi = np.array(model.lower), np.array(model.upper)

    def residuals(theta):
        with np.errstate(all="ignore"):
            r = model.func(x, *theta) - y
        return np.where(np.isfinite(r), r, 1e3)

    best = None
    for start in model.starts(x, y):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = least_squares(residuals, _clip(start, lo, hi), bounds=(lo, hi),
                                    method="trf", max_nfev=200 * model.n_params)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if not np.all(np.isfinite(res.x)):
            continue
        ssr = float(np.sum(res.fun ** 2))
        if best is None or ssr < best[1]:
            best = (res, ssr)
    if best is None or best[1] >= 1e3:
        return None
    res, ssr = best
    n, p = len(y), model.n_params
    sigma = max(math.sqrt(ssr / max(n - p, 1)), noise_floor)
    jac = res.jac
    cov = sigma ** 2 * np.linalg.pinv(jac.T @ jac) if np.all(np.isfinite(jac)) else \
        np.full((p, p), np.inf)
    return CurveFit(model, res.x.copy(), ssr, n, sigma, cov, sigma_floor=noise_floor)


def extrapolate(values: Sequence[float], target_epoch: float, *,
                epochs: Sequence[float] | None = None,
                models: Sequence[str] = DEFAULT_MODELS, upper: float | None = None,
                min_points: int = 3, weighting: str = "bic", noise_floor: float = 0.005,
                min_dof: int = 2) -> Extrapolation:
    """Predict a curve's value at ``target_epoch`` from its first points.

    Args:
        values: observed values (accuracy as a fraction or percent), one per epoch.
        target_epoch: the epoch to predict (e.g. the run's max_epochs).
        epochs: the epochs of ``values`` (default 1, 2, ..., n).
        models: families from :data:`CURVE_MODELS` (at least one).
        upper: the value range's upper bound (1 or 100); inferred when None (1 if every
            value <= 1, else 100).
        min_points: fewer points raise :class:`CurveError`.
        min_dof: families with fewer than ``min_dof`` residual degrees of freedom
            (points minus parameters) are skipped: with one the noise estimate of the fit
            is a single residual (so 5 points fit the 2- and 3-parameter families only).
        weighting: ``"bic"`` (BMA weights exp(-BIC/2)), ``"inverse_variance"`` (1 / s^2) or
            ``"uniform"``.
        noise_floor: minimum residual std as a fraction of ``upper``.

    Returns:
        An :class:`Extrapolation` in the curve's units.

    Raises:
        CurveError: NaN values, too few points, values out of range, a target epoch before
            the last observed one, unknown models or weighting.
    """
    x, y, upper = check_curve(values, epochs, min_points=min_points, upper=upper)
    if weighting not in WEIGHTINGS:
        raise CurveError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not models:
        raise CurveError("give at least one curve model")
    if not math.isfinite(target_epoch) or target_epoch < x[-1]:
        raise CurveError(f"target_epoch {target_epoch} is before the last observed epoch "
                         f"{x[-1]:g}")
    unknown = [m for m in models if m not in CURVE_MODELS]
    if unknown:
        raise CurveError(f"unknown curve models {unknown}; the models are "
                         f"{', '.join(CURVE_MODELS)}")
    u = y / upper  # fractions
    fits: dict[str, CurveFit] = {}
    for name in models:
        if len(u) - CURVE_MODELS[name].n_params < max(min_dof, 1):
            continue  # not identifiable from this few points
        fit = fit_curve_model(name, x, u, noise_floor=noise_floor)
        if fit is not None:
            fits[name] = fit
    stats: dict[str, dict[str, float]] = {}
    log_w = {}
    for name, fit in fits.items():
        mean, std = fit.predictive(target_epoch)
        std = min(std, 1.0)  # no family is less certain than "anywhere in [0, upper]"
        usable = math.isfinite(mean) and math.isfinite(std) and -1e-6 <= mean <= 1.0 + 1e-6
        stats[name] = {"mean": mean * upper, "std": std * upper, "weight": 0.0,
                       "ssr": fit.ssr * upper ** 2}
        if usable:
            if weighting == "bic":
                log_w[name] = -0.5 * fit.bic
            elif weighting == "inverse_variance":
                log_w[name] = -2.0 * math.log(fit.sigma)
            else:
                log_w[name] = 0.0
    if not log_w:  # nothing usable: uninformative prediction at the last value
        return Extrapolation(float(y[-1]), math.inf, float(target_epoch), upper, stats, len(y))
    top = max(log_w.values())
    weights = {k: math.exp(v - top) for k, v in log_w.items()}
    total = sum(weights.values())
    for k, w in weights.items():
        stats[k]["weight"] = w / total
    mean = sum(stats[k]["weight"] * stats[k]["mean"] for k in weights)
    var = sum(stats[k]["weight"] * (stats[k]["std"] ** 2 + (stats[k]["mean"] - mean) ** 2)
              for k in weights)
    return Extrapolation(float(mean), float(math.sqrt(var)), float(target_epoch), upper, stats,
                         len(y))
