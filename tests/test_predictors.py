"""Accuracy predictors: encodings, models with uncertainty, errors, the BO surrogate adapter."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lightning_nas.estimation.predictors import (
    ArchPredictor,
    GaussianProcess,
    GradientBoosting,
    MLPEnsemble,
    NotFittedError,
    encode,
    make_predictor,
    nb201_path_encoding,
)
from lightning_nas.spaces.nb201 import NB201Space

SPACE = NB201Space()


def _toy_data(n: int, seed: int = 0):
    """NB201 cells and a synthetic accuracy: convs help, 'none' on the 3<-0 edge hurts."""
    rng = random.Random(seed)
    archs = [SPACE.sample(rng) for _ in range(n)]
    y = np.array([sum(2.0 if a[e].startswith("nor_conv") else 0.5 if a[e] == "skip_connect"
                      else 0.0 for e in a) - 3.0 * (a["3<-0"] == "none") for a in archs])
    return archs, y + np.random.default_rng(seed).normal(0, 0.1, n)


def test_path_encoding_by_hand():
    arch = SPACE.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|"
                       "nor_conv_1x1~2|")
    enc = nb201_path_encoding([arch])[0]
    ops = ["skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    expected = np.zeros(84)
    expected[ops.index("avg_pool_3x3")] = 1  # 3<-0
    # 1<-0-3 goes through none (3<-1); 2<-0-3 through none (2<-0)
    # 1<-0-2-3: conv3x3, skip, conv1x1
    expected[4 + 16 + ops.index("nor_conv_3x3") * 16 + ops.index("skip_connect") * 4
             + ops.index("nor_conv_1x1")] = 1
    np.testing.assert_array_equal(enc, expected)
    both = encode(SPACE, [arch], "one_hot+path")
    assert both.shape == (1, 30 + 84)
    np.testing.assert_array_equal(both[0, :30], SPACE.one_hot(arch).numpy())


@pytest.mark.parametrize("model", [
    MLPEnsemble(members=3, hidden=(32,), epochs=300, seed=0),
    GradientBoosting(members=3, n_estimators=100),
    GaussianProcess(n_restarts=0),
], ids=["mlp", "gbm", "gp"])
def test_models_learn_and_give_uncertainty(model):
    archs, y = _toy_data(150)
    test_archs, test_y = _toy_data(200, seed=1)
    pred = ArchPredictor(SPACE, model).fit(archs, y).predict(test_archs)
    assert pred.mean.shape == pred.std.shape == (200,)
    assert np.all(pred.std >= 0) and np.any(pred.std > 0)
    assert spearmanr(pred.mean, test_y).statistic > 0.8


def test_mlp_members_and_determinism():
    archs, y = _toy_data(60)
    a = MLPEnsemble(members=4, epochs=50, seed=3).fit(encode(SPACE, archs), y)
    b = MLPEnsemble(members=4, epochs=50, seed=3).fit(encode(SPACE, archs), y)
    x = encode(SPACE, archs[:5])
    members = a.members_predict(x)
    assert members.shape == (4, 5)
    np.testing.assert_allclose(a.predict(x).mean, members.mean(0))
    np.testing.assert_allclose(a.predict(x).std, members.std(0, ddof=1))
    np.testing.assert_array_equal(a.predict(x).mean, b.predict(x).mean)


def test_predict_before_fit_and_bad_input():
    for name in ("mlp_ensemble", "gradient_boosting", "gaussian_process"):
        with pytest.raises(NotFittedError, match="before fit"):
            make_predictor(name).predict(np.zeros((2, 30)))
    with pytest.raises(NotFittedError, match="before fit"):
        ArchPredictor(SPACE).predict([SPACE.sample(random.Random(0))])
    model = MLPEnsemble(members=1, epochs=5)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(np.zeros((3, 30)), [1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="one value per row"):
        model.fit(np.zeros((3, 30)), [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        model.fit(np.zeros((1, 30)), [1.0])
    model.fit(np.zeros((3, 30)), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="30"):
        model.predict(np.zeros((2, 31)))
    with pytest.raises(ValueError, match="unknown predictor"):
        make_predictor("svm")
    with pytest.raises(ValueError, match="encoding"):
        ArchPredictor(SPACE, encoding="adjacency")


def test_surrogate_adapter_matches_bo_interface():
    from lightning_nas.search.samplers import one_hot_batch

    archs, y = _toy_data(40)
    x = one_hot_batch(SPACE, archs)
    for model, encoding in ((GaussianProcess(n_restarts=0), "one_hot"),
                            (GradientBoosting(members=2, n_estimators=30), "one_hot+path"),
                            (MLPEnsemble(members=3, epochs=30), "path")):
        predictor = ArchPredictor(SPACE, model, encoding=encoding)
        surrogate = predictor.surrogate()
        assert not surrogate.fitted
        surrogate.fit(x, torch.tensor(y), torch.Generator().manual_seed(0))
        out = surrogate.predict(x[:7])
        assert out.dim() == 2 and out.shape[1] == 7
        direct = predictor.predict(archs[:7])
        np.testing.assert_allclose(out.mean(0).numpy(), direct.mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out.std(0).numpy(), direct.std, rtol=1e-3, atol=1e-4)
        # state round trip refits to the same model
        clone = ArchPredictor(SPACE, type(model)(**_kwargs(model)), encoding=encoding).surrogate()
        clone.load_state_dict(surrogate.state_dict())
        np.testing.assert_allclose(clone.predict(x[:7]).numpy(), out.numpy(), rtol=1e-4,
                                   atol=1e-4)


def _kwargs(model):
    if isinstance(model, GaussianProcess):
        return {"n_restarts": 0}
    if isinstance(model, GradientBoosting):
        return {"members": 2, "n_estimators": 30}
    return {"members": 3, "epochs": 30}


# --- zero-cost scores as features (NAS-Bench-Suite-Zero's recipe) ------------------------------
def _hidden_score(arch) -> float:
    """A per-cell value no encoding can learn from a few cells: a hash of the cell."""
    return random.Random(arch.digest).gauss(0.0, 1.0)


def test_zero_cost_features_are_the_encoding_plus_scaled_scores_by_hand():
    a, b = SPACE.from_index(1), SPACE.from_index(2)
    scores = {a.digest: {"p": 0.0, "q": -1e30}, b.digest: {"p": math.e - 1, "q": float("nan")}}
    pred = ArchPredictor(SPACE, GradientBoosting(members=1, n_estimators=5),
                         zero_cost=lambda arch: scores[arch.digest])
    x = pred.features([a, b], fit_scaling=True)
    assert x.shape == (2, 30 + 2) and pred.zero_cost_proxies == ("p", "q")
    np.testing.assert_array_equal(x[:, :30], encode(SPACE, [a, b]))
    # p: log1p -> (0, 1), standardised by the two cells' mean 0.5 and std 0.5 -> (-1, 1);
    # q: sign * log1p(1e30) for a, NaN for b -> standardised a = 0 (one value), b = 0 (NaN)
    np.testing.assert_allclose(x[:, 30], [-1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(x[:, 31], [0.0, 0.0])


def test_zero_cost_features_carry_what_the_encoding_cannot():
    """Target = a per-cell hidden score + noise; the scorer returns the hidden score: with it
    a small tree ensemble ranks held-out cells almost perfectly, without it barely."""
    rng = random.Random(0)
    archs = list({a.digest: a for a in (SPACE.sample(rng) for _ in range(260))}.values())
    y = np.array([_hidden_score(a) for a in archs]) + np.random.default_rng(0).normal(
        0, 0.05, len(archs))
    train, test = slice(0, 60), slice(60, 260)

    def rho(zero_cost):
        pred = ArchPredictor(SPACE, GradientBoosting(members=2, n_estimators=60),
                             zero_cost=zero_cost).fit(archs[train], y[train])
        return spearmanr(pred.predict(archs[test]).mean, y[test]).statistic

    with_zc = rho(lambda arch: {"hidden": _hidden_score(arch)})
    assert with_zc > 0.9 and rho(None) < 0.4


def test_bo_surrogate_with_zero_cost_features_runs_and_resumes():
    from lightning_nas.search import BayesianOptimization, PredictorSurrogate

    def make():
        return BayesianOptimization(
            SPACE, initial_random=4, num_parents=2, mutations_per_parent=3,
            random_candidates=3, seed=0, surrogate=PredictorSurrogate(
                GradientBoosting(members=2, n_estimators=20), encoding="one_hot+path",
                zero_cost=lambda arch: {"hidden": _hidden_score(arch)}))

    a = make()
    for _ in range(8):
        arch = a.ask()
        a.tell(arch, _hidden_score(arch))
    b = make()
    b.load_state_dict(a.state_dict())
    assert [a.ask() for _ in range(3)] == [b.ask() for _ in range(3)]
