"""A crafted pickle (``__reduce__`` -> ``os.system``) passed to every path that loads a user's
file runs nothing and ends in a clear error.

The positive control shows the file really is malicious: plain ``torch.load`` with
``weights_only=False`` (what ``export`` and ``init_from`` used before) creates the marker.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import pytest
import torch

from lightning_nas.checkpoints import UnsafeCheckpointError, load_checkpoint
from lightning_nas.cli import main, run
from lightning_nas.data import read_cifar_archive
from lightning_nas.search.journal import Journal
from lightning_nas.spaces.darts import DartsSpace

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    """A checkpoint-shaped file whose unpickling would create ``marker``."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "epoch": Payload(marker), "lightning_nas": {
        "strategy": "lightning_nas.strategies.fixed.FixedArchitecture",
        "arch": DartsSpace.presets["DARTS_V2"].to_dict()}}, path)
    return path, marker


def test_positive_control_the_file_runs_code_when_unpickled_unsafely(crafted):
    path, marker = crafted
    torch.load(path, weights_only=False)
    assert marker.exists()


def _train_args(tmp_path: Path) -> list[str]:
    run_dir = str(tmp_path / "run")
    return ["--config", str(ROOT / "configs/train/digits.yaml"), "--trainer.default_root_dir",
            run_dir, "--trainer.logger.init_args.save_dir", run_dir,
            "--trainer.enable_progress_bar", "false", "--model.arch", "DARTS_V2",
            "--model.init_args.space.init_args.channels", "4",
            "--model.init_args.space.init_args.layers", "3", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]


PATHS = {
    "export --ckpt": lambda p, t: ["export", "--ckpt", str(p)],
    "export --subnet": lambda p, t: ["export", "--ckpt", str(p), "--subnet", "largest"],
    "fit --ckpt_path": lambda p, t: ["fit", *_train_args(t), "--ckpt_path", str(p)],
    "test --ckpt_path": lambda p, t: ["test", *_train_args(t), "--ckpt_path", str(p)],
    "validate --ckpt_path": lambda p, t: ["validate", *_train_args(t), "--ckpt_path", str(p)],
    "fit --model.init_from": lambda p, t: ["fit", *_train_args(t), "--model.init_args.init_from",
                                           str(p)],
    "search: supernet checkpoint": lambda p, t: [
        "search", "--space", "lightning_nas.spaces.mobilenet.MobileNetV3CifarSpace",
        "--sampler", "lightning_nas.search.samplers.RandomSampler",
        "--evaluator", "lightning_nas.search.supernet_evaluator.SupernetEvaluator",
        "--evaluator.checkpoint", str(p), "--evaluator.data",
        "lightning_nas.data.SyntheticDataModule", "--evaluator.data.val_fraction", "0.2",
        "--run_dir", str(t / "search"), "--budget_trials", "1", "--progress", "false"],
}


@pytest.mark.parametrize("where", list(PATHS))
def test_crafted_checkpoint_runs_nothing_on_any_cli_path(crafted, tmp_path, where, capsys):
    path, marker = crafted
    with pytest.raises(SystemExit) as exit_:
        main(PATHS[where](path, tmp_path))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "refusing to load checkpoint" in err and "posix.system" in err, err[-2000:]
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):  # the error type for Python callers
        run(PATHS[where](path, tmp_path))
    assert not marker.exists()


def test_crafted_search_state_runs_nothing(tmp_path):
    marker = tmp_path / "MARKER"
    journal = Journal(tmp_path)
    torch.save({"version": 1, "sampler": Payload(marker)}, journal.state_path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load search state .*replayed "
                                                    "from its journal"):
        journal.load_state()
    assert not marker.exists()


def test_load_checkpoint_and_the_cifar_reader_refuse_crafted_pickles(crafted, tmp_path):
    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError, match="nothing in the file was run"):
        load_checkpoint(path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = pickle.dumps(Payload(marker), protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(pickle.UnpicklingError, match="posix.system.*not the official"):
        read_cifar_archive(archive, {"test": ["test_batch"]}, b"labels")
    assert not marker.exists()
