"""Keep a run folder's earlier files when a run is resumed or tested.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its writer starts in a folder that
already has one, so resuming ``fit`` from ``last.ckpt`` (or running ``test`` in the training
run's folder) would lose every row logged before. :func:`keep_csv_rows` gives such loggers a
writer that keeps the earlier rows instead: all of them (``test``/``validate``), or those of
the epochs the checkpoint holds (a resumed ``fit``; rows of a later, unfinished epoch are
logged again by the resumed run), so a resumed run's ``metrics.csv`` equals an uninterrupted
run's.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class KeptRowsWriter(ExperimentWriter):
    """A CSV experiment writer that starts from the rows already in ``metrics.csv``.

    Args:
        log_dir: the logger's folder.
        up_to_epoch: keep the rows whose ``epoch`` is at most this (rows without an epoch
            are kept); ``None`` keeps every row.
    """

    def __init__(self, log_dir: str, up_to_epoch: int | None = None):
        self.up_to_epoch = up_to_epoch
        self.kept_rows = 0
        self.dropped_rows = 0
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        """Instead of deleting ``metrics.csv``: rewrite it with the rows to keep."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            rows = list(reader)
        kept = [r for r in rows if self._keep(r)]
        self.kept_rows, self.dropped_rows = len(kept), len(rows) - len(kept)
        self.metrics_keys = sorted(header)
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)

    def _keep(self, row: dict[str, Any]) -> bool:
        if self.up_to_epoch is None or not row.get("epoch"):
            return True
        return int(float(row["epoch"])) <= self.up_to_epoch


def keep_csv_rows(loggers: Iterable[Any], up_to_epoch: int | None = None) -> list[KeptRowsWriter]:
    """Give every ``CSVLogger`` of ``loggers`` whose writer has not started a
    :class:`KeptRowsWriter` (call before the trainer runs); returns the writers."""
    writers: list[KeptRowsWriter] = []
    if rank_zero_only.rank != 0:  # only rank 0 writes the logs (and rewrites them here)
        return writers
    for logger in loggers:
        if not isinstance(logger, CSVLogger) or logger._experiment is not None:
            continue
        os.makedirs(logger.log_dir, exist_ok=True)
        writer = KeptRowsWriter(logger.log_dir, up_to_epoch)
        logger._experiment = writer  # the logger creates its writer lazily: take its place
        writers.append(writer)
    return writers
