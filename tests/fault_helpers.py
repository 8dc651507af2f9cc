"""Faults for the kill -9 tests: Lightning callbacks that SIGKILL their own process at a
chosen point, the way a crash, an out-of-memory kill or a pre-empted node ends a run.

Imported by class path (``fault_helpers.KillAt``) from a subprocess whose ``PYTHONPATH``
holds ``tests/``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from lightning_nas.search.evaluators import Evaluator


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as the OOM killer does


class KillAt(Callback):
    """SIGKILL after training batch ``batch`` of epoch ``epoch`` (nothing is flushed)."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            _kill()


class KillInFit(Callback):
    """SIGKILL in the middle of the ``fit``-th training run of this process tree (e.g. the
    third trial of a search), once: ``marker`` records that it happened, so the resumed run
    is left alone. ``counter`` counts the fits."""

    def __init__(self, fit: int, counter: str, marker: str):
        self.fit, self.counter, self.marker = fit, Path(counter), Path(marker)

    def on_fit_start(self, trainer, pl_module) -> None:
        with self.counter.open("a") as f:
            f.write("fit\n")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        fits = len(self.counter.read_text().splitlines())
        if fits == self.fit and batch_idx == 1 and not self.marker.exists():
            self.marker.write_text("killed\n")
            _kill()


class InterruptingEvaluator(Evaluator):
    """A tabular-style evaluator that scores a cell by its number of convolutions and
    raises ``KeyboardInterrupt`` (what Ctrl-C raises) at call ``interrupt_at``."""

    primary_metric = "accuracy"

    def __init__(self, interrupt_at: int = 3):
        self.interrupt_at = interrupt_at
        self.calls = 0

    def __call__(self, arch) -> dict[str, float]:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return {"accuracy": float(sum("conv" in str(op) for op in arch.values()))}


class StopAfterEpoch(Callback):
    """Stop the run cleanly after epoch ``epoch`` (the schedule still spans max_epochs)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.epoch:
            trainer.should_stop = True
