"""ImageDataModule contract: splits, determinism, resumability, RNG isolation, the batch hook."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    EpochSampler,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    SyntheticDataModule,
    shared_data_dir,
)


def _synthetic(**kw) -> SyntheticDataModule:
    base = dict(num_classes=4, in_channels=3, image_size=8, train_size=64, test_size=24,
                batch_size=8)
    base.update(kw)
    dm = SyntheticDataModule(**base)
    dm.setup("fit")
    return dm


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


# -- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: DigitsDataModule(), (10, 1, 8)),
        (lambda: CIFAR10DataModule(root="/nonexistent"), (10, 3, 32)),
        (lambda: CIFAR100DataModule(root="/nonexistent"), (100, 3, 32)),
        (lambda: MNISTDataModule(root="/nonexistent"), (10, 1, 28)),
        (lambda: SyntheticDataModule(num_classes=5, in_channels=2, image_size=12), (5, 2, 12)),
    ],
)
def test_shape_attributes_exist_before_setup(make, expected):
    dm = make()
    assert isinstance(dm, ImageDataModule)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(batch_size=0), "batch_size"),
        (dict(num_workers=-1), "num_workers"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(search=True, val_fraction=0.2), "val_fraction must be 0 when search"),
        (dict(seed=-1), "seed"),
        (dict(cutout=-2), "cutout"),
        (dict(crop_padding=100), "crop_padding"),
        (dict(mean=(0.5, 0.5)), "mean needs 3"),
        (dict(std=(0.5, 0.0, 0.5)), "std entries"),
        (dict(train_size=1), "train_size"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticDataModule(**kwargs)


def test_loaders_before_setup_raise():
    dm = SyntheticDataModule()
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()


def test_cli_signatures_resolve_base_arguments():
    from jsonargparse import ArgumentParser

    for cls in (DigitsDataModule, CIFAR10DataModule, MNISTDataModule, ImageFolderDataModule,
                SyntheticDataModule):
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "data")
        dests = {a.dest for a in parser._actions}
        assert {"data.batch_size", "data.search", "data.seed", "data.cutout",
                "data.crop_padding", "data.hflip"} <= dests, cls


def test_shared_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_NAS_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv("LIGHTNING_NAS_SHARED_DATA")
    repo_root = Path(__file__).resolve().parents[1]
    assert shared_data_dir() == (repo_root.parent / "shared" / "data").resolve()


# -- splits and loaders ---------------------------------------------------------------------


def test_plain_mode_shapes_dtypes_and_counts():
    dm = _synthetic()
    assert dm.split_sizes() == {"train": 64, "test": 24}
    batches = list(dm.train_dataloader())
    assert len(batches) == 8
    x, y = batches[0]
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.uint8 and y.dtype == torch.int64
    seen = torch.cat([b[1] for b in batches])
    assert len(seen) == 64
    # val_fraction == 0: validation is the test split, in order.
    val = list(dm.val_dataloader())
    assert torch.equal(torch.cat([b[0] for b in val]), dm._test_set.images)


def test_val_fraction_holds_out_a_stratified_part():
    dm = _synthetic(val_fraction=0.25)
    idx = dm.split_indices()
    assert len(idx["val"]) == 16 and len(idx["train"]) == 48
    assert set(idx["train"]).isdisjoint(idx["val"])
    assert sorted([*idx["train"], *idx["val"]]) == list(range(64))
    labels = dm._train_set.labels.numpy()
    per_class = np.bincount(labels[idx["val"]], minlength=4)
    assert per_class.max() - per_class.min() <= 1
    val_x = torch.cat([b[0] for b in dm.val_dataloader()])
    assert torch.equal(val_x, dm._train_set.images[torch.as_tensor(idx["val"])])


def test_search_halves_disjoint_equal_stratified_and_seeded():
    dm = _synthetic(search=True)
    idx = dm.split_indices()
    a, b = idx["weights"], idx["arch"]
    assert len(a) == len(b) == 32
    assert set(a).isdisjoint(b) and sorted([*a, *b]) == list(range(64))
    labels = dm._train_set.labels.numpy()
    count_a, count_b = np.bincount(labels[a], minlength=4), np.bincount(labels[b], minlength=4)
    assert np.abs(count_a - count_b).max() <= 1
    assert np.array_equal(_synthetic(search=True).split_indices()["weights"], a)
    assert not np.array_equal(_synthetic(search=True, seed=1).split_indices()["weights"], a)

    loaders = dm.train_dataloader()
    assert set(loaders) == {"weights", "arch"}
    seen_a = torch.cat([y for _, y in loaders["weights"]])
    assert len(seen_a) == 32
    # Validation in search mode = the architecture half, unshuffled.
    val_x = torch.cat([x for x, _ in dm.val_dataloader()])
    assert torch.equal(val_x, dm._train_set.images[torch.as_tensor(b)])
    test_x = torch.cat([x for x, _ in dm.test_dataloader()])
    assert torch.equal(test_x, dm._test_set.images)


def test_search_with_odd_count_leaves_exactly_one_out():
    dm = _synthetic(search=True, train_size=63)
    idx = dm.split_indices()
    assert len(idx["weights"]) == len(idx["arch"]) == 31
    assert len(set(idx["weights"]) | set(idx["arch"])) == 62


def test_order_is_a_function_of_seed_and_epoch():
    l1 = _synthetic().train_dataloader()
    l2 = _synthetic().train_dataloader()
    e0 = _epoch_batches(l1, 0)
    e1 = _epoch_batches(l1, 1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(e0, _epoch_batches(l2, 0)))
    y0, y1 = torch.cat([b[1] for b in e0]), torch.cat([b[1] for b in e1])
    assert not torch.equal(torch.cat([b[0] for b in e0]), torch.cat([b[0] for b in e1]))
    assert torch.equal(y0.sort().values, y1.sort().values)  # same samples, other order
    # Iterating several epochs and re-reading epoch 1 from a fresh module: same batches.
    _epoch_batches(l1, 2)
    fresh = _synthetic().train_dataloader()
    assert all(torch.equal(a[0], b[0]) for a, b in zip(e1, _epoch_batches(fresh, 1)))
    # Iterating the same epoch twice gives the same order (no hidden state).
    assert all(torch.equal(a[0], b[0]) for a, b in zip(e1, _epoch_batches(l1, 1)))
    other_seed = _synthetic(seed=3).train_dataloader()
    assert not torch.equal(torch.cat([b[1] for b in _epoch_batches(other_seed, 0)]), y0)


def test_epoch_sampler_shards_under_lightnings_ddp_wrapper():
    """Under DDP Lightning wraps our sampler (training: shuffle=True, eval: shuffle=False)."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from lightning.pytorch.utilities.data import _update_dataloader

    def shard(rank: int, epoch: int, shuffle: bool) -> list[int]:
        wrapper = DistributedSamplerWrapper(EpochSampler(range(10), seed=0), num_replicas=2,
                                            rank=rank, shuffle=shuffle)
        wrapper.set_epoch(epoch)  # Lightning's wrapper forwards this to EpochSampler
        return list(wrapper)

    for shuffle in (False, True):
        r0, r1 = shard(0, 0, shuffle), shard(1, 0, shuffle)
        assert set(r0).isdisjoint(r1) and sorted(r0 + r1) == list(range(10))
        assert shard(0, 1, shuffle) != r0 and shard(0, 0, shuffle) == r0
    assert shard(0, 0, False) == EpochSampler(range(10), seed=0).order(0).tolist()[0::2]

    # Lightning re-creates our DataLoader around the wrapper: batches keep their format.
    loader = _synthetic().train_dataloader()
    wrapper = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=1, shuffle=True)
    wrapper.set_epoch(2)
    sharded = _update_dataloader(loader, wrapper)
    assert sharded.generator is loader.generator
    x, y = next(iter(sharded))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 8, 8) and y.dtype == torch.int64
    assert sum(len(b[1]) for b in sharded) == 32


def test_iterating_loaders_and_the_hook_leave_global_rng_untouched():
    dm = _synthetic(search=True, crop_padding=2, hflip=True, cutout=3)
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    batch = {k: next(iter(v)) for k, v in dm.train_dataloader().items()}
    out = dm.on_after_batch_transfer(batch, 0)
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        dm.on_after_batch_transfer(next(iter(loader)), 0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert set(out) == {"weights", "arch"}
    for x, y in out.values():
        assert x.dtype == torch.float32 and x.shape == (8, 3, 8, 8) and y.dtype == torch.int64


def test_workers_yield_the_same_batches():
    dm = _synthetic()
    dm_w = _synthetic(num_workers=1)
    a = _epoch_batches(dm.train_dataloader(), 3)
    b = _epoch_batches(dm_w.train_dataloader(), 3)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))


# -- the batch hook ------------------------------------------------------------------------


def _trainer(epoch=0, step=0, rank=0, training=True):
    return SimpleNamespace(current_epoch=epoch, global_step=step, global_rank=rank,
                           training=training)


def test_eval_transform_is_plain_normalisation():
    dm = _synthetic(crop_padding=2, hflip=True, cutout=4)
    x, y = next(iter(dm.test_dataloader()))
    xo, yo = dm.on_after_batch_transfer((x, y), 0)  # no trainer: a tuple batch is evaluation
    mean = torch.tensor(dm.mean).view(1, -1, 1, 1)
    std = torch.tensor(dm.std).view(1, -1, 1, 1)
    assert torch.allclose(xo.double(), (x.double() / 255 - mean.double()) / std.double(),
                          atol=1e-5)
    assert torch.equal(yo, y)
    dm.trainer = _trainer(training=False)
    assert torch.equal(dm.on_after_batch_transfer((x, y), 0)[0], xo)


def test_computed_stats_normalise_training_images():
    dm = _synthetic(train_size=256)
    x = dm.transform_batch((dm._train_set.images, dm._train_set.labels), train=False)[0]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_training_augmentation_is_seeded_by_trainer_state():
    def run(epoch, step, rank, seed=0, calls=1):
        dm = _synthetic(crop_padding=2, hflip=True, cutout=3, seed=seed)
        dm.trainer = _trainer(epoch, step, rank)
        batch = next(iter(dm.train_dataloader()))
        return [dm.on_after_batch_transfer(batch, 0)[0] for _ in range(calls)], batch

    (a,), batch = run(1, 5, 0)
    (b,), _ = run(1, 5, 0)
    assert torch.equal(a, b)
    for other in (run(2, 5, 0)[0][0], run(1, 6, 0)[0][0], run(1, 5, 1)[0][0]):
        assert not torch.equal(a, other)
    # Two batches in the same step (e.g. no optimiser step in between) still differ.
    first, second = run(1, 5, 0, calls=2)[0]
    assert torch.equal(first, a) and not torch.equal(first, second)
    dm = _synthetic(crop_padding=2, hflip=True, cutout=3, augment=False)
    dm.trainer = _trainer()
    plain = dm.transform_batch(batch, train=False)[0]
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], plain)
    assert not torch.equal(a, plain)


def test_search_halves_get_different_augmentation():
    dm = _synthetic(search=True, crop_padding=2, hflip=True)
    x, y = next(iter(dm.train_dataloader()["weights"]))
    out = dm.on_after_batch_transfer({"weights": (x, y), "arch": (x, y)}, 0)
    assert not torch.equal(out["weights"][0], out["arch"][0])


# -- data sets ------------------------------------------------------------------------------


def test_digits_module():
    dm = DigitsDataModule()
    assert dm.crop_padding == 1 and dm.hflip is False and dm.cutout == 0
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 1438, "test": 359}
    assert dm._train_set.images.dtype == torch.uint8 and int(dm._train_set.images.max()) == 255
    from sklearn.datasets import load_digits

    counts = np.bincount(dm._test_set.labels.numpy(), minlength=10)
    expected = np.bincount(load_digits().target, minlength=10) * 0.2
    assert np.all(np.abs(counts - expected) <= 1)
    # The train/test split does not depend on the run seed.
    other = DigitsDataModule(seed=5)
    other.setup()
    assert torch.equal(other._test_set.images, dm._test_set.images)


def test_synthetic_is_deterministic_and_learnable():
    dm = _synthetic(num_classes=5, train_size=200, test_size=100, image_size=8)
    again = _synthetic(num_classes=5, train_size=200, test_size=100, image_size=8)
    assert torch.equal(dm._train_set.images, again._train_set.images)
    assert np.bincount(dm._train_set.labels.numpy()).tolist() == [40] * 5
    xtr = dm.transform_batch((dm._train_set.images, dm._train_set.labels), train=False)[0]
    xte = dm.transform_batch((dm._test_set.images, dm._test_set.labels), train=False)[0]
    ytr, yte = dm._train_set.labels, dm._test_set.labels
    centroids = torch.stack([xtr[ytr == k].mean(0) for k in range(5)]).flatten(1)
    pred = torch.cdist(xte.flatten(1), centroids).argmin(1)
    assert (pred == yte).float().mean() > 0.8  # chance is 0.2


# -- with a real Trainer: the resume contract -------------------------------------------------


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 8 * 8, 4)
        self.train_seen: list[tuple] = []
        self.val_seen: list[tuple] = []
        self.augmented: list[bool] = []

    def training_step(self, batch, batch_idx):
        (xw, yw), (xa, ya) = batch["weights"], batch["arch"]
        assert xw.dtype == torch.float32 and xw.shape[1:] == (3, 8, 8)
        self.train_seen.append((self.current_epoch, batch_idx, _digest(xw), _digest(yw),
                                _digest(xa), _digest(ya)))
        # Cutout (3x3, all channels) leaves >= 3 exact zeros per image: training is augmented.
        self.augmented.append(bool(((xa == 0).flatten(1).sum(1) >= 3).all()))
        return F.cross_entropy(self.lin(xw.flatten(1)), yw)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_seen.append((self.current_epoch, batch_idx, _digest(x), _digest(y)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(max_epochs: int, root: Path, ckpt: Path | None = None) -> _Recorder:
    model = _Recorder()
    dm = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=64,
                             test_size=16, batch_size=16, search=True, crop_padding=2,
                             hflip=True, cutout=3)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=root)
    trainer.fit(model, dm, ckpt_path=ckpt)
    model.trainer_ref = trainer
    return model


def test_resumed_search_sees_the_same_batches(tmp_path):
    full = _fit(3, tmp_path / "full")
    assert len(full.train_seen) == 3 * 2
    assert all(full.augmented)
    epochs = [[s[2:] for s in full.train_seen if s[0] == e] for e in range(3)]
    assert epochs[0] != epochs[1]  # new order and augmentation every epoch
    val = [[s[2:] for s in full.val_seen if s[0] == e] for e in range(3)]
    assert val[0] == val[1] == val[2]  # validation: same images, no augmentation

    part = _fit(2, tmp_path / "part")
    assert part.train_seen == full.train_seen[:4]
    ckpt = tmp_path / "epoch2.ckpt"
    part.trainer_ref.save_checkpoint(ckpt)
    resumed = _fit(3, tmp_path / "resumed", ckpt=ckpt)
    assert resumed.train_seen == full.train_seen[4:]



def test_pickles_without_its_arrays_and_a_fresh_copy_shares_them():
    """A module sent to another process (a search trial, a spawned DDP rank) leaves its
    loaded images behind and loads them again in setup; a per-fit copy shares them with its
    augmentation counters reset."""
    import pickle

    dm = DigitsDataModule(val_fraction=0.2, seed=3)
    dm.setup("fit")
    dm.augmentation_seed("train")  # counts one augmented training batch
    assert dm._aug_count == {"train": 1}
    blob = pickle.dumps(dm)
    assert len(blob) < 20_000  # the 1,797 8x8 images (115 KB as uint8) stay behind
    clone = pickle.loads(blob)
    assert clone._train_set is None and clone._splits == {} and clone._aug_count == {}
    clone.setup("fit")
    assert torch.equal(clone._train_set.images, dm._train_set.images)
    assert all(np.array_equal(clone._splits[k], v) for k, v in dm._splits.items())

    fresh = dm.fresh_copy()
    assert fresh._train_set is dm._train_set and fresh._splits is dm._splits
    assert fresh._aug_count == {} and fresh._aug_epoch == -1 and dm._aug_count
    shallow = copy.copy(dm)  # a plain copy keeps everything
    assert shallow._train_set is dm._train_set and shallow._aug_count is dm._aug_count
