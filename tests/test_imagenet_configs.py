"""The ImageNet configs (configs/ofa/imagenet.yaml, configs/darts/imagenet.yaml) run a few
steps on a tiny generated JPEG folder in ImageNet's layout, on CPU, with small overrides."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from streaming_helpers import make_image_folder

from lightning_nas.cli import main
from lightning_nas.spaces.base import Arch

ROOT = Path(__file__).resolve().parents[1]
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
       "--trainer.enable_progress_bar", "false", "--trainer.limit_train_batches", "2",
       "--trainer.limit_val_batches", "1"]


def run_args(config: str, run: Path, data: Path) -> list[str]:
    return ["fit", "--config", str(ROOT / config), "--trainer.default_root_dir", str(run),
            "--trainer.logger.init_args.save_dir", str(run), *CPU,
            "--data.init_args.root", str(data), "--data.init_args.pin_memory", "false"]


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), classes=3, per_class=8)


def test_ofa_imagenet_config_runs(tmp_path, imagenet_like):
    """Two one-epoch phases (full network at two resolutions, then elastic kernel with
    distillation) at 32/40 pixels instead of the paper's schedule at 128-224; one worker."""
    phases = json.dumps([
        {"name": "full", "epochs": 1, "lr": 0.05, "resolutions": [32, 40]},
        {"name": "kernel", "epochs": 1, "lr": 0.03, "kernels": [3, 5, 7],
         "resolutions": [32, 40]}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main([*run_args("configs/ofa/imagenet.yaml", tmp_path, imagenet_like),
              "--trainer.max_epochs", "2", "--model.init_args.phases", phases,
              "--model.init_args.space.init_args.resolutions", "[32, 40]",
              "--model.init_args.bn_calibration_batches", "1",
              "--data.init_args.image_size", "40", "--data.init_args.batch_size", "4",
              "--data.init_args.eval_batch_size", "4", "--data.init_args.num_workers", "1"])
    # the data's image size is the largest resolution: nothing is upsampled
    assert not [w for w in caught if "upsampled" in str(w.message)]
    metrics = (tmp_path / "metrics.csv").read_text()
    assert "val/acc_largest" in metrics and "val/acc_smallest" in metrics
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_pc_darts_imagenet_config_runs(tmp_path, imagenet_like):
    """The ImageNet stem (224 -> 28 in the paper; 64 -> 8 here) and the search halves of the
    streamed subset, 2 steps, alphas moving from the first step (no warm-up)."""
    main([*run_args("configs/darts/imagenet.yaml", tmp_path, imagenet_like),
          "--trainer.max_epochs", "1", "--model.init_args.channels", "4",
          "--model.init_args.layers", "3", "--model.init_args.warmup_epochs", "0",
          "--data.init_args.image_size", "64", "--data.init_args.batch_size", "4",
          "--data.init_args.max_per_class_train", "4", "--data.init_args.num_workers", "0"])
    assert Arch.load(tmp_path / "arch.json").space == "darts"
    metrics = (tmp_path / "metrics.csv").read_text()
    assert "arch/val_loss" in metrics and "val/acc" in metrics
