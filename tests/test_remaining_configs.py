"""The configs no other test runs, a few steps each: DARTS on a CIFAR-10 subset, fine-tuning
an OFA subnet, and the MnasNet-objective evolution on digits (tiny settings; CIFAR-10 configs
on synthetic 32x32 images, since the archive may be absent)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lightning_nas.cli import main
from lightning_nas.search import read_journal
from lightning_nas.search.cli import main_search
from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.mobilenet import MobileNetV3Space

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_CIFAR = ["--data", "lightning_nas.data.SyntheticDataModule", "--data.image_size", "32",
                   "--data.train_size", "64", "--data.test_size", "16", "--data.batch_size",
                   "8"]


def fit_args(config: str, run: Path) -> list[str]:
    return ["fit", "--config", str(ROOT / config), "--trainer.default_root_dir", str(run),
            "--trainer.logger.init_args.save_dir", str(run), "--trainer.enable_progress_bar",
            "false", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1"]


def test_darts_cifar10_subset_config_runs(tmp_path):
    main([*fit_args("configs/darts/cifar10_subset.yaml", tmp_path), *SYNTHETIC_CIFAR,
          "--data.search", "true", "--model.init_args.channels", "4",
          "--model.init_args.layers", "3"])
    assert Arch.load(tmp_path / "arch.json").space == "darts"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_ofa_subnet_training_config_runs(tmp_path):
    space = MobileNetV3Space.cifar()
    arch = tmp_path / "subnet.json"
    arch.write_text(json.dumps(space.smallest().to_dict()))
    main([*fit_args("configs/train/cifar10_ofa_subnet.yaml", tmp_path / "run"),
          *SYNTHETIC_CIFAR, "--model.init_args.arch", str(arch)])
    metrics = (tmp_path / "run" / "metrics.csv").read_text()
    assert "train/loss" in metrics and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_digits_evolution_mnasnet_config_runs(tmp_path, monkeypatch):
    """The config's latency hook on a fake clock of 1 ns per FLOP (these networks: 0.24-0.93
    ms), so which samples the 0.4 ms limit rejects does not depend on the machine's load."""
    import itertools

    import lightning_nas.hardware.costs as costs
    from lightning_nas.hardware.latency import measure_latency
    from lightning_nas.hardware.metrics import count_flops

    def flop_clock_latency(model, input_shape, *, batch_size=1, **kwargs):
        ticks = itertools.count(0, count_flops(model, input_shape, batch_size=batch_size).flops)
        return measure_latency(model, input_shape, batch_size=batch_size,
                               clock=lambda: next(ticks), **kwargs)

    monkeypatch.setattr(costs, "measure_latency", flop_clock_latency)
    summary = main_search(["--config", str(ROOT / "configs/search/digits_evolution_mnasnet.yaml"),
                           "--run_dir", str(tmp_path), "--budget_trials", "2", "--progress",
                           "false", "--evaluator.init_args.epochs", "1", "--wandb.enabled",
                           "false"])
    # 2 trained; the latency limit (0.4 ms) rejects other samples before any training
    assert summary["counts"]["ok"] == 2 and summary["counts"]["failed"] == 0
    ok = [r for r in read_journal(tmp_path) if r["status"] == "ok"]
    assert len(ok) == 2 and all(r["metrics"]["latency_ms"] <= 0.4 for r in ok)
    for r in ok:  # the fake clock: 1 ns per FLOP of a batch of 1
        assert abs(r["metrics"]["latency_ms"] - r["metrics"]["flops"] / 1e6) < 1e-9
    rejected = [r for r in read_journal(tmp_path) if r["status"] == "rejected"]
    assert rejected and all(r["metrics"]["latency_ms"] > 0.4 for r in rejected)


def test_ofa_cifar10_subset_config_runs(tmp_path):
    """Two one-epoch phases (full, then elastic kernels with distillation from the full net)
    instead of the config's 6/3/3/3."""
    phases = json.dumps([{"name": "full", "epochs": 1, "lr": 0.1},
                         {"name": "kernel", "epochs": 1, "lr": 0.03, "kernels": [3, 5, 7]}])
    main([*fit_args("configs/ofa/cifar10_subset.yaml", tmp_path), *SYNTHETIC_CIFAR,
          "--trainer.max_epochs", "2", "--model.init_args.phases", phases,
          "--model.init_args.bn_calibration_batches", "1"])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    metrics = (tmp_path / "metrics.csv").read_text()
    assert "val/acc_largest" in metrics and "val/acc_smallest" in metrics


def test_cifar10_evolution_config_runs_on_cpu(tmp_path):
    """The GPU config with CPU settings: synthetic images, a tiny NB201 network, CPU latency."""
    hooks = json.dumps([{"class_path": "lightning_nas.hardware.CostHook",
                         "init_args": {"latency": True, "device": "cpu", "batch_size": 1,
                                       "warmup": 1, "repeats": 3, "num_threads": 1}}])
    summary = main_search([
        "--config", str(ROOT / "configs/search/cifar10_evolution.yaml"), "--run_dir",
        str(tmp_path), "--budget_trials", "2", "--progress", "false", "--wandb.enabled",
        "false", "--space.init_args.channels", "4", "--space.init_args.cells_per_stage", "1",
        "--evaluator.init_args.data", "lightning_nas.data.SyntheticDataModule",
        "--evaluator.init_args.data.image_size", "32", "--evaluator.init_args.data.train_size",
        "64", "--evaluator.init_args.data.test_size", "16", "--evaluator.init_args.data.batch_size",
        "16", "--evaluator.init_args.epochs", "1",
        "--evaluator.init_args.trainer", json.dumps({"accelerator": "cpu", "devices": 1}),
        "--metric_hooks", hooks, "--constraints.max_latency_ms", "1000"])
    assert summary["counts"]["ok"] == 2 and summary["counts"]["failed"] == 0
    ok = [r for r in read_journal(tmp_path) if r["status"] == "ok"]
    # the config's test: true and the CPU latency hook both report per trial
    assert all(r["metrics"]["latency_ms"] > 0 and 0 <= r["metrics"]["test_accuracy"] <= 100
               for r in ok)


def test_cifar10_training_config_runs_on_a_miniature_archive(tmp_path):
    """The paper's evaluation config (cutout, drop-path, auxiliary tower) on a CIFAR-10
    archive in the official format with 3 images per batch file, DARTS_V2 at 4 channels."""
    from test_data_cifar import make_cifar_archive

    from lightning_nas.data import CIFAR10DataModule

    (tmp_path / "data").mkdir()
    make_cifar_archive(tmp_path / "data" / CIFAR10DataModule.filename, per_batch=8)
    main([*fit_args("configs/train/cifar10.yaml", tmp_path / "run"), "--data.init_args.root",
          str(tmp_path / "data"), "--data.init_args.batch_size", "8",
          "--model.init_args.space.init_args.channels", "4",
          "--model.init_args.space.init_args.layers", "3"])
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "val/acc" in header


# configs run by a test that expands a glob instead of naming them
GLOBBED = {"configs/search/nb201_*.yaml": "test_search_evaluators.py"}


def test_every_config_and_callback_fragment_is_named_by_a_test():
    """Each YAML of configs/ and callbacks/ is run by some test (named literally, or by a
    glob a test expands); a new config without a test fails here."""
    tests = {p.name: p.read_text() for p in (ROOT / "tests").glob("test_*.py")}
    text = "\n".join(tests.values())
    named = set(re.findall(r"(?:configs|callbacks)/[\w/]+\.yaml", text))
    named |= {f"configs/{d}/{f}" for d, f in re.findall(
        r'"configs" / "(\w+)" / "(\w+\.yaml)"', text)}
    for pattern, test in GLOBBED.items():
        assert pattern.split("/", 2)[2] in tests[test], (pattern, test)
        named |= {p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern)}
    fragments = {f"callbacks/{name}" for name in re.findall(
        r'"(\w+\.yaml)"', tests["test_callback_fragments.py"])}
    named |= fragments
    shipped = {p.relative_to(ROOT).as_posix() for folder in ("configs", "callbacks")
               for p in (ROOT / folder).rglob("*.yaml")}
    assert shipped - named == set()


def test_ofa_specialisation_configs_run_on_a_one_epoch_supernet(tmp_path):
    """The specialisation configs (inherited accuracy, seeded with projected presets or not:
    configs/search/ofa_cifar10_specialise_seeded.yaml; OFA's accuracy predictor over it) on a
    supernet trained one epoch by configs/ofa/cifar10_subset.yaml, on synthetic 32x32 images,
    with a measured CPU latency hook in place of the table (building the full table takes
    minutes) and one loose budget."""
    phases = json.dumps([{"name": "full", "epochs": 1, "lr": 0.1}])
    main([*fit_args("configs/ofa/cifar10_subset.yaml", tmp_path / "ofa"), *SYNTHETIC_CIFAR,
          "--model.init_args.phases", phases, "--model.init_args.bn_calibration_batches", "1"])
    ckpt = tmp_path / "ofa" / "checkpoints" / "last.ckpt"
    hooks = json.dumps([{"class_path": "lightning_nas.hardware.CostHook",
                         "init_args": {"latency": True, "device": "cpu", "batch_size": 1,
                                       "warmup": 1, "repeats": 2, "num_threads": 1}}])
    data = json.dumps({"class_path": "lightning_nas.data.SyntheticDataModule",
                       "init_args": {"image_size": 32, "train_size": 32, "test_size": 16,
                                     "batch_size": 16, "val_fraction": 0.25}})
    for name, prefix, extra in (
            ("ofa_cifar10_specialise.yaml", "--evaluator.init_args.", []),
            ("ofa_cifar10_specialise_seeded.yaml", "--evaluator.init_args.", []),
            ("ofa_cifar10_specialise_predictor.yaml", "--evaluator.init_args.evaluator.init_args.",
             ["--evaluator.init_args.train_archs", "6", "--evaluator.init_args.data_file",
              str(tmp_path / "predictor.jsonl"), "--evaluator.init_args.predictor.init_args.epochs",
              "5"])):
        run_dir = tmp_path / name
        summary = main_search([
            "--config", str(ROOT / "configs/search" / name), "--run_dir", str(run_dir),
            "--budget_trials", "2", "--budgets", "[1000.0]", "--progress", "false",
            "--wandb.enabled", "false", "--metric_hooks", hooks,
            f"{prefix}checkpoint", str(ckpt), f"{prefix}data", data,
            f"{prefix}calibration_images", "16", f"{prefix}batch_size", "16", *extra])
        assert (run_dir / "budgets.json").is_file(), name
        assert summary, name
        if "seeded" in name:  # presets projected to subnets seed the search, and are drawn
            assert set(summary["seed_projections"]["seeds"]) == {
                "MobileNetV3-Large", "MnasNet-A1", "EfficientNet-B0", "ProxylessNAS-Mobile"}
            assert (run_dir / "seed_projections.json").is_file()
            refs = json.loads((run_dir / "pareto.json").read_text())["references"]
            assert [r["name"] for r in refs] == ["MobileNetV3-Small", "EfficientNet-B0"]
