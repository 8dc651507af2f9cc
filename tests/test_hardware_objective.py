"""Objectives and constraints against hand-computed values."""

from __future__ import annotations

import math

import pytest

from lightning_nas.hardware import (
    AccuracyObjective,
    Constraints,
    MnasNetReward,
    get_metric,
    mnasnet_reward,
)


def test_accuracy_objective():
    obj = AccuracyObjective()
    assert obj.name == "accuracy" and obj({"accuracy": 0.75, "latency_ms": 3}) == 0.75
    assert AccuracyObjective("top1")({"top1": 71.2}) == 71.2


def test_mnasnet_soft_reward_hand_values():
    # Tan et al. 2019, Eq. 2, alpha = beta = -0.07
    # twice the target: 0.8 * 2 ** -0.07 = 0.8 * 0.952638... = 0.762110
    assert mnasnet_reward(0.8, 160.0, 80.0) == pytest.approx(0.8 * 0.9526380, rel=1e-6)
    # half the target is rewarded: 0.8 * 0.5 ** -0.07 = 0.8 * 1.049717 = 0.839774
    assert mnasnet_reward(0.8, 40.0, 80.0) == pytest.approx(0.8 * 1.0497167, rel=1e-6)
    assert mnasnet_reward(0.8, 80.0, 80.0) == pytest.approx(0.8)


def test_mnasnet_hard_reward_hand_values():
    hard = MnasNetReward.hard(80.0)
    assert (hard.alpha, hard.beta) == (0.0, -1.0)
    # at or under the target the reward is the accuracy (w = alpha = 0)
    assert hard({"accuracy": 0.8, "latency_ms": 40.0}) == pytest.approx(0.8)
    assert hard({"accuracy": 0.8, "latency_ms": 80.0}) == pytest.approx(0.8)
    # over it, scaled by T / LAT (w = beta = -1): 0.8 * 80 / 100 = 0.64
    assert hard({"accuracy": 0.8, "latency_ms": 100.0}) == pytest.approx(0.64)


def test_mnasnet_reward_object_matches_function_and_keys():
    soft = MnasNetReward.soft(50.0, accuracy_key="val_acc")
    assert soft.name == "mnasnet_reward"
    assert soft({"val_acc": 0.9, "latency_ms": 70.0}) == pytest.approx(
        0.9 * (70 / 50) ** -0.07)
    with pytest.raises(KeyError, match=r"'val_acc'.*available.*accuracy"):
        soft({"accuracy": 0.9, "latency_ms": 70.0})


@pytest.mark.parametrize("target", [0, -5.0, math.inf, math.nan])
def test_mnasnet_bad_target(target):
    with pytest.raises(ValueError, match="target"):
        MnasNetReward(target)
    with pytest.raises(ValueError, match="target"):
        mnasnet_reward(0.5, 10.0, target)


def test_mnasnet_bad_inputs():
    with pytest.raises(ValueError, match="latency"):
        mnasnet_reward(0.5, 0.0, 10.0)
    with pytest.raises(ValueError, match="accuracy"):
        mnasnet_reward(math.nan, 5.0, 10.0)
    with pytest.raises(ValueError, match="slower"):
        MnasNetReward(10.0, alpha=0.1)


def test_constraints_check_reasons():
    c = Constraints(max_latency_ms=5.0, max_params=1_000_000, max_flops=3e8)
    ok = {"latency_ms": 4.9, "params": 999_999, "flops": 3e8}  # equal to the limit is allowed
    assert c.check(ok) == [] and c.satisfied(ok)
    bad = {"latency_ms": 7.5, "params": 2_000_000, "flops": 1e8}
    reasons = c.check(bad)
    assert reasons == ["latency_ms = 7.5 > max_latency_ms = 5",
                       "params = 2e+06 > max_params = 1e+06"]
    assert not c.satisfied(bad)
    assert c.active == {"latency_ms": 5.0, "params": 1_000_000, "flops": 3e8}


def test_constraints_only_need_the_set_metrics_and_name_missing_ones():
    assert Constraints(max_params=10).check({"params": 5}) == []
    assert Constraints().check({}) == []
    with pytest.raises(KeyError, match=r"'latency_ms' is missing; available.*'flops', 'params'"):
        Constraints(max_latency_ms=1.0).check({"params": 5, "flops": 3})
    with pytest.raises(ValueError, match="NaN"):
        Constraints(max_flops=1.0).check({"flops": math.nan})


@pytest.mark.parametrize("kwargs", [{"max_latency_ms": 0}, {"max_params": -1},
                                    {"max_flops": math.inf}, {"max_params": True}])
def test_constraints_bad_limits(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Constraints(**kwargs)


def test_get_metric_type_errors():
    with pytest.raises(TypeError, match="number"):
        get_metric({"accuracy": "high"}, "accuracy")
    with pytest.raises(TypeError, match="mapping"):
        get_metric([0.5], "accuracy")
