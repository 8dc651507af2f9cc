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
* a multi-fidelity sampler (``sampler.multi_fidelity``, :mod:`.multi_fidelity`) chooses each
  trial's budget too (``ask_trial() -> (arch, fidelity)``): the evaluator is called as
  ``evaluator(arch, fidelity=...)`` (it must have ``supports_fidelity``), the record holds
  ``fidelity``, and the best record is the best at the highest fidelity reached;
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


def _evaluate_trial(evaluator: Callable[[Arch], Mapping[str, Any]], arch: Arch,
                    fidelity: float | None = None) -> dict[str, Any]:
    """Run one evaluation, catching its errors (module-level so process pools can pickle it);
    a multi-fidelity sampler's budget goes to the evaluator as ``fidelity=``."""
    start = time.perf_counter()
    try:
        metrics = evaluator(arch) if fidelity is None else evaluator(arch, fidelity=fidelity)
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
    fidelity: float | None = None  # the multi-fidelity sampler's budget (None: evaluator's)

    def pending_state(self) -> dict[str, Any]:
        state = {"trial": self.index, "arch": self.arch.to_dict(),
                 "hook_metrics": _json_safe(self.hook_metrics),
                 "hook_seconds": self.hook_seconds}
        if self.fidelity is not None:
            state["fidelity"] = self.fidelity
        return state


@dataclass
class SearchResult:
    """What :func:`run_search` returns.

    Attributes:
        records: every journal record, in journal order (rejected ones included).
        best: the ok record with the highest objective (None if none succeeded); with a
            multi-fidelity sampler, the highest objective at the highest fidelity reached.
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
    options = _Options.check(space, sampler, evaluator, budget_trials=budget_trials,
                             budget_seconds=budget_seconds, time_key=time_key,
                             objective=objective, executor=executor,
                             max_in_flight=max_in_flight, metric_hooks=metric_hooks,
                             constraint=constraint, max_rejections=max_rejections,
                             progress=progress, build_network=build_network,
                             on_record=on_record, save_seconds=save_seconds,
                             save_every=save_every)
    journal = Journal(run_dir, durable=durable)
    state = _SearchState.open(journal, options, resume=resume, seed=seed, identity=identity)
    try:
        state.run()
    finally:
        state.close()
    if state.replay:
        warnings.warn(f"{journal.path} holds {len(state.replay)} record(s) beyond what this "
                      "search produced (was the budget lowered on resume?); they were left "
                      "in place", stacklevel=2)
    result = SearchResult(records=state.records, best=state.best, run_dir=journal.run_dir,
                          overhead=_overhead_stats(state.overheads))
    _write_summary(result, space, sampler, state.used_seconds(), time_key)
    return result


@dataclass
class _Options:
    """What :func:`run_search` was asked to do, checked; fixed for the whole search."""

    space: SearchSpace
    sampler: Sampler
    evaluator: Callable[[Arch], Mapping[str, Any]]
    objective: Callable[[Mapping[str, Any]], float]
    budget_trials: int | None
    budget_seconds: float | None
    time_key: str | None
    executor: Executor | None
    width: int  # trials in flight at once
    metric_hooks: Sequence[MetricHook]
    needs_network: bool
    build_network: Callable[[Arch], Any]
    constraint: Constraint | None
    max_rejections: int
    progress: bool
    on_record: Callable[[dict[str, Any]], None] | None
    save_seconds: float
    save_every: int | None

    @classmethod
    def check(cls, space: SearchSpace, sampler: Sampler,
              evaluator: Callable[[Arch], Mapping[str, Any]], *, budget_trials: int | None,
              budget_seconds: float | None, time_key: str | None, objective: Any,
              executor: Executor | None, max_in_flight: int | None,
              metric_hooks: Sequence[MetricHook], constraint: Constraint | None,
              max_rejections: int, progress: bool,
              build_network: Callable[[Arch], Any] | None,
              on_record: Callable[[dict[str, Any]], None] | None, save_seconds: float,
              save_every: int | None) -> _Options:
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
        if getattr(sampler, "multi_fidelity", False) and \
                not getattr(evaluator, "supports_fidelity", False):
            raise ValueError(f"{type(sampler).__name__} chooses each trial's budget, but the "
                             f"evaluator {type(evaluator).__name__} takes no fidelity; use one "
                             "that does (TrainingEvaluator: epochs) or a single-fidelity "
                             "sampler")
        if getattr(sampler, "space", None) is None or sampler.space.name != space.name:
            raise ValueError(f"the sampler works on the "
                             f"{getattr(getattr(sampler, 'space', None), 'name', None)!r} "
                             f"space but the search is over {space.name!r}")
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
        return cls(space=space, sampler=sampler, evaluator=evaluator, objective=objective,
                   budget_trials=budget_trials, budget_seconds=budget_seconds,
                   time_key=time_key, executor=executor, width=width,
                   metric_hooks=metric_hooks,
                   needs_network=any(getattr(h, "needs_network", True) for h in metric_hooks),
                   build_network=build_network or space.build, constraint=constraint,
                   max_rejections=max_rejections, progress=progress, on_record=on_record,
                   save_seconds=save_seconds, save_every=save_every)


class _SearchState:
    """One search session: what the journal and snapshot say so far, and the three steps.

    :meth:`propose` asks the sampler for the next candidate and either submits it for
    evaluation or journals it at once (rejected, or failed in a hook); :meth:`collect` waits
    for the oldest trial in flight, tells the sampler and journals its record; :meth:`run`
    alternates them until the budget is spent. On resume, trials whose records are already
    in the journal are replayed (told their journaled result) instead of evaluated.
    """

    def __init__(self, journal: Journal, options: _Options, records: list[dict[str, Any]],
                 replay: dict[int, dict[str, Any]], next_trial: int, elapsed_before: float):
        self.journal = journal
        self.o = options
        self.records = records                 # journal order, rejected ones included
        self.replay = replay                   # trial -> journaled record not yet replayed
        self.next_trial = next_trial
        self.elapsed_before = elapsed_before   # seconds used by earlier sessions
        self.n_evaluated = sum(r["status"] != "rejected" for r in records)
        self.n_failed = sum(r["status"] == "failed" for r in records)
        self.simulated = sum(float(r["metrics"].get(options.time_key) or 0.0) for r in records
                             if options.time_key and r["status"] != "rejected")
        ok = [r for r in records if r["status"] == "ok"]
        self.best = max(ok, key=_rank) if ok else None
        self.rejections_in_row = 0
        self.in_flight: deque[_Trial] = deque()
        self.overheads: list[float] = []
        self.start = time.perf_counter()
        self.last_save = (self.start, len(records))  # time and records at the last snapshot
        self.bar = tqdm(total=options.budget_trials, initial=self.n_evaluated,
                        disable=not options.progress, unit="trial", dynamic_ncols=True,
                        desc=f"search {options.space.name}/{type(options.sampler).__name__}")

    # -- opening: a fresh search or the journaled one ------------------------------------------
    @classmethod
    def open(cls, journal: Journal, o: _Options, *, resume: bool, seed: int | None,
             identity: Mapping[str, Any] | None) -> _SearchState:
        records: list[dict[str, Any]] = []
        state = None
        if journal.exists():
            if not resume:
                raise FileExistsError(f"{journal.run_dir} already holds a search journal; pass "
                                      "resume=True (--resume) to continue it, or use a new "
                                      "run_dir")
            if identity is not None:
                journal.check_identity(dict(identity))
            records = journal.read(repair=True)
            state = journal.load_state()
        if identity is not None:
            journal.save_identity(dict(identity))
        if state is None:
            if seed is not None:
                o.sampler.reset(seed)
            search = cls(journal, o, [], {int(r["trial"]): r for r in records}, 0, 0.0)
            search.save()  # the fresh search's starting point (the seed): replay starts here
            return search
        n_accounted = cls._restore_sampler(journal, o, state, records, seed)
        search = cls(journal, o, records[:n_accounted],
                     {int(r["trial"]): r for r in records[n_accounted:]},
                     int(state["next_trial"]), float(state["elapsed"]))
        for p in state["pending"]:  # trials in flight when the state was saved: run them again
            arch = Arch.from_dict(p["arch"])
            search.submit(_Trial(int(p["trial"]), arch, o.space.to_string(arch),
                                 dict(p["hook_metrics"]), float(p["hook_seconds"]), 0.0,
                                 fidelity=p.get("fidelity")))
        return search

    @staticmethod
    def _restore_sampler(journal: Journal, o: _Options, state: Mapping[str, Any],
                         records: list[dict[str, Any]], seed: int | None) -> int:
        """Load the snapshot's sampler with the journal's results up to it as its history;
        returns how many records the snapshot accounts for."""
        if state.get("version") not in (1, STATE_VERSION) or state.get("space") != o.space.name:
            raise ValueError(f"{journal.state_path}: saved by another search (space "
                             f"{state.get('space')!r}, version {state.get('version')})")
        saved = state["sampler"]
        if saved.get("class") != type(o.sampler).__name__:
            raise ValueError(f"{journal.state_path}: the journaled search used a "
                             f"{saved.get('class')} sampler, not {type(o.sampler).__name__}")
        if seed is not None and int(saved["seed"]) != int(seed):
            raise ValueError(f"the journaled search was seeded with {saved['seed']}, not {seed}; "
                             "resume it without a seed or with the same one")
        n_accounted = int(state["n_records"])
        if n_accounted > len(records):
            raise ValueError(f"{journal.path} has {len(records)} records but the saved state "
                             f"expects {n_accounted}; the journal was truncated")
        # the snapshot holds no history: the sampler was told the journal's results
        o.sampler.load_state_dict(saved, history=[
            (Arch.from_dict(r["arch_json"]), r["objective"] if r["status"] == "ok" else None)
            for r in records[:n_accounted]],
            asked=[Arch.from_dict(p["arch"]) for p in state["pending"]])
        return n_accounted

    # -- budget and snapshots ------------------------------------------------------------------
    def used_seconds(self) -> float:
        if self.o.time_key:
            return self.simulated
        return self.elapsed_before + time.perf_counter() - self.start

    def can_ask(self) -> bool:
        o = self.o
        if o.budget_trials is not None and \
                self.n_evaluated + len(self.in_flight) >= o.budget_trials:
            return False
        return o.budget_seconds is None or self.used_seconds() < o.budget_seconds

    def save(self) -> None:
        """Snapshot the loop state: the sampler without its history, trials in flight."""
        self.journal.save_state({
            "version": STATE_VERSION, "space": self.o.space.name,
            "sampler": self.o.sampler.state_dict(history=False),
            "n_records": len(self.records), "next_trial": self.next_trial,
            "pending": [t.pending_state() for t in self.in_flight],
            "elapsed": self.elapsed_before + time.perf_counter() - self.start,
        })
        self.last_save = (time.perf_counter(), len(self.records))

    def maybe_save(self) -> None:
        """Snapshot when ``save_seconds`` passed or ``save_every`` records were added since
        the last one. A state behind the journal is fine: on resume the journaled records
        after it are replayed (the same asks give the same archs)."""
        when, n = self.last_save
        if (time.perf_counter() - when >= self.o.save_seconds
                or (self.o.save_every is not None
                    and len(self.records) - n >= self.o.save_every)):
            self.save()

    # -- records -------------------------------------------------------------------------------
    def commit(self, rec: dict[str, Any], overhead: float) -> None:
        """Journal a new record, then maybe snapshot; the overhead includes the snapshot."""
        self.records.append(rec)
        self.journal.append(rec)
        s0 = time.perf_counter()
        self.maybe_save()
        self.overheads.append(overhead + time.perf_counter() - s0)

    def counted(self, rec: dict[str, Any]) -> None:
        """Count a journaled (new or replayed) record and tell ``on_record``."""
        if self.o.on_record is not None:
            self.o.on_record(rec)
        if rec["status"] == "rejected":
            self.rejections_in_row += 1
            return
        self.rejections_in_row = 0
        self.n_evaluated += 1
        self.n_failed += rec["status"] == "failed"
        if self.o.time_key and rec["stage"] == "evaluation":
            self.simulated += float(rec["metrics"].get(self.o.time_key) or 0.0)
        if rec["status"] == "ok" and (self.best is None or _rank(rec) > _rank(self.best)):
            self.best = rec
        self.bar.update(1)

    def show(self) -> None:
        if not self.o.progress:
            return
        post = {"best": f"{self.best['objective']:.4g}" if self.best else "-",
                "failed": self.n_failed}
        if self.o.budget_seconds is not None:
            post["left_s"] = f"{max(0.0, self.o.budget_seconds - self.used_seconds()):.0f}"
        self.bar.set_postfix(post, refresh=False)

    # -- the three steps -----------------------------------------------------------------------
    def submit(self, trial: _Trial) -> None:
        """Start evaluating ``trial`` (or mark it for replay when it is journaled)."""
        if trial.index in self.replay:
            trial.replay = self.replay.pop(trial.index)
            _check_replay(trial.index, trial.replay, trial.arch_str, trial.fidelity)
        elif self.o.executor is not None:
            trial.future = self.o.executor.submit(_evaluate_trial, self.o.evaluator, trial.arch,
                                                  trial.fidelity)
        self.in_flight.append(trial)

    def propose(self) -> None:
        """Ask for one candidate; submit it, or journal it when it is rejected or fails
        before evaluation."""
        o = self.o
        t0 = time.perf_counter()
        index = self.next_trial
        self.next_trial += 1
        arch, fidelity = o.sampler.ask_trial()
        ask_seconds = time.perf_counter() - t0
        reason, arch_str = None, None
        try:
            o.space.validate(arch)
            arch_str = o.space.to_string(arch)
        except ArchError as err:
            reason = f"ArchError: {err}"
        if arch_str is None:
            arch_str = str(dict(arch))
        if index in self.replay:  # resuming: this trial's record is already journaled
            if self.replay[index]["stage"] == "evaluation":
                self.submit(_Trial(index, arch, arch_str, {}, 0.0, 0.0, fidelity=fidelity))
                return
            rec = self.replay.pop(index)  # rejected or failed in a hook before the crash
            _check_replay(index, rec, arch_str, fidelity)
            o.sampler.tell(arch, None)
            self.records.append(rec)
            self.counted(rec)
            return
        overhead = time.perf_counter() - t0
        hook_metrics, hook_seconds, hook_error = self._run_hooks(arch, reason)
        t1 = time.perf_counter()
        if reason is None and hook_error is None and o.constraint is not None:
            try:
                reason = _constraint_reason(o.constraint, arch, hook_metrics)
            except Exception as err:  # noqa: BLE001 - e.g. a metric it needs is missing
                hook_error = f"constraint failed: {type(err).__name__}: {err}"
        if reason is None and hook_error is None:
            self.rejections_in_row = 0
            overhead += time.perf_counter() - t1
            self.submit(_Trial(index, arch, arch_str, hook_metrics, hook_seconds, overhead,
                               ask_seconds, fidelity=fidelity))
            return
        status = "rejected" if reason is not None else "failed"
        t2 = time.perf_counter()
        o.sampler.tell(arch, None)
        tell_seconds = time.perf_counter() - t2
        overhead += time.perf_counter() - t1
        rec = _record(index, arch, arch_str, status, "pre-evaluation", hook_metrics, None,
                      reason or hook_error,
                      {"eval_seconds": 0.0, "hook_seconds": hook_seconds,
                       "wall_seconds": hook_seconds, "overhead_seconds": overhead,
                       "sampler_seconds": ask_seconds + tell_seconds}, fidelity=fidelity)
        self.commit(rec, overhead)
        self.counted(rec)
        if status == "rejected" and self.rejections_in_row >= o.max_rejections:
            raise UnsatisfiableConstraintError(
                f"{self.rejections_in_row} candidates in a row were rejected before "
                f"evaluation (last: {reason}); nothing the sampler proposes satisfies the "
                "constraint. Loosen the constraint or the space's limits, or raise "
                "max_rejections.", rejections=self.rejections_in_row, last_reason=reason)

    def _run_hooks(self, arch: Arch, reason: str | None
                   ) -> tuple[dict[str, Any], float, str | None]:
        """The metric hooks' metrics, their seconds and the error of a hook that failed."""
        hook_metrics: dict[str, Any] = {}
        if reason is not None or not self.o.metric_hooks:
            return hook_metrics, 0.0, None
        h0 = time.perf_counter()
        error = None
        try:
            network = self.o.build_network(arch) if self.o.needs_network else None
            for hook in self.o.metric_hooks:
                hook_metrics.update({str(k): _scalar(v)
                                     for k, v in hook(arch, network).items()})
        except Exception as err:  # noqa: BLE001
            error = f"metric hook failed: {type(err).__name__}: {err}"
        return hook_metrics, time.perf_counter() - h0, error

    def collect(self) -> None:
        """Wait for the oldest trial in flight, tell the sampler, journal its record."""
        o = self.o
        trial = self.in_flight.popleft()
        if trial.replay is not None:
            rec = trial.replay
            o.sampler.tell(trial.arch, rec["objective"] if rec["status"] == "ok" else None)
            self.records.append(rec)
            self.counted(rec)
            self.show()
            return
        if trial.future is not None:
            try:
                out = trial.future.result()
            except Exception as err:  # noqa: BLE001 - e.g. a broken process pool
                out = {"metrics": {}, "error": f"{type(err).__name__}: {err}",
                       "traceback": None, "seconds": 0.0}
        else:
            out = _evaluate_trial(o.evaluator, trial.arch, trial.fidelity)
        t0 = time.perf_counter()
        metrics = {**trial.hook_metrics, **out["metrics"]}
        error, value = out["error"], None
        if error is None:
            try:
                value = float(o.objective(metrics))
                if not math.isfinite(value):
                    error = f"objective is {value} (metrics {metrics})"
                    value = None
            except Exception as err:  # noqa: BLE001
                error = f"objective failed: {type(err).__name__}: {err}"
        t2 = time.perf_counter()
        o.sampler.tell(trial.arch, value)
        timing = {"eval_seconds": out["seconds"], "hook_seconds": trial.hook_seconds,
                  "wall_seconds": out["seconds"] + trial.hook_seconds,
                  "sampler_seconds": trial.sampler_seconds + time.perf_counter() - t2}
        rec = _record(trial.index, trial.arch, trial.arch_str,
                      "ok" if error is None else "failed", "evaluation", metrics, value, error,
                      timing, out.get("traceback"), fidelity=trial.fidelity)
        overhead = trial.overhead + time.perf_counter() - t0
        timing["overhead_seconds"] = overhead
        self.commit(rec, overhead)
        self.counted(rec)
        self.show()

    def run(self) -> None:
        """Propose until the executor is full or the budget spent, collect one; repeat."""
        while True:
            while len(self.in_flight) < self.o.width and self.can_ask():
                self.propose()
            if not self.in_flight:
                break
            self.collect()
        self.save()  # the loop ended normally: the state is the journal's end

    def close(self) -> None:
        self.bar.close()
        self.journal.close()
        if self.o.executor is not None:
            for t in self.in_flight:
                if t.future is not None:
                    t.future.cancel()


class UnsatisfiableConstraintError(RuntimeError):
    """``max_rejections`` candidates in a row were rejected before evaluation."""

    def __init__(self, message: str, *, rejections: int, last_reason: str | None):
        super().__init__(message)
        self.rejections = rejections
        self.last_reason = last_reason


def _check_replay(index: int, rec: Mapping[str, Any], arch_str: str,
                  fidelity: float | None = None) -> None:
    if rec["arch"] != arch_str or rec.get("fidelity") != fidelity:
        raise RuntimeError(f"cannot resume: journal trial {index} is {rec['arch']!r} (fidelity "
                           f"{rec.get('fidelity')}) but the restored sampler gives "
                           f"{arch_str!r} (fidelity {fidelity}); was the sampler changed?")


def _rank(rec: Mapping[str, Any]) -> tuple[float, float]:
    """Order of ok records for the best one: the fidelity first (multi-fidelity search: the
    incumbent is the best at the highest budget reached), then the objective."""
    fidelity = rec.get("fidelity")
    return (-math.inf if fidelity is None else float(fidelity), rec["objective"])


def _record(index: int, arch: Arch, arch_str: str, status: str, stage: str, metrics: dict,
            value: float | None, error: str | None, timing: dict,
            tb: str | None = None, fidelity: float | None = None) -> dict[str, Any]:
    rec = {"trial": index, "status": status, "stage": stage, "arch": arch_str,
           "arch_json": arch.to_dict(), "metrics": metrics, "objective": value,
           "error": error, "timing": timing}
    if fidelity is not None:  # only multi-fidelity searches: other journals are unchanged
        rec["fidelity"] = fidelity
    if tb:
        rec["traceback"] = tb
    return rec


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
