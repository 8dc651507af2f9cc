"""Zero-cost proxies in the multi-trial search: an evaluator, a pre-filter and a warm-up.

* :class:`ZeroCostEvaluator`: ``arch -> {proxy: score}`` on one fixed data-module batch,
  the network freshly initialised with a seed derived from the architecture (the same arch
  always gets the same scores, in any order, in any process).
* :func:`zero_cost_prefilter`: score many random candidates, keep the best few (to be
  trained), Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, Sec. 5.
* :class:`ZeroCostWarmup`: wraps any ask/tell sampler; its first asks are the top
  candidates of a proxy-scored random pool ("zero-cost warmup", same paper, Sec. 5: e.g.
  the initial population of aging evolution is the best 64 of 3,000 synflow-scored cells),
  then it hands over to the wrapped sampler, which has been told every warm-up result.

With several proxies, candidates of a pool are ranked by the sum of their per-proxy ranks
(:func:`~lightning_nas.estimation.zero_cost.rank_combination`).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lightning_nas.estimation.zero_cost import PROXIES, compute_proxies, rank_combination
from lightning_nas.search.evaluators import Evaluator
from lightning_nas.search.samplers import Sampler
from lightning_nas.spaces.base import Arch, SearchSpace

__all__ = ["ScoreTable", "ZeroCostEvaluator", "ZeroCostWarmup", "zero_cost_prefilter"]

Scorer = Callable[[Arch], "float | Mapping[str, float]"]


def _arch_seed(seed: int, arch: Arch) -> int:
    digest = hashlib.sha1(f"{seed}:{arch.digest}".encode()).hexdigest()
    return int(digest[:15], 16)


class ZeroCostEvaluator(Evaluator):
    """Score an architecture with zero-cost proxies on one batch (no training).

    Args:
        space: builds the network (``space.build(arch, **build_kwargs)``).
        datamodule: the batch is the first batch of its training loader, normalised without
            augmentation (see :func:`lightning_nas.callbacks.zero_cost.first_batch`).
        batch: an explicit ``(x, y)`` batch instead (normalised float x, int labels).
        proxies: names from :data:`~lightning_nas.estimation.zero_cost.PROXIES`.
        primary_metric: the metric the search maximises (default: the first proxy).
        build_kwargs: passed to ``space.build`` (e.g. ``num_classes``).
        seed: mixed with the architecture's digest to seed the network initialisation.
        device: where networks are built and scored.
        batch_size: use at most this many samples (64 as in the papers).

    Returns per call: ``{proxy: score, ..., "zero_cost_seconds": seconds}``.
    """

    def __init__(self, space: SearchSpace, *, datamodule: Any = None,
                 batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 proxies: Sequence[str] = ("synflow", "naswot", "jacob_cov"),
                 primary_metric: str | None = None, build_kwargs: Mapping[str, Any] | None = None,
                 seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 64):
        unknown = [p for p in proxies if p not in PROXIES]
        if not proxies or unknown:
            raise ValueError(f"proxies must be a non-empty subset of {list(PROXIES)}; unknown: "
                             f"{unknown}")
        if (datamodule is None) == (batch is None):
            raise ValueError("give exactly one of datamodule= and batch=")
        self.space = space
        self.proxies = tuple(proxies)
        self.primary_metric = primary_metric or self.proxies[0]
        if self.primary_metric not in self.proxies:
            raise ValueError(f"primary_metric {self.primary_metric!r} is not among the proxies "
                             f"{self.proxies}")
        self.build_kwargs = dict(build_kwargs or {})
        self.seed = int(seed)
        self.device = str(device)
        if batch is None:
            from lightning_nas.callbacks.zero_cost import first_batch

            batch = first_batch(datamodule, "cpu")
        x, y = batch
        self.x = x[:batch_size].detach().cpu()
        self.y = y[:batch_size].detach().cpu()

    def scores(self, arch: Arch) -> dict[str, float]:
        """The proxies of ``arch`` (validated by the space)."""
        arch = self.space.validate(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_arch_seed(self.seed, arch))
            net = self.space.build(arch, **self.build_kwargs).to(self.device)
        return compute_proxies(net, self.x.to(self.device), self.y.to(self.device),
                               proxies=self.proxies)

    def __call__(self, arch: Arch) -> dict[str, float]:
        start = time.perf_counter()
        out = self.scores(arch)
        out["zero_cost_seconds"] = time.perf_counter() - start
        return out

    def __repr__(self) -> str:
        return f"ZeroCostEvaluator(proxies={self.proxies}, primary={self.primary_metric!r})"


class ScoreTable:
    """Precomputed zero-cost scores as a scorer: ``arch -> {proxy: score}`` from a file.

    The file is JSON lines (one object per cell with ``arch_str`` and the scores, either at
    the top level or under ``"scores"``, as ``scripts/zero_cost_recent_nb201.py`` writes) or
    a CSV with an ``arch_str`` column (e.g. NASLib's ``zero_cost_scores.csv``; rows of other
    ``dataset`` values than ``dataset`` are skipped). A cell missing from the file scores
    NaN for every proxy (ranked last). :meth:`candidates` lists the cells the file covers,
    so :class:`ZeroCostWarmup` draws its pool among them.

    Args:
        space: parses the ``arch_str`` strings (e.g. ``NB201Space``).
        path: the file (default: NASLib's scores of 725 NB201 cells,
            ``<shared data>/nb201/zero_cost_scores.csv``).
        proxies: the columns to return (default: every numeric column but accuracies).
        dataset: for a CSV with a ``dataset`` column, the rows to keep.
    """

    def __init__(self, space: SearchSpace, path: str | None = None, *,
                 proxies: Sequence[str] | None = None, dataset: str = "cifar10"):
        import csv
        import json
        from pathlib import Path

        if path is None:
            from lightning_nas.search.evaluators import shared_data_dir

            path = shared_data_dir() / "nb201" / "zero_cost_scores.csv"
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no zero-cost score file at {file}; score cells with "
                                    "scripts/zero_cost_recent_nb201.py or give another path")
        rows: list[dict[str, Any]] = []
        if file.suffix == ".csv":
            with file.open(newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("dataset", dataset) == dataset:
                        rows.append(row)
        else:
            for line in file.read_text().splitlines():
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a kill
                    rows.append({"arch_str": record.get("arch_str"),
                                 **record.get("scores", record)})
        skip = {"arch_str", "dataset", "index", "position", "val_accuracy", "scores",
                "seconds"}
        self.space = space
        self.scores: dict[str, dict[str, float]] = {}
        self._archs: dict[str, Arch] = {}
        for row in rows:
            if not row.get("arch_str"):
                continue
            arch = space.parse(row["arch_str"])
            values = {}
            for key, value in row.items():
                if key in skip or key.endswith("_200ep"):
                    continue
                try:
                    values[key] = float(value) if value not in ("", None) else math.nan
                except (TypeError, ValueError):
                    continue
            self.scores[arch.digest] = values
            self._archs[arch.digest] = arch
        if not self.scores:
            raise ValueError(f"{file} holds no scored cells (need an arch_str per row)")
        columns = next(iter(self.scores.values()))
        self.proxies = tuple(proxies) if proxies else tuple(columns)
        missing = [p for p in self.proxies if p not in columns]
        if missing:
            raise ValueError(f"{file} has no scores for {missing}; it has {sorted(columns)}")

    def candidates(self) -> list[Arch]:
        """The cells the file scores, in file order."""
        return list(self._archs.values())

    def __call__(self, arch: Arch) -> dict[str, float]:
        row = self.scores.get(arch.digest)
        return {p: (row.get(p, math.nan) if row else math.nan) for p in self.proxies}

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return f"ScoreTable({len(self)} cells, proxies={self.proxies})"


AGGREGATES = ("rank_sum", "az_nas")


def _score_pool(archs: Sequence[Arch], scorer: Scorer, metric: str | None,
                aggregate: str = "rank_sum") -> np.ndarray:
    """One combined score per arch: the value (a float scorer or ``metric``), or the
    rank sum (``aggregate="az_nas"``: the sum of log ranks) over every returned proxy when
    the scorer returns a mapping and no metric."""
    raw = [scorer(a) for a in archs]
    if all(not isinstance(r, Mapping) for r in raw):
        return np.asarray(raw, dtype=float)
    if metric is not None:
        return np.asarray([float(r[metric]) for r in raw], dtype=float)
    names = [k for k in raw[0] if not k.endswith("_seconds")]  # timings are not scores
    if not names:
        raise ValueError(f"the scorer returned no proxy scores: {sorted(raw[0])}")
    table = {k: [float(r[k]) for r in raw] for k in names}
    if aggregate == "az_nas":
        from lightning_nas.estimation.zero_cost_recent import az_nas_aggregate

        return az_nas_aggregate(table, names)
    return rank_combination(table, names)


def _draw_distinct(space: SearchSpace, n: int, rng) -> list[Arch]:
    seen: dict[str, Arch] = {}
    tries = 0
    while len(seen) < n and tries < 50 * n:
        arch = space.sample(rng)
        seen.setdefault(arch.digest, arch)
        tries += 1
    return list(seen.values())


def zero_cost_prefilter(space: SearchSpace, scorer: Scorer, *, n_candidates: int, keep: int,
                        seed: int = 0, metric: str | None = None) -> list[tuple[Arch, float]]:
    """Score ``n_candidates`` distinct random architectures and return the best ``keep``.

    Abdelfattah et al. 2021, Sec. 5 ("zero-cost pre-filtering"): train only the top
    candidates by proxy. ``scorer`` is ``arch -> float`` or ``arch -> {proxy: score}``
    (e.g. a :class:`ZeroCostEvaluator`); with a mapping and no ``metric`` the candidates are
    ranked by the sum of their per-proxy ranks. Returns ``[(arch, combined score)]``, best
    first; NaN scores rank last.
    """
    import random

    if n_candidates < 1 or not 1 <= keep <= n_candidates:
        raise ValueError(f"need n_candidates >= 1 and 1 <= keep <= n_candidates, got "
                         f"{n_candidates}, {keep}")
    archs = _draw_distinct(space, n_candidates, random.Random(seed))
    score = _score_pool(archs, scorer, metric)
    order = np.argsort(-np.where(np.isnan(score), -np.inf, score), kind="stable")
    return [(archs[i], float(score[i])) for i in order[:keep]]


class ZeroCostWarmup(Sampler):
    """Zero-cost warm-up of any sampler (Abdelfattah et al. 2021, Sec. 5).

    On the first ask, ``pool_size`` distinct random architectures are scored with
    ``scorer``; the first ``warmup`` asks return the best of them (best first). Every
    warm-up architecture is marked as proposed in the wrapped sampler (its ``seen`` set and
    ``n_asked`` count, so e.g. BANANAS' random initial phase counts them) and every result
    is told to it, so regularized evolution starts from the proxy-selected population and
    a Bayesian sampler from proxy-selected data. Later asks go to the wrapped sampler.

    Args:
        base: the sampler to warm up (any :class:`~lightning_nas.search.Sampler`).
        scorer: ``arch -> float`` or ``arch -> {proxy: score}`` (e.g. a
            :class:`ZeroCostEvaluator`; several proxies are combined by rank sum).
        pool_size: random candidates scored (3,000 in the paper's aging-evolution runs);
            with a scorer that lists its ``candidates()`` (a :class:`ScoreTable`), the pool
            is drawn among those.
        warmup: candidates proposed from the pool (64 in the paper; default: the base's
            ``population_size`` or ``initial_random`` when it has one, else 10).
        metric: with a mapping scorer, rank by this proxy alone (default: the sum of the
            per-proxy ranks, or with ``aggregate="az_nas"`` AZ-NAS's sum of log ranks).
        aggregate: ``"rank_sum"`` or ``"az_nas"`` (Lee & Ham 2024's non-linear ranking
            aggregation, :func:`~lightning_nas.estimation.zero_cost_recent.az_nas_aggregate`).
        seed: seed of the wrapper (pool draws); ``reset(seed)`` re-seeds the base too.

    The state (pool ranking, position, wrapped sampler) is in :meth:`state_dict`, so a
    resumed search does not re-score the pool.
    """

    def __init__(self, base: Sampler, scorer: Scorer, *, pool_size: int = 1000,
                 warmup: int | None = None, metric: str | None = None,
                 aggregate: str = "rank_sum", seed: int = 0):
        if not isinstance(base, Sampler):
            raise TypeError(f"base must be a Sampler, got {type(base).__name__}")
        if getattr(base, "multi_fidelity", False):
            raise ValueError(f"ZeroCostWarmup cannot wrap {type(base).__name__}, which chooses "
                             "each trial's budget: its warm-up cells would have none. Run the "
                             "multi-fidelity sampler without the zero-cost warm start")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if warmup is None:
            warmup = int(getattr(base, "population_size", 0) or
                         getattr(base, "initial_random", 0) or 10)
        if pool_size < 1 or not 1 <= warmup <= pool_size:
            raise ValueError(f"need pool_size >= 1 and 1 <= warmup <= pool_size, got "
                             f"pool_size={pool_size}, warmup={warmup}")
        self.base = base
        self.scorer = scorer
        self.pool_size = pool_size
        self.warmup = warmup
        self.metric = metric
        self.aggregate = aggregate
        self._constructed = False
        super().__init__(base.space, seed=seed, dedup=base.dedup)
        self._constructed = True

    def _reset(self) -> None:
        if self._constructed:  # a later reset(seed) re-seeds the whole search
            self.base.reset(self.seed)
        self.queue: list[Arch] | None = None  # best first
        self.queue_scores: list[float] = []
        self.next = 0

    def _fill_queue(self) -> None:
        candidates = getattr(self.scorer, "candidates", None)
        if callable(candidates):  # e.g. a ScoreTable: draw the pool among the scored cells
            known = candidates()
            pool = self.rng.sample(known, min(self.pool_size, len(known)))
        else:
            pool = _draw_distinct(self.space, self.pool_size, self.rng)
        score = _score_pool(pool, self.scorer, self.metric, self.aggregate)
        order = np.argsort(-np.where(np.isnan(score), -np.inf, score), kind="stable")
        self.queue = [pool[i] for i in order[: self.warmup]]
        self.queue_scores = [float(score[i]) for i in order[: self.warmup]]

    @property
    def warming_up(self) -> bool:
        return self.queue is None or self.next < len(self.queue)

    def _ask(self) -> Arch:
        if self.queue is None:
            self._fill_queue()
        while self.next < len(self.queue):
            arch = self.queue[self.next]
            self.next += 1
            if self.dedup and arch.digest in self.seen:
                continue
            self.base.seen.add(arch.digest)
            self.base.n_asked += 1
            return arch
        return self.base.ask()

    def _tell(self, arch: Arch, result: float | None) -> None:
        self.base.tell(arch, result)

    def _extra_state(self) -> dict[str, Any]:
        # the base was told exactly what this wrapper was told: its history is this one's
        return {"base": self.base.state_dict(history=False),
                "queue": None if self.queue is None else [a.to_dict() for a in self.queue],
                "queue_scores": list(self.queue_scores), "next": self.next}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"], history=self.history)
        self.base.seen = set(self.seen)  # every ask, warm-up or the base's, is in both
        self.queue = None if state["queue"] is None else [Arch.from_dict(a)
                                                          for a in state["queue"]]
        self.queue_scores = [float(s) for s in state["queue_scores"]]
        self.next = int(state["next"])

    def __repr__(self) -> str:
        return (f"ZeroCostWarmup({self.base!r}, pool_size={self.pool_size}, "
                f"warmup={self.warmup})")
