"""Every one-shot config of ENAS, SPOS, DARTS, PC-DARTS and GDAS on NAS-Bench-201 / the DARTS
space runs a few steps through `lightning-nas fit` (tiny supernets; CIFAR-10 configs on
synthetic 32x32 images, since the archive cannot be downloaded here), and the SPOS search
configs run a few candidates on a checkpoint the digits config wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_nas.cli import main
from lightning_nas.spaces.base import Arch

ROOT = Path(__file__).resolve().parents[1]
FIT_CONFIGS = ["configs/darts/nb201_digits.yaml", "configs/darts/nb201_cifar10.yaml",
               "configs/enas/nb201_digits.yaml", "configs/enas/nb201_cifar10.yaml",
               "configs/enas/darts_digits.yaml", "configs/enas/darts_cifar10.yaml",
               "configs/spos/nb201_digits.yaml", "configs/spos/nb201_cifar10.yaml",
               "configs/spos/darts_digits.yaml", "configs/spos/darts_cifar10.yaml",
               "configs/pc_darts/nb201_digits.yaml",
               "configs/pc_darts/nb201_cifar10.yaml", "configs/pc_darts/darts_digits.yaml",
               "configs/pc_darts/darts_cifar10.yaml", "configs/gdas/nb201_digits.yaml",
               "configs/gdas/nb201_cifar10.yaml", "configs/gdas/darts_digits.yaml",
               "configs/gdas/darts_cifar10.yaml"]


def fit_args(config: str, run: Path) -> list[str]:
    text = (ROOT / config).read_text()
    args = ["fit", "--config", str(ROOT / config), "--trainer.default_root_dir", str(run),
            "--trainer.logger.init_args.save_dir", str(run), "--trainer.enable_progress_bar",
            "false", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1"]
    channels = "8" if "partial_channels: 4" in text else "4"  # K must divide the channels
    if "NB201Space" in text:
        args += ["--model.init_args.space.init_args.channels", channels,
                 "--model.init_args.space.init_args.cells_per_stage", "1"]
    else:
        args += ["--model.init_args.channels", channels, "--model.init_args.layers", "3"]
    if "strategies.enas.ENAS" in text:
        args += ["--model.init_args.controller_steps", "1", "--model.init_args.controller_aggregate",
                 "2", "--model.init_args.eval_samples", "1", "--model.init_args.final_samples",
                 "2"]
    if "CIFAR10DataModule" in text:
        args += ["--data", "lightning_nas.data.SyntheticDataModule", "--data.image_size", "32",
                 "--data.train_size", "64", "--data.batch_size", "8"]
    return args


@pytest.mark.parametrize("config", FIT_CONFIGS)
def test_one_shot_config_runs_a_few_steps(config, tmp_path):
    main(fit_args(config, tmp_path))
    arch = Arch.load(tmp_path / "arch.json")
    assert arch.space == ("nb201" if "nb201" in config else "darts")
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "metrics.csv").is_file()


@pytest.mark.parametrize("config", ["configs/search/spos_nb201_digits.yaml",
                                    "configs/search/spos_nb201_cifar10.yaml"])
def test_spos_search_config_runs_on_a_trained_supernet(config, tmp_path):
    run = tmp_path / "spos"
    main(fit_args("configs/spos/nb201_digits.yaml", run))
    args = ["search", "--config", str(ROOT / config), "--run_dir", str(tmp_path / "search"),
            "--space.init_args.channels", "4", "--space.init_args.cells_per_stage", "1",
            "--evaluator.init_args.checkpoint", str(run / "checkpoints" / "last.ckpt"),
            "--evaluator.init_args.calibration_images", "64", "--budget_trials", "4",
            "--sampler.init_args.population_size", "2", "--sampler.init_args.sample_size", "2",
            "--progress", "false"]
    if "cifar10" in config:  # the digits supernet: its data, all held-out images
        args += ["--evaluator.init_args.data", "lightning_nas.data.DigitsDataModule",
                 "--evaluator.init_args.data.val_fraction", "0.2",
                 "--evaluator.init_args.max_eval_images", "null"]
    main(args)
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["counts"]["ok"] == 4
    assert Arch.load(tmp_path / "search" / "arch.json").space == "nb201"
