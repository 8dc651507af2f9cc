"""ENAS, SPOS and DARTS (first and second order) on NAS-Bench-201, and Once-for-All on a tiny
elastic MobileNetV3 space, under DDP (2 gloo processes, ddp_spawn): every rank samples the
same path at every step, and each optimiser step's averaged gradient equals the
single-process step's on the two ranks' batches together (batch-norm statistics over both
ranks' images: GlobalBatchNorm2d, elastic width included; OFA's dropout masks by the image's
place in the global batch: GlobalBatchDropout), not merely equal between ranks.

The data is a fixed tensor set: under DDP rank r takes images r, r+2, ... (a DistributedSampler
without shuffling, and ``split_batches`` for ENAS's rewards, as the project's data modules
shard), so the two ranks' first batches of B together are the single process's first batch
of 2B.
"""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from ofa_helpers import tiny_space
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

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


def sgd(params):  # module level: ddp_spawn pickles the model
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


def run(kind: str, out, *, devices: int, sync: bool = True, epochs: int = 1) -> list[dict]:
    out.mkdir()
    model, data = make(kind, B * (2 // devices), sync)
    trainer = L.Trainer(accelerator="cpu", devices=devices,
                        strategy="ddp_spawn" if devices > 1 else "auto", max_epochs=epochs,
                        limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[RecordSteps(out)],
                        use_distributed_sampler=False)
    trainer.fit(model, data)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]


@pytest.mark.parametrize("kind", ["spos", "enas", "darts", "darts2", "ofa"])
def test_two_rank_step_equals_the_single_process_step_on_both_batches(tmp_path, kind):
    epochs = 2 if kind == "ofa" else 1
    ranks = run(kind, tmp_path / "ddp", devices=2, epochs=epochs)
    (single,) = run(kind, tmp_path / "one", devices=1, epochs=epochs)
    assert ranks[0]["sampled"] == ranks[1]["sampled"] == single["sampled"]  # same paths
    # SPOS/ENAS: 2 weight steps (+ ENAS 1 controller step); DARTS: 2 x (alphas + weights);
    # OFA: 2 epochs x 2 steps
    expected = {"spos": 2, "enas": 3, "darts": 4, "darts2": 4, "ofa": 4}[kind]
    assert len(ranks[0]["grads"]) == len(single["grads"]) == expected
    for g0, g1, g in zip(ranks[0]["grads"], ranks[1]["grads"], single["grads"]):
        assert g0 == g1  # bit-identical on the ranks (one all-reduce)
        torch.testing.assert_close(torch.tensor(g0), torch.tensor(g), rtol=1e-4, atol=1e-6)


def test_per_rank_batchnorm_would_not_be_the_single_process_step(tmp_path):
    """The control: with each rank normalising its own half the gradients differ from the
    single-process ones by far more than the tolerance above (the test above can fail)."""
    ranks = run("spos", tmp_path / "ddp", devices=2, sync=False)
    (single,) = run("spos", tmp_path / "one", devices=1)
    first = torch.tensor(ranks[0]["grads"][0]), torch.tensor(single["grads"][0])
    assert not torch.allclose(*first, rtol=1e-2, atol=1e-4)


def test_ofa_with_per_rank_batchnorm_is_not_the_single_process_step(tmp_path):
    """OFA's control: sync_batchnorm=False (per-rank statistics, OFA's Horovod training)."""
    ranks = run("ofa", tmp_path / "ddp", devices=2, sync=False)
    (single,) = run("ofa", tmp_path / "one", devices=1, sync=False)
    assert ranks[0]["grads"][0] == ranks[1]["grads"][0]  # the ranks still agree
    first = torch.tensor(ranks[0]["grads"][0]), torch.tensor(single["grads"][0])
    assert not torch.allclose(*first, rtol=1e-2, atol=1e-4)


def test_global_batch_dropout_gives_each_image_its_row_of_the_single_process_mask():
    """Rank r of W keeps rows r, r + W, ... of the global mask (DistributedSampler's layout),
    so two ranks' outputs interleaved are the single process's output on the 2B images."""
    from torch import nn

    from lightning_nas.strategies.global_dropout import global_batch_masks, globalise_dropout

    layer = nn.Dropout(0.5)
    assert globalise_dropout(layer) == 1
    x = torch.randn(6, 5) + 3.0  # the single process's batch; rank r holds x[r::2]
    with global_batch_masks([layer], 7, rank=0, world_size=1, device=x.device):
        single = layer(x)
    outputs = []
    for rank in (0, 1):
        with global_batch_masks([layer], 7, rank=rank, world_size=2, device=x.device):
            outputs.append(layer(x[rank::2]))
    assert torch.equal(torch.stack(outputs, 1).reshape(6, 5), single)
    assert 0 < int((single == 0).sum()) < 30  # some units dropped, not all
    torch.manual_seed(0)
    plain = layer(x)  # outside the context: nn.Dropout's own random stream
    assert not torch.equal(plain, single)
    layer.eval()
    with global_batch_masks([layer], 7, rank=0, world_size=1, device=x.device):
        assert torch.equal(layer(x), x)
