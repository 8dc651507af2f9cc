"""kill -9 in the middle of `lightning-nas fit` and of `lightning-nas search` (training
evaluator), then resume: the finished run folder equals an uninterrupted run's (metrics.csv
rows, history.jsonl, arch.json, the search journal), apart from timing fields.

The runs are real subprocesses of the CLI; the kill comes from a callback
(``fault_helpers``) at a fixed training batch, so nothing depends on timing.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_search_loop import SPACE, SyntheticEvaluator, _few_convs, sampler_of

from lightning_nas.search import run_search
from lightning_nas.search.journal import read_journal, without_timing

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "lightning_nas.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def fit_args(run: Path) -> list[str]:
    return ["fit", "--config", str(ROOT / "configs/quickstart.yaml"),
            "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir",
            str(run), "--trainer.logger.init_args.flush_logs_every_n_steps", "1",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3",
            "--trainer.limit_val_batches", "1", "--model.init_args.channels", "4",
            "--model.init_args.layers", "3", "--model.init_args.warmup_epochs", "1"]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def history(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"}
            for line in path.read_text().splitlines()]


def test_fit_killed_mid_epoch_then_resumed_equals_an_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    cli(*fit_args(whole))
    killed = cli(*fit_args(broken), "--trainer.callbacks+=fault_helpers.KillAt",
                 "--trainer.callbacks.epoch=1", "--trainer.callbacks.batch=1", check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = csv_rows(broken / "metrics.csv")
    assert any(r.get("epoch") == "1" for r in before)  # rows of the unfinished epoch exist
    config = (broken / "config.yaml").read_text()

    cli(*fit_args(broken), "--ckpt_path", str(broken / "checkpoints/last.ckpt"))

    assert csv_rows(broken / "metrics.csv") == csv_rows(whole / "metrics.csv")
    assert history(broken / "history.jsonl") == history(whole / "history.jsonl")
    assert len(history(whole / "history.jsonl")) == 2
    assert json.loads((broken / "arch.json").read_text()) == \
        json.loads((whole / "arch.json").read_text())
    assert (broken / "config.yaml").read_text() == config  # the resume wrote its own copy
    assert "ckpt_path" in (broken / "config.resume.yaml").read_text()


def search_args(run: Path) -> list[str]:
    return ["search", "--config", str(ROOT / "configs/search/digits_random.yaml"),
            "--run_dir", str(run), "--budget_trials", "4", "--metric_hooks", "[]",
            "--pareto.enabled", "false", "--wandb", "false", "--progress", "false",
            "--evaluator.init_args.epochs", "2",
            "--evaluator.init_args.trainer", '{"accelerator": "cpu", "devices": 1, '
            '"limit_train_batches": 4, "limit_val_batches": 2}']


def journal_without_timing(run: Path) -> list[dict]:
    records = without_timing(read_journal(run))
    for r in records:  # seconds of training are timing too
        r["metrics"] = {k: v for k, v in r["metrics"].items() if not k.endswith("_seconds")}
    return records


def best_arch(run: Path) -> dict:
    saved = json.loads((run / "arch.json").read_text())
    saved["metrics"] = {k: v for k, v in saved["metrics"].items() if not k.endswith("_seconds")}
    return saved


def test_search_killed_mid_trial_then_resumed_equals_an_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    cli(*search_args(whole))
    kill = ["--evaluator.init_args.callbacks", json.dumps([{
        "class_path": "fault_helpers.KillInFit",
        "init_args": {"fit": 3, "counter": str(tmp_path / "fits.txt"),
                      "marker": str(tmp_path / "killed.txt")}}])]
    killed = cli(*search_args(broken), *kill, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(read_journal(broken)) == 2  # trials 0 and 1 journaled, trial 2 in flight

    cli(*search_args(broken), *kill, "--resume", "true")

    assert journal_without_timing(broken) == journal_without_timing(whole)
    assert len(read_journal(whole)) == 4
    assert best_arch(broken) == best_arch(whole)


# the child: a search whose evaluator SIGKILLs the process at call `kill_at` (nothing is
# flushed or saved), state snapshots every 8 records only (no time-based ones)
SEARCH_CHILD = """
import math, sys
from test_search_loop import SPACE, SyntheticEvaluator, _few_convs, sampler_of
from fault_helpers import _kill
from lightning_nas.search import run_search

class KillingEvaluator(SyntheticEvaluator):
    calls = 0
    def __call__(self, arch):
        KillingEvaluator.calls += 1
        if KillingEvaluator.calls == int(sys.argv[3]):
            _kill()
        return super().__call__(arch)

run_search(SPACE, sampler_of(sys.argv[1]), KillingEvaluator(), budget_trials=20,
           run_dir=sys.argv[2], seed=5, progress=False, constraint=_few_convs,
           save_seconds=math.inf, save_every=8)
"""


@pytest.mark.parametrize("kind", ["random", "rea", "bo", "reinforce"])
def test_search_killed_between_two_state_snapshots_resumes_to_the_same_journal(tmp_path,
                                                                               kind):
    """kill -9 of a search process after a state snapshot and before the next one (the
    journal holds records the snapshot does not), then resume: the journal equals an
    uninterrupted run's, for every sampler."""
    whole = run_search(SPACE, sampler_of(kind), SyntheticEvaluator(), budget_trials=20,
                       run_dir=tmp_path / "whole", seed=5, progress=False,
                       constraint=_few_convs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    broken = tmp_path / "broken"
    proc = subprocess.run([sys.executable, "-c", SEARCH_CHILD, kind, str(broken), "12"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    journaled = read_journal(broken)
    snapshot = torch.load(broken / "search_state.pt", weights_only=True)["n_records"]
    assert snapshot % 8 == 0 and 0 < len(journaled) - snapshot < 8  # between two snapshots
    assert sum(r["status"] != "rejected" for r in journaled) == 11  # the 12th call died
    run_search(SPACE, sampler_of(kind, seed=99), SyntheticEvaluator(), budget_trials=20,
               run_dir=broken, resume=True, progress=False, constraint=_few_convs)
    assert without_timing(read_journal(broken)) == without_timing(whole.records)

