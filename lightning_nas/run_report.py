"""One self-contained HTML page of a run folder: ``lightning-nas report RUN_DIR``.

:func:`write_report` reads what ``lightning-nas fit`` (or ``search``) left in a run folder
and writes ``report.html``: a summary, the architecture pictures, the metrics over epochs,
the alphas, the Pareto front, the latency table, the search trials, the per-epoch history
and the config. Everything is inside the one file (inline CSS, pictures and charts as
base64 ``data:`` URIs, no script, no external URL), so it opens offline and can be mailed.

Every section is always there; one whose data the run did not record says so in a line.
Files are read defensively: a run killed mid-write leaves a cut-off JSON line or CSV row,
which is skipped and listed under "Skipped while reading" instead of failing the report.
Text from the files is HTML-escaped.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RUN_MARKERS", "PICTURES", "NotARunError", "Report", "build_report",
           "write_report", "main_report"]

#: A folder is a run folder when it holds at least one of these.
RUN_MARKERS = ("config.yaml", "metrics.csv", "history.jsonl", "candidates.jsonl")
#: Architecture pictures embedded when present, with their captions.
PICTURES = (("cell_normal.png", "normal cell"), ("cell_reduce.png", "reduction cell"),
            ("cell.png", "cell"), ("arch.png", "architecture"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Rows of the search-trials table shown at most (the rest are counted).
MAX_TRIAL_ROWS = 500
MISSING = "not recorded in this run"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
 max-width:1180px;padding:16px 24px;color:#1d232a;background:#fff}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.4em 0 .5em;
 border-bottom:2px solid #d5dde6;padding-bottom:.2em}
nav a{margin-right:.9em;color:#2457a6;text-decoration:none}
table{border-collapse:collapse;font-size:.9em;margin:.4em 0}
th,td{border:1px solid #d5dde6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.85em}
code.arch{word-break:break-all}
pre{background:#f6f8fa;border:1px solid #d5dde6;padding:8px;overflow-x:auto;
 max-height:480px}
figure{display:inline-block;margin:6px 12px 6px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #d5dde6}
figcaption{font-size:.85em;color:#56606b}
p.missing{color:#7a838c;font-style:italic}p.meta{color:#56606b;font-size:.9em}
ul.notes li{color:#8a4b00}
"""


class NotARunError(FileNotFoundError):
    """The folder does not exist or holds none of :data:`RUN_MARKERS`."""


@dataclass
class Report:
    """The parts of a report while it is built: HTML of each section and what was skipped."""

    run_dir: Path
    notes: list[str] = field(default_factory=list)
    images: int = 0  # <img> elements embedded

    def skip(self, text: str) -> None:
        """Record that some input was skipped (shown in the report)."""
        self.notes.append(text)


# --- reading ---------------------------------------------------------------------------
def _read_text(path: Path, report: Report) -> str | None:
    """The file's text, or ``None`` when absent or unreadable (noted)."""
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        report.skip(f"{path.name}: cannot be read ({err})")
        return None


def _read_json(path: Path, report: Report) -> Any:
    """The file's JSON, or ``None`` when absent or malformed (noted)."""
    text = _read_text(path, report)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        report.skip(f"{path.name}: not valid JSON ({err.msg} at line {err.lineno}); skipped")
        return None


def _read_jsonl(path: Path, report: Report) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file; a malformed line (a kill mid-write) is skipped
    and noted."""
    text = _read_text(path, report)
    records: list[dict[str, Any]] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            report.skip(f"{path.name}: line {number} is not valid JSON (cut off?); skipped")
            continue
        if not isinstance(record, dict):
            report.skip(f"{path.name}: line {number} is not a JSON object; skipped")
            continue
        records.append(record)
    return records


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (blank CSV cells, text, NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _read_metrics(path: Path, report: Report) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of ``metrics.csv``; rows with the wrong number of cells (a row cut off
    by a kill) are skipped and noted."""
    text = _read_text(path, report)
    if text is None:
        return [], []
    try:
        reader = csv.reader(io.StringIO(text.replace("\0", "")))
        lines = list(reader)
    except csv.Error as err:
        report.skip(f"{path.name}: not readable as CSV ({err}); skipped")
        return [], []
    if not lines:
        report.skip(f"{path.name}: empty; skipped")
        return [], []
    header, rows = lines[0], []
    for number, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            report.skip(f"{path.name}: line {number} has {len(cells)} cells, the header "
                        f"{len(header)}; skipped")
            continue
        rows.append(dict(zip(header, cells)))
    return header, rows


def _read_config(run_dir: Path, report: Report) -> tuple[str | None, dict[str, Any]]:
    """The text of ``config.yaml`` and its parsed mapping (empty when malformed, noted)."""
    text = _read_text(run_dir / "config.yaml", report)
    if text is None:
        return None, {}
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        report.skip(f"config.yaml: not valid YAML ({str(err).splitlines()[0]}); shown as text")
        return text, {}
    if not isinstance(data, dict):
        report.skip("config.yaml: not a mapping of settings; shown as text only")
        return text, {}
    return text, data


def _journal(run_dir: Path, report: Report) -> list[dict[str, Any]]:
    """The search journal's records: ``candidates.jsonl``, or those of the per-budget
    subfolders ``budget_*`` of a search with latency budgets (each record then gets
    ``"budget"``: the subfolder's name)."""
    top = run_dir / "candidates.jsonl"
    if top.is_file():
        return _read_jsonl(top, report)
    records = []
    for path in sorted(run_dir.glob("budget_*/candidates.jsonl")):
        for record in _read_jsonl(path, report):
            records.append({**record, "budget": path.parent.name})
    return records


# --- HTML pieces -----------------------------------------------------------------------
def _e(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """A table cell's text: numbers to 4 significant digits, lists compact."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value) if all(
            isinstance(v, int) for v in value) else json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]],
           code_columns: Iterable[str] = ("arch", "architecture")) -> str:
    """An HTML table; numbers right-aligned, architecture columns in ``<code>``."""
    code = set(code_columns)
    out = ["<table><thead><tr>", *(f"<th>{_e(c)}</th>" for c in columns), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for column, value in zip(columns, row):
            text = _e(_fmt(value))
            if column in code and text:
                out.append(f'<td><code class="arch">{text}</code></td>')
            elif _number(value) is not None and not isinstance(value, str):
                out.append(f'<td class="num">{text}</td>')
            else:
                out.append(f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _img(report: Report, png: bytes, alt: str, caption: str | None = None) -> str:
    """A ``<figure>`` with the PNG as a base64 data URI."""
    report.images += 1
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">{cap}</figure>'


def _png_file(path: Path, report: Report) -> bytes | None:
    """The bytes of a PNG file, or ``None`` when absent or not a PNG (noted)."""
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as err:
        report.skip(f"{path.name}: cannot be read ({err}); not shown")
        return None
    if not data.startswith(PNG_MAGIC):
        report.skip(f"{path.name}: not a PNG image; not shown")
        return None
    return data


def _figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` on an Agg canvas (no pyplot state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def _section(anchor: str, title: str, body: str | None) -> str:
    """One ``<section>``; ``body=None`` says the data was not recorded."""
    content = body if body else f'<p class="missing">{_e(title)}: {MISSING}.</p>'
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{content}</section>'


# --- metrics ---------------------------------------------------------------------------
def _is_alpha_column(name: str) -> bool:
    """A per-alpha column (``alpha/<cell>/<edge>/<op>``...); the alpha entropies are kept."""
    head = name.split("/", 1)[0]
    return head in ("alpha", "alphas") and not name.endswith("_entropy")


def epoch_metrics(header: Sequence[str], rows: Sequence[Mapping[str, str]]
                  ) -> dict[str, dict[int, float]]:
    """Per-epoch values of every numeric column of ``metrics.csv`` (not epoch, step or the
    per-alpha columns): a column logged once per epoch as is, one logged every step as the
    mean of the epoch's steps (named ``<column> (step mean)``)."""
    values: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is None:
            continue
        for name in header:
            if name in ("epoch", "step") or _is_alpha_column(name):
                continue
            value = _number(row.get(name))
            if value is not None:
                values.setdefault(name, {}).setdefault(int(epoch), []).append(value)
    out: dict[str, dict[int, float]] = {}
    for name, per_epoch in values.items():
        stepwise = any(len(v) > 1 for v in per_epoch.values())
        key = f"{name} (step mean)" if stepwise else name
        out[key] = {e: sum(v) / len(v) for e, v in sorted(per_epoch.items())}
    return out


def _group_of(name: str) -> str:
    """The chart a metric is drawn in: ``train/loss`` and ``val/loss`` share "loss"."""
    base = name.split(" (", 1)[0]
    if base.startswith(("alpha/", "alphas/")) and base.endswith("_entropy"):
        return "alpha entropy (nats)"
    for suffix in ("_step", "_epoch"):
        base = base.removesuffix(suffix)
    return base.rsplit("/", 1)[-1] if base.split("/", 1)[0] in ("train", "val", "test") \
        else base


def _metrics_section(report: Report, header: Sequence[str],
                     rows: Sequence[Mapping[str, str]]) -> str | None:
    """Charts of the per-epoch metrics, one panel per group, plus the final values."""
    series = epoch_metrics(header, rows)
    if not series:
        return None
    groups: dict[str, list[str]] = {}
    staged = sorted(series, key=lambda n: (n.split("/", 1)[0] not in ("train", "val", "test"),
                                           _group_of(n), n))
    for name in staged:
        groups.setdefault(_group_of(name), []).append(name)
    cols = min(3, len(groups))
    nrows = math.ceil(len(groups) / cols)
    fig = _new_figure(4.6 * cols, 3.1 * nrows)
    for k, (group, names) in enumerate(groups.items()):
        ax = fig.add_subplot(nrows, cols, k + 1)
        for name in names:
            ax.plot(list(series[name]), list(series[name].values()), marker="o", ms=3,
                    label=name)
        ax.set_title(group, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", useOffset=False)  # values, not "1e-7 + 2.079" offsets
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        epochs = sorted({e for name in names for e in series[name]})
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    chart = _img(report, _figure_png(fig), "metrics over epochs",
                 f"{len(series)} metrics of metrics.csv per epoch")
    final = _table(["metric", "first epoch", "last epoch", "best (min / max)"],
                   [(n, s[min(s)], s[max(s)], f"{min(s.values()):.4g} / {max(s.values()):.4g}")
                    for n, s in sorted(series.items())])
    return chart + final


# --- alphas ----------------------------------------------------------------------------
def _alpha_matrix(value: Any) -> list[list[float]] | None:
    """``value`` as a rectangular list of finite numbers, else ``None``."""
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        return None
    rows = [[_number(v) for v in row] for row in value]
    if len({len(r) for r in rows}) != 1 or any(v is None for r in rows for v in r):
        return None
    return rows  # type: ignore[return-value]


def _alphas_heatmap(report: Report, record: Mapping[str, Any]) -> str | None:
    """A heatmap per cell type of a history record's softmaxed alphas."""
    alphas = record.get("alphas")
    if not isinstance(alphas, dict) or not alphas:
        return None
    cells = {}
    for cell, value in alphas.items():
        matrix = _alpha_matrix(value)
        if matrix is None:
            report.skip(f"history.jsonl: alphas of cell {cell!r} are not an edges x ops "
                        "table of numbers; not drawn")
        else:
            cells[str(cell)] = matrix
    if not cells:
        return None
    primitives = record.get("primitives")
    fig = _new_figure(5.2 * len(cells), 4.2)
    for k, (cell, matrix) in enumerate(cells.items()):
        ax = fig.add_subplot(1, len(cells), k + 1)
        image = ax.imshow(matrix, aspect="auto", cmap="viridis")  # colours span its own range
        n_ops = len(matrix[0])
        if isinstance(primitives, list) and len(primitives) == n_ops:
            ax.set_xticks(range(n_ops), [str(p) for p in primitives], rotation=60,
                          ha="right", fontsize=7)
        ax.set_yticks(range(len(matrix)))
        ax.set_ylabel("edge", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{cell} cell", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    values = [v for matrix in cells.values() for row in matrix for v in row]
    return _img(report, _figure_png(fig), "alphas heatmap",
                f"softmaxed alphas of epoch {record.get('epoch', '?')} (history.jsonl), "
                f"from {min(values):.4g} to {max(values):.4g}; each cell type coloured over "
                "its own range")


def _alphas_section(report: Report, history: Sequence[Mapping[str, Any]]) -> str | None:
    """``alphas.png`` when the run drew one, else a heatmap of the last alphas recorded."""
    png = _png_file(report.run_dir / "alphas.png", report)
    if png is not None:
        return _img(report, png, "alphas", "alphas.png")
    for record in reversed(history):
        if "alphas" in record:
            return _alphas_heatmap(report, record)
    return None


# --- other sections --------------------------------------------------------------------
def _monitor_key(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The metric the history records carry (``val/acc`` or another ``stage/name``)."""
    for record in records:
        for key, value in record.items():
            if "/" in key and (value is None or _number(value) is not None):
                return key
    return None


def _best(values: Iterable[tuple[Any, Any]], key: str) -> tuple[Any, float] | None:
    """``(where, value)`` of the best numeric value (min for losses, max otherwise)."""
    pairs = [(w, _number(v)) for w, v in values if _number(v) is not None]
    if not pairs:
        return None
    pick = min if "loss" in key or "latency" in key else max
    return pick(pairs, key=lambda p: p[1])  # type: ignore[arg-type, return-value]


def _class_name(config: Mapping[str, Any], key: str) -> str | None:
    """``config[key]['class_path']`` (or a plain string value)."""
    value = config.get(key)
    if isinstance(value, dict):
        return value.get("class_path")
    return value if isinstance(value, str) else None


def _summary_section(report: Report, config: Mapping[str, Any], arch: Any,
                     history: Sequence[Mapping[str, Any]], series: Mapping[str, Mapping],
                     journal: Sequence[Mapping[str, Any]]) -> str:
    """Strategy, dataset, epochs, best validation metric and the final architecture."""
    rows: list[tuple[str, Any]] = [("run folder", str(report.run_dir))]
    strategy = _class_name(config, "model")
    if strategy:
        rows.append(("strategy", strategy))
    for key, label in (("sampler", "sampler"), ("evaluator", "evaluator"),
                       ("space", "search space")):
        if _class_name(config, key):
            rows.append((label, _class_name(config, key)))
    data = _class_name(config, "data")
    evaluator_args = (config.get("evaluator") or {}).get("init_args") \
        if isinstance(config.get("evaluator"), dict) else None
    if data is None and isinstance(evaluator_args, dict):
        data = _class_name(evaluator_args, "data")
    if data:
        rows.append(("dataset", data))
    epochs = sorted({int(e) for s in series.values() for e in s} |
                    {int(r["epoch"]) for r in history if _number(r.get("epoch")) is not None})
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    if epochs or trainer.get("max_epochs") is not None:
        planned = trainer.get("max_epochs")
        rows.append(("epochs", f"{len(epochs)} recorded" +
                     (f" of {planned} configured" if planned is not None else "")))
    val_keys = [k for k in series if k.startswith("val/")]
    key = "val/acc" if "val/acc" in series else (val_keys[0] if val_keys else None)
    if key:
        best = _best(series[key].items(), key)
        if best:
            rows.append((f"best {key}", f"{best[1]:.4g} (epoch {best[0]})"))
    ok = [r for r in journal if r.get("status") == "ok"]
    if journal:
        rows.append(("trials", f"{len(journal)} ({len(ok)} ok)"))
        best = _best(((r.get("trial"), r.get("objective")) for r in ok), "objective")
        if best:
            rows.append(("best objective", f"{best[1]:.4g} (trial {best[0]})"))
    if isinstance(arch, dict):
        text = arch.get("string") or json.dumps({k: v for k, v in arch.items()
                                                 if k not in ("metrics",)}, sort_keys=True)
        rows.append(("best architecture (arch.json)", text))
    if history and history[-1].get("string"):
        rows.append(("final architecture (last epoch)", history[-1]["string"]))
    body = "".join(
        f"<tr><th>{_e(k)}</th><td>" + (f'<code class="arch">{_e(v)}</code>'
                                       if "architecture" in k else _e(v)) + "</td></tr>"
        for k, v in rows)
    return f"<table>{body}</table>"


def _pictures_section(report: Report) -> str | None:
    """The architecture pictures the run wrote (cells, network); without them, the cells of
    ``arch.json`` drawn here (DARTS and NB201 cells need no space settings to draw)."""
    parts = []
    for name, caption in PICTURES:
        png = _png_file(report.run_dir / name, report)
        if png is not None:
            parts.append(_img(report, png, caption, f"{caption} ({name})"))
    return "".join(parts) or _drawn_pictures(report)


def _drawn_pictures(report: Report) -> str | None:
    """The cells of the run's ``arch.json`` drawn by :mod:`lightning_nas.pictures`."""
    path = report.run_dir / "arch.json"
    if not path.is_file():
        return None
    from lightning_nas.pictures import arch_pictures
    from lightning_nas.spaces.base import Arch
    from lightning_nas.spaces.darts import DartsSpace
    from lightning_nas.spaces.nb201 import NB201Space

    try:
        arch = Arch.load(path)
        space = {DartsSpace.name: DartsSpace, NB201Space.name: NB201Space}.get(arch.space)
        figures = arch_pictures(space(), arch) if space is not None else {}
        return "".join(_img(report, _figure_png(fig), name, f"{name} (drawn from arch.json)")
                       for name, fig in figures.items()) or None
    except Exception as err:  # a malformed arch.json must not cost the rest of the page
        report.skip(f"arch.json: cannot be drawn ({type(err).__name__}: {err})")
        return None


def _pareto_section(report: Report) -> str | None:
    """``pareto.png``, a table of the non-dominated points of ``pareto.json`` and one of its
    reference points (published networks), when it has them."""
    parts = []
    png = _png_file(report.run_dir / "pareto.png", report)
    if png is not None:
        parts.append(_img(report, png, "Pareto front", "pareto.png"))
    summary = _read_json(report.run_dir / "pareto.json", report)
    if isinstance(summary, dict) and isinstance(summary.get("front"), list):
        objectives = summary.get("objectives") if isinstance(summary.get("objectives"),
                                                              dict) else {}
        front = [p for p in summary["front"] if isinstance(p, dict)]
        extra = sorted({k for p in front for k, v in p.items()
                        if k not in objectives and k not in ("arch", "index")
                        and _number(v) is not None})
        columns = ["index", "arch", *objectives, *extra]
        hv = _number(summary.get("hypervolume"))
        parts.append(f"<p>{len(front)} non-dominated of {_e(summary.get('n_candidates', '?'))} "
                     "candidates; objectives " +
                     _e(", ".join(f"{k} ({v})" for k, v in objectives.items())) +
                     (f"; hypervolume {hv:.4g}" if hv is not None else "") + "</p>")
        parts.append(_table(columns, ([p.get(c) for c in columns] for p in front)))
        refs = [r for r in summary.get("references") or () if isinstance(r, dict)]
        if refs:  # published networks measured like the candidates (pareto.reference_presets)
            ref_columns = [c for c in REFERENCE_COLUMNS if any(c in r for r in refs)]
            parts.append(f"<p>{len(refs)} reference network(s), not in the front:</p>")
            parts.append(_table(ref_columns, ([r.get(c) for c in ref_columns] for r in refs)))
    elif summary is not None:
        report.skip("pareto.json: has no front list; table not shown")
    return "".join(parts) or None


#: columns of the reference-points table (those present in some reference)
REFERENCE_COLUMNS = ("name", "resolution", "accuracy", "latency_ms", "latency_source",
                     "params", "macs", "flops", "published_top1")


LATENCY_COLUMNS = ("epoch", "arch", "median_ms", "q1_ms", "q3_ms", "runs", "batch_size",
                   "input_shape", "params", "flops", "target")


def _latency_section(report: Report) -> str | None:
    """The table of ``latency.json``'s measurements."""
    data = _read_json(report.run_dir / "latency.json", report)
    if data is None:
        return None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        report.skip("latency.json: has no list of records; table not shown")
        return None
    records = [r for r in records if isinstance(r, dict)]
    columns = [c for c in LATENCY_COLUMNS if any(c in r for r in records)]
    target = data.get("target")
    head = f"<p>measured on {_e(target)}</p>" if target else ""
    return head + _table(columns, ([r.get(c) for c in columns] for r in records))


def _history_section(history: Sequence[Mapping[str, Any]]) -> str | None:
    """Epoch, the monitored metric and the architecture of every history record."""
    if not history:
        return None
    key = _monitor_key(history) or "val/acc"
    return _table(["epoch", key, "architecture"],
                  ([r.get("epoch"), r.get(key), r.get("string")] for r in history))


def _metrics_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """A journal record's ``metrics`` mapping (empty when missing or malformed)."""
    metrics = record.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def _trials_section(report: Report, journal: Sequence[Mapping[str, Any]]) -> str | None:
    """The search journal: the objective over trials and a table of the trials."""
    if not journal:
        return None
    parts = []
    points = [(int(t), v) for r in journal if r.get("status") == "ok"
              for t, v in [(_number(r.get("trial")), _number(r.get("objective")))]
              if t is not None and v is not None]
    if points:
        fig = _new_figure(6.4, 3.2)
        ax = fig.add_subplot()
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=12, label="trial")
        best, running = [], -math.inf
        for _, value in points:
            running = max(running, value)
            best.append(running)
        ax.step([p[0] for p in points], best, where="post", color="tab:red", label="best so far")
        ax.set_xlabel("trial", fontsize=8)
        ax.set_ylabel("objective", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        parts.append(_img(report, _figure_png(fig), "objective over trials",
                          f"objective of the {len(points)} ok trials"))
    metric_names = sorted({k for r in journal for k, v in _metrics_of(r).items()
                           if _number(v) is not None})[:6]
    columns = [*(["budget"] if any("budget" in r for r in journal) else []),
               "trial", "status", "objective", *metric_names, "arch"]
    shown = journal[:MAX_TRIAL_ROWS]
    if len(journal) > len(shown):
        parts.append(f"<p>first {len(shown)} of {len(journal)} trials</p>")
    parts.append(_table(columns, ([r.get(c) if c not in metric_names else
                                   _metrics_of(r).get(c) for c in columns] for r in shown)))
    return "".join(parts)


# --- the page --------------------------------------------------------------------------
SECTIONS = (("summary", "Summary"), ("architecture", "Architecture"),
            ("metrics", "Metrics over epochs"), ("alphas", "Alphas"),
            ("pareto", "Pareto front"), ("latency", "Latency"), ("trials", "Search trials"),
            ("history", "History"), ("config", "Config"))


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path when it is a run folder, else :class:`NotARunError`."""
    path = Path(run_dir)
    if not path.is_dir():
        raise NotARunError(f"no run folder at {str(path)!r}; give the folder `lightning-nas "
                           "fit` or `search` wrote (e.g. runs/quickstart)")
    if not any((path / m).is_file() for m in RUN_MARKERS) and \
            not any(path.glob("budget_*/candidates.jsonl")):
        raise NotARunError(f"{str(path)!r} is not a run folder: it holds none of "
                           f"{', '.join(RUN_MARKERS)}; give the folder `lightning-nas fit` or "
                           "`search` wrote (for a CSVLogger without fixed name/version: "
                           "lightning_logs/version_N inside it)")
    return path


def _guarded(report: Report, title: str, build: Callable[[], str | None]) -> str | None:
    """``build()``; data of a shape no run writes (a hand-edited file) is noted instead of
    failing the whole report."""
    images = report.images
    try:
        return build()
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
        report.images = images  # a half-built section's pictures are not on the page
        report.skip(f"{title}: not shown, its data has an unexpected shape "
                    f"({type(err).__name__}: {err})")
        return None


def build_report(run_dir: str | Path) -> tuple[str, Report]:
    """The report's HTML and its :class:`Report` (notes, number of images)."""
    report = Report(check_run_dir(run_dir))
    folder = report.run_dir
    config_text, config = _read_config(folder, report)
    header, rows = _read_metrics(folder / "metrics.csv", report)
    history = _read_jsonl(folder / "history.jsonl", report)
    arch = _read_json(folder / "arch.json", report)
    if arch is not None and not isinstance(arch, dict):
        report.skip("arch.json: not a JSON object; not shown")
        arch = None
    journal = _journal(folder, report)
    series = epoch_metrics(header, rows)

    builders = {
        "summary": lambda: _summary_section(report, config, arch, history, series, journal),
        "architecture": lambda: _pictures_section(report),
        "metrics": lambda: _metrics_section(report, header, rows),
        "alphas": lambda: _alphas_section(report, history),
        "pareto": lambda: _pareto_section(report),
        "latency": lambda: _latency_section(report),
        "trials": lambda: _trials_section(report, journal),
        "history": lambda: _history_section(history),
        "config": lambda: f"<pre>{_e(config_text)}</pre>" if config_text is not None else None,
    }
    sections = [_section(anchor, title, _guarded(report, title, builders[anchor]))
                for anchor, title in SECTIONS]
    if report.notes:
        notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
        sections.insert(1, f'<section id="skipped"><h2>Skipped while reading</h2>'
                           f'<ul class="notes">{notes}</ul></section>')
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in SECTIONS)
    title = f"lightning-nas run report: {folder.resolve().name}"
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class=\"meta\">{_e(folder)}</p><nav>{nav}</nav>"
            f"{''.join(sections)}</body></html>\n")
    return page, report


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``<run_dir>/report.html``);
    returns the path written.

    Raises:
        NotARunError: ``run_dir`` is missing or holds none of :data:`RUN_MARKERS`.
    """
    page, _ = build_report(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def main_report(argv: list[str]) -> Path:
    """``lightning-nas report RUN_DIR [--out PATH]``: write the report, print its path."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="lightning-nas report",
        description="one self-contained HTML page of a run folder (config, architecture "
        "pictures, metrics, alphas, Pareto front, latency, history)")
    parser.add_argument("run_dir", help="the run folder, e.g. runs/quickstart")
    parser.add_argument("--out", default=None, help="output HTML (default RUN_DIR/report.html)")
    opts = parser.parse_args(argv)
    path = write_report(opts.run_dir, opts.out)
    print(path)
    return path
