"""Learning-curve extrapolation (Domhan et al. 2015) and its early-stopping callback."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.callbacks.early_stopping import LearningCurveEarlyStopping
from lightning_nas.estimation.learning_curve import (
    CURVE_MODELS,
    CurveError,
    extrapolate,
    fit_curve_model,
)


# ---------------------------------------------------------------------------------------
# the families and the ensemble
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CURVE_MODELS))
def test_each_family_recovers_its_own_curve(name):
    """Noise-free data from a family is fitted (almost) exactly by that family."""
    model = CURVE_MODELS[name]
    x = np.arange(1, 13, dtype=float)
    truth = {"pow3": (0.8, 0.5, 0.7), "pow4": (0.85, 0.6, 1.0, 0.9),
             "log_power": (0.8, 0.5, -1.2), "exp3": (0.8, 0.3, -0.4),
             "exp4": (0.82, 0.4, 0.8, -0.5), "janoschek": (0.8, 0.2, 0.3, 0.9),
             "weibull": (0.8, 0.2, 0.25, 1.1), "mmf": (0.8, 0.1, 0.4, 1.3),
             "vapor_pressure": (-0.2, -1.0, 0.02), "ilog2": (0.9, 0.3)}[name]
    y = model.func(x, *truth)
    assert np.all((y > 0) & (y < 1))
    fit = fit_curve_model(name, x, y)
    assert fit is not None
    assert fit.ssr < 1e-6
    assert float(fit.predict(30.0)) == pytest.approx(float(model.func(30.0, *truth)), abs=2e-2)


def test_extrapolation_of_a_noisy_power_law():
    x = np.arange(1, 21)
    truth = 0.8 - 0.5 * x ** -0.7
    rng = np.random.default_rng(0)
    y = truth + rng.normal(0, 0.005, 20)
    e = extrapolate(y[:8], 20)
    assert abs(e.mean - truth[-1]) < 3 * e.std + 0.01
    assert 0 < e.std < 0.1
    assert sum(m["weight"] for m in e.models.values()) == pytest.approx(1.0)
    # P(final > value) falls as value rises; far below the prediction it is ~1
    assert e.prob_greater(e.mean - 5 * e.std) > 0.95
    assert e.prob_greater(e.mean + 5 * e.std) < 0.05
    assert e.prob_greater(e.mean) == pytest.approx(0.5, abs=0.2)


def test_percent_units_match_fractions():
    y = [0.30, 0.42, 0.50, 0.55, 0.58, 0.60]
    frac = extrapolate(y, 20)
    pct = extrapolate([100 * v for v in y], 20)
    assert pct.upper == 100.0 and frac.upper == 1.0
    assert pct.mean == pytest.approx(100 * frac.mean, rel=1e-6)
    assert pct.std == pytest.approx(100 * frac.std, rel=1e-6)


def test_weightings_and_model_subset():
    y = [0.30, 0.42, 0.50, 0.55, 0.58, 0.60]
    for weighting in ("bic", "inverse_variance", "uniform"):
        e = extrapolate(y, 20, weighting=weighting, models=("pow3", "exp3", "mmf", "weibull"))
        assert set(e.models) <= {"pow3", "exp3", "mmf", "weibull"}
        assert 0.55 < e.mean < 0.9


def test_bad_curves_raise_clear_errors():
    with pytest.raises(CurveError, match="NaN"):
        extrapolate([0.1, 0.2, float("nan"), 0.4], 10)
    with pytest.raises(CurveError, match="too few points"):
        extrapolate([0.1, 0.2], 10)
    with pytest.raises(CurveError, match="too few points"):
        extrapolate([], 10)
    with pytest.raises(CurveError, match="before the last observed epoch"):
        extrapolate([0.1, 0.2, 0.3, 0.4], 3)
    with pytest.raises(CurveError, match=r"values must lie in \[0, 1"):
        extrapolate([0.1, -0.2, 0.3], 10, upper=1.0)
    with pytest.raises(CurveError, match="unknown curve models"):
        extrapolate([0.1, 0.2, 0.3, 0.4], 10, models=("pow2",))
    with pytest.raises(CurveError, match="strictly increasing"):
        extrapolate([0.1, 0.2, 0.3], 10, epochs=[1, 3, 2])


def test_uninformative_when_nothing_fits():
    # with 3 points only the 2-parameter family qualifies; restricting to 4-parameter
    # families leaves none: the prediction says so instead of guessing
    e = extrapolate([0.1, 0.2, 0.3], 10, models=("mmf",))
    assert not e.informative and e.prob_greater(0.9) == 0.5 and e.mean == 0.3


# ---------------------------------------------------------------------------------------
# the callback in a real (tiny) Lightning run
# ---------------------------------------------------------------------------------------
class ScriptedCurve(L.LightningModule):
    """Logs a prescribed validation accuracy per epoch (no learning needed)."""

    def __init__(self, curve):
        super().__init__()
        self.curve = list(curve)
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", float(self.curve[self.current_epoch]), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _loader():
    return DataLoader(TensorDataset(torch.zeros(4, 2)), batch_size=4)


def _fit(module, callback, epochs=20):
    trainer = L.Trainer(max_epochs=epochs, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader())
    return trainer


def _curve(final, scale=0.5, alpha=0.8, epochs=20):
    x = np.arange(1, epochs + 1)
    return final - scale * x ** -alpha


def test_callback_stops_a_hopeless_run_and_remembers_the_best():
    stopper = LearningCurveEarlyStopping(monitor="val/acc", threshold=0.05)
    good = _fit(ScriptedCurve(_curve(0.9)), stopper)
    assert stopper.stopped_epoch is None and good.current_epoch == 20
    assert stopper.best_so_far == pytest.approx(_curve(0.9)[-1])
    assert stopper.final_estimate == pytest.approx(_curve(0.9)[-1])
    bad = _fit(ScriptedCurve(_curve(0.5)), stopper)
    assert stopper.stopped_epoch == 5  # first check at 25% of 20 epochs
    assert bad.current_epoch == 5
    assert stopper.final_estimate == pytest.approx(_curve(0.5)[-1], abs=0.05)
    assert float(bad.callback_metrics["lc/final_estimate"]) == pytest.approx(
        stopper.final_estimate)
    assert stopper.p_improve < 0.05
    assert stopper.best_so_far == pytest.approx(_curve(0.9)[-1])  # unchanged by a stop


def test_callback_uses_the_search_best_and_keeps_promising_runs():
    stopper = LearningCurveEarlyStopping(monitor="val/acc", best_so_far=0.6, threshold=0.05)
    trainer = _fit(ScriptedCurve(_curve(0.9)), stopper)
    assert stopper.stopped_epoch is None and trainer.current_epoch == 20
    assert float(trainer.callback_metrics["lc/p_improve"]) > 0.5
    # threshold 0: predictions only, never stops
    watcher = LearningCurveEarlyStopping(monitor="val/acc", best_so_far=0.99, threshold=0.0)
    trainer = _fit(ScriptedCurve(_curve(0.5)), watcher)
    assert watcher.stopped_epoch is None and trainer.current_epoch == 20
    assert watcher.prediction is not None and "lc/pred_final" in trainer.callback_metrics


def test_callback_missing_metric_and_bad_arguments():
    with pytest.raises(KeyError, match="val/accuracy"):
        _fit(ScriptedCurve(_curve(0.9)), LearningCurveEarlyStopping(monitor="val/accuracy"),
             epochs=4)
    with pytest.raises(ValueError, match="threshold"):
        LearningCurveEarlyStopping(threshold=1.5)
    with pytest.raises(ValueError, match="min_epochs"):
        LearningCurveEarlyStopping(min_epochs=2)
    with pytest.raises(ValueError, match="models"):
        LearningCurveEarlyStopping(models=("pow9",))


def test_callback_state_round_trip():
    stopper = LearningCurveEarlyStopping(monitor="val/acc", best_so_far=0.95)
    _fit(ScriptedCurve(_curve(0.5)), stopper)
    other = LearningCurveEarlyStopping(monitor="val/acc")
    other.load_state_dict(stopper.state_dict())
    assert other.curve == stopper.curve and other.best_so_far == 0.95
    assert other.final_estimate == pytest.approx(stopper.final_estimate)
    assert math.isfinite(other.prediction.std)
