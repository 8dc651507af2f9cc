"""Multi-trial search on Ray (``--executor ray``): a local 2-CPU Ray instance for the module.

The journal must be the process pool's for the same seed, and a trial whose worker process
dies is a failed record while the search goes on to its budget.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from lightning_nas.search import (  # noqa: E402
    RandomSampler,
    TabularEvaluator,
    read_journal,
    run_search,
    without_timing,
)
from lightning_nas.search.cli import main_search  # noqa: E402
from lightning_nas.search.evaluators import default_nb201_table  # noqa: E402
from lightning_nas.search.ray_executor import RayExecutor  # noqa: E402
from lightning_nas.spaces.nb201 import NB201Space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TABLE = default_nb201_table()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the module; executors join it, not own it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the crashing evaluator below lives in this test module, which workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


class DiesOnSomeCells:
    """An evaluator whose worker process dies (os._exit: no exception, no cleanup) on cells
    whose first edge is 'none', as a worker killed mid-trial would."""

    primary_metric = "acc"

    def __call__(self, arch):
        if arch["1<-0"] == "none":
            os._exit(1)
        return {"acc": float(sum(op == "nor_conv_3x3" for op in arch.values()))}


def test_a_trial_whose_worker_dies_is_failed_and_the_search_finishes(local_ray, tmp_path):
    space = NB201Space()
    executor = RayExecutor(2)
    assert not executor._owns_ray
    try:
        result = run_search(space, RandomSampler(space, seed=4), DiesOnSomeCells(),
                            run_dir=tmp_path, budget_trials=14, executor=executor,
                            progress=False)
    finally:
        executor.shutdown(cancel_futures=True)
    records = read_journal(tmp_path)
    assert len(records) == 14 and [r["trial"] for r in records] == list(range(14))
    died = [r for r in records if r["arch_json"]["arch"]["1<-0"] == "none"]
    assert died, "seed 4 draws some cells with 'none' on the first edge"
    for r in records:
        if r in died:
            assert r["status"] == "failed" and "WorkerCrashedError" in r["error"]
        else:
            assert r["status"] == "ok" and r["objective"] == r["metrics"]["acc"]
    assert result.counts() == {"ok": 14 - len(died), "failed": len(died), "rejected": 0}


@pytest.mark.skipif(not TABLE.is_file(), reason="NB201 table not in ../shared/data")
def test_tabular_search_on_ray_gives_the_process_pools_journal(local_ray, tmp_path):
    args = ["--config", str(ROOT / "configs/search/nb201_evolution.yaml"), "--budget_trials",
            "30", "--workers", "1", "--progress", "false"]
    main_search([*args, "--run_dir", str(tmp_path / "pool"), "--executor", "process"])
    main_search([*args, "--run_dir", str(tmp_path / "ray"), "--executor", "ray",
                 "--ray.num_cpus", "1"])
    expected = without_timing(read_journal(tmp_path / "pool"))
    assert len(expected) == 30
    assert without_timing(read_journal(tmp_path / "ray")) == expected


def test_training_search_on_ray_gives_the_process_pools_journal(local_ray, tmp_path):
    """Real training in Ray workers (digits, 1 epoch per trial): the same numbers."""
    args = ["--config", str(ROOT / "configs/search/digits_random.yaml"), "--budget_trials",
            "2", "--workers", "1", "--progress", "false", "--wandb", "false",
            "--evaluator.init_args.epochs", "1", "--metric_hooks", "[]", "--pareto.enabled",
            "false"]
    main_search([*args, "--run_dir", str(tmp_path / "pool"), "--executor", "process"])
    main_search([*args, "--run_dir", str(tmp_path / "ray"), "--executor", "ray"])

    def numbers(run_dir):  # train_seconds is a measured time, not a result
        return [{**r, "metrics": {k: v for k, v in r["metrics"].items() if k != "train_seconds"}}
                for r in without_timing(read_journal(run_dir))]

    expected = numbers(tmp_path / "pool")
    assert [r["status"] for r in expected] == ["ok", "ok"]
    assert expected[0]["metrics"]["accuracy"] > 10  # trained: better than chance on 10 digits
    assert numbers(tmp_path / "ray") == expected


def test_ray_options_are_checked():
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        RayExecutor(0)
    with pytest.raises(ValueError, match="num_cpus and num_gpus must be >= 0"):
        RayExecutor(1, num_cpus=-1)


class DriverKilled(Exception):
    pass


def test_a_killed_driver_resumes_to_the_uninterrupted_journal(local_ray, tmp_path):
    """The driver dies after 9 records with 2 Ray trials in flight (they are cancelled);
    the resumed search re-runs what was in flight and ends with the uninterrupted journal."""
    from lightning_nas.search import RegularizedEvolution

    space = NB201Space()

    def search(run_dir, on_record=None, resume=False):
        executor = RayExecutor(2)
        try:
            return run_search(space, RegularizedEvolution(space, population_size=5,
                                                          sample_size=2, seed=1),
                              ConvCount(), run_dir=run_dir, budget_trials=20,
                              executor=executor, progress=False, on_record=on_record,
                              resume=resume, save_every=4, save_seconds=float("inf"))
        finally:
            executor.shutdown(cancel_futures=True)

    search(tmp_path / "full")

    def die_after_9(record):
        if record["trial"] == 8:
            raise DriverKilled

    with pytest.raises(DriverKilled):
        search(tmp_path / "cut", on_record=die_after_9)
    assert len(read_journal(tmp_path / "cut")) == 9
    search(tmp_path / "cut", resume=True)
    assert without_timing(read_journal(tmp_path / "cut")) == \
        without_timing(read_journal(tmp_path / "full"))


class ConvCount:
    primary_metric = "acc"

    def __call__(self, arch):
        return {"acc": float(sum(op == "nor_conv_3x3" for op in arch.values()))
                + 0.01 * sum(op == "nor_conv_1x1" for op in arch.values())}


def test_hyperband_on_ray_gives_the_inline_journal(local_ray, tmp_path):
    """Multi-fidelity on Ray: the budget travels with each task (2 in flight), and the
    journal equals the thread pool's with 2 in flight for the same seed."""
    from concurrent.futures import ThreadPoolExecutor

    import test_multi_fidelity
    from test_multi_fidelity import FidelityEvaluator

    from lightning_nas.search.multi_fidelity import Hyperband

    ray.cloudpickle.register_pickle_by_value(test_multi_fidelity)  # workers cannot import it
    space = NB201Space()
    with ThreadPoolExecutor(2) as pool:
        local = run_search(space, Hyperband(space, seed=6), FidelityEvaluator(),
                           run_dir=tmp_path / "threads", budget_trials=12, executor=pool,
                           progress=False)
    executor = RayExecutor(2)
    try:
        remote = run_search(space, Hyperband(space, seed=6), FidelityEvaluator(),
                            run_dir=tmp_path / "ray", budget_trials=12, executor=executor,
                            progress=False)
    finally:
        executor.shutdown(cancel_futures=True)
    assert without_timing(remote.records) == without_timing(local.records)
    assert {r["fidelity"] for r in remote.records} == {1, 3}
