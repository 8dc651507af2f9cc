"""Evaluators: ``evaluator(arch) -> {metric: value}`` for the multi-trial loop.

The protocol is small so that every kind of performance estimate fits it: a table lookup
(:class:`TabularEvaluator`), training the built network with a Lightning ``Trainer``,
inheriting supernet weights, or a zero-cost proxy.

* ``__call__(arch) -> Mapping[str, float]``: the metrics of one architecture. Raise on
  failure (the loop records the error and goes on); a NaN objective also counts as failed.
* ``primary_metric: str``: the metric the loop maximises unless given another objective.
* picklable, so trials can run in a ``ProcessPoolExecutor`` (keep big state out of the
  pickle, as :class:`TabularEvaluator` does, or load it lazily in the worker).
"""

from __future__ import annotations

import csv
import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_nas.spaces.base import Arch, ArchError, SearchSpace

#: Environment variable naming the shared reference-data folder.
SHARED_DATA_ENV = "LIGHTNING_NAS_SHARED_DATA"


def shared_data_dir() -> Path:
    """The reference-data folder: ``$LIGHTNING_NAS_SHARED_DATA`` or ``<repo>/../shared/data``."""
    try:  # the project-wide helper, when present
        from lightning_nas.data.base import shared_data_dir as helper  # type: ignore

        return Path(helper())
    except (ImportError, AttributeError):
        pass
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def default_nb201_table() -> Path:
    """``<shared data>/nb201/nb201_accuracy.csv``."""
    return shared_data_dir() / "nb201" / "nb201_accuracy.csv"


def data_input_shape(data: Any) -> tuple[int, ...] | None:
    """One sample's shape ``(C, H, W)`` of a data module that tells its ``image_size``."""
    size = getattr(data, "image_size", None)
    if isinstance(size, int):
        return (int(data.in_channels), size, size)
    if isinstance(size, Sequence) and len(size) == 2:
        return (int(data.in_channels), int(size[0]), int(size[1]))
    return None


def check_classification_data(data: Any, who: str) -> None:
    """An evaluator's data module must tell its classes and channels and not be in search
    mode (the bilevel halves of one-shot search)."""
    for attr in ("num_classes", "in_channels"):
        if not isinstance(getattr(data, attr, None), int):
            raise TypeError(f"the data module {type(data).__name__} has no int attribute "
                            f"{attr!r}; {who} needs num_classes and in_channels")
    if getattr(data, "search", False):
        raise ValueError("the data module is in search mode (bilevel halves); give it "
                         "search=False")


class Evaluator(ABC):
    """Base class of evaluators (for ``class_path`` configs); see the module docstring.

    Besides ``__call__`` and ``primary_metric``, the search CLI uses these, each with a
    default that suits an evaluator without the capability:

    * ``space``: the space whose architectures it evaluates; ``None`` until :meth:`bind`
      gives it the search's;
    * :meth:`bind` (the search's space) and :meth:`prepare` (load and check what it needs),
      both before any trial, so a wrong checkpoint or space fails at once;
    * :attr:`input_shape` (one sample's ``(C, H, W)`` for cost hooks) and :meth:`network`
      (the standalone network they measure);
    * :meth:`verify` (real numbers for a predicted fitness) and :meth:`export` (the chosen
      network's files) for the best candidate of each latency budget;
    * :attr:`fit_report` (a predictor's hold-out quality, into ``summary.json``);
    * :attr:`supports_fidelity`: ``__call__(arch, fidelity=...)`` takes a multi-fidelity
      sampler's budget (TrainingEvaluator: epochs).
    """

    primary_metric: str = ""
    supports_fidelity: bool = False
    space: SearchSpace | None = None
    fit_report: Mapping[str, Any] | None = None

    @abstractmethod
    def __call__(self, arch: Arch) -> Mapping[str, float]:
        """Metrics of ``arch``; raise when it cannot be evaluated."""

    def bind(self, space: SearchSpace) -> None:
        """Take the search's space when none was given; a different space is a
        ``ValueError``."""
        if self.space is None:
            self.space = space
        elif self.space.name != space.name:
            raise ValueError(f"the evaluator looks up {self.space.name!r} architectures but "
                             f"the space is {space.name!r}")

    def prepare(self) -> Evaluator:
        """Load and check what the evaluator needs (called once before the search)."""
        return self

    def use_run_dir(self, run_dir: Path, tag: str) -> None:
        """Called by ``lightning-nas search`` before the search with its run folder and a
        tag of the search's configuration (the same when the search is resumed, different
        for any other search): an evaluator that keeps state between trials (continued
        training's checkpoints) keeps it there, so that a resumed search finds it and
        another search's is ignored. Default: nothing."""

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """One sample's shape ``(C, H, W)``, when the evaluator knows its data."""
        return None

    def network(self, arch: Arch) -> Any:
        """The standalone network of ``arch`` that cost hooks measure (default
        ``space.build(arch)``)."""
        if self.space is None:
            raise ValueError(f"{type(self).__name__} has no space to build {arch!r} with")
        return self.space.build(arch)

    def verify(self, arch: Arch) -> Mapping[str, float] | None:
        """Real metrics of ``arch`` when ``__call__`` gives estimates (None: it does not)."""
        return None

    def export(self, arch: Arch, out_dir: str | Path) -> Mapping[str, Path] | None:
        """Write the deployable network of ``arch`` under ``out_dir`` (None: nothing to
        write)."""
        return None


# one parsed table per (path, size, mtime, columns) and process: workers of a process pool
# load the CSV once instead of receiving it with every pickled call
_TABLES: dict[tuple, dict[str, dict[str, float]]] = {}
_TABLES_LOCK = threading.Lock()


def _require_benchmark_ops(space: SearchSpace) -> None:
    """A tabular benchmark holds its own op set only (an NB201 space with other ops has
    ``is_benchmark`` False)."""
    if getattr(space, "is_benchmark", True) is False:
        raise ValueError(f"the NAS-Bench-201 table holds the benchmark's 5 ops only; the "
                         f"space's ops are {list(space.ops)}: train the candidates "
                         "(TrainingEvaluator) or score them on a supernet instead")


class TabularEvaluator(Evaluator):
    """Look architectures up in a tabular benchmark (e.g. NAS-Bench-201's CSV).

    The table is keyed by the space's canonical string (``space.to_string(arch)``) in
    ``key_column``. A call returns ``metric``, every ``report`` column and
    ``simulated_seconds``: the value of ``time_column`` when the table has one, else the
    constant ``seconds_per_query``. The NB201 CSV on hand has no training times (the
    benchmark's per-architecture epoch times are not in it), so a budget in simulated
    seconds there is a query count times ``seconds_per_query``.

    Args:
        path: the CSV (default: ``<shared data>/nb201/nb201_accuracy.csv``).
        metric: the column to search on (the benchmark protocol: validation accuracy).
        report: further columns to report (e.g. test accuracies, never searched on).
        space: the space whose ``to_string`` gives the key (default NB201).
        key_column: the column holding the architecture strings.
        time_column: a column of training seconds, if the table has one.
        seconds_per_query: simulated seconds per query without ``time_column``.
    """

    def __init__(self, path: str | Path | None = None, *,
                 metric: str = "cifar10valid_val_200ep",
                 report: Sequence[str] = ("cifar10_test_200ep", "cifar100_test_200ep",
                                          "imagenet16_test_200ep"),
                 space: SearchSpace | None = None, key_column: str = "arch_str",
                 time_column: str | None = None, seconds_per_query: float = 1.0):
        if space is None:
            from lightning_nas.spaces.nb201 import NB201Space

            space = NB201Space()
        _require_benchmark_ops(space)
        self.path = Path(path) if path is not None else default_nb201_table()
        self.metric = metric
        self.primary_metric = metric
        self.report = tuple(r for r in report if r != metric)
        self.space = space
        self.key_column = key_column
        self.time_column = time_column
        if seconds_per_query <= 0:
            raise ValueError(f"seconds_per_query must be > 0, got {seconds_per_query}")
        self.seconds_per_query = float(seconds_per_query)
        # load now: a wrong path or a missing column fails at construction
        self._table: dict[str, dict[str, float]] | None = self._load()

    def bind(self, space: SearchSpace) -> None:
        _require_benchmark_ops(space)
        super().bind(space)

    @property
    def columns(self) -> tuple[str, ...]:
        """The value columns read from the table."""
        cols = (self.metric, *self.report)
        return cols + ((self.time_column,) if self.time_column else ())

    @property
    def table(self) -> dict[str, dict[str, float]]:
        if self._table is None:
            self._table = self._load()
        return self._table

    def _load(self) -> dict[str, dict[str, float]]:
        if not self.path.is_file():
            raise FileNotFoundError(
                f"tabular benchmark {str(self.path)!r} does not exist; pass its path, or set "
                f"{SHARED_DATA_ENV} to the folder holding nb201/nb201_accuracy.csv"
            )
        stat = self.path.stat()
        key = (str(self.path.resolve()), stat.st_size, stat.st_mtime_ns, self.key_column,
               self.columns)
        with _TABLES_LOCK:
            if key in _TABLES:
                return _TABLES[key]
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in (self.key_column, *self.columns) if c not in header]
            if missing:
                raise ValueError(f"{self.path}: missing column(s) {missing}; the table has "
                                 f"{header}")
            table: dict[str, dict[str, float]] = {}
            for line, row in enumerate(reader, start=2):
                values = {}
                for c in self.columns:
                    try:
                        values[c] = float(row[c])
                    except (TypeError, ValueError):
                        values[c] = math.nan  # an empty cell: the trial will count as failed
                table[row[self.key_column]] = values
        if not table:
            raise ValueError(f"{self.path}: the table has no rows")
        with _TABLES_LOCK:
            _TABLES[key] = table
        return table

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_table"] = None  # reloaded (once per process) where it is used
        return state

    def __len__(self) -> int:
        return len(self.table)

    def key(self, arch: Arch) -> str:
        return self.space.to_string(self.space.validate(arch))

    def __call__(self, arch: Arch) -> dict[str, float]:
        key = self.key(arch)
        row = self.table.get(key)
        if row is None:
            raise ArchError(f"architecture {key!r} is not in the table {self.path} "
                            f"({len(self.table)} rows, keyed by {self.key_column!r})")
        out = {c: row[c] for c in (self.metric, *self.report)}
        out["simulated_seconds"] = row[self.time_column] if self.time_column else \
            self.seconds_per_query
        return out

    def __repr__(self) -> str:
        return f"TabularEvaluator({str(self.path)!r}, metric={self.metric!r})"
