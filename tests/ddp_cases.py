"""The suite's DDP runs: one ``torchrun --standalone --nproc_per_node 2`` launch of this file
(``tests/test_ddp.py`` starts it once) trains every case below with Lightning's ``ddp``
strategy on 2 gloo processes and writes each rank's record under ``OUT/<case>/``; the tests
then compare them with single-process runs of the same cases. One launch instead of one
``ddp_spawn`` per case: process start-up and imports dominate these tiny runs.

Equivalence cases (:func:`run`): ENAS, SPOS and DARTS (first and second order) on
NAS-Bench-201, and Once-for-All on a tiny elastic MobileNetV3 space. The data is a fixed
tensor set: under DDP rank r takes images r, r+2, ... (a DistributedSampler without
shuffling, and ``split_batches`` for ENAS's rewards, as the project's data modules shard),
so the two ranks' first batches of B together are the single process's first batch of 2B.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from ofa_helpers import tiny_data, tiny_space
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lightning_nas.data import SyntheticDataModule
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.darts import DartsSearch
from lightning_nas.strategies.enas import ENAS
from lightning_nas.strategies.ofa import OnceForAll, Phase
from lightning_nas.strategies.spos import SPOS

B = 8  # images per rank and step; the single process takes 2B


class FixedData(L.LightningDataModule):
    """Float images in a fixed order; search mode pairs a weights half and an arch half."""

    num_classes, in_channels, image_size = 4, 3, 8

    def __init__(self, batch_size: int, search: bool):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 3, 8, 8, generator=g)
        self.y = torch.randint(0, 4, (64,), generator=g)
        self.batch_size, self.search = batch_size, search
        self.halves = {"weights": slice(0, 32), "arch": slice(32, 64)}

    def _loader(self, part: slice) -> DataLoader:
        data = TensorDataset(self.x[part], self.y[part])
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:  # images r, r + 2, ... of the order
            sampler = DistributedSampler(data, num_replicas=trainer.world_size,
                                         rank=trainer.global_rank, shuffle=False)
        return DataLoader(data, batch_size=self.batch_size, shuffle=False, sampler=sampler)

    def train_dataloader(self):
        if self.search:
            return {k: self._loader(v) for k, v in self.halves.items()}
        return self._loader(self.halves["weights"])

    def val_dataloader(self):
        return self._loader(self.halves["arch"])

    def split_batches(self, split, *, epoch, rank=0, world_size=1, batch_size=None):
        x, y = self.x[self.halves[split]], self.y[self.halves[split]]
        x, y = x[rank::world_size], y[rank::world_size]
        size = batch_size or self.batch_size
        while True:
            for start in range(0, len(y) - size + 1, size):
                yield x[start:start + size], y[start:start + size]

    def transform_batch(self, batch, *, train):
        return batch


class RecordSteps(Callback):
    """Each rank writes the flat gradient of every optimiser step and the sampled paths."""

    def __init__(self, out):
        self.out, self.grads = str(out), []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad.reshape(-1) for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        self.grads.append(torch.cat(grads).tolist())

    def on_train_end(self, trainer, pl_module):
        with open(f"{self.out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump({"grads": self.grads, "sampled": list(getattr(pl_module, "sampled", []))},
                      f)


SPACE = dict(channels=4, cells_per_stage=1, num_classes=4)


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def make(kind: str, batch: int, sync: bool = True) -> tuple[L.LightningModule, FixedData]:
    space = NB201Space(**SPACE)
    common = dict(num_classes=4, in_channels=3, space=space, seed=3, sync_batchnorm=sync)
    if kind in ("darts", "darts2"):
        return (DartsSearch(**common, weight_optimizer=sgd, order=2 if kind == "darts2" else 1),
                FixedData(batch, search=True))
    if kind == "enas":
        return (ENAS(**common, weight_optimizer=sgd, controller_steps=1, controller_aggregate=2,
                     controller_batch_size=batch, eval_samples=1, final_samples=2,
                     entropy_weight=0.01), FixedData(batch, search=True))
    if kind == "ofa":  # epoch 0: the full network; epoch 1: every dimension elastic, with
        # distillation from the full network (teacher in train mode) and sorted channels
        phases = [Phase("full", 1, 0.05, resolutions=[6, 8]),
                  Phase("elastic", 1, 0.05, kernels=[3, 5, 7], depths=[1, 2], expands=[3, 4, 6],
                        resolutions=[6, 8], subnets_per_step=2, sandwich=False)]
        return (OnceForAll(num_classes=4, in_channels=3, space=tiny_space(), phases=phases,
                           weight_optimizer=sgd, dropout=0.5, bn_calibration_batches=1,
                           channels_last=False, sync_batchnorm=sync, seed=3),
                FixedData(batch, search=False))
    return SPOS(**common, weight_optimizer=sgd, eval_paths=2), FixedData(batch, search=False)


def run(kind: str, out: Path, *, devices: int, sync: bool = True, epochs: int = 1
        ) -> list[dict]:
    """Train ``kind`` for ``epochs`` x 2 steps on 1 process (here) or on 2 (``devices=2``:
    inside the ``torchrun`` launch of :func:`main`); returns every rank's record."""
    _barrier()
    out.mkdir(parents=True, exist_ok=True)
    model, data = make(kind, B * (2 // devices), sync)
    trainer = L.Trainer(accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", max_epochs=epochs,
                        limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[RecordSteps(out)],
                        use_distributed_sampler=False)
    trainer.fit(model, data)
    _barrier()
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


#: equivalence case -> (kind, sync_batchnorm, epochs)
EQUIVALENCE = {"spos": ("spos", True, 1), "enas": ("enas", True, 1),
               "darts": ("darts", True, 1), "darts2": ("darts2", True, 1),
               "ofa": ("ofa", True, 2), "spos-per-rank-bn": ("spos", False, 1),
               "ofa-per-rank-bn": ("ofa", False, 1)}


class GatherAlphas(Callback):
    """At the end of training, every rank's alphas and data are gathered to rank 0."""

    def __init__(self, out):
        self.out = str(out)
        self.first_labels = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_labels is None:
            self.first_labels = batch["arch"][1].clone()

    def on_train_end(self, trainer, pl_module):
        alphas = torch.stack([a.detach() for a in pl_module.alphas])  # (2, edges, ops)
        gathered = pl_module.all_gather(alphas)                        # (world, 2, edges, ops)
        labels = pl_module.all_gather(self.first_labels)               # (world, B)
        weight = pl_module.all_gather(pl_module.supernet.classifier.weight.detach())
        if trainer.is_global_zero:
            torch.save({"alphas": gathered, "labels": labels, "classifier": weight}, self.out)


def darts_run_files(out: Path) -> None:
    """DARTS on synthetic data with the run-folder callbacks: alphas gathered to rank 0,
    which alone writes history.jsonl and arch.json into ``out``."""
    model = DartsSearch(num_classes=4, in_channels=3, channels=4, layers=3, seed=0,
                        checkpoint_cells=0, channels_last=False)
    if os.environ.get("RANK", "0") == "0":
        torch.save(torch.stack([a.detach().clone() for a in model.alphas]), out / "init.pt")
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=64,
                               test_size=16, batch_size=8, search=True, seed=0, hflip=True)
    trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=2, max_epochs=2,
                        default_root_dir=out, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[GatherAlphas(out / "gathered.pt")])
    trainer.fit(model, data)


class RecordPerRank(Callback):
    """Each rank writes the subnets it trained, its first labels and a weight checksum."""

    def __init__(self, out_dir):
        self.out_dir = str(out_dir)
        self.first_labels = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_labels is None:
            self.first_labels = batch[1].tolist()

    def on_train_end(self, trainer, pl_module):
        weights = torch.cat([p.detach().reshape(-1) for p in pl_module.supernet.parameters()])
        record = {"sampled": list(pl_module.sampled), "labels": self.first_labels,
                  "weights": weights.tolist()[:4000], "weight_sum": float(weights.double().sum())}
        with open(f"{self.out_dir}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(record, f)


def ofa_phases(out: Path) -> None:
    """OFA through two phases on the synthetic data module (Lightning's distributed
    sampler): each rank records its subnets, first labels and weights."""
    phases = [Phase("full", 1, 0.05, resolutions=[6, 8]),
              Phase("elastic", 2, 0.02, kernels=[3, 5, 7], depths=[1, 2], expands=[3, 4, 6],
                    resolutions=[6, 8], subnets_per_step=2, sandwich=False)]
    model = OnceForAll(num_classes=4, in_channels=3, space=tiny_space(), phases=phases,
                       bn_calibration_batches=1, channels_last=False, seed=0)
    trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=2, max_epochs=3,
                        default_root_dir=out, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, limit_val_batches=1,
                        callbacks=[RecordPerRank(out)])
    trainer.fit(model, tiny_data(train_size=64))


def main(out: Path) -> None:
    """Every case on the 2 processes of this torchrun launch (call on both ranks)."""
    for case, (kind, sync, epochs) in EQUIVALENCE.items():
        run(kind, out / case, devices=2, sync=sync, epochs=epochs)
    for name, case in [("darts-run-files", darts_run_files), ("ofa-phases", ofa_phases)]:
        (out / name).mkdir(parents=True, exist_ok=True)
        _barrier()
        case(out / name)
        _barrier()
    if os.environ.get("RANK", "0") == "0":
        (out / "done").write_text("ok")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
