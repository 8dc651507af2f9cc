"""Multi-trial search: ask/tell samplers, evaluators, the loop with its journal, the CLI.

>>> from lightning_nas.spaces.nb201 import NB201Space
>>> from lightning_nas.search import RegularizedEvolution, TabularEvaluator, run_search
>>> space = NB201Space()
>>> result = run_search(space, RegularizedEvolution(space, seed=0), TabularEvaluator(),
...                     budget_trials=100, run_dir="runs/rea")  # doctest: +SKIP
"""

from lightning_nas.search.evaluators import (
    Evaluator,
    TabularEvaluator,
    default_nb201_table,
    shared_data_dir,
)
from lightning_nas.search.journal import Journal, read_journal, without_timing
from lightning_nas.search.loop import (
    MetricObjective,
    SearchResult,
    UnsatisfiableConstraintError,
    run_search,
)
from lightning_nas.search.multi_fidelity import BOHB, Hyperband, SuccessiveHalving
from lightning_nas.search.predictor_evaluator import PredictorEvaluator
from lightning_nas.search.samplers import (
    NPENAS,
    BayesianOptimization,
    LocalSearch,
    RandomSampler,
    RegularizedEvolution,
    Reinforce,
    Sampler,
    neighbours,
    one_hot_batch,
    space_size,
)
from lightning_nas.search.surrogate import MLPEnsemble, PredictorSurrogate

__all__ = [
    "BOHB",
    "BayesianOptimization",
    "Evaluator",
    "Hyperband",
    "Journal",
    "LocalSearch",
    "MLPEnsemble",
    "MetricObjective",
    "NPENAS",
    "PredictorEvaluator",
    "PredictorSurrogate",
    "RandomSampler",
    "RegularizedEvolution",
    "Reinforce",
    "Sampler",
    "SearchResult",
    "SuccessiveHalving",
    "SupernetEvaluator",
    "TabularEvaluator",
    "TrainingEvaluator",
    "UnsatisfiableConstraintError",
    "default_nb201_table",
    "neighbours",
    "one_hot_batch",
    "read_journal",
    "run_search",
    "shared_data_dir",
    "space_size",
    "without_timing",
]


def __getattr__(name: str):
    # imported on first use: they pull in Lightning and the strategies
    if name == "TrainingEvaluator":
        from lightning_nas.search.training import TrainingEvaluator

        return TrainingEvaluator
    if name == "SupernetEvaluator":
        from lightning_nas.search.supernet_evaluator import SupernetEvaluator

        return SupernetEvaluator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
