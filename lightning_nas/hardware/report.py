"""Pareto reports of a search: ``pareto.json`` and ``pareto.png`` in the run folder.

A *candidate* is a dict with at least ``"arch"`` (the space's canonical string form, or an
``Arch``) and metrics under the standard keys (see :mod:`lightning_nas.hardware.objective`):
``accuracy``, ``latency_ms``, ``params``, ``flops``. ``objectives`` says which metrics span
the front and in which direction, e.g. ``{"accuracy": "max", "latency_ms": "min"}`` (the
default). Both files are written atomically (temp file + rename), so a reader never sees a
half-written report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.hardware.pareto import front_ranks, hypervolume

__all__ = ["DEFAULT_OBJECTIVES", "METRIC_LABELS", "as_objectives", "derive_reference",
           "pareto_summary", "pareto_figure", "write_pareto", "jsonable", "arch_text"]

DEFAULT_OBJECTIVES: dict[str, str] = {"accuracy": "max", "latency_ms": "min"}

# metric key -> (axis label with unit, factor from stored value to plotted value)
METRIC_LABELS: dict[str, tuple[str, float]] = {
    "accuracy": ("accuracy", 1.0),
    "val_acc": ("validation accuracy", 1.0),
    "latency_ms": ("latency (ms per batch, median)", 1.0),
    "params": ("parameters (M)", 1e-6),
    "flops": ("FLOPs (M)", 1e-6),
    "macs": ("MACs (M)", 1e-6),
    "mnasnet_reward": ("MnasNet reward", 1.0),
}


def as_objectives(objectives: Mapping[str, str] | Sequence[tuple[str, str]] | None
                  ) -> list[tuple[str, str]]:
    """Normalise ``{"accuracy": "max", ...}`` or ``[("accuracy", "max"), ...]`` to a list.

    Raises:
        ValueError: fewer than one objective, a repeated name, or a direction that is not
            ``"max"``/``"min"``.
    """
    if objectives is None:
        objectives = DEFAULT_OBJECTIVES
    items = list(objectives.items()) if isinstance(objectives, Mapping) else [
        tuple(o) for o in objectives]
    if not items:
        raise ValueError("need at least one objective, e.g. {'accuracy': 'max'}")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"objective names repeat: {names}")
    for name, direction in items:
        if direction not in ("max", "min"):
            raise ValueError(f"objective {name!r} has direction {direction!r}; use 'max' or 'min'")
    return [(str(n), str(d)) for n, d in items]


def jsonable(value: Any) -> Any:
    """``value`` with numpy/torch scalars, arrays, ``Arch`` and paths made JSON-ready."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, str, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN / inf
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if hasattr(value, "to_dict") and hasattr(value, "digest"):  # Arch
        return value.to_dict()
    if hasattr(value, "item") and hasattr(value, "numel") and value.numel() == 1:  # tensor
        return jsonable(value.item())
    return str(value)


def arch_text(arch: Any) -> str:
    """The string form of an architecture: a string as is, an ``Arch`` as compact JSON."""
    if isinstance(arch, str):
        return arch
    if hasattr(arch, "to_json"):
        return arch.to_json(indent=None)
    return str(arch)


def _points(candidates: Sequence[Mapping[str, Any]], names: Sequence[str]) -> np.ndarray:
    rows = []
    for i, cand in enumerate(candidates):
        if not isinstance(cand, Mapping):
            raise TypeError(f"candidate {i} must be a dict, got {type(cand).__name__}")
        if "arch" not in cand:
            raise KeyError(f"candidate {i} has no 'arch'; keys: {sorted(cand)}")
        row = []
        for name in names:
            if name not in cand or cand[name] is None:
                raise KeyError(f"candidate {i} ({arch_text(cand['arch'])[:60]}) has no metric "
                               f"{name!r}; available: {sorted(cand)}")
            value = float(cand[name])
            if not math.isfinite(value):
                raise ValueError(f"candidate {i} ({arch_text(cand['arch'])[:60]}) has "
                                 f"{name} = {value}; drop failed candidates first")
            row.append(value)
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))


def derive_reference(points: np.ndarray, directions: Sequence[str],
                     margin: float = 0.1) -> list[float]:
    """A reference point just worse than every point: the worst value -/+ ``margin`` x range.

    A derived reference moves as candidates arrive, so hypervolumes computed with it are only
    comparable within one call; pass a fixed reference to compare across epochs.
    """
    ref = []
    for k, direction in enumerate(directions):
        col = points[:, k]
        span = float(col.max() - col.min()) if col.size else 0.0
        worst = float(col.min() if direction == "max" else col.max()) if col.size else 0.0
        pad = margin * span if span > 0 else margin * max(abs(worst), 1.0)
        ref.append(worst - pad if direction == "max" else worst + pad)
    return ref


def pareto_summary(candidates: Sequence[Mapping[str, Any]],
                   objectives: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, *,
                   reference: Sequence[float] | None = None,
                   score_key: str | None = None) -> dict[str, Any]:
    """The Pareto analysis of ``candidates`` as a JSON-ready dict (no I/O).

    Args:
        candidates: dicts with ``"arch"`` and every objective metric.
        objectives: metric -> ``"max"``/``"min"``; the first two are the plot's y and x axes.
        reference: hypervolume reference point (one value per objective); derived from the
            data when ``None`` (see :func:`derive_reference`).
        score_key: scalar metric that picks the best architecture (maximised), e.g.
            ``"mnasnet_reward"``. ``None``: the front member best in the first objective
            (ties broken by the next objectives).

    Returns:
        ``{"objectives", "reference", "reference_source", "hypervolume", "n_candidates",
        "front": [candidate + {"index"}], "front_indices", "ranks", "best", "score_key"}``.
    """
    objs = as_objectives(objectives)
    names = [n for n, _ in objs]
    directions = [d for _, d in objs]
    cands = list(candidates)
    pts = _points(cands, names)
    ranks = front_ranks(pts, directions) if len(cands) else np.zeros(0, dtype=np.int64)
    front_idx = [int(i) for i in np.flatnonzero(ranks == 0)]
    source = "given" if reference is not None else "derived"
    ref = list(map(float, reference)) if reference is not None else derive_reference(
        pts, directions)
    hv = hypervolume(pts, ref, directions) if len(cands) else 0.0

    best_index = None
    if cands:
        if score_key is not None:
            scores = [float(c.get(score_key, math.nan)) for c in cands]
            if all(math.isnan(s) for s in scores):
                raise KeyError(f"score_key {score_key!r} is in no candidate; available: "
                               f"{sorted(cands[0])}")
            best_index = int(np.nanargmax(scores))
        else:
            sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
            q = pts[front_idx] * sign  # minimisation
            order = np.lexsort(tuple(q[:, k] for k in reversed(range(len(names)))))
            best_index = front_idx[int(order[0])]

    def record(i: int) -> dict[str, Any]:
        out = jsonable(dict(cands[i]))
        out["arch"] = arch_text(cands[i]["arch"])
        out["index"] = i
        return out

    front = sorted((record(i) for i in front_idx), key=lambda r: r[names[0]],
                   reverse=directions[0] == "max")
    return {
        "objectives": dict(objs),
        "reference": ref,
        "reference_source": source,
        "hypervolume": hv,
        "n_candidates": len(cands),
        "front_indices": front_idx,
        "ranks": [int(r) for r in ranks],
        "front": front,
        "best": record(best_index) if best_index is not None else None,
        "score_key": score_key,
    }


def _label(name: str) -> tuple[str, float]:
    return METRIC_LABELS.get(name, (name, 1.0))


def pareto_figure(candidates: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                  *, title: str | None = None, x_limits: Mapping[str, float] | None = None,
                  references: Sequence[Mapping[str, Any]] | None = None):
    """A matplotlib ``Figure`` (Agg canvas, no pyplot state) of the first two objectives.

    All candidates are grey dots; the front is highlighted and joined by the staircase
    boundary of the region it dominates; the best architecture is annotated. With one
    objective, the x axis is the candidate index. ``x_limits`` (label -> value in the x
    metric's unit, e.g. ``{"4 ms": 4.0}`` for latency budgets) are drawn as dashed vertical
    lines, each with the best candidate (first objective) that meets it ringed.
    ``references`` (records with ``"name"`` and the two plotted metrics, e.g. published
    networks from :func:`~lightning_nas.hardware.reference.preset_reference_points`) are black
    diamonds labelled with their names; a reference with only the x metric (a preset's
    latency or size on this run, without an accuracy on its data) is a dotted vertical line
    named at the top; one without the x metric is left out.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    objs = list(summary["objectives"].items())
    y_name, y_dir = objs[0]
    if len(objs) > 1:
        x_name, x_dir = objs[1]
    else:
        x_name, x_dir = "index", "min"
    (y_label, y_scale), (x_label, x_scale) = _label(y_name), _label(x_name)

    def values(name: str, scale: float, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if name == "index":
            return np.asarray([r.get("index", i) for i, r in enumerate(records)], dtype=float)
        return np.asarray([float(r[name]) for r in records], dtype=float) * scale

    all_records = [{**c, "index": i} for i, c in enumerate(candidates)]
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if all_records:
        ax.scatter(values(x_name, x_scale, all_records), values(y_name, y_scale, all_records),
                   s=14, c="0.65", label=f"candidates ({len(all_records)})", zorder=1)
    front = list(summary["front"])
    if front:
        fx, fy = values(x_name, x_scale, front), values(y_name, y_scale, front)
        order = np.argsort(fx, kind="stable")
        # The dominated region's boundary: with x minimised the best y on [x_i, x_i+1) is
        # y_i ("post" step); with x maximised it is y_i+1 ("pre" step).
        ax.step(fx[order], fy[order], where="post" if x_dir == "min" else "pre",
                color="tab:red", lw=1.2, zorder=2)
        ax.scatter(fx, fy, s=36, c="tab:red", edgecolors="black", linewidths=0.5,
                   label=f"Pareto front ({len(front)})", zorder=3)
    best = summary.get("best")
    if best is not None:
        bx = float(values(x_name, x_scale, [best])[0])
        by = float(values(y_name, y_scale, [best])[0])
        text = best["arch"] if len(best["arch"]) <= 48 else best["arch"][:45] + "..."
        ax.scatter([bx], [by], marker="*", s=160, c="gold", edgecolors="black", zorder=4,
                   label="best")
        lo, hi = ax.get_xlim()
        right_half = bx > (lo + hi) / 2  # write the label towards the middle, inside the axes
        ax.annotate(f"best: {text}", (bx, by), xytext=(-8 if right_half else 8, -14),
                    textcoords="offset points", ha="right" if right_half else "left",
                    fontsize=7, zorder=5,
                    arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.6})
    if x_limits and x_name != "index" and all_records:
        xs, ys = values(x_name, x_scale, all_records), values(y_name, y_scale, all_records)
        for n, (text, limit) in enumerate(sorted(x_limits.items(), key=lambda kv: kv[1])):
            colour = f"C{n % 10}"
            ax.axvline(limit * x_scale, color=colour, ls="--", lw=1.0, zorder=0,
                       label=f"limit {text}")
            meets = (xs <= limit * x_scale) if x_dir == "min" else (xs >= limit * x_scale)
            if meets.any():
                pick = np.flatnonzero(meets)[np.argmax(ys[meets] if y_dir == "max"
                                                       else -ys[meets])]
                ax.scatter([xs[pick]], [ys[pick]], s=150, facecolors="none",
                           edgecolors=colour, linewidths=1.5, zorder=4)
    def has(r: Mapping[str, Any], name: str) -> bool:
        return name != "index" and r.get(name) is not None

    refs = [r for r in references or () if has(r, x_name) and has(r, y_name)]
    if refs:
        rx, ry = values(x_name, x_scale, refs), values(y_name, y_scale, refs)
        ax.scatter(rx, ry, marker="D", s=30, c="black", label=f"reference ({len(refs)})",
                   zorder=4)
        for ref, px, py in zip(refs, rx, ry):
            ax.annotate(str(ref.get("name", "")), (px, py), xytext=(4, 3),
                        textcoords="offset points", fontsize=6, zorder=5)
    # references with only the x metric (a preset's latency on this device, but no accuracy
    # on this run's data): a dotted vertical line at its x, named at the top
    x_only = [r for r in references or () if has(r, x_name) and not has(r, y_name)]
    if x_only:
        for n, (ref, px) in enumerate(zip(x_only, values(x_name, x_scale, x_only))):
            ax.axvline(px, color="black", ls=":", lw=0.8, zorder=0,
                       label=f"reference ({len(x_only)}), no {y_label} here" if n == 0
                       else None)
            ax.annotate(str(ref.get("name", "")), (px, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(-2, -4), textcoords="offset points", rotation=90, ha="right",
                        va="top", fontsize=6, zorder=5)
    ax.set_xlabel(x_label + (" (lower is better)" if x_dir == "min" and x_name != "index"
                             else " (higher is better)" if x_name != "index" else ""))
    ax.set_ylabel(y_label + (" (higher is better)" if y_dir == "max" else " (lower is better)"))
    hv = summary.get("hypervolume")
    extra = f", {len(objs) - 2} more objective(s) not drawn" if len(objs) > 2 else ""
    ax.set_title(title or f"Pareto front, hypervolume {hv:.4g}{extra}", fontsize=10)
    ax.grid(True, alpha=0.3)
    if all_records or refs or x_only:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_pareto(run_dir: str | os.PathLike, candidates: Iterable[Mapping[str, Any]],
                 objectives: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, *,
                 reference: Sequence[float] | None = None, score_key: str | None = None,
                 plot: bool = True, stem: str = "pareto",
                 x_limits: Mapping[str, float] | None = None,
                 references: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``<run_dir>/pareto.json`` and ``<run_dir>/pareto.png`` atomically.

    Args:
        run_dir: the run folder (created if missing).
        candidates: dicts with ``"arch"`` and the objective metrics (any other JSON-able
            metrics are copied into the report for front members).
        objectives: metric -> ``"max"``/``"min"``; default accuracy (max), latency_ms (min).
            The first objective is drawn on the y axis, the second on the x axis.
        reference: fixed hypervolume reference point, or ``None`` to derive one.
        score_key: metric (maximised) that picks the annotated best architecture.
        plot: also write the PNG.
        stem: file name without extension.
        x_limits: limits on the x objective marked in the plot (see :func:`pareto_figure`);
            also stored in the JSON as ``"x_limits"``.
        references: reference points drawn in the plot (see :func:`pareto_figure`), e.g.
            published networks; stored in the JSON as ``"references"``, never in the front.

    Returns:
        The summary written to JSON (see :func:`pareto_summary`) plus ``"json_path"`` and
        ``"png_path"`` (``None`` when not plotted).
    """
    cands = list(candidates)
    summary = pareto_summary(cands, objectives, reference=reference, score_key=score_key)
    if x_limits:
        summary["x_limits"] = {k: float(v) for k, v in x_limits.items()}
    if references:
        summary["references"] = [jsonable(dict(r)) for r in references]
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path = run_dir / f"{stem}.json"
    png_path = run_dir / f"{stem}.png" if plot else None
    if png_path is not None:
        import io

        fig = pareto_figure(cands, summary, x_limits=x_limits, references=references)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        _atomic_write_bytes(png_path, buf.getvalue())
    _atomic_write_bytes(json_path, (json.dumps(summary, indent=2) + "\n").encode())
    return {**summary, "json_path": str(json_path),
            "png_path": str(png_path) if png_path else None}
