"""The search loop: journal, resume equality, failures, hooks, constraints, parallel trials."""

from __future__ import annotations

import json
import math
import random
import shutil
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from lightning_nas.search import (
    BayesianOptimization,
    MetricObjective,
    RandomSampler,
    RegularizedEvolution,
    Reinforce,
    UnsatisfiableConstraintError,
    read_journal,
    run_search,
    without_timing,
)
from lightning_nas.spaces.base import Arch, Constraints
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.nb201 import OPS, NB201Space

SPACE = NB201Space()
OP_VALUE = {"none": 0.0, "skip_connect": 1.0, "nor_conv_1x1": 2.0, "nor_conv_3x3": 3.0,
            "avg_pool_3x3": 1.5}


class SyntheticEvaluator:
    """Deterministic fake accuracy of an NB201 cell (picklable, module level)."""

    primary_metric = "acc"

    def __call__(self, arch: Arch) -> dict[str, float]:
        noise = random.Random(arch.digest).random()
        acc = 70 + sum(OP_VALUE[op] for op in arch.values()) + noise
        return {"acc": acc, "test": acc - 1.0, "sim_s": 2.0}


class Kill(BaseException):
    """Stands for the process being killed (not an Exception: the loop does not catch it)."""


class KillAfter(SyntheticEvaluator):
    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, arch):
        self.calls += 1
        if self.calls > self.n:
            raise Kill()
        return super().__call__(arch)


class Flaky(SyntheticEvaluator):
    """Raises for cells whose first edge is 'none'; returns NaN when it is 'skip_connect'."""

    def __call__(self, arch):
        if arch["1<-0"] == "none":
            raise RuntimeError(f"CUDA out of memory (pretend) for {arch['2<-0']}")
        out = super().__call__(arch)
        if arch["1<-0"] == "skip_connect":
            out["acc"] = float("nan")
        return out


def sampler_of(kind: str, seed: int = 0):
    if kind == "random":
        return RandomSampler(SPACE, seed=seed)
    if kind == "rea":
        return RegularizedEvolution(SPACE, population_size=5, sample_size=2, seed=seed)
    if kind == "bo":
        return BayesianOptimization(SPACE, seed=seed, initial_random=5, epochs=20, hidden=(8,),
                                    num_parents=3, mutations_per_parent=3, random_candidates=5,
                                    retrain_every=3)
    return Reinforce(SPACE, seed=seed, learning_rate=0.1)


def records(run_dir: Path) -> list[dict]:
    return without_timing(read_journal(run_dir))


# --- journal and resume -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "rea", "bo", "reinforce"])
def test_killed_search_resumes_to_the_uninterrupted_journal(tmp_path, kind):
    full = run_search(SPACE, sampler_of(kind), SyntheticEvaluator(), budget_trials=24,
                      run_dir=tmp_path / "full", seed=3, progress=False)
    assert len(full.records) == 24
    expected = records(tmp_path / "full")
    assert [r["trial"] for r in expected] == list(range(24))

    with pytest.raises(Kill):
        run_search(SPACE, sampler_of(kind), KillAfter(10), budget_trials=24,
                   run_dir=tmp_path / "cut", seed=3, progress=False)
    assert len(read_journal(tmp_path / "cut")) == 10
    with pytest.raises(FileExistsError, match="resume"):
        run_search(SPACE, sampler_of(kind), SyntheticEvaluator(), budget_trials=24,
                   run_dir=tmp_path / "cut", seed=3, progress=False)
    # a fresh sampler object with another seed: the saved state must win
    resumed = run_search(SPACE, sampler_of(kind, seed=99), SyntheticEvaluator(),
                         budget_trials=24, run_dir=tmp_path / "cut", resume=True,
                         progress=False)
    assert records(tmp_path / "cut") == expected
    assert resumed.best["arch"] == full.best["arch"]


def test_budget_stop_then_resume_with_a_larger_budget(tmp_path):
    expected_run = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=20,
                              run_dir=tmp_path / "a", seed=1, progress=False)
    run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=8,
               run_dir=tmp_path / "b", seed=1, progress=False)
    run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=20,
               run_dir=tmp_path / "b", seed=1, resume=True, progress=False)
    assert records(tmp_path / "b") == without_timing(expected_run.records)
    with pytest.raises(ValueError, match="seeded with 1"):
        run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=30,
                   run_dir=tmp_path / "b", seed=2, resume=True, progress=False)


def test_resume_replays_records_written_after_the_last_state_save(tmp_path):
    """A crash between the journal line and the state save, and a half-written last line."""
    expected = run_search(SPACE, sampler_of("bo"), SyntheticEvaluator(), budget_trials=20,
                          run_dir=tmp_path / "a", seed=2, progress=False).records
    run = tmp_path / "b"
    run_search(SPACE, sampler_of("bo"), SyntheticEvaluator(), budget_trials=9, run_dir=run,
               seed=2, progress=False)
    shutil.copy(run / "search_state.pt", tmp_path / "old_state.pt")
    run_search(SPACE, sampler_of("bo"), SyntheticEvaluator(), budget_trials=13, run_dir=run,
               resume=True, progress=False)
    shutil.copy(tmp_path / "old_state.pt", run / "search_state.pt")  # state 4 records behind
    with (run / "candidates.jsonl").open("a") as f:
        f.write('{"trial": 13, "status": "o')  # cut off mid-line
    counting = KillAfter(10**6)
    run_search(SPACE, sampler_of("bo"), counting, budget_trials=20, run_dir=run,
               resume=True, progress=False)
    assert records(run) == without_timing(expected)
    assert counting.calls == 7  # trials 9..12 were replayed from the journal, not re-run


@pytest.mark.parametrize("kind", ["bo", "reinforce"])
def test_a_deleted_state_is_rebuilt_by_replaying_the_journal(tmp_path, kind):
    """What the corrupt-state error tells the user to do: delete search_state.pt, resume."""
    expected = run_search(SPACE, sampler_of(kind), SyntheticEvaluator(), budget_trials=16,
                          run_dir=tmp_path / "a", seed=2, progress=False).records
    run = tmp_path / "b"
    run_search(SPACE, sampler_of(kind), SyntheticEvaluator(), budget_trials=9, run_dir=run,
               seed=2, progress=False)
    (run / "search_state.pt").unlink()
    counting = KillAfter(10**6)
    run_search(SPACE, sampler_of(kind), counting, budget_trials=16, run_dir=run, seed=2,
               resume=True, progress=False)
    assert records(run) == without_timing(expected)
    assert counting.calls == 7  # the 9 journaled trials were replayed, not evaluated again


def test_a_search_with_another_identity_refuses_to_resume(tmp_path):
    identity = {"sampler": {"class_path": "RandomSampler", "init_args": {"seed": 0}},
                "evaluator": {"metric": "acc"}}
    run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=3,
               run_dir=tmp_path, progress=False, identity=identity)
    assert json.loads((tmp_path / "search_identity.json").read_text()) == identity
    changed = {**identity, "evaluator": {"metric": "test"}}
    with pytest.raises(ValueError, match=r"evaluator\.metric was 'acc' when it started, now "
                                         r"'test'.*resume with those settings"):
        run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=5,
                   run_dir=tmp_path, resume=True, progress=False, identity=changed)
    extra = {**identity, "constraints": {"max_params": 10}}
    with pytest.raises(ValueError, match=r"constraints was '<absent>' when it started"):
        run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=5,
                   run_dir=tmp_path, resume=True, progress=False, identity=extra)
    assert len(read_journal(tmp_path)) == 3  # nothing was added by the refused resumes
    run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=5,
               run_dir=tmp_path, resume=True, progress=False, identity=identity)
    assert len(read_journal(tmp_path)) == 5
    # a parameter that a newer version of the sampler class added (absent when the search
    # started; the old search ran with its default behaviour): not a difference
    newer = {**identity, "sampler": {"class_path": "RandomSampler",
                                     "init_args": {"seed": 0, "dedup": True}}}
    run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=6,
               run_dir=tmp_path, resume=True, progress=False, identity=newer)
    assert len(read_journal(tmp_path)) == 6


def test_resume_of_an_empty_run_dir_starts_fresh(tmp_path):
    result = run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=5,
                        run_dir=tmp_path / "new", resume=True, seed=0, progress=False)
    assert len(result.records) == 5


# --- record contents, failures ---------------------------------------------------------------
def test_records_summary_and_arch_json(tmp_path):
    result = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=12,
                        run_dir=tmp_path, seed=0, progress=False)
    lines = (tmp_path / "candidates.jsonl").read_text().splitlines()
    assert len(lines) == 12
    rec = json.loads(lines[0])
    assert set(rec) == {"trial", "status", "stage", "arch", "arch_json", "metrics", "objective",
                        "error", "timing"}
    assert rec["status"] == "ok" and rec["error"] is None
    assert SPACE.parse(rec["arch"]) == Arch.from_dict(rec["arch_json"])
    assert rec["objective"] == rec["metrics"]["acc"]
    assert {"eval_seconds", "wall_seconds", "overhead_seconds", "sampler_seconds"} <= set(
        rec["timing"])
    best = max(result.records, key=lambda r: r["objective"])
    assert result.best == best
    saved = json.loads((tmp_path / "arch.json").read_text())
    assert Arch.from_dict(saved) == result.best_arch and saved["trial"] == best["trial"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"ok": 12, "failed": 0, "rejected": 0}
    assert result.overhead["n"] == 12 and result.overhead["median"] > 0


def test_failing_and_nan_trials_are_recorded_and_the_search_goes_on(tmp_path):
    result = run_search(SPACE, sampler_of("rea"), Flaky(), budget_trials=40, run_dir=tmp_path,
                        seed=0, progress=False)
    counts = result.counts()
    assert counts["ok"] + counts["failed"] == 40 and counts["failed"] >= 5 and counts["ok"] > 10
    for r in result.records:
        first = r["arch_json"]["arch"]["1<-0"]
        if first == "none":
            assert r["status"] == "failed" and "RuntimeError: CUDA out of memory" in r["error"]
            assert "Traceback" in r["traceback"]
        elif first == "skip_connect":
            assert r["status"] == "failed" and "nan" in r["error"]
            assert r["objective"] is None
        else:
            assert r["status"] == "ok"
    # failures never enter the evolution population
    sampler = sampler_of("rea")
    sampler.load_state_dict(
        torch.load(tmp_path / "search_state.pt", weights_only=True)["sampler"],
        history=[(Arch.from_dict(r["arch_json"]), r["objective"]) for r in result.records])
    assert len(sampler.population) == 5
    assert all(a["1<-0"] not in ("none", "skip_connect") for a, _ in sampler.population)
    # the journal is strict JSON (NaN written as null)
    for line in (tmp_path / "candidates.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


# --- hooks, constraints, objectives, budgets -----------------------------------------------------
def test_metric_hooks_and_constraint(tmp_path):
    seen_networks = []

    def params_hook(arch, network):
        seen_networks.append(network)
        return {"params": sum(p.numel() for p in network.parameters())}

    def name_hook(arch, network):
        assert network is None or isinstance(network, torch.nn.Module)
        return {"n_conv": sum(op.startswith("nor_conv") for op in arch.values())}

    name_hook.needs_network = False

    def small(arch, metrics):
        return metrics["params"] < 500_000

    result = run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=15,
                        run_dir=tmp_path, seed=0, progress=False,
                        metric_hooks=[params_hook, name_hook], constraint=small)
    ok = [r for r in result.records if r["status"] == "ok"]
    rejected = [r for r in result.records if r["status"] == "rejected"]
    assert len(ok) == 15 and rejected
    for r in ok:
        assert r["metrics"]["params"] == SPACE.count_params(SPACE.parse(r["arch"])) < 500_000
        assert "acc" in r["metrics"] and "n_conv" in r["metrics"]
    for r in rejected:
        assert r["metrics"]["params"] >= 500_000 and "constraint" in r["error"]
    assert all(isinstance(n, torch.nn.Module) for n in seen_networks)


def _few_convs(arch, metrics):
    """Accepts about a quarter of random NB201 cells: those without a 3x3 conv (the reason
    is plain text, the same in every process)."""
    return ["has a 3x3 conv"] if "nor_conv_3x3" in arch.values() else []


@pytest.mark.parametrize("kind", ["random", "rea", "bo", "reinforce"])
def test_a_kill_between_two_snapshots_resumes_to_the_uninterrupted_journal(
        tmp_path, monkeypatch, kind):
    """The state is a snapshot (at the start, every `save_every` records here; every 2 s by
    default), not a save per trial: killed after a snapshot and before the next one, with
    evaluated and rejected records journaled since, a resume replays that tail and ends
    with the uninterrupted journal."""
    import lightning_nas.search.journal as journal_module

    full = run_search(SPACE, sampler_of(kind), SyntheticEvaluator(), budget_trials=20,
                      run_dir=tmp_path / "full", seed=5, progress=False,
                      constraint=_few_convs)
    assert full.counts()["rejected"] >= 10

    saves = []
    real_save = journal_module.Journal.save_state
    monkeypatch.setattr(journal_module.Journal, "save_state",
                        lambda self, state: (saves.append(state["n_records"]),
                                             real_save(self, state)))
    with pytest.raises(Kill):
        run_search(SPACE, sampler_of(kind), KillAfter(9), budget_trials=20,
                   run_dir=tmp_path / "cut", seed=5, progress=False, constraint=_few_convs,
                   save_seconds=math.inf, save_every=8)
    cut = read_journal(tmp_path / "cut")
    # a snapshot at the start and after every 8 records, none per trial
    assert saves == list(range(0, len(cut), 8)), (saves, len(cut))
    assert 0 < len(cut) - saves[-1] < 8  # the kill came between two snapshots
    assert any(r["status"] == "rejected" for r in cut[saves[-1]:]) or kind == "bo"
    counting = KillAfter(10**6)
    run_search(SPACE, sampler_of(kind, seed=99), counting, budget_trials=20,
               run_dir=tmp_path / "cut", resume=True, progress=False, constraint=_few_convs)
    assert records(tmp_path / "cut") == records(tmp_path / "full")
    assert counting.calls == 20 - 9  # the journaled tail was replayed, not evaluated again


@pytest.mark.parametrize("kind", ["random", "rea", "bo", "reinforce"])
def test_the_state_snapshot_does_not_grow_with_the_trials(tmp_path, kind):
    """The journal holds the history; the snapshot only the sampler's fixed-size state."""
    sizes = []
    for trials in (20, 400):
        run_search(SPACE, sampler_of(kind), SyntheticEvaluator(), budget_trials=trials,
                   run_dir=tmp_path / str(trials), seed=1, progress=False)
        state = torch.load(tmp_path / str(trials) / "search_state.pt", weights_only=True)
        assert state["n_records"] == trials and state["sampler"]["n_told"] == trials
        assert "history" not in state["sampler"] and "seen" not in state["sampler"]
        sizes.append((tmp_path / str(trials) / "search_state.pt").stat().st_size)
    assert sizes[1] - sizes[0] < 256, sizes


def test_a_version_1_state_with_the_history_still_resumes(tmp_path):
    """States written before the snapshot left the history out (version 1) still load."""
    expected = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=20,
                          run_dir=tmp_path / "a", seed=2, progress=False).records
    run = tmp_path / "b"
    cut = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=9,
                     run_dir=run, seed=2, progress=False).records
    state = torch.load(run / "search_state.pt", weights_only=True)
    sampler = sampler_of("rea")
    sampler.load_state_dict(state["sampler"], history=[
        (Arch.from_dict(r["arch_json"]), r["objective"]) for r in cut])
    state["version"], state["sampler"] = 1, sampler.state_dict()  # with its history
    assert "history" in state["sampler"]
    torch.save(state, run / "search_state.pt")
    run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=20, run_dir=run,
               resume=True, progress=False)
    assert records(run) == without_timing(expected)


def test_state_snapshot_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="save_seconds must be > 0"):
        run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=2,
                   run_dir=tmp_path, save_seconds=0)
    with pytest.raises(ValueError, match="save_every >= 1"):
        run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=2,
                   run_dir=tmp_path, save_every=0)


def test_random_search_covers_the_whole_space_without_a_repeat(tmp_path):
    """All 15,625 NAS-Bench-201 cells, each once: the last draws pick among the few unseen
    cells through the sampler's index instead of listing the space per draw."""
    result = run_search(SPACE, RandomSampler(SPACE, seed=0), SyntheticEvaluator(),
                        budget_trials=15_625, run_dir=tmp_path, progress=False)
    assert len({r["arch"] for r in result.records}) == 15_625
    assert result.counts() == {"ok": 15_625, "failed": 0, "rejected": 0}


def test_unseen_index_finds_the_kth_unseen_in_enumeration_order():
    from lightning_nas.search.samplers import _UnseenIndex

    rng = random.Random(0)
    sizes = [3, 4, 5]
    index = _UnseenIndex(sizes, [rng.random() < 0.5 for _ in range(60)])
    while index.count:
        unseen = [p for p in range(60) if index.flags[p]]
        assert index.count == len(unseen)
        assert [index.kth(k) for k in range(len(unseen))] == unseen
        index.remove(rng.choice(unseen))
    combos = [[a, b, c] for a in range(3) for b in range(4) for c in range(5)]
    assert [index.combo(p) for p in range(60)] == combos
    assert [index.position(c) for c in combos] == list(range(60))


def test_unsatisfiable_constraint_stops_with_a_clear_error(tmp_path):
    with pytest.raises(UnsatisfiableConstraintError,
                       match="20 candidates in a row were rejected") as caught:
        run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=10,
                   run_dir=tmp_path, seed=0, progress=False, max_rejections=20,
                   constraint=lambda arch, metrics: ["too slow"])
    assert caught.value.rejections == 20 and caught.value.last_reason == "too slow"
    assert len(read_journal(tmp_path)) == 20


def test_space_limits_reject_candidates(tmp_path):
    limited = NB201Space(constraints=Constraints(max_params=300_000))
    result = run_search(limited, RandomSampler(limited, seed=0), SyntheticEvaluator(),
                        budget_trials=10, run_dir=tmp_path, progress=False)
    rejected = [r for r in result.records if r["status"] == "rejected"]
    assert rejected and all("max_params" in r["error"] for r in rejected)
    assert all(limited.count_params(limited.parse(r["arch"])) <= 300_000
               for r in result.records if r["status"] == "ok")


def test_objectives_and_simulated_time_budget(tmp_path):
    result = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_seconds=20,
                        time_key="sim_s", run_dir=tmp_path / "a", seed=0, progress=False,
                        objective=MetricObjective("acc", mode="min"))
    assert len(result.records) == 10  # 20 simulated seconds at 2 per query
    assert result.best["objective"] == -min(r["metrics"]["acc"] for r in result.records)
    custom = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=5,
                        run_dir=tmp_path / "b", seed=0, progress=False,
                        objective=lambda m: m["acc"] - m["test"])
    assert all(math.isclose(r["objective"], 1.0) for r in custom.records)
    missing = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=3,
                         run_dir=tmp_path / "c", seed=0, progress=False, objective="latency")
    assert all("latency" in r["error"] and r["status"] == "failed" for r in missing.records)
    assert missing.best is None


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), run_dir=tmp_path)
    darts = DartsSpace()
    with pytest.raises(ValueError, match="'darts' space"):
        run_search(SPACE, RandomSampler(darts), SyntheticEvaluator(), budget_trials=2,
                   run_dir=tmp_path)
    with pytest.raises(ValueError, match="primary_metric"):
        run_search(SPACE, sampler_of("random"), lambda arch: {"a": 1.0}, budget_trials=2,
                   run_dir=tmp_path)


def test_progress_bar_runs(tmp_path, capsys):
    run_search(SPACE, sampler_of("random"), SyntheticEvaluator(), budget_trials=3,
               run_dir=tmp_path, seed=0, progress=True)
    assert "best" in capsys.readouterr().err


# --- parallel trials --------------------------------------------------------------------------
def test_parallel_runs_are_deterministic_and_resumable(tmp_path):
    def run(name, budget, resume=False, evaluator=None):
        with ThreadPoolExecutor(3) as pool:
            return run_search(SPACE, sampler_of("rea"), evaluator or SyntheticEvaluator(),
                              budget_trials=budget, run_dir=tmp_path / name, seed=5,
                              executor=pool, resume=resume, progress=False)

    first = run("a", 20)
    run("b", 20)
    assert records(tmp_path / "a") == records(tmp_path / "b")
    assert [r["trial"] for r in first.records] == list(range(20))
    with pytest.raises(Kill):
        run("c", 20, evaluator=KillAfter(9))
    run("c", 20, resume=True)
    assert records(tmp_path / "c") == records(tmp_path / "a")
    # three trials in flight make a different (but fixed) search than one at a time
    inline = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=20,
                        run_dir=tmp_path / "d", seed=5, progress=False)
    assert [r["arch"] for r in inline.records] != [r["arch"] for r in first.records]


def test_process_pool_matches_inline_with_one_trial_in_flight(tmp_path):
    inline = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=8,
                        run_dir=tmp_path / "a", seed=0, progress=False)
    with ProcessPoolExecutor(2) as pool:
        pooled = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=8,
                            run_dir=tmp_path / "b", seed=0, progress=False, executor=pool,
                            max_in_flight=1)
    assert without_timing(pooled.records) == without_timing(inline.records)


def test_ops_constant_is_the_benchmark_order():
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def test_reporter_keeps_counts_and_best_as_records_arrive_and_throttles_writes(tmp_path):
    """SearchReporter: counts per status and the best record are kept incrementally (equal
    to a scan, also when a replayed record replaces one), and Pareto writes happen every n
    trials but at most every `every_seconds` (a huge value: only the first write)."""
    from lightning_nas.search.report import ParetoOptions, SearchReporter

    result = run_search(SPACE, sampler_of("rea"), SyntheticEvaluator(), budget_trials=30,
                        run_dir=tmp_path / "run", seed=1, progress=False,
                        constraint=_few_convs)
    writes = {}
    for seconds in (0.0, 1e9):
        reporter = SearchReporter(tmp_path / f"r{seconds}", objective_name="acc",
                                  pareto=ParetoOptions(every_n_trials=5, every_seconds=seconds,
                                                       plot=False),
                                  objectives={"acc": "max", "sim_s": "min"})
        calls = []
        real_write = reporter.write
        reporter.write = lambda: (calls.append(len(reporter.records)), real_write())[1]
        for rec in result.records:
            reporter(rec)
        reporter(dict(result.records[-1]))  # the same trial again (a replay): no double count
        writes[seconds] = calls
        assert reporter.counts == result.counts()
        assert reporter.best() == max((r for r in result.records if r["status"] == "ok"),
                                      key=lambda r: (r["objective"], -r["trial"]))
    assert len(writes[0.0]) == 6  # after every 5 evaluated trials
    assert len(writes[1e9]) == 1  # the first one only; finish() writes the rest
