"""Write the discovered architecture to the run folder every epoch (rank 0 only)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info


def run_dir(trainer: L.Trainer) -> Path:
    """The run folder: the logger's folder when there is one, else ``default_root_dir``.

    Under DDP ``trainer.log_dir`` broadcasts from rank 0, so every rank must call this.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


def default_export(trainer: L.Trainer) -> list[Callback]:
    """A strategy's ``configure_callbacks``: an :class:`ArchExport` unless the trainer has
    one already (a config may add its own with other settings)."""
    if any(isinstance(c, ArchExport) for c in trainer.callbacks):
        return []
    return [ArchExport()]


def _epoch_of(line: str) -> float:
    """The epoch of a history line; a line cut off by a kill (or blank) sorts after all."""
    try:
        return float(json.loads(line)["epoch"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return math.inf


class ArchExport(Callback):
    """After each training epoch, record the strategy's current architecture.

    Appends ``{"epoch", "step", "arch", "string", <monitor>, **strategy extras}`` to
    ``history.jsonl`` and rewrites ``arch.json`` (atomically) when the monitored metric
    improves; without the metric every epoch counts as an improvement. The strategy must
    provide ``current_arch() -> Arch`` and ``space``; it may provide ``arch_summary() ->
    dict`` (e.g. DARTS' softmaxed alphas) for the history.

    Args:
        dirpath: output folder; defaults to the run folder (see :func:`run_dir`).
        monitor: metric in ``trainer.callback_metrics`` that picks the best epoch.
        mode: ``"max"`` or ``"min"``.
    """

    def __init__(self, dirpath: str | None = None, monitor: str = "val/acc", mode: str = "max"):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.dirpath = dirpath
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.last_epoch: int | None = None  # the last epoch written to history.jsonl

    def _improved(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return True
        if self.best is None:
            return True
        return value >= self.best if self.mode == "max" else value <= self.best

    def _folder(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else run_dir(trainer)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A fresh run (not a resume) starts a fresh history; a resumed one keeps the
        records of the epochs its checkpoint holds (a record written after that checkpoint,
        by a run killed before its next one, is written again by the resumed run)."""
        folder = self._folder(trainer)  # on every rank: trainer.log_dir is a collective
        if not trainer.is_global_zero:
            return
        history = folder / "history.jsonl"
        if trainer.ckpt_path is None:
            history.unlink(missing_ok=True)
        elif history.is_file() and self.last_epoch is not None:
            lines = history.read_text().splitlines(keepends=True)
            kept = [line for line in lines if _epoch_of(line) <= self.last_epoch]
            if len(kept) != len(lines):
                history.write_text("".join(kept))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        arch = pl_module.current_arch()
        text = pl_module.space.to_string(arch)
        metric = trainer.callback_metrics.get(self.monitor)
        value = float(metric) if metric is not None else None
        improved = self._improved(value)
        if improved and value is not None and not math.isnan(value):
            self.best = value
        rank_zero_info(f"[epoch {trainer.current_epoch}] {self.monitor}="
                       f"{value if value is None else round(value, 4)} architecture: {text}")
        folder = self._folder(trainer)  # on every rank: trainer.log_dir is a collective
        if not trainer.is_global_zero:
            return
        folder.mkdir(parents=True, exist_ok=True)
        extras: dict[str, Any] = {}
        if hasattr(pl_module, "arch_summary"):
            extras = pl_module.arch_summary()
        record = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                  "wall_time": time.time(),  # s since the epoch (Unix time), for epoch times
                  self.monitor: value, "string": text, **arch.to_dict(), **extras}
        with open(folder / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.last_epoch = trainer.current_epoch
        if improved:
            arch.save(folder / "arch.json", string=text, epoch=trainer.current_epoch,
                      **{self.monitor: value})

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.last_epoch = state_dict.get("last_epoch")
