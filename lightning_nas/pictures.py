"""Pictures of architectures and of DARTS alphas, drawn with matplotlib (Agg, no pyplot).

* :func:`draw_darts_cell` / :func:`draw_nb201_cell`: a cell as a graph, every edge an arrow
  labelled with its op (labels coloured by op, slid along their edge until no two overlap).
* :func:`draw_mobilenet`: an Once-for-All MobileNetV3 subnet as a strip of blocks per stage.
* :func:`arch_pictures` / :func:`save_arch_pictures`: the pictures of any architecture, by
  space: ``cell_normal.png`` + ``cell_reduce.png`` (DARTS), ``cell.png`` (NB201),
  ``arch.png`` (MobileNetV3); other spaces have none.
* :func:`alpha_heatmap` / :func:`save_alpha_heatmap`: the softmaxed alphas of a
  differentiable search (DARTS, PC-DARTS, GDAS) from its ``history.jsonl`` records.

Figures are ``matplotlib.figure.Figure`` objects with an Agg canvas and no pyplot state, so
drawing needs no display and leaks no global figure. matplotlib is imported inside the
functions: importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_nas.spaces.base import Arch, SearchSpace

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["OP_COLOURS", "PICTURE_NAMES", "alpha_heatmap", "arch_pictures", "draw_darts_cell",
           "draw_mobilenet", "draw_nb201_cell", "read_alpha_records", "save_alpha_heatmap",
           "save_arch_pictures", "save_figure"]

#: Colour of each known op (edge arrow and label); other ops get a tab10 colour by name.
OP_COLOURS: dict[str, str] = {
    "none": "#9e9e9e",
    "skip_connect": "#2ca02c",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#ff7f0e",
    "sep_conv_7x7": "#8c564b",
    "dil_conv_3x3": "#9467bd",
    "dil_conv_5x5": "#e377c2",
    "conv_7x1_1x7": "#7f7f7f",
    "nor_conv_1x1": "#bcbd22",
    "nor_conv_3x3": "#d62728",
}
_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
#: File stems :func:`save_arch_pictures` writes, per space name (a run report relies on them).
PICTURE_NAMES: dict[str, tuple[str, ...]] = {
    "darts": ("cell_normal", "cell_reduce"),
    "nb201": ("cell",),
    "mobilenetv3": ("arch",),
}
_NODE_RADIUS = 0.38  # data units (the cell axes have an equal aspect)
_LABEL_FONT = 7.0  # points
_LABEL_POSITIONS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.25, 0.75, 0.2, 0.8, 0.15, 0.85)
_LABEL_SHIFT = 0.22  # data units a label moves off its edge when the edge has no room


def op_colour(op: str) -> str:
    """The colour of ``op``: :data:`OP_COLOURS`, else a tab10 colour fixed by the name."""
    return OP_COLOURS.get(op) or _TAB10[zlib.crc32(op.encode()) % len(_TAB10)]


def _new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A Figure of ``width`` x ``height`` inches with an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, *, close: bool = True) -> Path:
    """Write ``fig`` as PNG atomically (temp file + rename); ``close`` clears the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        if close:
            fig.clear()
    return path


# ---------------------------------------------------------------------------------------
# cell graphs
# ---------------------------------------------------------------------------------------
def _curve_point(a: tuple[float, float], b: tuple[float, float], rad: float,
                 t: float) -> tuple[float, float]:
    """Point at parameter ``t`` of matplotlib's ``arc3,rad=rad`` curve from ``a`` to ``b``.

    arc3 is the quadratic Bezier with control point ``mid + rad * (dy, -dx)``; in an axes of
    equal aspect this holds in data units as well as on screen.
    """
    (x1, y1), (x2, y2) = a, b
    cx = (x1 + x2) / 2 + rad * (y2 - y1)
    cy = (y1 + y2) / 2 - rad * (x2 - x1)
    u = 1.0 - t
    return (u * u * x1 + 2 * u * t * cx + t * t * x2, u * u * y1 + 2 * u * t * cy + t * t * y2)


def _draw_node(ax: Axes, xy: tuple[float, float], text: str, face: str, gid: str) -> Any:
    """A circle of :data:`_NODE_RADIUS` at ``xy`` with ``text`` inside; returns the circle."""
    from matplotlib.patches import Circle

    circle = Circle(xy, _NODE_RADIUS, facecolor=face, edgecolor="#333333", linewidth=1.0,
                    zorder=3)
    ax.add_patch(circle)
    ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=9, zorder=4, gid=gid)
    return circle


def _draw_edge(ax: Axes, a: Any, b: Any, rad: float, colour: str, *, faint: bool = False,
               arrow: bool = True) -> None:
    """An arrow from circle ``a`` to circle ``b`` along ``arc3,rad=rad``."""
    from matplotlib.patches import FancyArrowPatch

    patch = FancyArrowPatch(a.center, b.center, patchA=a, patchB=b,
                            connectionstyle=f"arc3,rad={rad}",
                            arrowstyle="-|>" if arrow else "-", mutation_scale=11,
                            color=colour, linewidth=0.8 if faint else 1.4,
                            linestyle="--" if faint else "-", alpha=0.35 if faint else 0.9,
                            zorder=1)
    ax.add_patch(patch)


def _curve_angle(a: tuple[float, float], b: tuple[float, float], rad: float, t: float) -> float:
    """Direction (degrees, within -90..90 so text stays upright) of the arc3 curve at ``t``."""
    (x0, y0), (x1, y1) = _curve_point(a, b, rad, max(0.0, t - 0.01)), _curve_point(a, b, rad,
                                                                                 min(1.0, t + 0.01))
    angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
    if angle > 90:
        angle -= 180
    elif angle < -90:
        angle += 180
    return angle


def _overlap(a: Any, b: Any) -> float:
    """Area (pixels^2) shared by two display-space bounding boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _label_spots(edge: Mapping[str, Any]) -> list[tuple[tuple[float, float], float]]:
    """Candidate ``(centre, angle)`` of an edge's label: on the curve at each of
    :data:`_LABEL_POSITIONS`, then beside it (:data:`_LABEL_SHIFT` either side)."""
    spots, beside = [], []
    for t in _LABEL_POSITIONS:
        (x, y), angle = _curve_point(edge["a"], edge["b"], edge["rad"], t), _curve_angle(
            edge["a"], edge["b"], edge["rad"], t)
        spots.append(((x, y), angle))
        nx, ny = -math.sin(math.radians(angle)), math.cos(math.radians(angle))
        for side in (1.0, -1.0):
            beside.append(((x + side * _LABEL_SHIFT * nx, y + side * _LABEL_SHIFT * ny), angle))
    return spots + beside


def _place_labels(ax: Axes, edges: Sequence[dict[str, Any]], nodes: Sequence[Any]) -> None:
    """Add one label per edge (in the given order) where it overlaps nothing drawn so far.

    Each edge dict has ``a``, ``b`` (centres), ``rad``, ``text``, ``colour`` and ``gid``. The
    label (rotated along the edge) is tried at the spots of :func:`_label_spots` (on the
    curve, middle first, then beside it) and kept at the first one whose box touches no
    earlier label and no node; when every spot collides, the least overlap wins (a node
    counts 5 times a label).
    """
    fig = ax.figure
    ax.apply_aspect()  # final data -> pixel transform before measuring
    renderer = fig.canvas.get_renderer()
    taken = [(node.get_window_extent(renderer), 5.0) for node in nodes]
    for edge in edges:
        text = ax.text(0, 0, edge["text"], ha="center", va="center", fontsize=_LABEL_FONT,
                       color=edge["colour"], zorder=5, gid=edge["gid"], rotation_mode="anchor",
                       bbox=dict(boxstyle="round,pad=0.15", facecolor="white", alpha=0.85,
                                 edgecolor="none"))
        best, best_cost = None, math.inf
        for xy, angle in _label_spots(edge):
            text.set_position(xy)
            text.set_rotation(angle)
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            cost = sum(weight * _overlap(box, other) for other, weight in taken)
            if cost < best_cost:
                best, best_cost = (xy, angle, box), cost
            if cost == 0:
                break
        text.set_position(best[0])
        text.set_rotation(best[1])
        taken.append((best[2], 1.0))


def _finish_graph_axes(ax: Axes, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Equal aspect, no frame, limits around the node centres ``xs``, ``ys``."""
    margin = 0.9
    ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_ylim(min(ys) - margin - 0.4, max(ys) + margin + 0.4)
    ax.set_aspect("equal")
    ax.axis("off")


def draw_darts_cell(genotype_cell_edges: Sequence[Sequence[Any]], concat: Sequence[int],
                    title: str = "") -> Figure:
    """The DARTS cell of a genotype as a graph.

    Args:
        genotype_cell_edges: ``[(op, input), ...]``, two per intermediate node (a
            ``Genotype``'s ``normal`` or ``reduce``); input 0 is ``c_{k-2}``, 1 is
            ``c_{k-1}``, ``2 + i`` is intermediate node ``i``.
        concat: node indices concatenated into the output ``c_{k}`` (e.g. ``[2, 3, 4, 5]``).
        title: the axes title.

    Layout (by hand): ``c_{k-2}`` top left, ``c_{k-1}`` bottom left, intermediate nodes
    ``0 .. steps-1`` left to right on the middle line, ``c_{k}`` on the right. Edges between
    intermediate nodes that skip a node arc above the line, grey concat edges into ``c_{k}``
    arc below it; two edges between the same pair of nodes bend apart. Each op edge is an
    arrow in its op's colour with the op name as label (Text ``gid`` ``"edge:<k>"``, added
    in genotype order); node labels have ``gid`` ``"node:<index>"``.
    """
    edges = [(str(op), int(j)) for op, j in genotype_cell_edges]
    steps = len(edges) // 2
    gap = 2.6
    pos: dict[int, tuple[float, float]] = {0: (0.0, 2.2), 1: (0.0, -2.2)}
    for i in range(steps):
        pos[2 + i] = (gap * (i + 1), 0.0)
    out = (gap * (steps + 1), 0.0)
    fig = _new_figure(1.3 + 1.05 * (steps + 2), 3.6)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9)
    names = {0: "$c_{k-2}$", 1: "$c_{k-1}$"}
    circles = {}
    for index, xy in pos.items():
        face = "#a6cee3" if index < 2 else "#eeeeee"
        circles[index] = _draw_node(ax, xy, names.get(index, str(index - 2)), face,
                                    f"node:{index}")
    circles["out"] = _draw_node(ax, out, "$c_{k}$", "#b2df8a", "node:out")
    seen: dict[tuple[int, int], int] = {}
    labels = []
    for k, (op, j) in enumerate(edges):
        node = 2 + k // 2
        repeat = seen.get((j, node), 0)
        seen[(j, node)] = repeat + 1
        rad = -0.3 if j >= 2 and node - j > 1 else 0.0  # skip edges arc above the line
        if repeat:
            rad = rad + (0.35 if rad <= 0 else -0.35) * repeat  # a parallel edge bends apart
        colour = op_colour(op)
        _draw_edge(ax, circles[j], circles[node], rad, colour, faint=op == "none")
        labels.append({"a": pos[j], "b": pos[node], "rad": rad, "text": op, "colour": colour,
                       "gid": f"edge:{k}"})
    for index in concat:
        if index in circles:
            rad = 0.25 if index != 1 + steps else 0.0
            _draw_edge(ax, circles[index], circles["out"], rad, "#888888")
    xs = [x for x, _ in pos.values()] + [out[0]]
    ys = [y for _, y in pos.values()]
    _finish_graph_axes(ax, xs, ys)
    if title:
        ax.set_title(title, fontsize=11)
    _place_labels(ax, labels, list(circles.values()))
    return fig


def draw_nb201_cell(arch: Arch, title: str = "NAS-Bench-201 cell") -> Figure:
    """The NB201 cell of ``arch``: nodes 0 (input) .. 3 (output), 6 edges ``j <- i``.

    Nodes sit left to right on one line; ``2<-0`` and ``3<-0`` arc above it, ``3<-1``
    below. Each edge is an arrow labelled by its op (Text ``gid`` ``"edge:<j><-<i>"``, in
    the benchmark's edge order). Edges whose op is ``'none'`` (no connection) are drawn as
    faint dashed lines without arrow head and **without a label**, so the labels are exactly
    the non-'none' ops in edge order.
    """
    from lightning_nas.spaces.nb201 import cell_edges, edge_labels, nodes_of

    nodes = nodes_of(len(arch))  # 4 in the benchmark; other node counts from config
    gap = 2.8
    pos = {n: (gap * n, 0.0) for n in range(nodes)}
    fig = _new_figure(5.6 * max(1.0, (nodes - 1) / 3), 3.0)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88)
    circles = {n: _draw_node(ax, xy, str(n), "#a6cee3" if n in (0, nodes - 1) else "#eeeeee",
                             f"node:{n}") for n, xy in pos.items()}
    if nodes == 4:
        bends = {(2, 0): -0.35, (3, 0): -0.42, (3, 1): 0.35}  # negative: above the line
    else:  # longer spans bend more, alternately above and below
        bends = {(j, i): (-1) ** (i + 1) * min(0.5, 0.2 + 0.05 * (j - i))
                 for j, i in cell_edges(nodes) if j - i > 1}
    labels = []
    for (j, i), label in zip(cell_edges(nodes), edge_labels(nodes)):
        op = str(arch[label])
        rad = bends.get((j, i), 0.0)
        none = op == "none"
        colour = op_colour(op)
        _draw_edge(ax, circles[i], circles[j], rad, colour, faint=none, arrow=not none)
        if not none:
            labels.append({"a": pos[i], "b": pos[j], "rad": rad, "text": op, "colour": colour,
                           "gid": f"edge:{label}"})
    _finish_graph_axes(ax, [x for x, _ in pos.values()], [-1.0, 1.0])
    if title:
        ax.set_title(title, fontsize=11)
    _place_labels(ax, labels, list(circles.values()))
    return fig


# ---------------------------------------------------------------------------------------
# MobileNetV3 subnets
# ---------------------------------------------------------------------------------------
def draw_mobilenet(arch: Arch, space: Any) -> Figure:
    """An OFA MobileNetV3 subnet as a strip of block slots, grouped by stage.

    Every stage has ``max(space.depths)`` slots: the first ``depth`` are the active MBConv
    blocks (a box whose height grows with the expand ratio, coloured by kernel size, text
    ``k<kernel> e<expand>``, Text ``gid`` ``"block:<stage>.<block>"``), the rest dashed
    empty slots. Below each stage: its depth, output width and stride. Stem and head are
    grey boxes at both ends; the title gives the input resolution.
    """
    from matplotlib.patches import FancyBboxPatch

    space.validate(arch)
    kernels = sorted(space.kernels)
    expands = sorted(space.expands)
    cmap = ("#fdd0a2", "#fd8d3c", "#d94801", "#7f2704", "#4a1502")
    slot = 1.0
    n_stages, max_depth = len(space.stages), space.max_depth
    width = 2 + n_stages * (max_depth * slot + 0.6) + 1.4
    fig = _new_figure(max(6.0, 0.55 * width), 2.9)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86)

    def box(x: float, h: float, face: str, text: str, gid: str, *, dashed: bool = False,
            colour: str = "black") -> None:
        ax.add_patch(FancyBboxPatch((x + 0.08, -h / 2), slot - 0.16, h,
                                    boxstyle="round,pad=0.02", facecolor=face,
                                    edgecolor="#555555", linestyle="--" if dashed else "-",
                                    linewidth=0.8, alpha=0.35 if dashed else 1.0))
        if text:
            ax.text(x + slot / 2, 0, text, ha="center", va="center", fontsize=7, color=colour,
                    gid=gid)

    box(0.0, 1.4, "#cccccc", "stem", "stem")
    x = 1.4
    for i, stage in enumerate(space.stages, start=1):
        depth = int(arch[f"stage{i}.depth"])
        start = x
        for j in range(1, max_depth + 1):
            if j > depth:
                box(x, 0.8, "white", "", f"slot:{i}.{j}", dashed=True)
            else:
                k = int(arch[f"stage{i}.block{j}.kernel"])
                e = int(arch[f"stage{i}.block{j}.expand"])
                level = kernels.index(k) * (len(cmap) - 1) // max(1, len(kernels) - 1)
                h = 0.9 + 0.9 * (expands.index(e) + 1) / len(expands)
                box(x, h, cmap[level], f"k{k}\ne{e}", f"block:{i}.{j}",
                    colour="white" if level >= 2 else "black")
            x += slot
        ax.text((start + x) / 2, -1.25, f"stage {i}: d={depth}\n{stage.width} ch, s{stage.stride}",
                ha="center", va="top", fontsize=7, gid=f"stage:{i}")
        ax.plot([start + 0.05, x - 0.05], [-1.08, -1.08], color="#777777", linewidth=0.8)
        x += 0.6
    box(x - 0.2, 1.4, "#cccccc", "head", "head")
    ax.set_xlim(-0.2, x + 1.0)
    ax.set_ylim(-2.0, 1.2)
    ax.axis("off")
    resolution = int(arch["resolution"])
    ax.set_title(f"MobileNetV3 subnet: {resolution}x{resolution} input, "
                 f"{space.depth(arch)} blocks (box height: expand ratio, colour: kernel)",
                 fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------
# any space
# ---------------------------------------------------------------------------------------
def arch_pictures(space: SearchSpace, arch: Arch) -> dict[str, Figure]:
    """The pictures of ``arch`` by space type, name -> Figure.

    ``DartsSpace``: ``{"cell_normal", "cell_reduce"}``; ``NB201Space``: ``{"cell"}``;
    ``MobileNetV3Space``: ``{"arch"}``; any other space: ``{}``.
    """
    from lightning_nas.spaces.darts import DartsSpace, Genotype
    from lightning_nas.spaces.mobilenet import MobileNetV3Space
    from lightning_nas.spaces.nb201 import NB201Space

    if isinstance(space, DartsSpace):
        genotype = Genotype.from_arch(arch)
        return {"cell_normal": draw_darts_cell(genotype.normal, genotype.normal_concat,
                                               "normal cell"),
                "cell_reduce": draw_darts_cell(genotype.reduce, genotype.reduce_concat,
                                               "reduction cell")}
    if isinstance(space, NB201Space):
        return {"cell": draw_nb201_cell(arch)}
    if isinstance(space, MobileNetV3Space):
        return {"arch": draw_mobilenet(arch, space)}
    return {}


def save_arch_pictures(space: SearchSpace, arch: Arch, folder: str | Path) -> list[Path]:
    """Write ``<name>.png`` for each of :func:`arch_pictures` into ``folder``.

    Returns the written paths (empty for a space without pictures); the figures are closed.
    """
    folder = Path(folder)
    return [save_figure(fig, folder / f"{name}.png")
            for name, fig in arch_pictures(space, arch).items()]


# ---------------------------------------------------------------------------------------
# alphas of differentiable search
# ---------------------------------------------------------------------------------------
def _edge_names(num_edges: int, first_inputs: int) -> list[str]:
    """``"j<-i"`` names of the rows of an alpha matrix whose first node has ``first_inputs``
    inputs (DARTS 2: nodes 2, 3, ...; NB201 1: nodes 1, 2, 3); ``"edge k"`` if no fit."""
    names: list[str] = []
    node = first_inputs
    while len(names) < num_edges:
        names += [f"{node}<-{i}" for i in range(node)]
        node += 1
    if len(names) != num_edges:
        return [f"edge {k}" for k in range(num_edges)]
    return names


def _winners(last: Any, primitives: Sequence[str]) -> Any:
    """Per edge, the index of the strongest op of the final weights ``last`` (edges, ops),
    'none' left out when there is another op (as DARTS derives its genotype)."""
    import numpy as np

    masked = np.array(last, dtype=float)
    if "none" in primitives and len(primitives) > 1:
        masked[:, list(primitives).index("none")] = -np.inf
    return masked.argmax(axis=1)


def _colour_range(values: Any) -> tuple[float, float]:
    """(low, high) of a colour scale over ``values``' own range (never empty)."""
    low, high = float(values.min()), float(values.max())
    return (low, high) if high - low > 1e-9 else (low - 1e-3, high + 1e-3)


def alpha_heatmap(records: Sequence[Mapping[str, Any]]) -> Figure:
    """Heatmaps of a differentiable search's softmaxed alphas, one column per cell type.

    Args:
        records: history records (``history.jsonl`` lines) with ``"epoch"``,
            ``"primitives"`` (op names, K) and ``"alphas"`` (``{cell: (E, K) nested list}``,
            each row a softmax); sorted by epoch here. One record is enough.

    Top row: the last epoch's weights, edges x ops, each cell annotated with its value.
    Bottom row: edges x epochs, the weight of the op that is strongest at the end (label on
    the right of its row; 'none' left out when there is another op); a white ``x`` marks
    epochs at which another op was the strongest.

    Raises:
        ValueError: no record holds alphas.
    """
    import numpy as np

    recs = sorted((r for r in records if r.get("alphas")), key=lambda r: r["epoch"])
    if not recs:
        raise ValueError("no record has 'alphas' (a differentiable search's arch_summary)")
    last = recs[-1]
    cells = list(last["alphas"])
    primitives = list(last.get("primitives") or [])
    epochs = [r["epoch"] for r in recs]
    n_edges = max(len(last["alphas"][c]) for c in cells)
    n_ops = max(len(last["alphas"][c][0]) for c in cells)
    if len(primitives) != n_ops:
        primitives = [f"op {k}" for k in range(n_ops)]
    # layout in inches (a layout engine doubles the drawing time): per cell column a left
    # margin for the edge names, the heatmaps, then the winners' names and the colour bars
    left, right, plot_w = 0.75, 1.45, max(2.6, 0.42 * max(n_ops, min(len(epochs), 30)))
    plot_h = 0.2 + 0.24 * n_edges
    top_pad, mid_pad, bottom_pad = 0.35, 1.35, 0.5
    col_w = left + plot_w + right
    fig_w, fig_h = col_w * len(cells), top_pad + 2 * plot_h + mid_pad + bottom_pad
    fig = _new_figure(fig_w, fig_h)

    def rect(x: float, y: float, w: float, h: float) -> list[float]:
        return [x / fig_w, y / fig_h, w / fig_w, h / fig_h]

    for c, cell in enumerate(cells):
        x0 = c * col_w + left
        top = fig.add_axes(rect(x0, bottom_pad + plot_h + mid_pad, plot_w, plot_h))
        bottom = fig.add_axes(rect(x0, bottom_pad, plot_w, plot_h))
        top_bar = fig.add_axes(rect(x0 + plot_w + 0.12, bottom_pad + plot_h + mid_pad, 0.12,
                                    plot_h))
        bottom_bar = fig.add_axes(rect(x0 + plot_w + 0.95, bottom_pad, 0.12, plot_h))
        weights = np.asarray(last["alphas"][cell], dtype=float)  # (E, K)
        names = _edge_names(len(weights), 2 if cell in ("normal", "reduce") else 1)
        # coloured over the values' own range: early in a search every alpha is within
        # 1e-3 of uniform and a 0-based scale shows one flat colour
        low, high = _colour_range(weights)
        image = top.imshow(weights, cmap="viridis", vmin=low, vmax=high, aspect="auto")
        digits = 2 if high - low > 0.05 else 3
        if weights.size <= 400:
            for (e, k), value in np.ndenumerate(weights):
                top.text(k, e, f"{value:.{digits}f}", ha="center", va="center", fontsize=6,
                         color="black" if value > low + 0.6 * (high - low) else "white")
        top.set_xticks(range(len(primitives)), primitives, rotation=45, ha="right",
                       fontsize=7)
        top.set_yticks(range(len(names)), names, fontsize=7)
        top.set_title(f"{cell}: softmax(alpha) at epoch {last['epoch']}", fontsize=9)
        fig.colorbar(image, cax=top_bar).ax.tick_params(labelsize=7)

        winners = _winners(weights, primitives)
        history = [np.asarray(r["alphas"][cell], dtype=float) for r in recs
                   if cell in r["alphas"] and np.shape(r["alphas"][cell]) == weights.shape]
        track = np.stack([h[np.arange(len(winners)), winners] for h in history], axis=1)
        strongest = np.stack([_winners(h, primitives) for h in history], axis=1)  # (E, T)
        image = bottom.imshow(track, cmap="magma", vmin=_colour_range(track)[0],
                              vmax=_colour_range(track)[1], aspect="auto")
        changed = np.argwhere(strongest != winners[:, None])
        if len(changed):
            bottom.scatter(changed[:, 1], changed[:, 0], marker="x", s=10, color="white",
                           linewidths=0.8)
        shown = epochs[-len(history):]
        stride = max(1, math.ceil(len(shown) / 15))
        bottom.set_xticks(range(0, len(shown), stride), [str(e) for e in shown[::stride]],
                          fontsize=7)
        bottom.set_xlabel("epoch", fontsize=8)
        bottom.set_yticks(range(len(names)), names, fontsize=7)
        right = bottom.secondary_yaxis("right")
        right.set_yticks(range(len(names)), [primitives[w] for w in winners], fontsize=6)
        bottom.set_title(f"{cell}: weight of the final op per epoch\n(x: another op led)",
                         fontsize=9)
        fig.colorbar(image, cax=bottom_bar).ax.tick_params(labelsize=7)
    return fig


def read_alpha_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``history.jsonl`` that hold alphas, one per epoch (the last line of
    an epoch written twice wins), sorted by epoch; unreadable lines (a run killed while
    writing) are skipped."""
    by_epoch: dict[Any, dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("alphas") and "epoch" in record:
            by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def save_alpha_heatmap(history_jsonl_path: str | Path, out_png: str | Path) -> Path:
    """Draw :func:`alpha_heatmap` of a ``history.jsonl`` into ``out_png`` (closed after).

    Raises:
        ValueError: the history has no record with alphas.
    """
    records = read_alpha_records(history_jsonl_path)
    if not records:
        raise ValueError(f"{history_jsonl_path}: no record with 'alphas' (a DARTS, PC-DARTS "
                         f"or GDAS history)")
    return save_figure(alpha_heatmap(records), out_png)
