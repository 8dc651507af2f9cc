"""Performance estimation without (full) training: pure torch / numpy / scipy / sklearn.

* :mod:`~lightning_nas.estimation.zero_cost`: zero-cost proxies of an untrained network
  (grad_norm, snip, grasp, fisher, synflow, jacob_cov, naswot; params, flops baselines).
* :mod:`~lightning_nas.estimation.learning_curve`: parametric learning-curve extrapolation
  (Domhan et al. 2015) with an uncertainty.
* :mod:`~lightning_nas.estimation.predictors`: accuracy predictors from architecture
  encodings (MLP ensemble, gradient boosting, Gaussian process).

The Lightning callbacks over these live in :mod:`lightning_nas.callbacks.zero_cost` and
:mod:`lightning_nas.callbacks.early_stopping`; the multi-trial evaluator and warm-up in
:mod:`lightning_nas.search.zero_cost_evaluator`.
"""

from lightning_nas.estimation.learning_curve import (
    CURVE_MODELS,
    CurveError,
    Extrapolation,
    extrapolate,
    fit_curve_model,
)
from lightning_nas.estimation.predictors import (
    ArchPredictor,
    GaussianProcess,
    GradientBoosting,
    MLPEnsemble,
    NotFittedError,
    Prediction,
    encode,
    make_predictor,
    nb201_path_encoding,
)
from lightning_nas.estimation.zero_cost import (
    PROXIES,
    ProxyError,
    compute_proxies,
    fisher,
    flops,
    grad_norm,
    grasp,
    jacob_cov,
    naswot,
    naswot_kernel,
    params,
    rank_combination,
    snip,
    synflow,
)

__all__ = [
    "CURVE_MODELS", "ArchPredictor", "CurveError", "Extrapolation", "GaussianProcess",
    "GradientBoosting", "MLPEnsemble", "NotFittedError", "PROXIES", "Prediction", "ProxyError",
    "compute_proxies", "encode", "extrapolate", "fisher", "fit_curve_model", "flops",
    "grad_norm", "grasp", "jacob_cov", "make_predictor", "naswot", "naswot_kernel",
    "nb201_path_encoding", "params", "rank_combination", "snip", "synflow",
]
