"""Bayesian optimisation with an accuracy predictor of lightning_nas.estimation as surrogate."""

from __future__ import annotations

import io
import os
import random
import statistics
from pathlib import Path

import pytest
import torch

from lightning_nas.estimation.predictors import GaussianProcess
from lightning_nas.search import (
    BayesianOptimization,
    MLPEnsemble,
    PredictorSurrogate,
    RandomSampler,
    TabularEvaluator,
)
from lightning_nas.search.cli import build_parser
from lightning_nas.spaces.nb201 import NB201Space

ROOT = Path(__file__).resolve().parents[1]
NB201 = NB201Space()
METRIC = "cifar10valid_val_200ep"
BO = {"initial_random": 10, "num_parents": 5, "mutations_per_parent": 10,
      "random_candidates": 30, "retrain_every": 2}


def _table() -> Path:
    env = os.environ.get("LIGHTNING_NAS_SHARED_DATA")
    base = Path(env) if env else ROOT.parent / "shared" / "data"
    return base / "nb201" / "nb201_accuracy.csv"


TABLE = _table()


def gp_bo(seed: int = 0) -> BayesianOptimization:
    surrogate = PredictorSurrogate(GaussianProcess(n_restarts=1), encoding="one_hot+path")
    return BayesianOptimization(NB201, seed=seed, surrogate=surrogate, **BO)


def drive(sampler, evaluator, n: int) -> list[tuple[str, float]]:
    out = []
    for _ in range(n):
        arch = sampler.ask()
        value = evaluator(arch)[METRIC]
        sampler.tell(arch, value)
        out.append((arch.digest, value))
    return out


@pytest.mark.skipif(not TABLE.is_file(), reason="NB201 table not in ../shared/data")
def test_gp_surrogate_beats_random_median_and_resumes_identically():
    evaluator = TabularEvaluator(TABLE, metric=METRIC)
    sampler = gp_bo()
    first = drive(sampler, evaluator, 30)
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    rest = drive(sampler, evaluator, 20)
    best = max(v for _, v in first + rest)

    random_best = [max(v for _, v in drive(RandomSampler(NB201, seed=s), evaluator, 50))
                   for s in range(15)]
    assert best > statistics.median(random_best)

    buffer.seek(0)
    resumed = gp_bo(seed=123)  # the seed comes from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.model.fitted
    assert drive(resumed, evaluator, 8) == rest[:8]


def test_predictor_surrogate_decodes_one_hot_rows_and_is_fresh_per_reset():
    surrogate = PredictorSurrogate(GaussianProcess(n_restarts=0), encoding="one_hot+path")
    sampler = BayesianOptimization(NB201, seed=0, surrogate=surrogate, **BO)
    assert not sampler.model.fitted and not surrogate.model.fitted
    archs = [NB201.sample(random.Random(i)) for i in range(12)]
    x = torch.stack([NB201.one_hot(a) for a in archs])
    y = torch.tensor([float(sum(NB201.encode(a))) for a in archs])
    sampler.model.fit(x, y, torch.Generator().manual_seed(0))
    preds = sampler.model.predict(x)
    assert preds.shape[1] == len(archs) and torch.isfinite(preds).all()
    assert not surrogate.model.fitted  # the factory's model is copied, never trained
    sampler.reset(1)
    assert not sampler.model.fitted
    with pytest.raises(ValueError, match="encoding"):
        PredictorSurrogate(encoding="paths")


def test_default_and_plain_factory_surrogates_give_the_same_search():
    def score(arch):
        return float(sum(i == 0 for i in NB201.encode(arch)))

    options = {"initial_random": 4, "epochs": 20, "hidden": (8,), "num_parents": 2,
               "mutations_per_parent": 3, "random_candidates": 4}

    def run(sampler):
        asked = []
        for _ in range(10):
            arch = sampler.ask()
            sampler.tell(arch, score(arch))
            asked.append(arch.digest)
        return asked

    default = run(BayesianOptimization(NB201, seed=3, **options))
    factory = run(BayesianOptimization(
        NB201, seed=3, surrogate=lambda d: MLPEnsemble(d, members=5, hidden=(8,), epochs=20,
                                                       learning_rate=0.01),
        **options))
    assert default == factory


def test_gp_config_parses_and_instantiates():
    parser = build_parser()
    cfg = parser.parse_args(["--config", str(ROOT / "configs" / "search" / "nb201_bo_gp.yaml")])
    assert cfg.evaluator.class_path.endswith("TabularEvaluator")
    cfg.evaluator = None  # the NB201 table is reference data, not needed to build the sampler
    init = parser.instantiate(cfg)
    assert isinstance(init.sampler.surrogate, PredictorSurrogate)
    assert isinstance(init.sampler.surrogate.model, GaussianProcess)
    assert init.sampler.surrogate.encoding == "one_hot+path"
