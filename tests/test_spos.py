"""SPOS: uniform single-path training within cost constraints, resume = uninterrupted, the
evolutionary search over inherited accuracy on the trained supernet, clear errors."""

from __future__ import annotations

import random
import statistics

import lightning as L
import pytest
import torch
from fault_helpers import StopAfterEpoch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_nas.data import DigitsDataModule, SyntheticDataModule
from lightning_nas.hardware import CostHook
from lightning_nas.hardware.objective import Constraints
from lightning_nas.search import RegularizedEvolution, run_search
from lightning_nas.search.supernet_evaluator import SupernetEvaluator
from lightning_nas.spaces.base import Arch, ArchError
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.fixed import FixedArchitecture
from lightning_nas.strategies.spos import SPOS

SPACE = dict(channels=4, cells_per_stage=1, num_classes=4)


def tiny_data(**kw) -> SyntheticDataModule:
    options = dict(num_classes=4, in_channels=3, image_size=8, train_size=80, test_size=16,
                   batch_size=8, seed=0, val_fraction=0.2)
    return SyntheticDataModule(**{**options, **kw})


def tiny_spos(**kw) -> SPOS:
    options = dict(num_classes=4, in_channels=3, space=NB201Space(**SPACE), eval_paths=3, seed=0)
    return SPOS(**{**options, **kw})


def trainer(root, epochs, extra=()) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=epochs, default_root_dir=root,
                     logger=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=1,
                     callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True),
                                *extra])


def test_constrained_training_never_trains_a_path_outside_the_limits(tmp_path):
    space = NB201Space(**SPACE)
    hook = CostHook(latency=False)
    params = sorted(hook.__class__((3, 8, 8))(a, space.build(a))["params"]
                    for a in (space.sample(random.Random(s)) for s in range(40)))
    limit = params[len(params) // 2]  # about half of the cells are over it
    model = tiny_spos(metric_hooks=[hook], constraints=Constraints(max_params=limit))
    trainer(tmp_path, 2).fit(model, tiny_data())
    trained = [space.parse(s) for s in model.sampled]
    assert len(trained) == 2 * 8  # 64 training images / batch 8, 2 epochs
    assert all(model.costs(a)["params"] <= limit for a in trained)
    assert all(model.costs(a)["params"] <= limit for a in model.eval_archs)
    assert model.rejected > 0  # the limit did reject draws
    assert len(set(model.sampled)) > 8  # still many different paths


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    data = dict(crop_padding=1, hflip=True)  # augmentation must replay too
    full = tiny_spos()
    trainer(tmp_path / "full", 3).fit(full, tiny_data(**data))
    part = tiny_spos()
    trainer(tmp_path / "part", 3, [StopAfterEpoch(0)]).fit(part, tiny_data(**data))
    resumed = tiny_spos()
    trainer(tmp_path / "part", 3).fit(resumed, tiny_data(**data),
                                      ckpt_path=tmp_path / "part" / "checkpoints" / "last.ckpt")
    a, b = full.state_dict(), resumed.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert list(resumed.sampled) == list(full.sampled)[-len(resumed.sampled):]
    assert resumed.best_arch == full.best_arch


@pytest.fixture(scope="module")
def digits_supernet(tmp_path_factory):
    """An NB201 supernet trained 6 epochs with SPOS on the real digits (80% of the training
    split; the other 20% is what the search evaluates on)."""
    root = tmp_path_factory.mktemp("spos_digits")
    data = DigitsDataModule(batch_size=64, val_fraction=0.2, seed=0)
    model = SPOS(num_classes=10, in_channels=1, space=NB201Space(channels=8, cells_per_stage=1),
                 weight_optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9,
                                                            nesterov=True),
                 seed=0)
    trainer(root, 6).fit(model, data)
    return root / "checkpoints" / "last.ckpt"


def evaluator(ckpt, **kw) -> SupernetEvaluator:
    data = DigitsDataModule(batch_size=64, val_fraction=0.2, seed=0)
    return SupernetEvaluator(str(ckpt), data, calibration_images=256, batch_size=128,
                             channels_last=False, **kw)


def test_evolution_finds_a_cell_above_the_mean_of_random_cells(digits_supernet, tmp_path):
    space = NB201Space(channels=8, cells_per_stage=1)
    sampler = RegularizedEvolution(space, population_size=10, sample_size=3, seed=0)
    result = run_search(space, sampler, evaluator(digits_supernet, space=space),
                        budget_trials=30, run_dir=tmp_path, progress=False)
    accuracies = [r["metrics"]["accuracy"] for r in result.records]
    random_mean = statistics.fmean(accuracies[:10])  # the initial population is random
    assert result.best["metrics"]["accuracy"] > random_mean + 2.0  # points of accuracy
    assert len(set(accuracies)) > 5  # inherited accuracies do rank the cells


def test_inherited_subnet_exports_and_fine_tunes(digits_supernet, tmp_path):
    space = NB201Space(channels=8, cells_per_stage=1)
    ev = evaluator(digits_supernet, space=space)
    arch = space.sample(random.Random(4))
    paths = ev.export(arch, tmp_path / "subnet")
    fixed = FixedArchitecture(arch=str(paths["arch"]), space=space, num_classes=10,
                              in_channels=1, init_from=str(paths["weights"]))
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(fixed.eval()(x), ev.subnet(arch)(x))


def test_search_refuses_archs_and_spaces_of_another_supernet(digits_supernet, tmp_path):
    ev = evaluator(digits_supernet)
    darts_arch = Arch.load(DartsSpace.presets["DARTS_V2"].save(tmp_path / "arch.json"))
    with pytest.raises(ArchError, match="belongs to the 'darts' space, but the supernet .* "
                                        "searches 'nb201'"):
        ev(darts_arch)
    with pytest.raises(ValueError, match="cells_per_stage: search 5, checkpoint 1"):
        evaluator(digits_supernet, space=NB201Space(channels=8)).prepare()
    with pytest.raises(ValueError, match="search space is 'darts' but the supernet .* 'nb201'"):
        evaluator(digits_supernet, space=DartsSpace()).prepare()


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="need metrics: add a metric hook"):
        tiny_spos(constraints=Constraints(max_flops=1e6))
    impossible = tiny_spos(metric_hooks=[CostHook(latency=False)],
                           constraints=Constraints(max_params=10), max_draws=5)
    with pytest.raises(RuntimeError, match="5 paths in a row broke the constraints"):
        trainer(tmp_path, 1).fit(impossible, tiny_data())
    with pytest.raises(TypeError, match="SPOS trains on plain .* search=False"):
        trainer(tmp_path / "b", 1).fit(tiny_spos(), tiny_data(search=True, val_fraction=0.0))
