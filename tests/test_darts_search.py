"""DARTS strategy end to end with a real Trainer on tiny synthetic data."""

import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_nas.data import SyntheticDataModule
from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.strategies.darts import DartsSearch


def tiny_data(**kwargs) -> SyntheticDataModule:
    options = dict(num_classes=4, in_channels=3, image_size=8, train_size=64, test_size=16,
                   batch_size=16, search=True, seed=0)
    return SyntheticDataModule(**{**options, **kwargs})


def tiny_search(**kwargs) -> DartsSearch:
    options = dict(num_classes=4, in_channels=3, channels=4, layers=3, seed=0,
                   checkpoint_cells=0, channels_last=False)
    return DartsSearch(**{**options, **kwargs})


def trainer(tmp_path, epochs, **kwargs) -> L.Trainer:
    options = dict(max_epochs=epochs, default_root_dir=tmp_path, logger=False,
                   enable_progress_bar=False, enable_model_summary=False,
                   callbacks=[ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True,
                                              save_top_k=1)])
    return L.Trainer(**{**options, **kwargs})


class StopAfter(Callback):
    """Simulates a killed run: stop cleanly at the end of epoch ``k``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


@pytest.mark.parametrize("order", [1, 2])
def test_search_moves_alphas_and_writes_arch_json(tmp_path, order):
    model = tiny_search(order=order)
    start = [a.detach().clone() for a in model.alphas]
    trainer(tmp_path, 2).fit(model, tiny_data())
    moved = sum((a.detach() - s).abs().sum().item() for a, s in zip(model.alphas, start))
    assert moved > 1e-3
    arch = Arch.load(tmp_path / "arch.json")
    assert arch == model.current_arch()
    DartsSpace().validate(arch)
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    probs = torch.tensor(history[-1]["alphas"]["normal"])
    assert probs.shape == (14, 8)
    torch.testing.assert_close(probs.sum(-1), torch.ones(14))
    assert "val/acc" in history[-1]


def test_warmup_epochs_leave_alphas_untouched(tmp_path):
    model = tiny_search(warmup_epochs=1)
    start = [a.detach().clone() for a in model.alphas]
    trainer(tmp_path, 1).fit(model, tiny_data())
    assert all(torch.equal(a, s) for a, s in zip(model.alphas, start))


def test_search_learns_above_chance(tmp_path):
    model = tiny_search()
    data = tiny_data(train_size=128)
    t = trainer(tmp_path, 4)
    t.fit(model, data)
    assert t.callback_metrics["val/acc"] > 0.5  # 4 classes: chance is 0.25


@pytest.mark.parametrize("order", [1, 2])
def test_resumed_search_equals_uninterrupted_search(tmp_path, order):
    augmented = dict(crop_padding=1, hflip=True)  # augmentation randomness must replay too
    full = tiny_search(order=order)
    trainer(tmp_path / "full", 3).fit(full, tiny_data(**augmented))

    first = tiny_search(order=order)
    trainer(tmp_path / "part", 3, callbacks=[
        StopAfter(0), ModelCheckpoint(dirpath=tmp_path / "part" / "checkpoints", save_last=True,
                                      save_top_k=1)]).fit(first, tiny_data(**augmented))
    assert not torch.equal(first.alpha["normal"], full.alpha["normal"])  # really stopped early
    resumed = tiny_search(order=order)
    trainer(tmp_path / "part", 3).fit(resumed, tiny_data(**augmented),
                                      ckpt_path=tmp_path / "part" / "checkpoints" / "last.ckpt")
    for a, b in zip(resumed.alphas, full.alphas):
        assert torch.equal(a, b)
    assert resumed.current_arch() == full.current_arch()
    for (name, p), q in zip(resumed.supernet.named_parameters(), full.supernet.parameters()):
        assert torch.equal(p, q), name
    history = (tmp_path / "part" / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["epoch"] for h in history] == [0, 1, 2]


def test_nan_loss_stops_with_a_clear_error_and_keeps_earlier_files(tmp_path):
    class PoisonAfterFirstEpoch(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    pl_module.supernet.classifier.weight.fill_(float("nan"))

    model = tiny_search()
    t = trainer(tmp_path, 3, callbacks=[PoisonAfterFirstEpoch(), ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", save_last=True, save_top_k=1)])
    with pytest.raises(FloatingPointError, match=r"non-finite .* at epoch 1, step \d+: lower"):
        t.fit(model, tiny_data())
    arch = Arch.load(tmp_path / "arch.json")  # written after epoch 0, still valid
    DartsSpace().validate(arch)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 0
    assert torch.isfinite(checkpoint["state_dict"]["supernet.classifier.weight"]).all()


def test_unpaired_batches_get_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="search=True"):
        trainer(tmp_path, 1).fit(tiny_search(), tiny_data(search=False))


@pytest.mark.parametrize("kwargs, message", [
    ({"order": 3}, "order must be 1"),
    ({"layers": 2}, "layers must be >= 3"),
    ({"hessian_epsilon": 0}, "hessian_epsilon must be positive"),
])
def test_bad_hyperparameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_search(**kwargs)


def test_same_seed_same_initial_alphas_regardless_of_global_rng():
    torch.manual_seed(123)
    a = tiny_search(seed=7)
    torch.manual_seed(456)
    b = tiny_search(seed=7)
    assert torch.equal(a.alpha["normal"], b.alpha["normal"])
    assert not torch.equal(a.alpha["normal"], tiny_search(seed=8).alpha["normal"])


def test_search_on_a_slice_of_the_real_cifar10_images(tmp_path):
    from lightning_nas.data import ImageFolderDataModule, shared_data_dir

    archive = shared_data_dir() / "cifar10" / "cifar10_jpg.zip"
    if not archive.is_file():
        pytest.skip("needs ../shared/data/cifar10/cifar10_jpg.zip")
    data = ImageFolderDataModule(root=str(archive), max_per_class_train=4, max_per_class_test=2,
                                 batch_size=10, search=True)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    model = tiny_search(num_classes=10, order=2)
    start = [a.detach().clone() for a in model.alphas]
    trainer(tmp_path, 1).fit(model, data)
    assert all(not torch.equal(a, s) for a, s in zip(model.alphas, start))
    DartsSpace().validate(Arch.load(tmp_path / "arch.json"))


def test_darts_on_nb201_resumes_to_the_uninterrupted_search(tmp_path):
    """DARTS through the supernet interface on NAS-Bench-201: one (6, 5) alpha matrix."""
    from lightning_nas.spaces.nb201 import NB201Space

    def model():
        return DartsSearch(num_classes=4, in_channels=3, seed=1,
                           space=NB201Space(channels=4, cells_per_stage=1, num_classes=4))

    full = model()
    assert [tuple(a.shape) for a in full.alphas] == [(6, 5)]
    trainer(tmp_path / "full", 2).fit(full, tiny_data())
    first = model()
    trainer(tmp_path / "part", 2, callbacks=[
        StopAfter(0), ModelCheckpoint(dirpath=tmp_path / "part" / "checkpoints", save_last=True,
                                      save_top_k=1)]).fit(first, tiny_data())
    resumed = model()
    trainer(tmp_path / "part", 2).fit(resumed, tiny_data(),
                                      ckpt_path=tmp_path / "part" / "checkpoints" / "last.ckpt")
    assert torch.equal(resumed.alpha["cell"], full.alpha["cell"])
    assert resumed.current_arch() == full.current_arch()
    assert resumed.current_arch().space == "nb201"
