"""``lightning-nas search``: a multi-trial search configured in YAML.

The space, sampler and evaluator are chosen with ``class_path``/``init_args`` (the sampler
gets the space linked in, so it is configured once)::

    lightning-nas search --config configs/search/nb201_evolution.yaml --run_dir runs/rea
    python -m lightning_nas.search.cli --config configs/search/nb201_bo.yaml --seed 3

``--resume`` continues the search journaled in ``--run_dir``. The resolved config is saved
as ``run_dir/config.yaml`` next to ``candidates.jsonl``, ``summary.json`` and ``arch.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.search.evaluators import Evaluator
from lightning_nas.search.loop import MetricObjective, run_search
from lightning_nas.search.samplers import Sampler
from lightning_nas.spaces.base import SearchSpace


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="lightning-nas search",
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
                        help="metric to optimise (default: the evaluator's primary metric)")
    parser.add_argument("--objective_mode", type=str, default="max", choices=["max", "min"])
    parser.add_argument("--workers", type=int, default=0,
                        help="parallel evaluations (0 = inline in this process)")
    parser.add_argument("--executor", type=str, default="process",
                        choices=["process", "thread"], help="pool type when --workers > 0")
    parser.add_argument("--max_rejections", type=int, default=1000)
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    return parser


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main_search(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the search, print and return a summary."""
    parser = build_parser()
    cfg = parser.parse_args(argv)
    if cfg.budget_trials is None and cfg.budget_seconds is None:
        parser.error("give a budget: --budget_trials and/or --budget_seconds")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    init = instantiate(cfg)
    space, sampler, evaluator = init.space, init.sampler, init.evaluator
    eval_space = getattr(evaluator, "space", None)
    if isinstance(eval_space, SearchSpace) and eval_space.name != space.name:
        parser.error(f"the evaluator looks up {eval_space.name!r} architectures but the space is "
                     f"{space.name!r}")
    seed = cfg.seed if cfg.seed is not None else sampler.seed
    run_dir = Path(cfg.run_dir or f"runs/search/{space.name}_{type(sampler).__name__}_seed{seed}")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_name = "config.yaml" if not (cfg.resume and (run_dir / "config.yaml").exists()) \
        else "config.resume.yaml"
    parser.save(cfg, run_dir / config_name, overwrite=True)

    executor: Executor | None = None
    if cfg.workers > 0:
        pool = ProcessPoolExecutor if cfg.executor == "process" else ThreadPoolExecutor
        executor = pool(max_workers=cfg.workers)
    objective = MetricObjective(cfg.objective, cfg.objective_mode) if cfg.objective else None
    if objective is None and cfg.objective_mode == "min":
        objective = MetricObjective(evaluator.primary_metric, "min")
    try:
        result = run_search(space, sampler, evaluator, run_dir=run_dir,
                            budget_trials=cfg.budget_trials, budget_seconds=cfg.budget_seconds,
                            time_key=cfg.time_key, objective=objective, executor=executor,
                            resume=cfg.resume, seed=cfg.seed, max_rejections=cfg.max_rejections,
                            progress=cfg.progress)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["run_dir"] = str(run_dir)
    summary["git_commit"] = _git_commit()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    best = result.best
    counts = result.counts()
    print(f"{counts['ok'] + counts['failed']} trials ({counts['failed']} failed, "
          f"{counts['rejected']} rejected) -> {run_dir}")
    if best:
        print(f"best (trial {best['trial']}): {best['arch']}")
        print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in best["metrics"].items()))
    ov = result.overhead
    if ov.get("n"):
        print(f"loop overhead per trial: median {ov['median']:.2f} ms, mean {ov['mean']:.2f} "
              f"+- {ov['std']:.2f} ms (n={ov['n']})")
    return summary


if __name__ == "__main__":
    main_search(sys.argv[1:])
