"""Multi-trial search with real training: the TrainingEvaluator, hardware hooks, constraints,
MnasNet objectives, Pareto files and one offline W&B run, through the `search` CLI."""

from __future__ import annotations

import functools
import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_nas.cli import main, run
from lightning_nas.data import DigitsDataModule
from lightning_nas.hardware import count_parameters
from lightning_nas.search import RandomSampler, read_journal
from lightning_nas.search.cli import build_parser
from lightning_nas.search.training import TrainingEvaluator
from lightning_nas.spaces.nb201 import NB201Space

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "search" / "digits_random.yaml"
TINY = NB201Space(channels=4, cells_per_stage=1)
GOOD_CELL = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
             "nor_conv_3x3~2|")
HOOK = json.dumps([{"class_path": "lightning_nas.hardware.CostHook",
                    "init_args": {"latency": True, "warmup": 2, "repeats": 5,
                                  "num_threads": 1}}])


def tiny_search_args(run_dir: Path, *extra: str) -> list[str]:
    """The digits training-search config shrunk to seconds: 4-channel cells, 1 short epoch."""
    return ["search", "--config", str(CONFIG), "--run_dir", str(run_dir),
            "--space.init_args.channels", "4", "--evaluator.init_args.epochs", "1",
            "--evaluator.init_args.trainer",
            '{"accelerator": "cpu", "devices": 1, "limit_train_batches": 12}',
            "--metric_hooks", HOOK, "--progress", "false", *extra]


def first_params(n: int, seed: int = 0) -> list[int]:
    """Parameters of the first n candidates the CLI's random sampler proposes (1x8x8, 10 cl.)."""
    sampler = RandomSampler(TINY, seed=seed)
    out = []
    for _ in range(n):
        arch = sampler.ask()
        out.append(count_parameters(TINY.build(arch, num_classes=10, in_channels=1)))
        sampler.tell(arch, None)
    return out


def wandb_run_dirs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_training_search_cli_hardware_pareto_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    params = first_params(6)
    limit = params[0] - 1  # the first candidate is too big; enough of the next ones fit
    assert sum(p <= limit for p in params[1:]) >= 3, params
    run_dir = tmp_path / "search"
    main(tiny_search_args(run_dir, "--budget_trials", "2", "--objective", "mnasnet_soft",
                          "--mnasnet.target_ms", "0.3", "--constraints.max_params", str(limit),
                          "--pareto.every_n_trials", "1"))
    # resume with a larger budget: same journal, same W&B run id
    first_id = json.loads((run_dir / "wandb_run.json").read_text())["id"]
    main(tiny_search_args(run_dir, "--budget_trials", "3", "--objective", "mnasnet_soft",
                          "--mnasnet.target_ms", "0.3", "--constraints.max_params", str(limit),
                          "--pareto.every_n_trials", "1", "--resume", "true"))
    assert json.loads((run_dir / "wandb_run.json").read_text())["id"] == first_id

    records = read_journal(run_dir)
    ok = [r for r in records if r["status"] == "ok"]
    rejected = [r for r in records if r["status"] == "rejected"]
    assert len(ok) == 3 and rejected and rejected[0]["trial"] == 0
    # rejected before training, with the violated limit as the reason
    for r in rejected:
        assert r["stage"] == "pre-evaluation" and r["objective"] is None
        assert "accuracy" not in r["metrics"] and r["timing"]["eval_seconds"] == 0.0
        assert r["metrics"]["params"] > limit
        assert f"params = {r['metrics']['params']:g} > max_params = {limit:g}" in r["error"]
    for r in ok:  # hardware metrics, validation metrics and the objective in every record
        m = r["metrics"]
        assert m["params"] <= limit and m["flops"] > 0 and m["latency_ms"] > 0
        assert m["latency_p90_ms"] >= m["latency_p10_ms"] and "latency_iqr_ms" in m
        assert 0.0 <= m["accuracy"] <= 100.0 and m["epochs"] == 1 and m["train_seconds"] > 0
        assert m["trained_params"] == m["params"]  # the hook measured the trained network
        # MnasNet soft reward by hand (Tan et al. 2019, Eq. 2): ACC * (LAT / T) ** -0.07
        assert math.isclose(r["objective"], m["accuracy"] * (m["latency_ms"] / 0.3) ** -0.07,
                            rel_tol=1e-12)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["objective_name"] == "mnasnet_reward"
    assert summary["constraints"] == {"params": limit}
    assert summary["latency_measurement"]["input_shape"] == [1, 8, 8]
    best = max(ok, key=lambda r: r["objective"])
    assert summary["best"]["arch"] == best["arch"]
    assert json.loads((run_dir / "arch.json").read_text())["space"] == "nb201"

    pareto = json.loads((run_dir / "pareto.json").read_text())
    assert pareto["objectives"] == {"accuracy": "max", "latency_ms": "min"}
    assert pareto["n_candidates"] == 3 and pareto["best"]["arch"] == best["arch"]
    assert (run_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # one offline W&B run (resumed once: two local folders with the same id)
    runs = wandb_run_dirs(run_dir)
    assert len(runs) == 2 and all(d.name.endswith(first_id) for d in runs)
    tables = sorted(runs[-1].glob("files/media/table/pareto/candidates_*.table.json"))
    assert tables, list(runs[-1].rglob("*"))
    table = json.loads(tables[-1].read_text())
    cols = table["columns"]
    for col in ("arch", "accuracy", "latency_ms", "params", "flops", "objective", "on_front"):
        assert col in cols
    rows = {row[cols.index("arch")]: row for row in table["data"]}
    assert set(rows) == {r["arch"] for r in ok}
    row = rows[best["arch"]]
    assert math.isclose(row[cols.index("objective")], best["objective"], rel_tol=1e-9)
    assert row[cols.index("params")] == best["metrics"]["params"]
    assert list(runs[-1].glob("files/media/images/pareto/front_*.png"))
    data = next(runs[-1].glob("*.wandb")).read_bytes()
    assert b"pareto/scatter" in data and b"search/best_arch" in data


def test_impossible_constraint_is_a_clear_error(tmp_path):
    run_dir = tmp_path / "impossible"
    with pytest.raises(RuntimeError, match=r"no candidate satisfies the constraints") as info:
        run(tiny_search_args(run_dir, "--budget_trials", "2", "--constraints.max_params", "10",
                              "--max_rejections", "4", "--wandb", "false"))
    assert "params: limit 10, smallest of 4 rejected candidates" in str(info.value)
    records = read_journal(run_dir)
    assert [r["status"] for r in records] == ["rejected"] * 4
    assert not (run_dir / "pareto.json").exists()


def test_bad_search_settings_are_clear(tmp_path):
    with pytest.raises(SystemExit):  # MnasNet without a target latency
        main(tiny_search_args(tmp_path / "a", "--budget_trials", "1", "--objective",
                              "mnasnet_soft", "--wandb", "false"))
    with pytest.raises(SystemExit):  # a latency constraint without any hook
        main(["search", "--config", str(CONFIG), "--run_dir", str(tmp_path / "b"),
              "--metric_hooks", "[]", "--constraints.max_latency_ms", "1", "--wandb", "false"])


def test_training_evaluator_learns_and_is_deterministic():
    evaluator = TrainingEvaluator(
        DigitsDataModule(batch_size=32, val_fraction=0.2), space=TINY, epochs=3,
        weight_optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    arch = TINY.parse(GOOD_CELL)
    first = evaluator(arch)
    assert first["accuracy"] > 50.0  # 10 classes: chance is 10 %
    assert first["epochs"] == 3 and not first["early_stopped"]
    assert first["best_accuracy"] >= first["accuracy"] and first["val_loss"] < 2.0
    # a process pool gets a pickled copy (without the loaded arrays): same numbers
    blob = pickle.dumps(evaluator)
    assert len(blob) < 20_000
    copy = pickle.loads(blob)
    again = copy(arch)
    drop = ("train_seconds",)
    assert {k: v for k, v in again.items() if k not in drop} == \
        {k: v for k, v in first.items() if k not in drop}


class PredictAfterOneEpoch(Callback):
    """Stands for an early-stopping-by-extrapolation callback: stops after one epoch and
    predicts the final validation accuracy (a fraction, like val/acc)."""

    def __init__(self):
        self.predicted_final = None

    def on_fit_start(self, trainer, pl_module):
        self.predicted_final = None

    def on_validation_end(self, trainer, pl_module):
        trainer.should_stop = True
        self.predicted_final = 0.9


def test_training_evaluator_reports_early_stopping_prediction(tmp_path):
    evaluator = TrainingEvaluator(
        DigitsDataModule(batch_size=32, val_fraction=0.2), space=TINY, epochs=4,
        trainer={"limit_train_batches": 4}, callbacks=[PredictAfterOneEpoch()], test=True,
        save_dir=str(tmp_path))
    arch = TINY.parse(GOOD_CELL)
    out = evaluator(arch)
    assert out["early_stopped"] is True and out["epochs"] == 1
    assert out["accuracy"] == pytest.approx(90.0)  # percent, like the tabular evaluator
    assert 0.0 <= out["observed_accuracy"] <= 100.0 and "test_accuracy" in out
    trial = tmp_path / arch.digest[:16]  # the per-trial folder asked for with save_dir
    assert (trial / "checkpoints" / "last.ckpt").is_file() and (trial / "metrics.csv").is_file()


def test_training_evaluator_checks_its_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        TrainingEvaluator(DigitsDataModule(), space=TINY)
    data = DigitsDataModule(val_fraction=0.2)
    with pytest.raises(ValueError, match="epochs"):
        TrainingEvaluator(data, trainer={"max_epochs": 3})
    with pytest.raises(ValueError, match="model has argument"):
        TrainingEvaluator(data, model={"arch": "x"})
    with pytest.raises(ValueError, match="no space"):
        TrainingEvaluator(data)(TINY.parse(GOOD_CELL))


@pytest.mark.parametrize("name", ["digits_random", "digits_evolution_mnasnet",
                                  "cifar10_evolution"])
def test_search_configs_parse_and_instantiate(name):
    parser = build_parser()
    cfg = parser.parse_args(["--config", str(ROOT / "configs" / "search" / f"{name}.yaml")])
    init = parser.instantiate(cfg)
    assert isinstance(init.evaluator, TrainingEvaluator)
    assert init.metric_hooks and init.metric_hooks[0].latency
    assert cfg.budget_trials and cfg.run_dir


def test_learning_curve_early_stopping_inside_the_evaluator():
    from lightning_nas.callbacks import LearningCurveEarlyStopping
    from lightning_nas.data import SyntheticDataModule

    space = NB201Space(channels=4, cells_per_stage=1)
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=96,
                               test_size=16, batch_size=16, val_fraction=0.25, seed=0)
    # threshold 0.99: stop unless the curve almost surely beats the best completed trial;
    # remember_best=False: the best so far can only come from the evaluator
    stopper = LearningCurveEarlyStopping(min_epochs=3, threshold=0.99, remember_best=False)
    evaluator = TrainingEvaluator(
        data, space=space, epochs=5, callbacks=[stopper],
        weight_optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    good = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|"
                       "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    weak = space.parse("|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|"
                       "+|none~0|none~1|avg_pool_3x3~2|")

    first = evaluator(good)  # nothing to beat yet: runs to the end
    assert first["epochs"] == 5 and first["early_stopped"] is False
    assert "observed_accuracy" not in first
    assert evaluator.best_fraction == pytest.approx(first["accuracy"] / 100)

    second = evaluator(weak)
    assert stopper.best_so_far == pytest.approx(first["accuracy"] / 100)  # fraction units
    assert stopper.stopped and second["early_stopped"] is True
    assert second["epochs"] == stopper.stopped_epoch < 5
    assert second["accuracy"] == pytest.approx(stopper.final_estimate * 100)
    assert 0.0 <= second["observed_accuracy"] <= 100.0
    # a stopped trial's prediction does not become the best so far
    assert evaluator.best_fraction == pytest.approx(first["accuracy"] / 100)
