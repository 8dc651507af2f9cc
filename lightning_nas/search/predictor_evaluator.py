"""Fitness from an accuracy predictor trained on a slower evaluator's results.

Once-for-All specialisation (Cai et al., ICLR 2020, Sec. 3.3) does not evaluate every
candidate of its evolutionary search on held-out images: it measures the inherited accuracy
of random subnets once (16K on ImageNet), trains an accuracy predictor on them (an MLP on
the per-block one-hot encoding) and lets evolution query the predictor, which costs
microseconds instead of seconds. :class:`PredictorEvaluator` does that for any evaluator
(usually :class:`~lightning_nas.search.supernet_evaluator.SupernetEvaluator`)::

    evaluator = PredictorEvaluator(SupernetEvaluator("last.ckpt", data), train_archs=200,
                                   data_file="runs/predictor/inherited.jsonl")
    evaluator.prepare()     # evaluates 200 random subnets, fits, reports held-out quality
    evaluator(arch)         # {"accuracy": 43.1, "accuracy_std": 0.8}  (predicted)
    evaluator.verify(arch)  # the wrapped evaluator's real numbers

**Training set.** ``train_archs`` distinct networks (``space.canonical``) drawn with
``random.Random(seed)`` from the space and evaluated by the wrapped evaluator. With
``data_file`` every result is appended to a JSON-lines file as soon as it exists, and a
later ``prepare`` (a resumed or repeated search) reuses the results already there, so an
interrupted collection loses nothing. Every record carries the wrapped evaluator's
``fingerprint()`` (for the supernet evaluator: the checkpoint file's path, size and
modification time, the data and the evaluation settings; else its ``repr``), and records of another
source (a retrained supernet) are an error rather than silently reused.

**Quality report.** Before fitting on everything, the predictor is fitted on
``1 - holdout_fraction`` of the set and scored on the rest (:attr:`fit_report`): Kendall's
tau and Spearman's rho (ranking is what evolution needs), mean absolute and root mean squared
error in the metric's unit. The search CLI puts it in ``summary.json``.

**Units.** The predicted metric keeps the wrapped evaluator's name and unit
(``primary_metric``, e.g. ``accuracy`` in %); ``<metric>_std`` is the predictor's
uncertainty (the ensemble's standard deviation).

Attributes the search CLI looks for (``network`` for latency hooks, ``export`` for
exporting the best subnets, ``input_shape``) are the wrapped evaluator's.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.estimation.predictors import ArchPredictor, MLPEnsemble, Predictor
from lightning_nas.search.evaluators import Evaluator
from lightning_nas.spaces.base import Arch, SearchSpace

__all__ = ["PredictorEvaluator"]

#: Wrapped-evaluator attributes the search CLI and hooks may ask for.


class PredictorEvaluator(Evaluator):
    """Predicted fitness from a predictor trained on ``evaluator``'s results (module doc).

    Args:
        evaluator: the evaluator whose ``primary_metric`` is learnt (e.g. a
            ``SupernetEvaluator``, ``class_path``/``init_args`` in YAML).
        predictor: the regression model (default :class:`MLPEnsemble` of 5 MLPs with 2x64
            hidden units, as OFA's 3-layer accuracy predictor).
        train_archs: distinct random networks evaluated to train the predictor.
        holdout_fraction: share of them held out to report the predictor's quality before
            the final fit on all of them (0 skips the report).
        seed: seeds the random networks and the hold-out split.
        data_file: JSON-lines file of the evaluated networks (read, then appended); ``None``
            keeps them in memory only.
        space: the search's space; ``None`` takes the wrapped evaluator's (the search CLI
            links the search's space in).
        progress: print progress while collecting the training set.
    """

    def __init__(self, evaluator: Evaluator, *, predictor: Predictor | None = None,
                 train_archs: int = 200, holdout_fraction: float = 0.2, seed: int = 0,
                 data_file: str | None = None, space: SearchSpace | None = None,
                 progress: bool = True):
        if not callable(evaluator):
            raise TypeError(f"evaluator must be an evaluator (callable), got {evaluator!r}")
        if isinstance(train_archs, bool) or not isinstance(train_archs, int) or train_archs < 2:
            raise ValueError(f"train_archs must be an int >= 2, got {train_archs!r}")
        if not 0.0 <= holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction!r}")
        self.evaluator = evaluator
        self.metric = getattr(evaluator, "primary_metric", "") or "accuracy"
        self.primary_metric = self.metric
        self.model = predictor if predictor is not None else MLPEnsemble(seed=seed)
        self.train_archs = train_archs
        self.holdout_fraction = float(holdout_fraction)
        self.seed = int(seed)
        self.data_file = Path(data_file) if data_file is not None else None
        self._space = space
        self.progress = progress
        self.fit_report: dict[str, Any] | None = None
        self.training_set: list[tuple[Arch, float]] = []
        self._predictor: ArchPredictor | None = None

    # -- the space: ours, else the wrapped evaluator's; setting it fills the wrapped one's too
    @property
    def space(self) -> SearchSpace | None:
        return self._space if self._space is not None else getattr(self.evaluator, "space", None)

    @space.setter
    def space(self, value: SearchSpace | None) -> None:
        self._space = value
        if getattr(self.evaluator, "space", False) is None:
            self.evaluator.space = value

    # -- what the wrapped evaluator does for the chosen networks ----------------------------
    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return getattr(self.evaluator, "input_shape", None)

    def network(self, arch: Arch) -> Any:
        network = getattr(self.evaluator, "network", None)
        return network(arch) if callable(network) else super().network(arch)

    def export(self, arch: Arch, out_dir: str | Path) -> Mapping[str, Path] | None:
        export = getattr(self.evaluator, "export", None)
        return export(arch, out_dir) if callable(export) else None

    # -- training set ----------------------------------------------------------------------
    def _key(self, arch: Arch) -> Arch:
        space = self.space
        arch = space.validate(arch)
        return space.canonical(arch) if hasattr(space, "canonical") else arch

    def _draw(self) -> list[Arch]:
        """``train_archs`` distinct networks of the space, in a seeded order."""
        rng = random.Random(f"predictor|{self.seed}")
        seen: dict[Arch, None] = {}
        for _ in range(20 * self.train_archs + 1000):
            seen.setdefault(self._key(self.space.sample(rng)), None)
            if len(seen) == self.train_archs:
                break
        else:
            raise ValueError(f"the space has fewer than train_archs={self.train_archs} distinct "
                             f"networks (found {len(seen)}); lower train_archs")
        return list(seen)

    def source(self) -> str:
        """What produced the training values: the wrapped evaluator's ``fingerprint()``, else
        its ``repr`` (its class path when it has no ``__repr__`` of its own)."""
        fingerprint = getattr(self.evaluator, "fingerprint", None)
        if callable(fingerprint):
            return str(fingerprint())
        cls = type(self.evaluator)
        return repr(self.evaluator) if cls.__repr__ is not object.__repr__ \
            else f"{cls.__module__}.{cls.__qualname__}"

    def _read_data_file(self, source: str) -> dict[Arch, float]:
        """The records of ``data_file``, which must all come from ``source``."""
        out: dict[Arch, float] = {}
        if self.data_file is None or not self.data_file.is_file():
            return out
        for n, line in enumerate(self.data_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                arch = self._key(self.space.parse(row["arch"]))
                value = float(row["metrics"][self.metric])
            except Exception as err:  # noqa: BLE001 - say which line and how to fix
                raise ValueError(f"{self.data_file}:{n} is not a predictor training record "
                                 f"of this space ({type(err).__name__}: {err}); fix or delete "
                                 "the line (it is re-evaluated)") from None
            if row.get("source") != source:
                raise ValueError(
                    f"{self.data_file}:{n} was measured by {row.get('source')!r}, not by this "
                    f"evaluator ({source!r}): a retrained supernet or other settings. Give "
                    "another data_file, or delete this one to measure again")
            out[arch] = value
        return out

    def _collect(self) -> list[tuple[Arch, float]]:
        source = self.source()
        known = self._read_data_file(source)
        archs = self._draw()
        todo = [a for a in archs if a not in known]
        if todo and self.data_file is not None:
            self.data_file.parent.mkdir(parents=True, exist_ok=True)
        t0, every = time.time(), max(1, len(todo) // 10)
        for i, arch in enumerate(todo, 1):
            metrics = dict(self.evaluator(arch))
            value = float(metrics[self.metric])
            known[arch] = value
            if self.data_file is not None:
                with open(self.data_file, "a") as f:
                    f.write(json.dumps({"arch": self.space.to_string(arch),
                                        "metrics": metrics, "source": source}) + "\n")
            if self.progress and (i % every == 0 or i == len(todo)):
                print(f"predictor training set: {i}/{len(todo)} new networks evaluated "
                      f"({(time.time() - t0) / i:.1f} s each), {len(archs) - len(todo)} reused",
                      flush=True)
        data = [(a, known[a]) for a in archs if math.isfinite(known[a])]
        if len(data) < 2:
            raise ValueError(f"only {len(data)} finite {self.metric} values among "
                             f"{len(archs)} evaluated networks; the predictor needs more")
        return data

    # -- fitting ---------------------------------------------------------------------------
    def _holdout_report(self, data: list[tuple[Arch, float]]) -> dict[str, Any] | None:
        from scipy.stats import kendalltau, spearmanr

        n_hold = round(self.holdout_fraction * len(data))
        if n_hold < 5 or len(data) - n_hold < 2:
            return None
        order = list(range(len(data)))
        random.Random(f"holdout|{self.seed}").shuffle(order)
        hold, train = [data[i] for i in order[:n_hold]], [data[i] for i in order[n_hold:]]
        predictor = ArchPredictor(self.space, self.model).fit([a for a, _ in train],
                                                              [y for _, y in train])
        pred = predictor.predict([a for a, _ in hold]).mean
        true = np.asarray([y for _, y in hold])
        return {"train": len(train), "holdout": len(hold),
                "kendall_tau": float(kendalltau(pred, true).statistic),
                "spearman": float(spearmanr(pred, true).statistic),
                "mae": float(np.mean(np.abs(pred - true))),
                "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
                "target_std": float(true.std(ddof=1))}

    def prepare(self) -> PredictorEvaluator:
        """Prepare the wrapped evaluator, collect the training set, report the hold-out
        quality and fit the predictor on all of it. Called by the search CLI before searching
        (else on the first call); a second call does nothing."""
        if self._predictor is not None:
            return self
        inner_prepare = getattr(self.evaluator, "prepare", None)
        if callable(inner_prepare):
            inner_prepare()
        if self.space is None:
            raise ValueError("PredictorEvaluator needs a space: give space=, or wrap an "
                             "evaluator that has one")
        data = self._collect()
        self.training_set = data
        t0 = time.time()
        report = self._holdout_report(data)
        predictor = ArchPredictor(self.space, self.model).fit([a for a, _ in data],
                                                              [y for _, y in data])
        self.fit_report = {"metric": self.metric, "networks": len(data),
                           "holdout": report, "fit_seconds": time.time() - t0,
                           "data_file": str(self.data_file) if self.data_file else None}
        if self.progress and report is not None:
            print(f"{self.metric} predictor on {report['holdout']} held-out networks: Kendall "
                  f"tau {report['kendall_tau']:.3f}, MAE {report['mae']:.2f} (target std "
                  f"{report['target_std']:.2f})", flush=True)
        self._predictor = predictor
        return self

    # -- evaluation ------------------------------------------------------------------------
    def __call__(self, arch: Arch) -> dict[str, float]:
        """The predicted ``{metric: mean, metric_std: std}`` of ``arch``'s network."""
        self.prepare()
        pred = self._predictor.predict([self._key(arch)])  # type: ignore[union-attr]
        return {self.metric: float(pred.mean[0]), f"{self.metric}_std": float(pred.std[0])}

    def verify(self, arch: Arch) -> dict[str, float]:
        """The wrapped evaluator's real metrics of ``arch`` (e.g. for the chosen subnets)."""
        return dict(self.evaluator(arch))

    def __repr__(self) -> str:
        return (f"PredictorEvaluator({self.evaluator!r}, {type(self.model).__name__}, "
                f"train_archs={self.train_archs})")

