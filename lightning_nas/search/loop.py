"""The multi-trial search loop: ask -> hooks -> constraint -> evaluate -> tell -> journal.

:func:`run_search` drives a sampler (``ask``/``tell``) against an evaluator
(``evaluator(arch) -> metrics``) until a budget of trials or seconds is spent:

* every trial becomes one line of ``run_dir/candidates.jsonl`` (``trial``, ``status``
  ok/failed/rejected, ``stage`` pre-evaluation/evaluation, ``arch`` string, ``arch_json``,
  ``metrics``, ``objective``, ``error``, ``timing`` {eval, hook, wall, sampler (ask +
  tell) and loop-overhead seconds; the overhead includes the sampler but not the state
  save that follows the record}, and ``traceback`` for an evaluator that raised), flushed before the next ask;
* a trial whose evaluator raises, or whose objective is NaN/inf, is recorded as failed
  with its error and the search goes on (the sampler is told ``None``);
* ``metric_hooks`` run per candidate before evaluation (``hook(arch, network_or_None) ->
  {metric: value}``, e.g. parameters, FLOPs, latency) and their metrics join the record;
  a ``constraint(arch, hook_metrics)`` may reject the candidate before evaluation
  (recorded as rejected with the reason, not counted in the trial budget), and so does
  ``space.validate`` (e.g. the space's ``max_params``). The constraint returns a bool
  (False = rejected) or a list of violated limits as readable reasons (empty = accepted),
  as :class:`lightning_nas.hardware.objective.Constraints.check` does;
* ``on_record(record)`` is called in the main process after every record is journaled
  (e.g. to write a Pareto report or log to W&B every few trials);
* trials can run in parallel through any ``concurrent.futures.Executor``. Results are told
  in trial order (the loop waits for the oldest trial in flight), so a search with the same
  seed and the same number of trials in flight is the same search however long each trial
  takes;
* the journal is the source of truth; the loop state (sampler state, trials in flight, time
  used) is a snapshot saved atomically to ``run_dir/search_state.pt`` when a fresh search
  starts, then at most every ``save_seconds`` (default 2 s) or every ``save_every``
  records, and when the loop ends. The snapshot has a fixed size however many trials ran:
  the sampler's state is saved without its history (``state_dict(history=False)``: RNG,
  counters, population / surrogate / policy), and on resume the sampler is given the
  journal's results up to the snapshot as its history. ``resume=True`` restores the
  snapshot, re-runs the trials that were in flight and replays the journal's records
  written after it (the same asks give the same archs; the journaled results are told
  instead of evaluated), so the finished journal equals an uninterrupted run's (apart
  from the ``timing`` fields). Per trial the loop does O(1) work besides the sampler: no
  save of the whole history per trial (which made 4,000 trials 10x slower than 1,000), no
  scan of all records.
"""

from __future__ import annotations

import math
import statistics
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lightning_nas.search.journal import Journal, _json_safe
from lightning_nas.search.samplers import Sampler
from lightning_nas.spaces.base import Arch, ArchError, SearchSpace

MetricHook = Callable[[Arch, Any], Mapping[str, Any]]
#: ``(arch, hook_metrics) -> bool | list[str]``: False or a non-empty list of reasons rejects.
Constraint = Callable[[Arch, Mapping[str, Any]], Any]


def _constraint_reason(constraint: Constraint, arch: Arch,
                       hook_metrics: Mapping[str, Any]) -> str | None:
    """Why ``constraint`` rejects the candidate, or None when it accepts it."""
    verdict = constraint(arch, hook_metrics)
    if isinstance(verdict, (list, tuple)):
        return "; ".join(map(str, verdict)) if verdict else None
    if isinstance(verdict, str):
        return verdict or None
    return None if verdict else f"rejected by the constraint {constraint!r}"

#: 2: the sampler's state is saved without its history (the journal holds it); version 1
#: states (with the history) still load.
STATE_VERSION = 2
#: Default seconds between two snapshots of the loop state (the tail is replayed on resume).
SAVE_SECONDS = 2.0


class MetricObjective:
    """Objective = one metric, maximised (``mode="max"``) or minimised (``mode="min"``)."""

    def __init__(self, metric: str, mode: str = "max"):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.metric = metric
        self.mode = mode

    def __call__(self, metrics: Mapping[str, Any]) -> float:
        if self.metric not in metrics:
            raise KeyError(f"objective metric {self.metric!r} is not among the metrics "
                           f"{sorted(metrics)}")
        value = float(metrics[self.metric])
        return value if self.mode == "max" else -value

    def __repr__(self) -> str:
        return f"MetricObjective({self.metric!r}, mode={self.mode!r})"


def _evaluate_trial(evaluator: Callable[[Arch], Mapping[str, Any]], arch: Arch) -> dict[str, Any]:
    """Run one evaluation, catching its errors (module-level so process pools can pickle it)."""
    start = time.perf_counter()
    try:
        metrics = evaluator(arch)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"an evaluator must return a mapping of metrics, got "
                            f"{type(metrics).__name__}")
        out = {"metrics": {str(k): _scalar(v) for k, v in metrics.items()}, "error": None,
               "traceback": None}
    except Exception as err:  # noqa: BLE001 - any failure of a trial is recorded
        out = {"metrics": {}, "error": f"{type(err).__name__}: {err}",
               "traceback": traceback.format_exc(limit=-8)}
    out["seconds"] = time.perf_counter() - start
    return out


def _scalar(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value) if isinstance(value, float) else value
    return value


@dataclass
class _Trial:
    index: int
    arch: Arch
    arch_str: str
    hook_metrics: dict[str, Any]
    hook_seconds: float
    overhead: float
    sampler_seconds: float = 0.0
    future: Future | None = None
    replay: dict[str, Any] | None = None

    def pending_state(self) -> dict[str, Any]:
        return {"trial": self.index, "arch": self.arch.to_dict(),
                "hook_metrics": _json_safe(self.hook_metrics), "hook_seconds": self.hook_seconds}


@dataclass
class SearchResult:
    """What :func:`run_search` returns.

    Attributes:
        records: every journal record, in journal order (rejected ones included).
        best: the ok record with the highest objective (None if none succeeded).
        run_dir: the run folder.
        overhead: the loop's own cost per trial of this session, in ms (sampler ask/tell,
            validation, journal and state writes; not evaluation or hooks): ``n``, ``mean``,
            ``std``, ``median``, ``p90``, ``max``.
    """

    records: list[dict[str, Any]]
    best: dict[str, Any] | None
    run_dir: Path
    overhead: dict[str, float] = field(default_factory=dict)

    @property
    def best_arch(self) -> Arch | None:
        return Arch.from_dict(self.best["arch_json"]) if self.best else None

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0, "rejected": 0}
        for r in self.records:
            out[r["status"]] += 1
        return out


def _overhead_stats(values_s: Sequence[float]) -> dict[str, float]:
    if not values_s:
        return {"n": 0}
    ms = sorted(v * 1e3 for v in values_s)
    return {"n": len(ms), "mean": statistics.fmean(ms),
            "std": statistics.stdev(ms) if len(ms) > 1 else 0.0,
            "median": statistics.median(ms), "p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
            "max": ms[-1]}


def run_search(space: SearchSpace, sampler: Sampler, evaluator: Callable[[Arch], Mapping[str, Any]],
               *, run_dir: str | Path, budget_trials: int | None = None,
               budget_seconds: float | None = None, time_key: str | None = None,
               objective: Callable[[Mapping[str, Any]], float] | str | None = None,
               executor: Executor | None = None, max_in_flight: int | None = None,
               resume: bool = False, metric_hooks: Sequence[MetricHook] = (),
               constraint: Constraint | None = None, max_rejections: int = 1000,
               seed: int | None = None, progress: bool = True,
               durable: bool = False,
               build_network: Callable[[Arch], Any] | None = None,
               on_record: Callable[[dict[str, Any]], None] | None = None,
               identity: Mapping[str, Any] | None = None,
               save_seconds: float = SAVE_SECONDS,
               save_every: int | None = None) -> SearchResult:
    """Run (or resume) a multi-trial search; see the module docstring for the behaviour.

    Args:
        space: the search space (validates, names and builds candidates).
        sampler: proposes candidates; must be a sampler of ``space``.
        evaluator: ``evaluator(arch) -> {metric: value}``; picklable for process pools.
        run_dir: folder for ``candidates.jsonl``, ``search_state.pt``, ``summary.json`` and
            ``arch.json`` (the best architecture).
        budget_trials: stop after this many evaluated (ok + failed) trials.
        budget_seconds: stop asking once this many seconds are used: wall-clock seconds of
            the search (summed over resumed sessions), or with ``time_key`` the sum of that
            metric over evaluated trials (e.g. the tabular evaluator's
            ``simulated_seconds``).
        objective: ``metrics -> float`` to maximise, or a metric name; default the
            evaluator's ``primary_metric``.
        executor: runs evaluations (``ThreadPoolExecutor``/``ProcessPoolExecutor``/...);
            None evaluates inline.
        max_in_flight: trials evaluated at once (default: the executor's worker count, 1
            inline). Part of what makes a search reproducible, with the seed.
        resume: continue the search journaled in ``run_dir`` (a fresh start when empty).
        metric_hooks: ``hook(arch, network) -> metrics`` per candidate before evaluation;
            the network is ``build_network(arch)`` (default ``space.build(arch)``), built
            once per candidate when any hook has ``needs_network`` true (the default), else
            None.
        constraint: ``constraint(arch, hook_metrics) -> bool | list[str]``; False, or a
            non-empty list of reasons, rejects the candidate. (A hardware ``Constraints``
            object fits as ``lambda a, m: c.check(m)``.)
        max_rejections: rejected candidates in a row after which the search stops with
            an error (the constraint is probably unsatisfiable).
        seed: re-seed the sampler (``sampler.reset(seed)``) at the start of a fresh search;
            None keeps the sampler's own seed. On resume the saved state wins.
        progress: show a tqdm progress bar (trials done, best so far, time left).
        durable: fsync journal and state after every write.
        build_network: ``arch -> nn.Module`` for the hooks, e.g. the network as the
            evaluator trains it (the data set's classes and channels); default
            ``space.build``.
        on_record: called with every record once it is journaled (replayed ones on resume
            included), in the main process.
        save_seconds: snapshot the loop state at most this often (seconds; ``math.inf``:
            only at the start, every ``save_every`` records and at the end).
        save_every: also snapshot after this many records since the last snapshot.
        identity: JSON data that defines the search (the CLI passes the space, sampler,
            evaluator, objective and constraints of its config). Saved in
            ``run_dir/search_identity.json`` when the search starts; a resume with another
            identity is a ``ValueError`` naming the first difference.

    Returns:
        a :class:`SearchResult`.
    """
    if budget_trials is None and budget_seconds is None:
        raise ValueError("give a budget: budget_trials and/or budget_seconds")
    if budget_trials is not None and budget_trials < 0:
        raise ValueError(f"budget_trials must be >= 0, got {budget_trials}")
    if budget_seconds is not None and budget_seconds < 0:
        raise ValueError(f"budget_seconds must be >= 0, got {budget_seconds}")
    if max_rejections < 1:
        raise ValueError(f"max_rejections must be >= 1, got {max_rejections}")
    if not save_seconds > 0 or (save_every is not None and save_every < 1):
        raise ValueError(f"save_seconds must be > 0 and save_every >= 1 (or None); got "
                         f"{save_seconds}, {save_every}")
    if getattr(sampler, "space", None) is None or sampler.space.name != space.name:
        raise ValueError(f"the sampler works on the "
                         f"{getattr(getattr(sampler, 'space', None), 'name', None)!r} space but "
                         f"the search is over {space.name!r}")
    if objective is None:
        primary = getattr(evaluator, "primary_metric", None)
        if not primary:
            raise ValueError("the evaluator has no primary_metric; pass objective=")
        objective = MetricObjective(primary)
    elif isinstance(objective, str):
        objective = MetricObjective(objective)
    if executor is None:
        width = 1
    else:
        width = max_in_flight or getattr(executor, "_max_workers", None) or 1
    if width < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {width}")
    needs_network = any(getattr(h, "needs_network", True) for h in metric_hooks)
    if build_network is None:
        build_network = space.build

    journal = Journal(run_dir, durable=durable)
    records: list[dict[str, Any]] = []
    state = None
    if journal.exists():
        if not resume:
            raise FileExistsError(f"{journal.run_dir} already holds a search journal; pass "
                                  "resume=True (--resume) to continue it, or use a new run_dir")
        if identity is not None:
            journal.check_identity(dict(identity))
        records = journal.read(repair=True)
        state = journal.load_state()
    if identity is not None:
        journal.save_identity(dict(identity))
    if state is None:
        if seed is not None:
            sampler.reset(seed)
        n_accounted, next_trial, pending, elapsed_before = 0, 0, [], 0.0
    else:
        if state.get("version") not in (1, STATE_VERSION) or state.get("space") != space.name:
            raise ValueError(f"{journal.state_path}: saved by another search (space "
                             f"{state.get('space')!r}, version {state.get('version')})")
        saved = state["sampler"]
        if saved.get("class") != type(sampler).__name__:
            raise ValueError(f"{journal.state_path}: the journaled search used a "
                             f"{saved.get('class')} sampler, not {type(sampler).__name__}")
        if seed is not None and int(saved["seed"]) != int(seed):
            raise ValueError(f"the journaled search was seeded with {saved['seed']}, not {seed}; "
                             "resume it without a seed or with the same one")
        n_accounted = int(state["n_records"])
        next_trial = int(state["next_trial"])
        pending = list(state["pending"])
        elapsed_before = float(state["elapsed"])
        if n_accounted > len(records):
            raise ValueError(f"{journal.path} has {len(records)} records but the saved state "
                             f"expects {n_accounted}; the journal was truncated")
        # the snapshot holds no history: the sampler was told the journal's results
        sampler.load_state_dict(saved, history=[
            (Arch.from_dict(r["arch_json"]), r["objective"] if r["status"] == "ok" else None)
            for r in records[:n_accounted]], asked=[Arch.from_dict(p["arch"]) for p in pending])
    replay = {int(r["trial"]): r for r in records[n_accounted:]}
    records = records[:n_accounted]

    n_evaluated = sum(r["status"] != "rejected" for r in records)
    simulated = sum(float(r["metrics"].get(time_key) or 0.0) for r in records
                    if time_key and r["status"] != "rejected")
    ok = [r for r in records if r["status"] == "ok"]
    best = max(ok, key=lambda r: r["objective"]) if ok else None
    n_failed = sum(r["status"] == "failed" for r in records)  # kept up to date, never rescanned
    overheads: list[float] = []
    rejections_in_row = 0
    start = time.perf_counter()
    in_flight: deque[_Trial] = deque()

    def used_seconds() -> float:
        if time_key:
            return simulated
        return elapsed_before + time.perf_counter() - start

    def can_ask() -> bool:
        if budget_trials is not None and n_evaluated + len(in_flight) >= budget_trials:
            return False
        return budget_seconds is None or used_seconds() < budget_seconds

    def save_state() -> None:
        journal.save_state({
            "version": STATE_VERSION, "space": space.name,
            "sampler": sampler.state_dict(history=False),
            "n_records": len(records), "next_trial": next_trial,
            "pending": [t.pending_state() for t in in_flight],
            "elapsed": elapsed_before + time.perf_counter() - start,
        })

    def submit(trial: _Trial) -> None:
        if trial.index in replay:
            trial.replay = replay.pop(trial.index)
            if trial.replay["arch"] != trial.arch_str:
                raise RuntimeError(f"cannot resume: journal trial {trial.index} is "
                                   f"{trial.replay['arch']!r} but the restored sampler gives "
                                   f"{trial.arch_str!r} (was the sampler changed?)")
        elif executor is not None:
            trial.future = executor.submit(_evaluate_trial, evaluator, trial.arch)
        in_flight.append(trial)

    def record_of(index: int, arch: Arch, arch_str: str, status: str, stage: str,
                  metrics: dict, value: float | None, error: str | None, timing: dict,
                  tb: str | None = None) -> dict[str, Any]:
        rec = {"trial": index, "status": status, "stage": stage, "arch": arch_str,
               "arch_json": arch.to_dict(), "metrics": metrics, "objective": value,
               "error": error, "timing": timing}
        if tb:
            rec["traceback"] = tb
        return rec

    last_save = [time.perf_counter(), len(records)]  # time, records at the last snapshot

    def snapshot(force: bool = False) -> None:
        now = time.perf_counter()
        if (force or now - last_save[0] >= save_seconds
                or (save_every is not None and len(records) - last_save[1] >= save_every)):
            save_state()
            last_save[0], last_save[1] = time.perf_counter(), len(records)

    def commit(rec: dict[str, Any], overhead: float) -> None:
        """Journal a new record, then maybe snapshot the state; the overhead includes it.

        The snapshot is throttled (``save_seconds``, ``save_every``): the state grows with the
        sampler's history. A state behind the journal is fine: on resume the journaled
        records after it are replayed (the same asks give the same archs)."""
        records.append(rec)
        journal.append(rec)
        s0 = time.perf_counter()
        snapshot()
        overheads.append(overhead + time.perf_counter() - s0)

    def notify(rec: dict[str, Any]) -> None:
        if on_record is not None:
            on_record(rec)

    bar = tqdm(total=budget_trials, initial=n_evaluated, disable=not progress, unit="trial",
               desc=f"search {space.name}/{type(sampler).__name__}", dynamic_ncols=True)

    def show() -> None:
        if not progress:
            return
        post = {"best": f"{best['objective']:.4g}" if best else "-", "failed": n_failed}
        if budget_seconds is not None:
            post["left_s"] = f"{max(0.0, budget_seconds - used_seconds()):.0f}"
        bar.set_postfix(post, refresh=False)

    if state is None:
        save_state()  # the fresh search's starting point (the seed): replay starts here
    for p in pending:  # trials in flight when the state was saved: run them again
        arch = Arch.from_dict(p["arch"])
        submit(_Trial(int(p["trial"]), arch, space.to_string(arch), dict(p["hook_metrics"]),
                      float(p["hook_seconds"]), 0.0))

    try:
        while True:
            # -- fill the executor --------------------------------------------------------
            while len(in_flight) < width and can_ask():
                t0 = time.perf_counter()
                index = next_trial
                next_trial += 1
                arch = sampler.ask()
                ask_seconds = time.perf_counter() - t0
                reason, arch_str = None, None
                try:
                    space.validate(arch)
                    arch_str = space.to_string(arch)
                except ArchError as err:
                    reason = f"ArchError: {err}"
                if arch_str is None:
                    arch_str = str(dict(arch))
                if index in replay:  # resuming: this trial's record is already journaled
                    if replay[index]["stage"] == "evaluation":
                        submit(_Trial(index, arch, arch_str, {}, 0.0, 0.0))
                        continue
                    rec = replay.pop(index)  # rejected or failed in a hook before the crash
                    if rec["arch"] != arch_str:
                        raise RuntimeError(f"cannot resume: journal trial {index} is "
                                           f"{rec['arch']!r} but the restored sampler gives "
                                           f"{arch_str!r} (was the sampler changed?)")
                    sampler.tell(arch, None)
                    records.append(rec)
                    notify(rec)
                    if rec["status"] == "rejected":
                        rejections_in_row += 1
                    else:
                        n_evaluated += 1
                        n_failed += 1
                        rejections_in_row = 0
                        bar.update(1)
                    continue
                hook_metrics: dict[str, Any] = {}
                hook_seconds, hook_error = 0.0, None
                overhead = time.perf_counter() - t0
                if reason is None and metric_hooks:
                    h0 = time.perf_counter()
                    try:
                        network = build_network(arch) if needs_network else None
                        for hook in metric_hooks:
                            hook_metrics.update({str(k): _scalar(v)
                                                 for k, v in hook(arch, network).items()})
                    except Exception as err:  # noqa: BLE001
                        hook_error = f"metric hook failed: {type(err).__name__}: {err}"
                    hook_seconds = time.perf_counter() - h0
                t1 = time.perf_counter()
                if reason is None and hook_error is None and constraint is not None:
                    try:
                        reason = _constraint_reason(constraint, arch, hook_metrics)
                    except Exception as err:  # noqa: BLE001 - e.g. a metric it needs is missing
                        hook_error = f"constraint failed: {type(err).__name__}: {err}"
                if reason is not None or hook_error is not None:
                    status = "rejected" if reason is not None else "failed"
                    t2 = time.perf_counter()
                    sampler.tell(arch, None)
                    tell_seconds = time.perf_counter() - t2
                    overhead += time.perf_counter() - t1
                    rec = record_of(index, arch, arch_str, status, "pre-evaluation",
                                    hook_metrics, None, reason or hook_error,
                                    {"eval_seconds": 0.0, "hook_seconds": hook_seconds,
                                     "wall_seconds": hook_seconds, "overhead_seconds": overhead,
                                     "sampler_seconds": ask_seconds + tell_seconds})
                    commit(rec, overhead)
                    notify(rec)
                    if status == "failed":
                        n_evaluated += 1
                        n_failed += 1
                        rejections_in_row = 0
                        bar.update(1)
                        continue
                    rejections_in_row += 1
                    if rejections_in_row >= max_rejections:
                        raise RuntimeError(
                            f"{rejections_in_row} candidates in a row were rejected before "
                            f"evaluation (last: {reason}); nothing the sampler proposes "
                            "satisfies the constraint. Loosen the constraint or the space's "
                            "limits, or raise max_rejections.")
                    continue
                rejections_in_row = 0
                overhead += time.perf_counter() - t1
                submit(_Trial(index, arch, arch_str, hook_metrics, hook_seconds, overhead,
                              ask_seconds))

            if not in_flight:
                break
            # -- wait for the oldest trial, tell, journal ---------------------------------
            trial = in_flight.popleft()
            if trial.replay is not None:
                rec = trial.replay
                value = rec["objective"] if rec["status"] == "ok" else None
                sampler.tell(trial.arch, value)
                records.append(rec)
            else:
                if trial.future is not None:
                    try:
                        out = trial.future.result()
                    except Exception as err:  # noqa: BLE001 - e.g. a broken process pool
                        out = {"metrics": {}, "error": f"{type(err).__name__}: {err}",
                               "traceback": None, "seconds": 0.0}
                else:
                    out = _evaluate_trial(evaluator, trial.arch)
                t0 = time.perf_counter()
                metrics = {**trial.hook_metrics, **out["metrics"]}
                error, value = out["error"], None
                if error is None:
                    try:
                        value = float(objective(metrics))
                        if not math.isfinite(value):
                            error = f"objective is {value} (metrics {metrics})"
                            value = None
                    except Exception as err:  # noqa: BLE001
                        error = f"objective failed: {type(err).__name__}: {err}"
                status = "ok" if error is None else "failed"
                t2 = time.perf_counter()
                sampler.tell(trial.arch, value)
                timing = {"eval_seconds": out["seconds"], "hook_seconds": trial.hook_seconds,
                          "wall_seconds": out["seconds"] + trial.hook_seconds,
                          "sampler_seconds": trial.sampler_seconds + time.perf_counter() - t2}
                rec = record_of(trial.index, trial.arch, trial.arch_str, status, "evaluation",
                                metrics, value, error, timing, out.get("traceback"))
                overhead = trial.overhead + time.perf_counter() - t0
                timing["overhead_seconds"] = overhead
                commit(rec, overhead)
            notify(rec)
            n_evaluated += 1
            n_failed += rec["status"] == "failed"
            if time_key and rec["status"] != "rejected":
                simulated += float(rec["metrics"].get(time_key) or 0.0)
            if rec["status"] == "ok" and (best is None or rec["objective"] > best["objective"]):
                best = rec
            bar.update(1)
            show()
        snapshot(force=True)  # the loop ended normally: the state is the journal's end
    finally:
        bar.close()
        journal.close()
        if executor is not None:
            for t in in_flight:
                if t.future is not None:
                    t.future.cancel()
    if replay:
        warnings.warn(f"{journal.path} holds {len(replay)} record(s) beyond what this search "
                      "produced (was the budget lowered on resume?); they were left in place",
                      stacklevel=2)

    result = SearchResult(records=records, best=best, run_dir=journal.run_dir,
                          overhead=_overhead_stats(overheads))
    _write_summary(result, space, sampler, used_seconds(), time_key)
    return result


def _write_summary(result: SearchResult, space: SearchSpace, sampler: Sampler,
                   used: float, time_key: str | None) -> None:
    import json

    best = result.best
    summary = {
        "space": space.name, "sampler": repr(sampler), "counts": result.counts(),
        "best": {k: v for k, v in best.items() if k != "timing"} if best else None,
        "overhead_ms_per_trial": result.overhead,
        "seconds_used": used, "seconds_are": f"sum of {time_key}" if time_key else "wall clock",
    }
    path = result.run_dir / "summary.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(summary), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    if best:
        result.best_arch.save(result.run_dir / "arch.json", metrics=best["metrics"],
                              objective=best["objective"], trial=best["trial"])
