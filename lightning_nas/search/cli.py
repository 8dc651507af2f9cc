"""``lightning-nas search``: a multi-trial search configured in YAML.

The space, sampler and evaluator are chosen with ``class_path``/``init_args`` (the sampler
gets the space linked in, so it is configured once)::

    lightning-nas search --config configs/search/nb201_evolution.yaml --run_dir runs/rea
    python -m lightning_nas.search.cli --config configs/search/nb201_bo.yaml --seed 3

``--resume`` continues the search journaled in ``--run_dir``. The resolved config is saved
as ``run_dir/config.yaml`` next to ``candidates.jsonl``, ``summary.json`` and ``arch.json``.

Hardware-aware searches (see ``configs/search/digits_*.yaml``) add:

* ``metric_hooks``: per-candidate metrics before evaluation, e.g. a
  :class:`~lightning_nas.hardware.costs.CostHook` (params, FLOPs, latency median and spread
  on ``device``). Its ``input_shape`` defaults to the evaluator's data (``(C, H, W)``) and
  the network it measures is the one the evaluator trains (the data's classes/channels).
* ``constraints``: hardware limits (``max_latency_ms``, ``max_params``, ``max_flops``); a
  violating candidate is rejected before training and journaled with the reasons.
* ``objective``: a metric name, or ``mnasnet_soft`` / ``mnasnet_hard`` / ``mnasnet`` (the
  MnasNet reward, Tan et al. 2019, Eq. 2, with ``mnasnet.target_ms`` and, for ``mnasnet``,
  ``mnasnet.alpha`` / ``mnasnet.beta``). Every ok record holds its value (``objective``).
* ``pareto``: ``pareto.json`` / ``pareto.png`` of the ok records every ``every_n_trials``
  and at the end (default objectives: accuracy max vs latency_ms min); with
  ``reference_presets: [EfficientNet-B0, ...]`` published networks measured like the
  candidates (the run's input size, classes and metric hooks) are drawn as reference points.
* ``wandb``: ``--wandb true`` or a section (project, name, dir, mode): one W&B run for the
  search (offline unless ``WANDB_MODE``/``mode`` says otherwise), resumed with the search.

Once-for-All specialisation (``configs/search/ofa_cifar10_specialise.yaml``) adds
``budgets``: a list of latency budgets in ms (per batch of the latency hook) on the metric
``latency_ms``. The CLI then runs one search per budget, each in ``run_dir/budget_<b>ms/``
with its own journal (``--resume`` continues them all) and the constraint
``max_latency_ms = b`` joined to any other ``constraints``; the sampler is reset to its seed
for every budget, the evaluator and the hooks are shared (results cached across budgets).
Before searching, every budget is checked against the fastest subnet of the space (see
:func:`~lightning_nas.search.budgets.check_budgets`); an impossible budget is an error before any evaluation. At the end
``run_dir`` holds ``pareto.json``/``pareto.png`` over all evaluated candidates,
``budgets.json`` (the best candidate of every budget among all evaluated ones), the best
subnets exported by the evaluator's ``export`` (``run_dir/subnets/<b>ms/arch.json`` and
``subnet.ckpt``; :class:`~lightning_nas.search.supernet_evaluator.SupernetEvaluator` has
one) and ``summary.json``; W&B gets one run with the front and a table of the best per
budget.

Before the search starts the evaluator is given the search's space (``bind``) and
prepared (``prepare``: the supernet evaluator loads its checkpoint and checks the space
there); see :class:`~lightning_nas.search.evaluators.Evaluator` for the parts of an
evaluator the CLI uses.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.cli import EXIT_INTERRUPTED
from lightning_nas.hardware.objective import Constraints, MnasNetReward
from lightning_nas.search.budgets import check_budgets
from lightning_nas.search.evaluators import Evaluator
from lightning_nas.search.journal import Journal
from lightning_nas.search.loop import MetricObjective, UnsatisfiableConstraintError, run_search
from lightning_nas.search.report import (
    ParetoOptions,
    SearchReporter,
    WandbOptions,
    default_objectives,
)
from lightning_nas.search.samplers import Sampler
from lightning_nas.spaces.base import Arch, SearchSpace

#: ``--objective`` values that select the MnasNet reward instead of a metric.
MNASNET_OBJECTIVES = ("mnasnet_soft", "mnasnet_hard", "mnasnet")


@dataclass
class MnasNetOptions:
    """Settings of the MnasNet reward objective (``mnasnet:`` in the search YAML).

    Attributes:
        target_ms: target latency T in ms (per batch of the cost hook), required.
        alpha: exponent when latency <= T (only for ``objective: mnasnet``; the soft
            reward uses -0.07, the hard one 0).
        beta: exponent when latency > T (``mnasnet`` only; soft -0.07, hard -1).
        accuracy_key: metric holding the accuracy (default: the evaluator's primary metric).
        latency_key: metric holding the latency in ms.
    """

    target_ms: float | None = None
    alpha: float = -0.07
    beta: float = -0.07
    accuracy_key: str | None = None
    latency_key: str = "latency_ms"


class HardwareConstraint:
    """Loop constraint over hook metrics: the violated limits of a hardware ``Constraints``."""

    def __init__(self, constraints: Constraints):
        self.constraints = constraints

    def __call__(self, arch: Any, metrics: Mapping[str, Any]) -> list[str]:
        return self.constraints.check(metrics)

    def __repr__(self) -> str:
        return repr(self.constraints)


class SearchArgumentParser(ArgumentParser):
    """The search command's parser, with condensed error messages."""

    def error(self, message: str, ex: Exception | None = None):
        from lightning_nas.cli import condense_parser_message

        return super().error(condense_parser_message(message), ex)


def build_parser() -> ArgumentParser:
    parser = SearchArgumentParser(prog="lightning-nas search",
                            description="Multi-trial architecture search (ask/tell sampler + "
                                        "evaluator), journaled to --run_dir.")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file")
    parser.add_subclass_arguments(SearchSpace, "space", required=True,
                                  help="search space (class_path/init_args)")
    parser.add_subclass_arguments(Sampler, "sampler", required=True,
                                  help="sampler; its space is linked from --space")
    parser.add_subclass_arguments(Evaluator, "evaluator", required=True,
                                  help="evaluator (class_path/init_args)")
    parser.link_arguments("space", "sampler.init_args.space", apply_on="instantiate")
    parser.add_argument("--run_dir", type=str | None, default=None,
                        help="output folder (default runs/search/<space>_<sampler>_seed<seed>)")
    parser.add_argument("--resume", type=bool, default=False,
                        help="continue the search journaled in --run_dir")
    parser.add_argument("--seed", type=int | None, default=None,
                        help="re-seed the sampler (default: the sampler's own seed)")
    parser.add_argument("--budget_trials", type=int | None, default=None,
                        help="evaluated trials to run")
    parser.add_argument("--budget_seconds", type=float | None, default=None,
                        help="seconds to search (wall clock, or the sum of --time_key)")
    parser.add_argument("--time_key", type=str | None, default=None,
                        help="metric holding each trial's (simulated) seconds for the budget")
    parser.add_argument("--objective", type=str | None, default=None,
                        help="metric to optimise (default: the evaluator's primary metric), or "
                             "mnasnet_soft / mnasnet_hard / mnasnet for the MnasNet reward")
    parser.add_argument("--objective_mode", type=str, default="max", choices=["max", "min"])
    parser.add_argument("--mnasnet", type=MnasNetOptions, default=MnasNetOptions(),
                        help="MnasNet reward settings (target_ms, alpha, beta, keys)")
    parser.add_argument("--metric_hooks", type=list[Callable], default=[],
                        help="per-candidate metric hooks (class_path), e.g. "
                             "lightning_nas.hardware.CostHook; run before evaluation")
    parser.add_argument("--constraints", type=Constraints | None, default=None,
                        help="hardware limits (max_latency_ms, max_params, max_flops); "
                             "violating candidates are rejected before evaluation")
    parser.add_argument("--pareto", type=ParetoOptions, default=ParetoOptions(),
                        help="pareto.json/png report (objectives, every_n_trials, ...)")
    parser.add_argument("--wandb", type=bool | WandbOptions, default=False,
                        help="log the search to one W&B run: true, or a section with "
                             "project/name/dir/mode (offline unless WANDB_MODE says otherwise)")
    parser.add_argument("--workers", type=int, default=0,
                        help="parallel evaluations (0 = inline in this process)")
    parser.add_argument("--executor", type=str, default="process",
                        choices=["process", "thread", "ray"],
                        help="where trials run when --workers > 0: a local process or thread "
                             "pool, or Ray tasks (--ray, pip install 'lightning-nas[ray]')")
    parser.add_argument("--ray", type=RayOptions, default=RayOptions(),
                        help="with --executor ray: address (None: start a local Ray instance; "
                             "'auto' or 'ray://host:10001': an existing cluster), num_cpus and "
                             "num_gpus per trial, local_cpus of a local instance")
    parser.add_argument("--start_method", type=str | None, default=None,
                        choices=[None, "fork", "spawn", "forkserver"],
                        help="how process-pool workers start (default: spawn where CUDA is "
                             "available, since a forked child cannot use CUDA; else the "
                             "platform's default)")
    parser.add_argument("--budgets", type=list[float] | None, default=None,
                        help="latency budgets in ms (metric latency_ms): one search per budget "
                             "in run_dir/budget_<b>ms, then the Pareto front, budgets.json and "
                             "the best subnet of each budget (Once-for-All specialisation)")
    parser.add_argument("--zero_cost_warmup.scorer", type=Callable | None, default=None,
                        help="zero-cost warm start of any sampler (ZeroCostWarmup): a scorer "
                             "arch -> {proxy: score} (class_path), e.g. lightning_nas.search."
                             "zero_cost_evaluator.ScoreTable (precomputed scores) or "
                             "ZeroCostEvaluator; the first queries are the best-scored cells "
                             "of a random pool, then the sampler takes over")
    parser.add_argument("--zero_cost_warmup.pool_size", type=int, default=1000,
                        help="cells scored for the warm start (no query spent on them)")
    parser.add_argument("--zero_cost_warmup.warmup", type=int | None, default=None,
                        help="queries taken from the pool's top (default: the sampler's "
                             "population_size or initial_random, else 10)")
    parser.add_argument("--zero_cost_warmup.metric", type=str | None, default=None,
                        help="rank the pool by this proxy alone (default: all proxies "
                             "combined by --zero_cost_warmup.aggregate)")
    parser.add_argument("--zero_cost_warmup.aggregate", type=str, default="rank_sum",
                        choices=["rank_sum", "az_nas"],
                        help="how several proxies are combined: sum of ranks, or AZ-NAS's "
                             "sum of log ranks")
    parser.add_argument("--max_rejections", type=int, default=1000)
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    return parser


def _save_config(parser: ArgumentParser, cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Write the resolved config to ``run_dir`` (``config.resume.yaml`` when resuming) and
    return it as plain data for the reports."""
    config_name = "config.yaml" if not (cfg.resume and (run_dir / "config.yaml").exists()) \
        else "config.resume.yaml"
    parser.save(cfg, run_dir / config_name, overwrite=True)
    return yaml.safe_load(parser.dump(cfg, skip_none=False))


def _add_run_facts(summary: dict[str, Any], *, constraints: Mapping[str, Any] | None,
                   hardware: Mapping[str, Any], reported: Mapping[str, Any],
                   evaluator: Evaluator, references: Sequence[Mapping[str, Any]] = (),
                   sampler: Sampler | None = None, run_dir: Path | None = None) -> None:
    """The summary.json entries every search writes: its constraints, where latency was
    measured, the Pareto report, the W&B run, an accuracy predictor's hold-out quality, the
    measured reference presets and the seeds projected into the space (also written to
    ``run_dir/seed_projections.json``)."""
    if constraints:
        summary["constraints"] = dict(constraints)
    if hardware:
        summary["latency_measurement"] = dict(hardware)
    if reported["pareto"] is not None:
        summary["pareto"] = _pareto_summary(reported["pareto"])
    if reported["wandb"] is not None:
        summary["wandb"] = reported["wandb"]
    if evaluator.fit_report is not None:
        summary["predictor"] = evaluator.fit_report
    if references:
        from lightning_nas.hardware.report import jsonable

        summary["reference_presets"] = jsonable([dict(r) for r in references])
    projections = getattr(sampler, "projections", None)  # SeededEvolution's projected seeds
    if projections and run_dir is not None:
        path = run_dir / "seed_projections.json"
        path.write_text(json.dumps(projections, indent=2) + "\n")
        summary["seed_projections"] = {"json": str(path),
                                       "seeds": {p["seed"]: p["subnet"] for p in projections}}


def _reference_points(parser: ArgumentParser, names: Sequence[str] | None, *,
                      space: SearchSpace, evaluator: Evaluator, hooks: Sequence[Any],
                      pareto_enabled: bool) -> list[dict[str, Any]]:
    """``pareto.reference_presets`` measured like the candidates (before any trial: a wrong
    name fails at once)."""
    if not names:
        return []
    from lightning_nas.hardware.reference import (
        check_preset_names,
        reference_space_for,
        run_reference_points,
    )

    names = check_preset_names(names, what="pareto.reference_presets")  # checked at parse
    if not pareto_enabled:
        parser.error("pareto.reference_presets are drawn in the Pareto report, which is off; "
                     "set pareto.enabled true (and pareto.objectives) or drop them")
    shape = next((tuple(h.input_shape) for h in hooks
                  if getattr(h, "input_shape", None) is not None), None) or evaluator.input_shape
    if shape is None:
        parser.error(f"pareto.reference_presets need the run's input shape, which neither a "
                     f"metric hook nor the evaluator {type(evaluator).__name__} tells; add "
                     "lightning_nas.hardware.CostHook with init_args.input_shape, e.g. "
                     "[3, 32, 32]")
    data = getattr(evaluator, "data", None)
    num_classes = int(getattr(data, "num_classes", None)
                      or getattr(space, "build_defaults", {}).get("num_classes") or 1000)
    ref_space = reference_space_for(space, input_size=int(shape[-1]), num_classes=num_classes,
                                    in_channels=int(shape[0]))
    return run_reference_points(names, space=ref_space, input_shape=shape, hooks=hooks,
                                num_classes=num_classes)


def _latency_limits(objectives: Mapping[str, str] | None,
                    limits: Sequence[float | None]) -> dict[str, float] | None:
    """Latency limits (budgets, ``max_latency_ms``) to draw on the Pareto plot, when its x
    axis (the second objective) is ``latency_ms``."""
    if list(objectives or {})[1:2] != ["latency_ms"]:
        return None
    return {f"{b:g} ms": float(b) for b in limits if b is not None} or None


def _pareto_summary(p: Mapping[str, Any]) -> dict[str, Any]:
    """The summary.json entry of a written Pareto report."""
    return {"objectives": p["objectives"], "hypervolume": p["hypervolume"],
            "front_size": len(p["front"]), "json": p["json_path"], "png": p["png_path"]}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _resolve_objective(cfg: Any, evaluator: Evaluator, hooks: Sequence[Any]
                       ) -> tuple[Callable[[Mapping[str, Any]], float] | None, str, str | None]:
    """``(objective or None for the default, its name, error message or None)``."""
    from lightning_nas.hardware.costs import CostHook

    primary = evaluator.primary_metric or "objective"
    name = cfg.objective
    if name in MNASNET_OBJECTIVES:
        opts = cfg.mnasnet
        if opts.target_ms is None:
            return None, name, (f"objective {name} needs the target latency: set "
                                "mnasnet.target_ms (ms per batch of the cost hook)")
        costs = [h for h in hooks if isinstance(h, CostHook)]
        if opts.latency_key == "latency_ms" and len(costs) == len(hooks) and \
                not any(h.latency for h in costs):
            return None, name, (f"objective {name} needs latency_ms: add a metric hook that "
                                "measures it, e.g. lightning_nas.hardware.CostHook with "
                                "latency: true")
        keys = {"accuracy_key": opts.accuracy_key or primary, "latency_key": opts.latency_key}
        try:
            if name == "mnasnet_soft":
                reward = MnasNetReward.soft(opts.target_ms, **keys)
            elif name == "mnasnet_hard":
                reward = MnasNetReward.hard(opts.target_ms, **keys)
            else:
                reward = MnasNetReward(opts.target_ms, alpha=opts.alpha, beta=opts.beta, **keys)
        except ValueError as err:
            return None, name, str(err)
        return reward, reward.name, None
    if name:
        return MetricObjective(name, cfg.objective_mode), name, None
    if cfg.objective_mode == "min":
        return MetricObjective(primary, "min"), primary, None
    return None, primary, None


def _hardware_info(hooks: Sequence[Any]) -> dict[str, Any]:
    """Where and how latency is measured (DESIGN.md convention 10), for the summary."""
    from lightning_nas.hardware.costs import CostHook
    from lightning_nas.hardware.latency import device_name

    out: dict[str, Any] = {}
    for hook in hooks:
        table = getattr(hook, "table", None)
        if table is not None and callable(getattr(table, "predict", None)):  # LatencyTableHook
            meta = dict(getattr(table, "metadata", {}) or {})
            out = {"latency": "lookup table", "table": str(getattr(hook, "path", "")),
                   "hardware": meta.get("hardware") or meta.get("device"),
                   **{k: meta[k] for k in ("device", "batch_size", "num_threads")
                      if meta.get(k) is not None}}
            break
        if isinstance(hook, CostHook):
            kw = hook.latency_kwargs
            out = {"input_shape": list(hook.input_shape or ()), "latency": hook.latency,
                   "batch_size": hook.batch_size, **kw}
            if hook.latency:
                try:
                    out["hardware"] = device_name(kw.get("device") or "cpu")
                except Exception as err:  # noqa: BLE001 - e.g. no CUDA here
                    out["hardware"] = f"unknown ({type(err).__name__})"
            break
    return out


def _unsatisfiable(err: UnsatisfiableConstraintError, run_dir: Path, constraints: Constraints | None
                   ) -> RuntimeError:
    """A clearer error for a search whose candidates are all rejected."""
    records = Journal(run_dir).read()
    rejected = [r for r in records if r["status"] == "rejected"]
    lines = [f"no candidate satisfies the constraints: {err}"]
    if constraints is not None:
        for key, limit in constraints.active.items():
            seen = [float(r["metrics"][key]) for r in rejected
                    if isinstance(r.get("metrics", {}).get(key), (int, float))]
            if seen:
                lines.append(f"  {key}: limit {limit:g}, smallest of {len(seen)} rejected "
                             f"candidates {min(seen):g}")
    lines.append(f"({len(rejected)} rejected records in {run_dir / 'candidates.jsonl'})")
    return RuntimeError("\n".join(lines))


def _budget_name(budget: float) -> str:
    return f"{budget:g}ms"


#: Top-level settings that may change when a search is resumed: where it runs, how long,
#: what it shows and where it reports (nothing that changes a measurement or a draw).
RESUMABLE_SETTINGS = ("config", "run_dir", "resume", "budget_trials", "budget_seconds",
                      "progress", "wandb", "pareto", "executor", "start_method", "ray",
                      "max_rejections", "budgets")
#: Setting names, at any depth, that only change speed or verbosity.
RESUMABLE_LEAVES = ("quiet", "progress", "num_workers", "pin_memory", "num_threads",
                    "save_dir", "__path__")


def search_identity(dumped: Mapping[str, Any]) -> dict[str, Any]:
    """What defines a search, from its resolved config: everything but
    :data:`RESUMABLE_SETTINGS` and :data:`RESUMABLE_LEAVES` (space, sampler and its
    arguments, evaluator, objective, hooks, constraints, seed, trials in flight)."""
    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items() if k not in RESUMABLE_LEAVES}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {k: strip(v) for k, v in dumped.items() if k not in RESUMABLE_SETTINGS}


def _interrupted_message(argv: Sequence[str], run_dir: Path, cfg: Any) -> str:
    """What Ctrl-C leaves behind and the command that continues it."""
    journals = sorted(run_dir.rglob("candidates.jsonl")) if run_dir.is_dir() else []
    saved = sum(len(Journal(p.parent).read()) for p in journals)
    args = [a for a in argv if a not in ("--resume", "--resume=false", "--resume=False")]
    if "--resume" in argv:  # drop its value too
        i = list(argv).index("--resume")
        args = list(argv[:i]) + list(argv[i + 2:])
    if cfg.run_dir is None:
        args += ["--run_dir", str(run_dir)]
    command = " ".join(["lightning-nas", "search", *args, "--resume", "true"])
    return (f"\ninterrupted: {saved} trial record(s) are saved in {run_dir} "
            f"(candidates.jsonl); the trial in flight is run again on resume. Continue with:"
            f"\n  {command}")


@dataclass
class RayOptions:
    """Where Ray trials run (``--executor ray``); see :class:`~lightning_nas.search.
    ray_executor.RayExecutor`."""

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    local_cpus: int | None = None


def _make_executor(cfg: Any) -> Executor | None:
    if cfg.workers <= 0:
        return None
    if cfg.executor == "ray":
        from lightning_nas.search.ray_executor import RayExecutor

        ray_opts = cfg.ray
        return RayExecutor(cfg.workers, address=ray_opts.address, num_cpus=ray_opts.num_cpus,
                           num_gpus=ray_opts.num_gpus, local_cpus=ray_opts.local_cpus)
    if cfg.executor == "process":
        import multiprocessing

        import torch

        method = cfg.start_method or ("spawn" if torch.cuda.is_available() else None)
        return ProcessPoolExecutor(
            max_workers=cfg.workers,
            mp_context=multiprocessing.get_context(method) if method else None)
    return ThreadPoolExecutor(max_workers=cfg.workers)


def _checked_hooks_and_constraints(parser: ArgumentParser, evaluator: Evaluator,
                                   hooks: list[Any], constraints: Constraints | None
                                   ) -> Constraints | None:
    """Give cost hooks without an input shape the evaluator's; the active constraints (None
    without any), which need a hook's metrics."""
    for hook in hooks:  # cost hooks without an input shape measure the evaluator's input
        if hasattr(hook, "input_shape") and hook.input_shape is None:
            shape = evaluator.input_shape
            if shape is None:
                parser.error(f"metric hook {hook!r} has no input_shape and the evaluator "
                             f"{type(evaluator).__name__} does not tell one; set "
                             "init_args.input_shape, e.g. [3, 32, 32]")
            hook.input_shape = tuple(shape)
    if constraints is not None and not constraints.active:
        constraints = None
    if constraints is not None and not hooks:
        parser.error(f"constraints {constraints} need the metrics of a metric hook: add "
                     "lightning_nas.hardware.CostHook to metric_hooks (latency: true for "
                     "max_latency_ms)")
    if constraints is not None and constraints.max_latency_ms is not None and all(
            getattr(h, "latency", None) is False for h in hooks):
        parser.error("constraints.max_latency_ms needs measured latency: give the CostHook "
                     "in metric_hooks latency: true")
    return constraints


def _checked_budgets(parser: ArgumentParser, raw: Sequence[float] | None, hooks: list[Any],
                     constraints: Constraints | None) -> list[float] | None:
    """The latency budgets, sorted and checked (None: a single search)."""
    if raw is None:
        return None
    budgets = [float(b) for b in raw]
    if not budgets or any(not math.isfinite(b) or b <= 0 for b in budgets):
        parser.error(f"budgets must be a non-empty list of latency budgets > 0 ms, got "
                     f"{list(raw)!r}")
    if len({_budget_name(b) for b in budgets}) != len(budgets):
        parser.error(f"budgets has duplicates: {list(raw)!r}")
    budgets.sort()
    if constraints is not None and constraints.max_latency_ms is not None:
        parser.error(f"constraints.max_latency_ms ({constraints.max_latency_ms:g}) and budgets "
                     "both limit latency_ms; each budget is the max_latency_ms of its "
                     "search, so drop constraints.max_latency_ms")
    if not hooks:
        parser.error("budgets need latency_ms from a metric hook: add "
                     "lightning_nas.hardware.LatencyTableHook or lightning_nas.hardware."
                     "CostHook (latency: true) to metric_hooks")
    return budgets


def main_search(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the search, print and return a summary."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    cfg = parser.parse_args(argv)
    if cfg.budget_trials is None and cfg.budget_seconds is None:
        parser.error("give a budget: --budget_trials and/or --budget_seconds")
    if cfg.pareto.reference_presets:  # before anything is built
        from lightning_nas.hardware.reference import check_preset_names

        try:
            check_preset_names(cfg.pareto.reference_presets, what="pareto.reference_presets")
        except ValueError as err:
            parser.error(str(err))
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    init = instantiate(cfg)
    space, sampler, evaluator = init.space, init.sampler, init.evaluator
    warm = init.zero_cost_warmup
    if warm.scorer is not None:
        from lightning_nas.search.zero_cost_evaluator import ZeroCostWarmup

        try:
            sampler = ZeroCostWarmup(sampler, warm.scorer, pool_size=warm.pool_size,
                                     warmup=warm.warmup, metric=warm.metric,
                                     aggregate=warm.aggregate, seed=sampler.seed)
        except ValueError as err:
            parser.error(f"zero_cost_warmup: {err}")
    try:
        evaluator.bind(space)  # e.g. TrainingEvaluator takes the search's space
    except ValueError as err:
        parser.error(str(err))
    evaluator.prepare()  # e.g. SupernetEvaluator: load the checkpoint, check the space
    hooks = list(init.metric_hooks or [])
    constraints = _checked_hooks_and_constraints(parser, evaluator, hooks, init.constraints)
    budgets = _checked_budgets(parser, cfg.budgets, hooks, constraints)
    objective, objective_name, problem = _resolve_objective(cfg, evaluator, hooks)
    if problem:
        parser.error(problem)
    primary = evaluator.primary_metric or objective_name
    pareto_opts: ParetoOptions = init.pareto
    pareto_objectives = pareto_opts.objectives or default_objectives(primary, hooks)
    if pareto_opts.enabled is None:
        pareto_opts.enabled = pareto_objectives is not None
    if pareto_opts.enabled and not pareto_objectives:
        pareto_objectives = {primary: "max"}
    wandb_opts = init.wandb
    if wandb_opts is True:
        wandb_opts = WandbOptions()
    elif wandb_opts is False:
        wandb_opts = None

    references = _reference_points(
        parser, pareto_opts.reference_presets, space=space, evaluator=evaluator, hooks=hooks,
        pareto_enabled=bool(pareto_opts.enabled) or (budgets is not None
                                                    and pareto_opts.enabled is not False))

    seed = cfg.seed if cfg.seed is not None else sampler.seed
    run_dir = Path(cfg.run_dir or f"runs/search/{space.name}_{type(sampler).__name__}_seed{seed}")
    identity = search_identity(yaml.safe_load(parser.dump(cfg, skip_none=False)))
    # e.g. continued training's checkpoints under run_dir/continue, tagged with the identity
    evaluator.use_run_dir(run_dir, hashlib.sha256(
        json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16])
    try:
        if budgets is not None:
            return _run_budgets(
                parser, cfg, space=space, sampler=sampler, evaluator=evaluator, hooks=hooks,
                constraints=constraints, objective=objective, objective_name=objective_name,
                primary=primary, pareto_opts=pareto_opts, pareto_objectives=pareto_objectives,
                wandb_opts=wandb_opts, run_dir=run_dir, budgets=budgets, seed=seed,
                identity=identity, references=references)
        return _run_single(
            parser, cfg, space=space, sampler=sampler, evaluator=evaluator, hooks=hooks,
            constraints=constraints, objective=objective, objective_name=objective_name,
            pareto_opts=pareto_opts, pareto_objectives=pareto_objectives,
            wandb_opts=wandb_opts, run_dir=run_dir, identity=identity, references=references)
    except KeyboardInterrupt:
        print(_interrupted_message(argv, run_dir, cfg), file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def _run_single(parser: ArgumentParser, cfg: Any, *, space: SearchSpace, sampler: Sampler,
                evaluator: Evaluator, hooks: list[Any], constraints: Constraints | None,
                objective: Callable[[Mapping[str, Any]], float] | None, objective_name: str,
                pareto_opts: ParetoOptions, pareto_objectives: dict[str, str] | None,
                wandb_opts: WandbOptions | None, run_dir: Path,
                identity: dict[str, Any], references: Sequence[Mapping[str, Any]] = ()
                ) -> dict[str, Any]:
    """One search in ``run_dir`` (no latency budgets), then its summary and report."""
    if Journal(run_dir).exists() and not cfg.resume:
        raise FileExistsError(f"{run_dir} already holds a search journal; pass --resume true to "
                              "continue it, or use a new --run_dir")
    if cfg.resume:
        Journal(run_dir).check_identity(identity)  # before config.resume.yaml is written
    run_dir.mkdir(parents=True, exist_ok=True)
    dumped = _save_config(parser, cfg, run_dir)
    hardware = _hardware_info(hooks)
    reporter = SearchReporter(
        run_dir, objective_name=objective_name, pareto=pareto_opts if pareto_opts.enabled
        else None, objectives=pareto_objectives, wandb=wandb_opts,
        config=dumped, resume=cfg.resume,
        extra_summary={f"latency_measurement/{k}": v for k, v in hardware.items()
                       if isinstance(v, (int, float, str))},
        x_limits=_latency_limits(pareto_objectives, [constraints.max_latency_ms]
                                 if constraints is not None else []), references=references)

    executor = _make_executor(cfg)
    failed = True
    try:
        try:
            result = run_search(
                space, sampler, evaluator, run_dir=run_dir, budget_trials=cfg.budget_trials,
                budget_seconds=cfg.budget_seconds, time_key=cfg.time_key, objective=objective,
                executor=executor, resume=cfg.resume, seed=cfg.seed,
                max_rejections=cfg.max_rejections, progress=cfg.progress, metric_hooks=hooks,
                constraint=HardwareConstraint(constraints) if constraints else None,
                build_network=evaluator.network, on_record=reporter, identity=identity)
        except UnsatisfiableConstraintError as err:
            raise _unsatisfiable(err, run_dir, constraints) from err
        failed = False
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
        reported = reporter.finish(failed=failed)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(run_dir=str(run_dir), git_commit=_git_commit(), objective_name=objective_name)
    _add_run_facts(summary, constraints=constraints.active if constraints is not None else None,
                   hardware=hardware, reported=reported, evaluator=evaluator,
                   references=references, sampler=sampler, run_dir=run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    best = result.best
    counts = result.counts()
    print(f"{counts['ok'] + counts['failed']} trials ({counts['failed']} failed, "
          f"{counts['rejected']} rejected) -> {run_dir}")
    if best:
        print(f"best (trial {best['trial']}, {objective_name} = {best['objective']:.4g}): "
              f"{best['arch']}")
        print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in best["metrics"].items()))
    if reported["pareto"] is not None:
        p = reported["pareto"]
        print(f"Pareto front: {len(p['front'])} of {p['n_candidates']} candidates "
              f"({', '.join(f'{k} {v}' for k, v in p['objectives'].items())}) -> "
              f"{p['json_path']}")
    if reported["wandb"] is not None:
        print(f"W&B run {reported['wandb']['id']} in {reported['wandb']['dir']}")
    ov = result.overhead
    if ov.get("n"):
        print(f"loop overhead per trial: median {ov['median']:.2f} ms, mean {ov['mean']:.2f} "
              f"+- {ov['std']:.2f} ms (n={ov['n']})")
    return summary


def _run_budgets(parser: ArgumentParser, cfg: Any, *, space: SearchSpace, sampler: Sampler,
                 evaluator: Evaluator, hooks: list[Any], constraints: Constraints | None,
                 objective: Callable[[Mapping[str, Any]], float] | None, objective_name: str,
                 primary: str, pareto_opts: ParetoOptions,
                 pareto_objectives: dict[str, str] | None, wandb_opts: WandbOptions | None,
                 run_dir: Path, budgets: list[float], seed: int,
                 identity: dict[str, Any], references: Sequence[Mapping[str, Any]] = ()
                 ) -> dict[str, Any]:
    """One search per latency budget, then the joint report (module docstring)."""
    build_network = evaluator.network
    # before any folder, journal or evaluation: every budget must be reachable
    fastest = check_budgets(space, budgets, hooks, build_network)
    dirs = {b: run_dir / f"budget_{_budget_name(b)}" for b in budgets}
    if not cfg.resume:
        taken = [str(d) for d in dirs.values() if Journal(d).exists()]
        if taken or Journal(run_dir).exists():
            raise FileExistsError(f"{run_dir} already holds search journals ({taken or run_dir}); "
                                  "pass --resume true to continue them, or use a new --run_dir")
    identities = {b: {**identity, "latency_budget_ms": b} for b in budgets}
    if cfg.resume:
        for budget, bdir in dirs.items():  # before config.resume.yaml is written
            Journal(bdir).check_identity(identities[budget])
    run_dir.mkdir(parents=True, exist_ok=True)
    dumped = _save_config(parser, cfg, run_dir)
    hardware = _hardware_info(hooks)
    objectives = pareto_objectives or {primary: "max", "latency_ms": "min"}
    if "latency_ms" not in objectives:
        warnings.warn(f"the Pareto objectives {objectives} leave out latency_ms; the budgets "
                      "still limit it", stacklevel=2)
    per_budget_pareto = ParetoOptions(enabled=True, objectives=objectives,
                                      every_n_trials=pareto_opts.every_n_trials,
                                      reference=pareto_opts.reference, plot=pareto_opts.plot)
    base = constraints or Constraints()
    results: dict[float, Any] = {}
    searches: dict[str, Any] = {}
    executor = _make_executor(cfg)
    try:
        for budget in budgets:
            bdir = dirs[budget]
            limit = replace(base, max_latency_ms=budget)
            print(f"latency budget {budget:g} ms -> {bdir}")
            sampler.reset(seed)  # a fresh sampler of the same config for every budget
            reporter = SearchReporter(bdir, objective_name=objective_name,
                                      pareto=per_budget_pareto if pareto_opts.enabled is not False
                                      else None, objectives=objectives, resume=cfg.resume,
                                      x_limits=_latency_limits(objectives, [budget]),
                                      references=references)
            failed = True
            try:
                try:
                    result = run_search(
                        space, sampler, evaluator, run_dir=bdir, budget_trials=cfg.budget_trials,
                        budget_seconds=cfg.budget_seconds, time_key=cfg.time_key,
                        objective=objective, executor=executor, resume=cfg.resume,
                        seed=cfg.seed, max_rejections=cfg.max_rejections,
                        progress=cfg.progress, metric_hooks=hooks,
                        constraint=HardwareConstraint(limit), build_network=build_network,
                        on_record=reporter, identity=identities[budget])
                except UnsatisfiableConstraintError as err:
                    raise _unsatisfiable(err, bdir, limit) from err
                failed = False
            finally:
                reporter.finish(failed=failed)
            results[budget] = result
            searches[_budget_name(budget)] = {"run_dir": str(bdir), "counts": result.counts(),
                                              "constraints": limit.active}
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)

    # every evaluated network once (archs differing only in inactive blocks are one network)
    canonical = getattr(space, "canonical", None)
    merged: dict[str, dict[str, Any]] = {}
    for budget in budgets:
        for rec in results[budget].records:
            if rec["status"] != "ok":
                continue
            arch = Arch.from_dict(rec["arch_json"])
            key = space.to_string(canonical(arch)) if callable(canonical) else rec["arch"]
            if key not in merged:
                merged[key] = {**rec, "metrics": {**rec["metrics"],
                                                  "found_in_budget_ms": budget},
                               "budget_trial": rec["trial"]}
    records = {n: {**rec, "trial": n} for n, rec in enumerate(merged.values())}

    best_per_budget = []
    for budget in budgets:
        fits = [r for r in records.values()
                if isinstance(r["metrics"].get("latency_ms"), (int, float))
                and r["metrics"]["latency_ms"] <= budget]
        entry: dict[str, Any] = {"budget_ms": budget, "search_dir": str(dirs[budget]),
                                 "counts": results[budget].counts()}
        if not fits:
            warnings.warn(f"no evaluated candidate meets the latency budget {budget:g} ms "
                          f"(see {dirs[budget] / 'candidates.jsonl'})", stacklevel=2)
            best_per_budget.append({**entry, "arch": None, "subnet": None})
            continue
        best = max(fits, key=lambda r: (r["objective"], -r["metrics"]["latency_ms"]))
        m = best["metrics"]
        entry.update(arch=best["arch"], objective=best["objective"],
                     latency_ms=m["latency_ms"], found_in_budget_ms=m["found_in_budget_ms"],
                     trial=best["budget_trial"],
                     metrics={k: v for k, v in m.items() if k != "found_in_budget_ms"})
        entry[primary] = m.get(primary)
        chosen = Arch.from_dict(best["arch_json"])
        verified = evaluator.verify(chosen)  # a predicted fitness: the real numbers
        if verified is not None:
            entry["verified"] = dict(verified)
        paths = evaluator.export(chosen, run_dir / "subnets" / _budget_name(budget))
        entry["subnet"] = {k: str(v) for k, v in paths.items()} if paths else None
        best_per_budget.append(entry)
    report = {"metric": "latency_ms", "unit": "ms per batch", "objective": objective_name,
              "primary_metric": primary, "latency_source": fastest["source"],
              "fastest_subnet": fastest, "budgets": best_per_budget}
    (run_dir / "budgets.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    reporter = SearchReporter(
        run_dir, objective_name=objective_name,
        pareto=per_budget_pareto if pareto_opts.enabled is not False else None,
        objectives=objectives, wandb=wandb_opts,
        config=dumped, resume=cfg.resume,
        extra_summary={f"latency_measurement/{k}": v for k, v in hardware.items()
                       if isinstance(v, (int, float, str))},
        x_limits=_latency_limits(objectives, budgets), references=references)
    reporter.records = records
    failed = True
    try:
        run = reporter.wandb_run() if records else None
        if run is not None:
            import wandb

            columns = ["budget_ms", "arch", primary, f"verified_{primary}", "latency_ms",
                       "objective", "subnet"]
            table = wandb.Table(columns=columns)
            for e in best_per_budget:
                table.add_data(e["budget_ms"], e["arch"], e.get(primary),
                               (e.get("verified") or {}).get(primary), e.get("latency_ms"),
                               e.get("objective"), (e["subnet"] or {}).get("weights"))
                if e["arch"] is not None:
                    tag = f"budgets/{_budget_name(e['budget_ms'])}"
                    run.summary[f"{tag}/arch"] = e["arch"]
                    for key in (primary, "latency_ms", "objective"):
                        if isinstance(e.get(key), (int, float)):
                            run.summary[f"{tag}/{key}"] = e[key]
                    verified = (e.get("verified") or {}).get(primary)
                    if isinstance(verified, (int, float)):
                        run.summary[f"{tag}/verified_{primary}"] = verified
            run.log({"budgets/best": table})
        failed = False
    finally:
        reported = reporter.finish(failed=failed)

    summary: dict[str, Any] = {
        "run_dir": str(run_dir), "git_commit": _git_commit(), "objective_name": objective_name,
        "budgets": best_per_budget, "searches": searches, "fastest_subnet": fastest,
        "candidates": len(records), "budgets_json": str(run_dir / "budgets.json")}
    _add_run_facts(summary, constraints=base.active or None, hardware=hardware,
                   reported=reported, evaluator=evaluator, references=references,
                   sampler=sampler, run_dir=run_dir)
    if reported["pareto"] is not None:
        p = reported["pareto"]
        print(f"Pareto front: {len(p['front'])} of {p['n_candidates']} candidates -> "
              f"{p['json_path']}")
    if reported["wandb"] is not None:
        print(f"W&B run {reported['wandb']['id']} in {reported['wandb']['dir']}")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True,
                                                     default=str) + "\n")
    for e in best_per_budget:
        if e["arch"] is None:
            print(f"budget {e['budget_ms']:g} ms: no candidate found")
            continue
        value = e.get(primary)
        shown = f"{primary} {value:.4g}" if isinstance(value, (int, float)) else primary
        print(f"budget {e['budget_ms']:g} ms: {shown}, latency {e['latency_ms']:.4g} ms, "
              f"{e['arch']}" + (f" -> {Path(e['subnet']['weights']).parent}" if e["subnet"]
                                else ""))
    return summary


if __name__ == "__main__":
    main_search(sys.argv[1:])
