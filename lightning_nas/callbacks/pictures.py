"""Draw the current architecture (and a differentiable search's alphas) every n epochs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_nas.callbacks.export import run_dir

__all__ = ["ArchPictures"]


class ArchPictures(Callback):
    """After every ``every_n_epochs``-th training epoch, picture the strategy's architecture.

    On global rank 0 it writes, into the run folder (next to ``arch.json``, see
    :func:`~lightning_nas.callbacks.export.run_dir`) or ``dirpath``:

    * the pictures of :func:`lightning_nas.pictures.save_arch_pictures` for
      ``pl_module.current_arch()`` in ``pl_module.space`` (``cell_normal.png`` +
      ``cell_reduce.png``, ``cell.png`` or ``arch.png``; none for other spaces);
    * ``alphas.png`` (:func:`lightning_nas.pictures.alpha_heatmap`) when the module has
      ``arch_summary()`` with ``"alphas"`` (DARTS, PC-DARTS, GDAS). The callback keeps one
      alpha record per epoch (every epoch, also those it draws nothing on) in its
      ``state_dict``, so a resumed run's heatmap still starts at epoch 0.

    To every ``WandbLogger`` of the trainer it logs, through ``logger.log_metrics`` (so with
    the logger's prefix and ``trainer/global_step`` like Lightning's own metrics):
    ``arch/<name>`` (``wandb.Image`` of each picture), ``arch/alphas`` and ``arch/genotype``,
    a ``wandb.Table`` with columns ``epoch``, ``architecture`` (``space.to_string``), one row
    per epoch so far.

    Drawing never stops a run: a failure (matplotlib, a full disk) is warned about once and
    the pictures of that epoch are skipped.

    Args:
        every_n_epochs: draw after epochs n-1, 2n-1, ... (>= 1).
        dirpath: output folder; default the run folder.
    """

    def __init__(self, every_n_epochs: int = 1, dirpath: str | None = None):
        if not isinstance(every_n_epochs, int) or isinstance(every_n_epochs, bool) \
                or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs
        self.dirpath = dirpath
        self.records: list[dict[str, Any]] = []  # {"epoch", "primitives", "alphas"}
        self.genotypes: list[list[Any]] = []  # [epoch, architecture string]
        self._warned = False

    # --- bookkeeping ---------------------------------------------------------------------
    def _remember(self, epoch: int, text: str, summary: dict[str, Any] | None) -> None:
        """Keep this epoch's string and alphas; drop rows of this or later epochs first
        (a resumed run repeats the epochs after its checkpoint)."""
        self.genotypes = [row for row in self.genotypes if row[0] < epoch] + [[epoch, text]]
        if summary and summary.get("alphas"):
            self.records = [r for r in self.records if r["epoch"] < epoch]
            self.records.append({"epoch": epoch, "primitives": list(summary.get("primitives", [])),
                                 "alphas": summary["alphas"]})

    def _warn(self, err: BaseException) -> None:
        if not self._warned:
            warnings.warn(f"ArchPictures: drawing the architecture failed ({type(err).__name__}: "
                          f"{err}); the run goes on without pictures (warned once)",
                          stacklevel=2)
            self._warned = True

    def _draw(self, space: Any, arch: Any, folder: Path) -> dict[str, Path]:
        """Write the pictures; name -> PNG path of those written (empty after a failure)."""
        from lightning_nas.pictures import alpha_heatmap, save_arch_pictures, save_figure

        written: dict[str, Path] = {}
        try:
            for path in save_arch_pictures(space, arch, folder):
                written[path.stem] = path
            if self.records:
                written["alphas"] = save_figure(alpha_heatmap(self.records),
                                                folder / "alphas.png")
        except Exception as err:  # noqa: BLE001 - pictures must never end a training run
            self._warn(err)
        return written

    def _log_wandb(self, trainer: L.Trainer, pictures: dict[str, Path]) -> None:
        from lightning.pytorch.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        import wandb

        epoch = trainer.current_epoch
        payload: dict[str, Any] = {
            f"arch/{name}": wandb.Image(str(path), caption=f"epoch {epoch}")
            for name, path in pictures.items()}
        payload["arch/genotype"] = wandb.Table(columns=["epoch", "architecture"],
                                               data=[list(row) for row in self.genotypes])
        for logger in loggers:
            logger.log_metrics(payload, step=trainer.global_step)

    # --- Lightning hooks -----------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        arch = pl_module.current_arch()
        space = pl_module.space
        summary = pl_module.arch_summary() if hasattr(pl_module, "arch_summary") else None
        epoch = trainer.current_epoch
        self._remember(epoch, space.to_string(arch), summary)
        if (epoch + 1) % self.every_n_epochs:
            return
        # on every rank: trainer.log_dir is a collective under DDP
        folder = Path(self.dirpath) if self.dirpath else run_dir(trainer)
        if not trainer.is_global_zero:
            return
        folder.mkdir(parents=True, exist_ok=True)
        pictures = self._draw(space, arch, folder)
        self._log_wandb(trainer, pictures)

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records, "genotypes": self.genotypes}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))
        self.genotypes = [list(row) for row in state_dict.get("genotypes", [])]
