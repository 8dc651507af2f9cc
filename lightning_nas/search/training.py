"""Evaluate an architecture by training it: the multi-trial search's real evaluator.

:class:`TrainingEvaluator` builds the standalone network of an architecture through
:class:`~lightning_nas.strategies.fixed.FixedArchitecture`, trains it with a Lightning
``Trainer`` for a few epochs on a data module with a held-out validation split
(``val_fraction > 0``) and returns the *validation* metrics (the search never sees the test
split; it can be reported with ``test=True``, never searched on)::

    evaluator = TrainingEvaluator(DigitsDataModule(val_fraction=0.2), epochs=3,
                                  space=NB201Space(channels=8, cells_per_stage=1))
    evaluator(arch)  # {"accuracy": 87.2, "val_loss": 0.41, "train_seconds": 2.3, ...}

Units: ``accuracy`` is in **percent** (0..100) by default, like the NAS-Bench-201 numbers of
:class:`~lightning_nas.search.evaluators.TabularEvaluator`, so objectives, constraints and
Pareto plots read the same for both evaluators; ``accuracy_unit="fraction"`` gives 0..1.
Losses are mean cross-entropy per sample (nats), times are wall-clock seconds.

Determinism: every trial starts from the same seed (``seed``: network initialisation, global
RNGs for drop-path), on a fresh copy of the data module whose sampling order and
augmentation are functions of the data module's own seed and the epoch. The same
architecture therefore gets the same metrics in any order, in any process (on the same
hardware and software; pass ``trainer={"deterministic": True}`` for bit-exact GPU runs).

Continued training (``continue_training=True``): with a multi-fidelity sampler, a call at a
larger budget for an architecture this evaluator has already trained resumes that run from
its last checkpoint (model, optimiser, schedule, epoch, RNG states) and trains only the
missing epochs, as Ray Tune's and ASHA's promotions do, instead of retraining from scratch
(Hyperband's and HpBandSter's default). The cosine schedule and drop-path ramp then span
``epochs`` (the full budget) at every fidelity, so a 3-epoch run is the exact prefix of the
9-epoch one: continuing 3 -> 9 gives the same weights as training 9 epochs straight (tested).
The record's ``epochs_trained`` counts only the new epochs (``time_key="epochs_trained"``
makes the loop's budget the epochs really trained). Checkpoints live in
``<save_dir>/continue/``, or in ``<run_dir>/continue/`` under ``lightning-nas search``
(:meth:`TrainingEvaluator.use_run_dir`: a resumed search continues them, and only a
checkpoint tagged with the same search configuration is continued), or else in a private
temporary folder removed with the evaluator; one per architecture (the latest), read back
weights-only. Worker processes share the folder; Ray workers on other machines see it only
on a shared file system, and otherwise train from scratch.

Process pools: the evaluator pickles without the data module's loaded arrays (each worker
loads the data itself), the optimiser factory from YAML is a picklable ``functools.partial``.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from lightning_nas.search.evaluators import (
    Evaluator,
    check_classification_data,
    data_input_shape,
)
from lightning_nas.spaces.base import Arch, SearchSpace
from lightning_nas.strategies.darts import OptimizerFactory, paper_weight_optimizer

__all__ = ["TrainingEvaluator"]

#: Trainer arguments the evaluator owns (set them through its own arguments).
_OWN_TRAINER_KEYS = ("max_epochs", "callbacks", "logger", "enable_checkpointing",
                     "default_root_dir")
_QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning_fabric",
                  "pytorch_lightning", "lightning_nas")


@contextmanager
def _quiet(enabled: bool):
    """Silence Lightning's per-fit info lines and the 'few workers' hint for one trial."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            # a continued run's checkpoint folder differs from the run it continues
            warnings.filterwarnings("ignore", message=".*The dirpath has changed from.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def _seeded(seed: int):
    """Seed Python, NumPy and torch (CPU + CUDA) for one trial; restore the states after."""
    py, np_state, cpu = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and \
        torch.cuda.is_initialized() else None
    try:
        L.seed_everything(seed, workers=False, verbose=False)
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _metric(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)


class TrainingEvaluator(Evaluator):
    """Train each architecture for a few epochs and return its validation metrics.

    Args:
        data: the data module (``class_path``/``init_args`` in YAML), with
            ``val_fraction > 0`` so validation uses held-out training images, and the
            attributes ``num_classes`` and ``in_channels`` (every lightning-nas data
            module has them).
        space: the space that builds the networks; the search CLI links in the search's
            space when this is left out.
        epochs: training epochs per trial (>= 1); a multi-fidelity sampler
            (:mod:`~lightning_nas.search.multi_fidelity`) sets each trial's epochs instead
            (``evaluator(arch, fidelity=epochs)``; a save_dir subfolder per architecture
            and budget).
        weight_optimizer: optimiser factory (``class_path: torch.optim.SGD`` in YAML);
            cosine schedule over ``epochs`` to ``model["lr_min"]``.
        model: further :class:`~lightning_nas.strategies.fixed.FixedArchitecture` arguments
            (``drop_path_prob``, ``grad_clip``, ``label_smoothing``, ``auxiliary_weight``,
            ``lr_min``, ``init_from``).
        trainer: further ``lightning.Trainer`` arguments as plain values (``accelerator``,
            ``devices``, ``precision``, ``limit_train_batches``, ``deterministic`` ...).
            Defaults: ``devices=1``, no progress bar, no model summary, no sanity check.
        callbacks: extra Lightning callbacks for every trial's trainer (the same instances
            each trial). A callback that stops the trial early and then exposes a
            prediction of the final value (``predicted_final``, or ``stopped`` plus
            ``final_estimate`` as
            :class:`~lightning_nas.callbacks.early_stopping.LearningCurveEarlyStopping`)
            has that prediction reported as ``accuracy``; the record then holds
            ``early_stopped = True`` and ``observed_accuracy``. The prediction is read in
            the unit of the monitored metric, ``val/acc`` (a fraction), and converted.
            Before each trial, a callback with a ``best_so_far`` attribute that monitors
            ``val/acc`` (as ``LearningCurveEarlyStopping``) gets the best final validation
            accuracy of this evaluator's completed (not early-stopped) trials, as a
            fraction (the larger of it and the callback's own value), so that its
            "probability of beating the best so far" compares across trials. Such a
            callback makes a trial's result depend on the trials before it (and, with a
            process pool, on which worker ran them).
        test: also evaluate on the test split and report ``test_accuracy`` / ``test_loss``
            (for reporting; never searched on).
        seed: seed of every trial (network initialisation and global RNGs).
        accuracy_unit: ``"percent"`` (0..100, as the NB201 table) or ``"fraction"``.
        save_dir: ``None`` (default) writes nothing per trial; a folder gets one subfolder
            per architecture (``<save_dir>/<arch digest>``) with a CSV log and the last
            checkpoint.
        num_threads: torch intra-op threads while training (``None`` keeps the setting).
        quiet: silence Lightning's per-trial info lines.
        continue_training: a call at more epochs than this evaluator already trained the
            architecture for continues from that run's checkpoint (module docstring);
            the schedule spans ``epochs``, so every fidelity must be <= ``epochs``.

    Returns per call: ``accuracy`` (last-epoch validation accuracy, or the early-stopping
    prediction), ``val_loss``, ``best_accuracy`` (best epoch), ``train_loss``,
    ``train_accuracy``, ``epochs`` (completed), ``epochs_trained`` (trained by this call:
    ``epochs`` minus ``resumed_from_epoch``, which is 0 unless the call continued a run),
    ``early_stopped``, ``train_seconds`` (wall clock of this call's ``fit``),
    ``trained_params``, and with ``test=True`` ``test_accuracy``
    and ``test_loss``.
    """

    primary_metric = "accuracy"
    supports_fidelity = True  # fidelity = training epochs

    def __init__(self, data: L.LightningDataModule, *, space: SearchSpace | None = None,
                 epochs: int = 1, weight_optimizer: OptimizerFactory = paper_weight_optimizer,
                 model: dict[str, Any] | None = None, trainer: dict[str, Any] | None = None,
                 callbacks: list[Callback] | None = None, test: bool = False, seed: int = 0,
                 accuracy_unit: str = "percent", save_dir: str | None = None,
                 num_threads: int | None = None, quiet: bool = True,
                 continue_training: bool = False):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        if accuracy_unit not in ("percent", "fraction"):
            raise ValueError(f"accuracy_unit must be 'percent' or 'fraction', got "
                             f"{accuracy_unit!r}")
        check_classification_data(data, "TrainingEvaluator")
        if getattr(data, "val_fraction", None) == 0:
            raise ValueError(
                f"{type(data).__name__} has val_fraction=0, so its validation split would be "
                "the test split; give it val_fraction > 0 (e.g. 0.2) so the search selects "
                "on held-out training images")
        from lightning_nas.strategies.fixed import FixedArchitecture

        accepted = set(inspect.signature(FixedArchitecture).parameters)
        owned = {"arch", "space", "num_classes", "in_channels", "weight_optimizer", "seed",
                 "schedule_epochs"}
        model = dict(model or {})
        bad = sorted(set(model) - (accepted - owned))
        if bad:
            raise ValueError(f"model has argument(s) {bad} that TrainingEvaluator sets itself "
                             f"or FixedArchitecture does not take; allowed: "
                             f"{sorted(accepted - owned)}")
        trainer = dict(trainer or {})
        bad = sorted(set(trainer) & set(_OWN_TRAINER_KEYS))
        if bad:
            raise ValueError(f"trainer has {bad}; use the evaluator's epochs / callbacks / "
                             "save_dir arguments instead")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
        self.data = data
        self.space = space
        self.epochs = epochs
        self.weight_optimizer = weight_optimizer
        self.model_kwargs = model
        self.trainer_kwargs = trainer
        self.callbacks = list(callbacks or [])
        self.test = bool(test)
        self.seed = int(seed)
        self.accuracy_unit = accuracy_unit
        self.save_dir = save_dir
        self.num_threads = num_threads
        self.quiet = quiet
        self.continue_training = bool(continue_training)
        self.continue_dir: str | None = None
        self.continue_tag: str | None = None  # a checkpoint is continued only with its tag
        self._private_dir: weakref.finalize | None = None  # removes a private continue_dir
        if self.continue_training:
            if save_dir is not None:
                self.continue_dir = str(Path(save_dir) / "continue")
            else:  # made here, not lazily, so that pool workers share it
                self.continue_dir = tempfile.mkdtemp(prefix="lightning-nas-continue-")
                self._private_dir = weakref.finalize(self, shutil.rmtree, self.continue_dir,
                                                     ignore_errors=True)
            Path(self.continue_dir).mkdir(parents=True, exist_ok=True)
        self._data_ready = False
        self.best_fraction: float | None = None  # best val/acc of completed trials

    # -- pickling: leave the loaded arrays behind ------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # the data module pickles without its loaded arrays (ImageDataModule.__getstate__);
        # the private folder is removed by the original only
        return {**self.__dict__, "_data_ready": False, "_private_dir": None}

    def use_run_dir(self, run_dir: Path, tag: str) -> None:
        """Continued training without ``save_dir`` keeps its checkpoints in
        ``<run_dir>/continue/`` (a resumed search continues them; workers that share the
        folder, Ray's included, see them); every checkpoint is tagged with ``tag`` and only
        a checkpoint of the same tag is continued."""
        if not self.continue_training:
            return
        self.continue_tag = str(tag)
        if self.save_dir is None:
            if self._private_dir is not None:
                self._private_dir()  # the private folder holds nothing of this search yet
                self._private_dir = None
            # absolute: Ray workers need not share the driver's working directory
            self.continue_dir = str(Path(run_dir).absolute() / "continue")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        """Factor from a fraction to the reported accuracy unit (100 or 1)."""
        return 100.0 if self.accuracy_unit == "percent" else 1.0

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """One sample's shape ``(C, H, W)``, when the data module tells its image size."""
        return data_input_shape(self.data)

    def _space(self) -> SearchSpace:
        if self.space is None:
            raise ValueError("TrainingEvaluator has no space: pass space=, or run it through "
                             "`lightning-nas search`, which links in the search's space")
        return self.space

    def build_kwargs(self) -> dict[str, Any]:
        """The network options that come from the data (classes, input channels)."""
        accepted = inspect.signature(self._space().build).parameters
        kwargs = {"num_classes": int(self.data.num_classes),
                  "in_channels": int(self.data.in_channels)}
        if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            return kwargs
        return {k: v for k, v in kwargs.items() if k in accepted}

    def network(self, arch: Arch) -> torch.nn.Module:
        """The standalone network this evaluator trains (for cost hooks: params, latency)."""
        return self._space().build(arch, **self.build_kwargs())

    def _fresh_data(self) -> L.LightningDataModule:
        """A per-trial copy of the data module sharing the loaded arrays, fit state reset."""
        if not self._data_ready:
            self.data.prepare_data()
            self.data.setup("fit")
            self._data_ready = True
        fresh_copy = getattr(self.data, "fresh_copy", None)  # ImageDataModule's
        if callable(fresh_copy):
            return fresh_copy()
        data = copy.copy(self.data)  # a user's own module: a shallow copy, trainer detached
        if "trainer" in vars(data):
            data.trainer = None
        return data

    def _prediction(self) -> float | None:
        """The final value predicted by a callback that stopped the trial early, if any."""
        for cb in self.callbacks:
            value = getattr(cb, "predicted_final", None)
            if value is None and getattr(cb, "stopped", False) is True:
                value = getattr(cb, "final_estimate", None)
            if value is not None:
                value = float(value)
                if math.isfinite(value):
                    return value
        return None

    def _prime_callbacks(self) -> None:
        """Give early-stopping callbacks the best completed result so far (a fraction)."""
        if self.best_fraction is None:
            return
        for cb in self.callbacks:
            if not hasattr(cb, "best_so_far") or getattr(cb, "monitor", "val/acc") != "val/acc":
                continue
            current = cb.best_so_far
            cb.best_so_far = self.best_fraction if current is None else \
                max(float(current), self.best_fraction)

    # -- the evaluation --------------------------------------------------------------------
    def __call__(self, arch: Arch, fidelity: float | None = None) -> dict[str, float]:
        """Train ``arch`` for ``epochs`` (or ``fidelity`` epochs) and return its metrics."""
        from lightning_nas.strategies.fixed import FixedArchitecture

        epochs = self.epochs
        if fidelity is not None:
            epochs = int(round(float(fidelity)))
            if epochs < 1 or abs(epochs - float(fidelity)) > 1e-9:
                raise ValueError(f"a TrainingEvaluator fidelity is a whole number of epochs "
                                 f">= 1, got {fidelity!r}")
        if self.continue_training and epochs > self.epochs:
            raise ValueError(f"continue_training: a fidelity of {epochs} epochs exceeds the "
                             f"evaluator's epochs={self.epochs}, which the learning-rate "
                             "schedule spans; set epochs to the sampler's max_fidelity")
        space = self._space()
        arch = space.validate(arch)
        arch_str = space.to_string(arch)
        resume = self._resume_point(arch, epochs) if self.continue_training else None
        start_epoch = resume[1]["epochs"] if resume else 0
        old_threads = torch.get_num_threads()
        try:
            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            with _quiet(self.quiet), _seeded(self.seed), tempfile.TemporaryDirectory() as tmp:
                data = self._fresh_data()
                schedule = {"schedule_epochs": self.epochs} if self.continue_training else {}
                module = FixedArchitecture(arch=arch_str, space=space,
                                           num_classes=int(data.num_classes),
                                           in_channels=int(data.in_channels),
                                           weight_optimizer=self.weight_optimizer,
                                           seed=self.seed, **schedule, **self.model_kwargs)
                self._prime_callbacks()
                curve = _ValCurve(resume[1]["val_curve"] if resume else ())
                trainer = L.Trainer(**self._trainer_args(arch, tmp, curve, epochs,
                                                         fidelity is not None))
                if resume:
                    _set_rng_states(resume[1]["rng"])
                start = time.perf_counter()
                # weights_only: Lightning's own read of the checked file is weights-only too
                trainer.fit(module, datamodule=data, ckpt_path=resume[0] if resume else None,
                            weights_only=True)
                seconds = time.perf_counter() - start
                fitted = {k: v for k, v in trainer.callback_metrics.items()}
                if self.continue_training:
                    self._save_continue_point(arch, trainer, curve)
                tested = {}
                if self.test:
                    tested = trainer.test(module, datamodule=data, verbose=False)[0]
        finally:
            if self.num_threads is not None:
                torch.set_num_threads(old_threads)
        return self._metrics(module, trainer, fitted, tested, curve, seconds, epochs,
                             start_epoch)

    # -- continued training ----------------------------------------------------------------
    def _continue_folder(self, arch: Arch) -> Path:
        return Path(self.continue_dir) / arch.digest[:16]

    def _resume_point(self, arch: Arch, epochs: int) -> tuple[str, dict[str, Any]] | None:
        """``(checkpoint path, meta)`` of this architecture's latest run when it trained
        fewer than ``epochs`` epochs with this evaluator's seed; else None (train afresh)."""
        from lightning_nas.checkpoints import load_checkpoint

        meta_path = self._continue_folder(arch) / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("seed") != self.seed or meta.get("schedule_epochs") != self.epochs or \
                meta.get("tag") != self.continue_tag or not 0 < int(meta["epochs"]) < epochs:
            return None
        path = self._continue_folder(arch) / meta["checkpoint"]
        load_checkpoint(path, what="continued-training checkpoint",
                        advice=f"delete {self._continue_folder(arch)} to train afresh")
        return str(path), meta

    def _save_continue_point(self, arch: Arch, trainer: L.Trainer, curve: _ValCurve) -> None:
        """Write the run's checkpoint and meta (epochs, validation curve, RNG states right
        after ``fit``), atomically, and drop the architecture's older checkpoint."""
        folder = self._continue_folder(arch)
        folder.mkdir(parents=True, exist_ok=True)
        epochs_done = int(trainer.current_epoch)
        name = f"{epochs_done}ep.ckpt"
        trainer.save_checkpoint(str(folder / (name + ".tmp")))
        os.replace(folder / (name + ".tmp"), folder / name)
        meta = {"epochs": epochs_done, "checkpoint": name, "seed": self.seed,
                "schedule_epochs": self.epochs, "tag": self.continue_tag,
                "val_curve": list(curve.values),
                "rng": _rng_states()}
        (folder / "meta.json.tmp").write_text(json.dumps(meta))
        os.replace(folder / "meta.json.tmp", folder / "meta.json")
        for old in folder.glob("*ep.ckpt"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def _trainer_args(self, arch: Arch, tmp: str, curve: Callback, epochs: int,
                      by_fidelity: bool = False) -> dict[str, Any]:
        args: dict[str, Any] = {"devices": 1, "enable_progress_bar": False,
                                "enable_model_summary": False, "num_sanity_val_steps": 0,
                                "check_val_every_n_epoch": 1}
        args.update(self.trainer_kwargs)
        args["max_epochs"] = epochs
        args["callbacks"] = [*self.callbacks, curve]
        if self.save_dir is None:
            args.update(logger=False, enable_checkpointing=False, default_root_dir=tmp)
        else:
            from lightning.pytorch.callbacks import ModelCheckpoint
            from lightning.pytorch.loggers import CSVLogger

            folder = Path(self.save_dir) / (arch.digest[:16] + (f"-{epochs}ep" if by_fidelity
                                                                else ""))
            args.update(default_root_dir=str(folder),
                        logger=CSVLogger(str(folder), name="", version=""))
            args["callbacks"].append(ModelCheckpoint(dirpath=str(folder / "checkpoints"),
                                                     save_last=True, save_top_k=0))
        return args

    def _metrics(self, module: Any, trainer: L.Trainer, fitted: Mapping[str, Any],
                 tested: Mapping[str, Any], curve: _ValCurve, seconds: float, epochs: int,
                 start_epoch: int = 0) -> dict[str, float]:
        val_acc = _metric(fitted, "val/acc")
        if val_acc is None:
            raise RuntimeError("the trial logged no validation accuracy ('val/acc'): does the "
                               "trainer validate (check_val_every_n_epoch, limit_val_batches)?")
        epochs_done = int(trainer.current_epoch)
        train_acc = _metric(fitted, "train/acc")
        out: dict[str, Any] = {
            "accuracy": val_acc * self.scale,
            "val_loss": _metric(fitted, "val/loss"),
            "best_accuracy": max(curve.values) * self.scale if curve.values else None,
            "train_loss": _metric(fitted, "train/loss_epoch"),
            "train_accuracy": train_acc * self.scale if train_acc is not None else None,
            "epochs": epochs_done,
            "epochs_trained": epochs_done - start_epoch,
            "resumed_from_epoch": start_epoch,
            "early_stopped": epochs_done < epochs,
            "train_seconds": seconds,
            "trained_params": sum(p.numel() for p in module.net.parameters()),
        }
        predicted = self._prediction()
        if epochs_done >= epochs and math.isfinite(val_acc):
            self.best_fraction = val_acc if self.best_fraction is None else \
                max(self.best_fraction, val_acc)
        if predicted is not None and epochs_done < epochs:
            out["observed_accuracy"] = out["accuracy"]
            # the prediction is in the monitored metric's unit: FixedArchitecture's val/acc
            # is a fraction
            out["accuracy"] = predicted * self.scale
        if self.test:
            test_acc = _metric(tested, "test/acc")
            out["test_accuracy"] = test_acc * self.scale if test_acc is not None else None
            out["test_loss"] = _metric(tested, "test/loss")
        return {k: v for k, v in out.items() if v is not None}

    def __repr__(self) -> str:
        space = self.space.name if self.space is not None else None
        return (f"TrainingEvaluator({type(self.data).__name__}, space={space!r}, "
                f"epochs={self.epochs}, seed={self.seed})")


def _rng_states() -> dict[str, Any]:
    """Python, NumPy and torch CPU RNG states as JSON-able lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "torch": torch.random.get_rng_state().tolist()}


def _set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`_rng_states` saved."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.random.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))


class _ValCurve(Callback):
    """Validation accuracy (fraction) after every validation epoch of one trial (after
    ``earlier``: the values of the run it continues)."""

    def __init__(self, earlier: Any = ()) -> None:
        self.values: list[float] = [float(v) for v in earlier]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = _metric(trainer.callback_metrics, "val/acc")
        if value is not None:
            self.values.append(value)
