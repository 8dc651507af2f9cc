"""Reports of a multi-trial search: the Pareto front in the run folder and one W&B run.

:class:`SearchReporter` is the loop's ``on_record`` hook. It keeps the journal's records,
writes ``pareto.json`` / ``pareto.png`` from the ok records every ``every_n_trials``
evaluated trials and at the end, and, with W&B on, logs every trial (objective, accuracy,
hardware metrics, best so far) and the front (``wandb.Table`` of all candidates, scatter
chart with the front highlighted, the front plot, best architecture in the run summary
through :func:`~lightning_nas.callbacks.pareto.log_pareto_to_wandb`) into **one** W&B run
for the whole search. The run id is stored in ``run_dir/wandb_run.json``, so a resumed
search (``--resume``) continues the same W&B run. W&B runs offline unless ``WANDB_MODE``
or the ``mode`` option says otherwise: no account needed.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import string
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_nas.search.journal import Journal

__all__ = ["ParetoOptions", "WandbOptions", "SearchReporter", "WANDB_RUN_FILE"]

WANDB_RUN_FILE = "wandb_run.json"
#: Metrics logged per trial to W&B when present (besides the objective).
TRIAL_METRICS = ("accuracy", "latency_ms", "params", "flops", "val_loss", "train_seconds",
                 "test_accuracy")


@dataclass
class ParetoOptions:
    """The Pareto report of a search (``pareto:`` in the search YAML).

    Attributes:
        enabled: write ``pareto.json``/``pareto.png``; ``None`` = when there are two
            objectives to trade (a cost hook is configured) or ``objectives`` is given.
        objectives: metric -> ``"max"``/``"min"``; the first is the plot's y axis, the second
            its x axis. Default: the evaluator's accuracy (max) against ``latency_ms`` (min)
            when latency is measured, else against ``params`` (min).
        every_n_trials: also write after every n evaluated trials (0: only at the end).
        every_seconds: and at most this often (a write sorts, draws and logs all
            candidates: cheap per write, but not after every 10 of 15,625 trials).
        reference: fixed hypervolume reference point (one value per objective); derived
            from the data when None.
        plot: write ``pareto.png``.
        reference_presets: published networks to show as reference points (e.g.
            ``[EfficientNet-B0, MobileNetV3-Small]``, names of
            :data:`~lightning_nas.spaces.mobile_blocks.PRESETS`): measured once before the
            search like a candidate (built for the run's input size and classes, through the
            run's metric hooks; :func:`~lightning_nas.hardware.reference.run_reference_points`),
            stored in ``pareto.json`` under ``references`` and drawn in ``pareto.png``
            (without an accuracy on the run's data, as a vertical line at their latency or
            size). They never join the front.
    """

    enabled: bool | None = None
    objectives: dict[str, str] | None = None
    every_n_trials: int = 10
    every_seconds: float = 5.0
    reference: list[float] | None = None
    plot: bool = True
    reference_presets: list[str] | None = None


@dataclass
class WandbOptions:
    """One W&B run for the whole search (``wandb:`` in the search YAML, or ``--wandb true``).

    Attributes:
        enabled: log to W&B.
        project: W&B project.
        name: run name (default: the run folder's name).
        dir: folder of W&B's local files (default: the run folder; W&B adds ``wandb/``).
        mode: ``"offline"``, ``"online"`` or ``"disabled"``; default ``$WANDB_MODE``, else
            offline (nothing leaves the machine; ``wandb sync`` uploads later).
        entity: W&B entity (team or user), online only.
        group: run group.
        tags: run tags.
    """

    enabled: bool = True
    project: str = "lightning-nas"
    name: str | None = None
    dir: str | None = None
    mode: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)


def _new_run_id() -> str:
    """A W&B run id: 8 random lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class SearchReporter:
    """The loop's ``on_record`` hook: Pareto files and W&B logging (see the module doc).

    Args:
        run_dir: the search's run folder.
        objective_name: name of the search objective (e.g. ``accuracy``,
            ``mnasnet_reward``); every candidate carries its value under this name and
            under ``objective``.
        pareto: Pareto options; ``None`` or ``enabled=False`` writes no Pareto files.
        objectives: the resolved Pareto objectives (metric -> max/min).
        wandb: W&B options; ``None`` or ``enabled=False`` logs nothing.
        config: the resolved search config, stored in the W&B run.
        resume: continue the W&B run of a resumed search.
        extra_summary: values put in the W&B run summary at the start (e.g. hardware).
        x_limits: limits on the Pareto plot's x objective, drawn as lines (e.g. the latency
            budgets, ``{"4 ms": 4.0}``).
        references: reference points (e.g. presets measured by
            :func:`~lightning_nas.hardware.reference.run_reference_points`), written to
            ``pareto.json`` and drawn, never in the front.
    """

    def __init__(self, run_dir: str | Path, *, objective_name: str,
                 pareto: ParetoOptions | None = None,
                 objectives: Mapping[str, str] | None = None,
                 wandb: WandbOptions | None = None, config: Mapping[str, Any] | None = None,
                 resume: bool = False, extra_summary: Mapping[str, Any] | None = None,
                 x_limits: Mapping[str, float] | None = None,
                 references: Sequence[Mapping[str, Any]] | None = None):
        self.run_dir = Path(run_dir)
        self.x_limits = dict(x_limits or {})
        self.references = [dict(r) for r in references or ()]
        self.objective_name = objective_name
        self.pareto = pareto if pareto is not None and pareto.enabled is not False else None
        if self.pareto is not None and (self.pareto.every_n_trials < 0
                                        or self.pareto.every_seconds < 0):
            raise ValueError(f"pareto.every_n_trials and pareto.every_seconds must be >= 0, "
                             f"got {self.pareto.every_n_trials}, {self.pareto.every_seconds}")
        self.objectives = dict(objectives or {})
        if self.pareto is not None and not self.objectives:
            raise ValueError("the Pareto report needs objectives, e.g. {accuracy: max, "
                             "latency_ms: min}")
        self.wandb_options = wandb if wandb is not None and wandb.enabled else None
        self.config = dict(config or {})
        self.resume = resume
        self.extra_summary = dict(extra_summary or {})
        self.records: dict[int, dict[str, Any]] = {}
        # counts per status and the best ok record, kept as records arrive (no rescans)
        self.counts: dict[str, int] = {"ok": 0, "failed": 0, "rejected": 0}
        self._best: dict[str, Any] | None = None
        self.last_pareto: dict[str, Any] | None = None
        self._last_write = -math.inf  # time.monotonic() of the last write
        self._since_write = 0
        self._dirty = False
        self._run: Any = None
        self._skipped_warned = False
        if resume:
            journal = Journal(self.run_dir)
            for rec in journal.read():
                self._remember(rec)

    def _remember(self, rec: dict[str, Any]) -> None:
        """Keep ``rec`` (replacing an earlier record of its trial) and the running counts."""
        old = self.records.get(int(rec["trial"]))
        if old is not None:
            self.counts[old["status"]] -= 1
        self.records[int(rec["trial"])] = rec
        self.counts[rec["status"]] = self.counts.get(rec["status"], 0) + 1
        if old is not None and old is self._best:
            self._best = self._scan_best()  # rare: a replayed record replaced the best
        if rec["status"] == "ok" and (self._best is None or _rank(rec) > _rank(self._best)):
            self._best = rec

    # -- records -> candidates -------------------------------------------------------------
    def candidate(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """A Pareto/W&B candidate of an ok record: arch string, metrics, objective."""
        cand = {"arch": rec["arch"], "trial": rec["trial"], **rec["metrics"],
                "objective": rec["objective"]}
        cand.setdefault(self.objective_name, rec["objective"])
        return cand

    def candidates(self) -> list[dict[str, Any]]:
        """Candidates of the ok records having every Pareto objective as a finite number."""
        out, skipped = [], 0
        for trial in sorted(self.records):
            rec = self.records[trial]
            if rec["status"] != "ok":
                continue
            cand = self.candidate(rec)
            if all(_finite(cand.get(name)) for name in self.objectives):
                out.append(cand)
            else:
                skipped += 1
        if skipped and not self._skipped_warned:
            self._skipped_warned = True
            warnings.warn(f"{skipped} ok record(s) lack a Pareto objective among "
                          f"{list(self.objectives)} and are left out of the front",
                          stacklevel=2)
        return out

    def best(self) -> dict[str, Any] | None:
        """The ok record with the highest objective (the earliest trial on ties)."""
        return self._best

    def _scan_best(self) -> dict[str, Any] | None:
        ok = [r for r in self.records.values() if r["status"] == "ok"]
        return max(ok, key=_rank) if ok else None

    # -- W&B -------------------------------------------------------------------------------
    def _id_path(self) -> Path:
        return self.run_dir / WANDB_RUN_FILE

    def wandb_run(self) -> Any:
        """The search's W&B run, started (or resumed) on first use; None when W&B is off."""
        if self.wandb_options is None:
            return None
        if self._run is not None:
            return self._run
        import wandb

        opts = self.wandb_options
        mode = opts.mode or os.environ.get("WANDB_MODE") or "offline"
        saved = {}
        if self.resume and self._id_path().is_file():
            saved = json.loads(self._id_path().read_text())
        run_id = saved.get("id") or _new_run_id()
        wandb_dir = Path(opts.dir) if opts.dir else self.run_dir
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=opts.project, entity=opts.entity,
                               name=opts.name or self.run_dir.name, dir=str(wandb_dir),
                               id=run_id, resume="allow", mode=mode, group=opts.group,
                               tags=list(opts.tags) or None, job_type="search",
                               config=self.config or None, reinit="finish_previous")
        self._run.define_metric("trial")
        self._run.define_metric("trial/*", step_metric="trial")
        self._run.define_metric("search/*", step_metric="trial")
        for key, value in self.extra_summary.items():
            self._run.summary[key] = value
        info = {"id": run_id, "project": opts.project, "name": opts.name or self.run_dir.name,
                "mode": mode, "dir": str(Path(self._run.dir).parent)}
        tmp = self._id_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(self._id_path())
        return self._run

    def _log_trial(self, rec: Mapping[str, Any]) -> None:
        run = self.wandb_run()
        if run is None:
            return
        metrics = rec.get("metrics") or {}
        payload: dict[str, Any] = {"trial": int(rec["trial"]),
                                   f"trial/{rec['status']}": 1}
        if rec.get("objective") is not None:
            payload["trial/objective"] = float(rec["objective"])
        for key in TRIAL_METRICS:
            if _finite(metrics.get(key)):
                payload[f"trial/{key}"] = float(metrics[key])
        payload.update({f"search/{k}": v for k, v in self.counts.items()})
        best = self.best()
        if best is not None:
            payload["search/best_objective"] = float(best["objective"])
        run.log(payload)

    # -- the hook --------------------------------------------------------------------------
    def __call__(self, rec: dict[str, Any]) -> None:
        """``on_record``: remember the record, log it, write the front every n trials."""
        self._remember(rec)
        self._dirty = True
        try:
            self._log_trial(rec)
        except Exception as err:  # noqa: BLE001 - W&B trouble must not stop a long search
            warnings.warn(f"W&B logging of trial {rec['trial']} failed: "
                          f"{type(err).__name__}: {err}", stacklevel=2)
        if rec["status"] == "rejected":
            return
        self._since_write += 1
        n = self.pareto.every_n_trials if self.pareto is not None else 0
        if (n and self._since_write >= n
                and time.monotonic() - self._last_write >= self.pareto.every_seconds):
            self.write()

    def write(self) -> dict[str, Any] | None:
        """Write ``pareto.json``/``pareto.png`` and log the front to W&B now."""
        self._since_write = 0
        self._dirty = False
        self._last_write = time.monotonic()
        if self.pareto is None:
            return None
        cands = self.candidates()
        if not cands:
            return None
        from lightning_nas.hardware.report import write_pareto

        summary = write_pareto(self.run_dir, cands, self.objectives,
                               reference=self.pareto.reference, score_key="objective",
                               plot=self.pareto.plot, x_limits=self.x_limits,
                               references=self.references or None)
        self.last_pareto = summary
        run = self.wandb_run()
        if run is not None:
            from lightning_nas.callbacks.pareto import log_pareto_to_wandb

            try:
                log_pareto_to_wandb(run, cands, self.objectives,
                                    reference=self.pareto.reference, score_key="objective",
                                    key="pareto", image=summary["png_path"], summary=summary)
            except Exception as err:  # noqa: BLE001
                warnings.warn(f"W&B logging of the Pareto front failed: {type(err).__name__}: "
                              f"{err}", stacklevel=2)
        return summary

    def finish(self, *, failed: bool = False) -> dict[str, Any]:
        """Write the final report, put the best architecture in the W&B summary, close W&B.

        Returns:
            ``{"pareto": summary or None, "wandb": {"id", "dir"} or None}``.
        """
        out: dict[str, Any] = {"pareto": None, "wandb": None}
        try:
            if self.pareto is not None and (self._dirty or self.last_pareto is None):
                self.write()
            out["pareto"] = self.last_pareto
            run = self.wandb_run() if (self.records or self._run is not None) else None
            if run is not None:
                best = self.best()
                if best is not None:
                    run.summary["search/best_arch"] = best["arch"]
                    run.summary["search/best_trial"] = best["trial"]
                    run.summary["search/best_objective"] = best["objective"]
                    run.summary["search/objective_name"] = self.objective_name
                    for key, value in best["metrics"].items():
                        if isinstance(value, (int, float)) and not isinstance(value, bool):
                            run.summary[f"search/best/{key}"] = value
                out["wandb"] = {"id": run.id, "dir": str(Path(run.dir).parent)}
        finally:
            if self._run is not None:
                self._run.finish(exit_code=1 if failed else 0)
                self._run = None
        return out


def _rank(rec: Mapping[str, Any]) -> tuple[float, int]:
    """Order of ok records: higher objective first, then the earlier trial."""
    return (float(rec["objective"]), -int(rec["trial"]))


def default_objectives(primary: str, hooks: Sequence[Any]) -> dict[str, str] | None:
    """``{primary: max, latency_ms: min}`` when a hook gives latency (``hook.latency is
    True``: a :class:`~lightning_nas.hardware.CostHook` that measures it, a
    :class:`~lightning_nas.hardware.LatencyTableHook`), ``{primary: max, params: min}`` when a
    cost hook counts parameters, else None (nothing to trade)."""
    from lightning_nas.hardware.costs import CostHook

    if any(getattr(h, "latency", None) is True for h in hooks):
        return {primary: "max", "latency_ms": "min"}
    if any(isinstance(h, CostHook) for h in hooks):
        return {primary: "max", "params": "min"}
    return None
