"""Early stopping by learning-curve extrapolation (Domhan, Springenberg & Hutter, IJCAI 2015).

After ``min_epochs`` validation results, every ``check_every`` epochs the callback fits the
validation curve with the ensemble of :mod:`lightning_nas.estimation.learning_curve`,
predicts the value at ``target_epoch`` (default ``trainer.max_epochs``) with an
uncertainty, logs the prediction, and stops the run (``trainer.should_stop``) when the
probability of beating the best result so far falls below ``threshold`` (Domhan et al.,
Sec. 3.2, use 5%).

The best result so far is ``best_so_far`` (a value the search sets before each trial) or,
with ``remember_best=True``, the best final value of earlier fits this callback instance
saw run to the end. For a stopped run, :attr:`final_estimate` (also logged as
``<prefix>final_estimate``) is the predicted final value, which is what a multi-trial search
should record for the trial; for a completed run it is the last observed value.

Example::

    stopper = LearningCurveEarlyStopping(monitor="val/acc", threshold=0.05)
    for arch in candidates:
        trainer = L.Trainer(max_epochs=20, callbacks=[stopper])
        trainer.fit(FixedArchitecture(arch=...), datamodule=dm)
        result = stopper.final_estimate        # predicted for stopped runs
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from lightning_nas.estimation.learning_curve import (
    CURVE_MODELS,
    DEFAULT_MODELS,
    WEIGHTINGS,
    Extrapolation,
    extrapolate,
)

__all__ = ["LearningCurveEarlyStopping"]


class LearningCurveEarlyStopping(Callback):
    """Stop unpromising runs by extrapolating the validation curve.

    Args:
        monitor: an accuracy-like metric logged every validation epoch (fraction or percent;
            larger is better), e.g. ``"val/acc"``.
        target_epoch: the epoch whose value is predicted; default ``trainer.max_epochs``.
        min_epochs: validation points before the first prediction; default
            ``max(3, ceil(target_epoch / 4))`` (the first quarter of the run).
        check_every: predict every this many validation points after ``min_epochs``.
        threshold: stop when P(final > best so far) < threshold (0 never stops: the
            callback then only logs predictions).
        best_so_far: the value to beat (e.g. the search's best accuracy so far); None =
            only what this callback remembers.
        remember_best: update ``best_so_far`` with the final value of every run that
            reaches ``target_epoch``.
        models: curve families (keys of ``CURVE_MODELS``); at least one.
        weighting: how families are combined (``"bic"``, ``"inverse_variance"``,
            ``"uniform"``).
        upper: the metric's upper bound (1 or 100); inferred per fit when None.
        log_prefix: prefix of the logged metrics ``pred_final``, ``pred_std``,
            ``p_improve``, ``final_estimate``.
        verbose: print each decision on rank 0.

    Attributes:
        curve: ``[(epoch, value), ...]`` of the current fit.
        prediction: the latest :class:`Extrapolation` (None before ``min_epochs``).
        stopped_epoch: epoch (1-based) at which the run was stopped, else None.
        final_estimate: predicted final value for a stopped run, last value otherwise.
    """

    def __init__(self, monitor: str = "val/acc", *, target_epoch: int | None = None,
                 min_epochs: int | None = None, check_every: int = 1, threshold: float = 0.05,
                 best_so_far: float | None = None, remember_best: bool = True,
                 models: Sequence[str] = DEFAULT_MODELS, weighting: str = "bic",
                 upper: float | None = None, log_prefix: str = "lc/", verbose: bool = False):
        super().__init__()
        if target_epoch is not None and target_epoch < 2:
            raise ValueError(f"target_epoch must be >= 2, got {target_epoch}")
        if min_epochs is not None and min_epochs < 3:
            raise ValueError(f"min_epochs must be >= 3 (a curve needs 3 points), got {min_epochs}")
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        unknown = [m for m in models if m not in CURVE_MODELS]
        if not models or unknown:
            raise ValueError(f"models must be a non-empty subset of {list(CURVE_MODELS)}; "
                             f"unknown: {unknown}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.monitor = monitor
        self.target_epoch = target_epoch
        self.min_epochs = min_epochs
        self.check_every = check_every
        self.threshold = threshold
        self.best_so_far = best_so_far
        self.remember_best = remember_best
        self.models = tuple(models)
        self.weighting = weighting
        self.upper = upper
        self.log_prefix = log_prefix
        self.verbose = verbose
        self._reset_run()

    def _reset_run(self) -> None:
        self.curve: list[tuple[int, float]] = []
        self.prediction: Extrapolation | None = None
        self.p_improve: float | None = None
        self.stopped_epoch: int | None = None
        self._target: int | None = None

    # -- derived settings --------------------------------------------------------------------
    def _resolve_target(self, trainer: L.Trainer) -> int:
        target = self.target_epoch or trainer.max_epochs
        if target is None or target < 2:
            raise ValueError("LearningCurveEarlyStopping needs the final epoch: set "
                             "trainer max_epochs or the callback's target_epoch")
        return int(target)

    @property
    def first_check(self) -> int:
        target = self._target or self.target_epoch or 4
        return self.min_epochs or max(3, math.ceil(target / 4))

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch is not None

    @property
    def final_estimate(self) -> float | None:
        """The value a search should record: predicted if stopped, else the last observed."""
        if self.stopped and self.prediction is not None:
            return self.prediction.mean
        return self.curve[-1][1] if self.curve else None

    # -- hooks -----------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        resumed = self._target is not None and bool(self.curve) and trainer.current_epoch > 0
        if not resumed:
            self._reset_run()
        self._target = self._resolve_target(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise KeyError(f"LearningCurveEarlyStopping monitors {self.monitor!r}, which was "
                           f"not logged; logged metrics: {sorted(metrics)}")
        value = float(metrics[self.monitor])
        epoch = trainer.current_epoch + 1  # 1-based: the curve after this many epochs
        if self.curve and self.curve[-1][0] == epoch:
            self.curve[-1] = (epoch, value)  # several validations in one epoch: keep the last
        else:
            self.curve.append((epoch, value))
        if not math.isfinite(value):
            return  # the extrapolation refuses NaN; a diverged run is left to other checks
        target = self._target or self._resolve_target(trainer)
        n = len(self.curve)
        if n < self.first_check or (n - self.first_check) % self.check_every or epoch >= target:
            return
        epochs = [e for e, _ in self.curve]
        values = [v for _, v in self.curve]
        self.prediction = extrapolate(values, target, epochs=epochs, models=self.models,
                                      upper=self.upper, weighting=self.weighting)
        best = self.best_so_far
        self.p_improve = self.prediction.prob_greater(best) if best is not None else None
        stop = self.p_improve is not None and self.p_improve < self.threshold
        stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        logged = {"pred_final": self.prediction.mean, "pred_std": self.prediction.std}
        if self.p_improve is not None:
            logged["p_improve"] = self.p_improve
        if stop:
            trainer.should_stop = True
            self.stopped_epoch = epoch
            logged["final_estimate"] = self.prediction.mean
        self._log(trainer, logged)
        if self.verbose:
            rank_zero_info(
                f"[lc] epoch {epoch}: predicted {self.monitor} at epoch {target} = "
                f"{self.prediction.mean:.4g} +- {self.prediction.std:.3g}"
                + (f", P(> {best:.4g}) = {self.p_improve:.3f}" if best is not None else "")
                + (" -> stop" if stop else ""))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.curve:
            return
        if not self.stopped:
            self._log(trainer, {"final_estimate": self.curve[-1][1]})
            last_epoch, last = self.curve[-1]
            if (self.remember_best and math.isfinite(last) and self._target is not None
                    and last_epoch >= self._target):
                self.best_so_far = last if self.best_so_far is None else \
                    max(self.best_so_far, last)

    def _log(self, trainer: L.Trainer, values: dict[str, float]) -> None:
        named = {f"{self.log_prefix}{k}": float(v) for k, v in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(named, step=trainer.global_step)
        # visible to other callbacks (checkpointing, the search's train evaluator)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in named.items()})

    # -- checkpoint ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"curve": list(self.curve), "best_so_far": self.best_so_far,
                "stopped_epoch": self.stopped_epoch, "target": self._target,
                "prediction": self.prediction.to_dict() if self.prediction else None,
                "p_improve": self.p_improve}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curve = [(int(e), float(v)) for e, v in state.get("curve", [])]
        self.best_so_far = state.get("best_so_far", self.best_so_far)
        self.stopped_epoch = state.get("stopped_epoch")
        self._target = state.get("target")
        self.p_improve = state.get("p_improve")
        pred = state.get("prediction")
        self.prediction = None if pred is None else Extrapolation(
            pred["mean"], pred["std"], pred["target_epoch"], pred["upper"], pred["models"],
            pred["n_points"])
