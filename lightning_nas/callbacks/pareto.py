"""Keep the Pareto front of evaluated candidates; write it to the run folder and to W&B.

Two pieces:

* :func:`log_pareto_to_wandb`: every candidate as a row of a ``wandb.Table``, a scatter
  chart of the table, the front plot as an image and the best architecture in the run
  summary. Takes a ``wandb`` run or Lightning's ``WandbLogger``; works with
  ``WANDB_MODE=offline`` and no account.
* :class:`ParetoCallback`: collects candidate records (a search loop or a strategy calls
  ``callback.add(record)``) and after each validation epoch, at the end of fit, or on demand
  (``callback.write(trainer)``) writes ``pareto.json`` / ``pareto.png`` on global rank 0 and
  logs to every ``WandbLogger`` of the trainer.

A record is a dict with ``"arch"`` (canonical string form) and the objective metrics, e.g.
``{"arch": "|nor_conv_3x3~0|+...", "accuracy": 0.91, "latency_ms": 3.2, "params": 1.1e6,
"flops": 2.3e8}``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_nas.callbacks.export import run_dir
from lightning_nas.hardware.report import (
    arch_text,
    as_objectives,
    jsonable,
    pareto_figure,
    pareto_summary,
    write_pareto,
)

__all__ = ["log_pareto_to_wandb", "ParetoCallback", "TABLE_COLUMNS"]

# standard metric columns of the W&B table (None where a candidate lacks the metric)
TABLE_COLUMNS = ("accuracy", "latency_ms", "params", "flops")


def _wandb_run(run: Any) -> Any:
    """The ``wandb`` run behind ``run`` (a run, or a Lightning ``WandbLogger``)."""
    if hasattr(run, "experiment") and not hasattr(run, "summary"):
        run = run.experiment  # WandbLogger (rank-zero experiment)
    if not hasattr(run, "log") or not hasattr(run, "summary"):
        raise TypeError(f"expected a wandb run or a WandbLogger, got {type(run).__name__}")
    return run


def _num(record: Mapping[str, Any], name: str) -> float | None:
    """``float(record[name])``, or ``None`` when missing or not finite (a blank table cell)."""
    value = record.get(name)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _figure_image(fig: Any) -> Any:
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def log_pareto_to_wandb(run: Any, candidates: Sequence[Mapping[str, Any]],
                        objectives: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
                        *, reference: Sequence[float] | None = None,
                        score_key: str | None = None, key: str = "pareto",
                        image: str | Path | None = None, step: int | None = None,
                        summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Log the candidates, the front and the best architecture to a W&B run.

    Logged under ``<key>/``: ``candidates`` (``wandb.Table``: index, arch, accuracy,
    latency_ms, params, flops, other objectives, objective, on_front, front_rank),
    ``scatter`` (``wandb.plot.scatter`` of the first two objectives over that table),
    ``front`` (the matplotlib front plot as ``wandb.Image``), ``hypervolume`` and
    ``front_size``. The run summary gets ``<key>/best_arch`` and ``<key>/best/<metric>``.

    Args:
        run: a ``wandb`` run (``wandb.init(...)``) or a Lightning ``WandbLogger``.
        candidates: records with ``"arch"`` and the objective metrics.
        objectives: metric -> ``"max"``/``"min"`` (default accuracy max, latency_ms min).
        reference: hypervolume reference point; derived from the data when ``None``.
        score_key: scalar metric (maximised) for the "objective" column and the best arch;
            default: the first objective.
        key: prefix of the logged keys.
        image: an already written PNG (e.g. ``pareto.png``) to log instead of re-plotting.
        step: trainer global step, logged as ``trainer/global_step`` (no W&B ``step=``, so
            it never conflicts with the logger's own step).
        summary: a ready :func:`pareto_summary` of the same candidates (skips recomputing).

    Returns:
        The Pareto summary (see :func:`lightning_nas.hardware.report.pareto_summary`).
    """
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is in the [wandb] extra
        raise ImportError("log_pareto_to_wandb needs wandb: pip install 'lightning-nas[wandb]'"
                          ) from None
    run = _wandb_run(run)
    objs = as_objectives(objectives)
    cands = list(candidates)
    if summary is None:
        summary = pareto_summary(cands, objs, reference=reference, score_key=score_key)
    names = [n for n, _ in objs]
    score = score_key or names[0]
    extra = [n for n in names if n not in TABLE_COLUMNS]
    columns = ["index", "arch", *TABLE_COLUMNS, *extra, "objective", "on_front", "front_rank"]
    rows = []
    for i, cand in enumerate(cands):
        rank = summary["ranks"][i]
        rows.append([i, arch_text(cand["arch"]), *(_num(cand, n) for n in TABLE_COLUMNS),
                     *(_num(cand, n) for n in extra), _num(cand, score), rank == 0, rank])
    table = wandb.Table(columns=columns, data=rows)

    y_name = names[0]
    x_name = names[1] if len(names) > 1 else "index"
    payload: dict[str, Any] = {
        f"{key}/candidates": table,
        f"{key}/scatter": wandb.plot.scatter(table, x_name, y_name,
                                             title=f"{y_name} vs {x_name} (all candidates)"),
        f"{key}/hypervolume": summary["hypervolume"],
        f"{key}/front_size": len(summary["front"]),
    }
    caption = f"Pareto front of {len(cands)} candidates; hypervolume {summary['hypervolume']:.4g}"
    if image is not None:
        payload[f"{key}/front"] = wandb.Image(str(image), caption=caption)
    elif cands:
        payload[f"{key}/front"] = wandb.Image(_figure_image(pareto_figure(cands, summary)),
                                              caption=caption)
    if step is not None:
        payload["trainer/global_step"] = step
    run.log(payload)

    best = summary.get("best")
    if best is not None:
        # namespaced under `key` so other callbacks' summaries (e.g. an exporter) never clash
        run.summary[f"{key}/best_arch"] = best["arch"]
        for name, value in best.items():
            if name not in ("arch", "index") and isinstance(value, (int, float)):
                run.summary[f"{key}/best/{name}"] = value
    return summary


class ParetoCallback(Callback):
    """Collect evaluated candidates; write and log their Pareto front.

    Whoever evaluates candidates (a multi-trial loop, or a one-shot strategy scoring
    sub-networks in ``validation_step``/``on_validation_epoch_end``) calls :meth:`add`. The
    callback writes ``pareto.json`` and ``pareto.png`` when validation ends (every
    ``every_n_epochs``, only if records arrived since the last write; records added in the
    module's ``on_validation_epoch_end`` are included), at the end of fit, and whenever
    :meth:`write` is called, on global
    rank 0 only, and logs to each ``WandbLogger`` of the trainer. Records are part of the
    checkpoint (``state_dict``), so a resumed search keeps its front.

    Args:
        objectives: metric -> ``"max"``/``"min"``; default accuracy (max), latency_ms (min).
        dirpath: output folder; default the run folder (the logger's folder when there is
            one, else ``trainer.default_root_dir``, the same place as ``arch.json``).
        reference: fixed hypervolume reference point (recommended: comparable over epochs);
            derived from the data at every write when ``None``.
        score_key: metric (maximised) that picks the best architecture, e.g.
            ``"mnasnet_reward"``; default the front's best first objective.
        every_n_epochs: write after every n-th validation epoch (>= 1).
        log_wandb: log to the trainer's ``WandbLogger``\\ s.
        wandb_key: prefix of the W&B keys.
        dedupe: keep only the latest record per ``arch`` string (a sub-network scored again
            with better-trained shared weights replaces its old record).
        plot: write ``pareto.png``.
        from_strategy: after each validation, add the architectures the strategy derived
            or scored (``scored_architectures()``: every one-shot strategy) with their
            accuracy, parameters, FLOPs and, from a
            :class:`~lightning_nas.callbacks.latency.LatencyProfiler` of the same trainer,
            latency. Records of epochs without validation accuracy are skipped.
        reference_presets: published networks drawn as reference points (e.g.
            ``[MobileNetV3-Small, EfficientNet-B0]``): at fit start (rank 0) each is built for
            the data's image size and classes
            (:func:`~lightning_nas.hardware.reference.reference_space_for` of the strategy's
            space) and measured as the strategy's architectures are: parameters, FLOPs and,
            with a :class:`~lightning_nas.callbacks.latency.LatencyProfiler` in the trainer,
            its latency on its target with its settings. In ``pareto.json`` under
            ``references`` and in ``pareto.png``; never in the front. An unknown name is an
            error listing the presets.
    """

    def __init__(self, *, objectives: dict[str, str] | None = None, dirpath: str | None = None,
                 reference: list[float] | None = None, score_key: str | None = None,
                 every_n_epochs: int = 1, log_wandb: bool = True, wandb_key: str = "pareto",
                 dedupe: bool = True, plot: bool = True, from_strategy: bool = False,
                 reference_presets: list[str] | None = None):
        from lightning_nas.hardware.reference import check_preset_names

        self.reference_presets = check_preset_names(
            reference_presets, what="ParetoCallback reference_presets") \
            if reference_presets else []
        self.references: list[dict[str, Any]] = []
        self.objectives = as_objectives(objectives)
        if reference is not None and len(reference) != len(self.objectives):
            raise ValueError(f"reference has {len(reference)} values for "
                             f"{len(self.objectives)} objectives {dict(self.objectives)}")
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        self.dirpath = dirpath
        self.reference = list(reference) if reference is not None else None
        self.score_key = score_key
        self.every_n_epochs = every_n_epochs
        self.log_wandb = log_wandb
        self.wandb_key = wandb_key
        self.dedupe = dedupe
        self.plot = plot
        self.from_strategy = from_strategy
        self._costs: Any = None  # a costs-only profiler when the trainer has no profiler
        self._records: dict[Any, dict[str, Any]] = {}
        self._count = 0
        self._dirty = False
        self.last_summary: dict[str, Any] | None = None

    # --- collecting ------------------------------------------------------------------
    def add(self, record: Mapping[str, Any]) -> None:
        """Add one evaluated candidate (``"arch"`` + the objective metrics, finite numbers).

        Raises:
            KeyError: ``"arch"`` or an objective metric is missing (names what is there).
            ValueError: an objective metric is NaN or infinite.
        """
        if not isinstance(record, Mapping):
            raise TypeError(f"a candidate record must be a dict, got {type(record).__name__}")
        if "arch" not in record:
            raise KeyError(f"candidate record has no 'arch'; keys: {sorted(record)}")
        rec = jsonable(dict(record))
        rec["arch"] = arch_text(record["arch"])
        for name, _ in self.objectives:
            if record.get(name) is None:
                raise KeyError(f"candidate {rec['arch'][:60]!r} has no metric {name!r} needed by "
                               f"the objectives; keys: {sorted(record)}")
            value = float(record[name])
            if not math.isfinite(value):
                raise ValueError(f"candidate {rec['arch'][:60]!r} has {name} = {value}")
        key = rec["arch"] if self.dedupe else self._count
        self._records.pop(key, None)  # a re-scored arch moves to the end (latest last)
        self._records[key] = rec
        self._count += 1
        self._dirty = True

    def extend(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.add(record)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The collected records (copies), oldest first."""
        return [dict(r) for r in self._records.values()]

    def __len__(self) -> int:
        return len(self._records)

    # --- writing ---------------------------------------------------------------------
    def output_dir(self, trainer: L.Trainer | None = None) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        if trainer is None:
            raise ValueError("ParetoCallback.write needs a trainer or a dirpath")
        return run_dir(trainer)

    def write(self, trainer: L.Trainer | None = None, *, dirpath: str | Path | None = None
              ) -> dict[str, Any] | None:
        """Write the report now (rank 0 only) and log it to W&B; ``None`` when nothing to do.

        Args:
            trainer: the trainer (for the run folder, the rank and the W&B loggers); may be
                ``None`` when ``dirpath`` (here or in ``__init__``) is set.
            dirpath: overrides the output folder for this call.

        Returns:
            The summary written (see :func:`~lightning_nas.hardware.report.write_pareto`).
        """
        # resolve the folder on every rank first: trainer.log_dir is a collective under DDP
        out = Path(dirpath) if dirpath is not None else self.output_dir(trainer)
        if not self._records:
            return None
        if trainer is not None and not trainer.is_global_zero:
            return None
        records = list(self._records.values())
        summary = write_pareto(out, records, self.objectives, reference=self.reference,
                               score_key=self.score_key, plot=self.plot,
                               references=self.references or None)
        if self.log_wandb and trainer is not None:
            from lightning.pytorch.loggers import WandbLogger

            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    log_pareto_to_wandb(logger, records, self.objectives,
                                        reference=self.reference, score_key=self.score_key,
                                        key=self.wandb_key, image=summary["png_path"],
                                        step=trainer.global_step, summary=summary)
        self._dirty = False
        self.last_summary = summary
        return summary

    # --- Lightning hooks -------------------------------------------------------------
    def _profiler(self, trainer: L.Trainer) -> Any:
        from lightning_nas.callbacks.latency import LatencyProfiler

        found = next((c for c in trainer.callbacks if isinstance(c, LatencyProfiler)), None)
        if found is None and self._costs is None:
            self._costs = LatencyProfiler(costs_only=True)
        return found or self._costs

    def measure_references(self, trainer: L.Trainer, pl_module: Any) -> list[dict[str, Any]]:
        """The ``reference_presets`` measured like the strategy's architectures (see the
        class doc); stored in :attr:`references`."""
        from lightning_nas.callbacks.latency import measure_on_target
        from lightning_nas.hardware.reference import reference_space_for, run_reference_points

        profiler = self._profiler(trainer)
        shape, batch, classes = profiler._data_shape(trainer)
        classes = int(classes or getattr(pl_module, "num_classes", None) or 10)
        space = reference_space_for(getattr(pl_module, "space", None), input_size=shape[-1],
                                    num_classes=classes, in_channels=shape[0])
        hooks = []
        if not profiler.costs_only:
            def latency(arch: Any, net: Any) -> dict[str, float]:
                res = measure_on_target(net, shape, profiler.target, batch_size=batch,
                                        warmup=profiler.warmup, repeats=profiler.repeats,
                                        num_threads=profiler.num_threads,
                                        clock=profiler.clock)
                return {"latency_ms": res.median_ms, "latency_p25_ms": res.p25_ms,
                        "latency_p75_ms": res.p75_ms}
            hooks.append(latency)
        self.references = run_reference_points(self.reference_presets, space=space,
                                               input_shape=shape, hooks=hooks,
                                               num_classes=classes)
        return self.references

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.reference_presets and trainer.is_global_zero:
            self.measure_references(trainer, pl_module)
        if not self.from_strategy:
            return
        names = [n for n, _ in self.objectives]
        measured = {"accuracy", "latency_ms", "params", "flops"}
        if "latency_ms" in names and self._profiler(trainer) is self._costs:
            raise ValueError("ParetoCallback(from_strategy=True) has objective latency_ms but "
                             "the trainer has no LatencyProfiler: stack callbacks/latency.yaml "
                             "or use objectives {accuracy: max, params: min}")
        unknown = sorted(set(names) - measured)
        if unknown:
            raise ValueError(f"ParetoCallback(from_strategy=True) measures {sorted(measured)}; "
                             f"objectives {unknown} have no source")

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        """Add this epoch's architectures of the strategy; returns how many were added."""
        added = 0
        for r in self._profiler(trainer).profile(trainer, pl_module):
            if r.get("accuracy") is None:
                continue
            self.add({key: r[key] for key in ("arch", "accuracy", "latency_ms", "params",
                                              "flops", "epoch", "name") if key in r})
            added += 1
        return added

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_validation_end runs after every on_validation_epoch_end (callbacks' AND the
        # module's), so records a strategy adds in its own epoch-end hook are included.
        if trainer.sanity_checking:
            return
        if self.from_strategy:
            self.collect(trainer, pl_module)
        if not self._dirty:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.write(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._dirty:
            self.write(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"records": list(self._records.values()), "count": self._count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._records, self._count = {}, 0
        for record in state_dict.get("records", []):
            self.add(record)
        self._count = int(state_dict.get("count", self._count))
        self._dirty = False
