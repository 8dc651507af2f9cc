"""ZiCo, SWAP, Zen-score and AZ-NAS: each pinned against a hand calculation on a network
small enough to work out on paper, plus an NB201 network and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.estimation.zero_cost import ProxyError
from lightning_nas.estimation.zero_cost_recent import (
    az_nas,
    az_nas_aggregate,
    swap,
    zen_score,
    zico,
)
from lightning_nas.spaces.nb201 import NB201Space


def _linear(w, bias=None) -> nn.Linear:
    w = torch.tensor(w, dtype=torch.float64)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None).double()
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    return layer


def _conv1x1(w) -> nn.Conv2d:
    w = torch.tensor(w, dtype=torch.float64)
    conv = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(w[:, :, None, None])
    return conv


# --- ZiCo -------------------------------------------------------------------------------------
def test_zico_by_hand():
    """Linear(2 -> 1, no bias), loss = sum of the output: the gradient of w on a batch is the
    sum of its inputs. Batches [1, 2] and [3, -1]: g = (1, 2) and (3, -1); mean |g| =
    (2, 1.5), std over the two batches = (1, 1.5); ZiCo = log(2/1 + 1.5/1.5) = log 3."""
    net = _linear([[0.5, -0.25]])
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    score = zico(net, x, y, loss_fn=lambda out, t: out.sum())
    assert score == pytest.approx(math.log(3.0), abs=1e-12)
    # a weight whose gradient is the same on both batches (std 0) is left out, and a layer
    # whose sum is 0 adds nothing: inputs [1, 2] and [3, 2] give g = (1, 2), (3, 2)
    x2 = torch.tensor([[1.0, 2.0], [3.0, 2.0]], dtype=torch.float64)
    assert zico(net, x2, y, loss_fn=lambda out, t: out.sum()) == pytest.approx(math.log(2.0))


def test_zico_two_layers_add_their_logs_and_the_network_is_untouched():
    """Linear(1 -> 1, w1 = 2) -> Linear(1 -> 1, w2 = 3), loss = output: dL/dw1 = w2 x,
    dL/dw2 = w1 x. Batches x = 1 and x = 3: dL/dw1 = 3, 9 (mean 6, std 3) and dL/dw2 = 2, 6
    (mean 4, std 2): ZiCo = log 2 + log 2."""
    net = nn.Sequential(_linear([[2.0]]), _linear([[3.0]]))
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    assert zico(net, x, y, loss_fn=lambda out, t: out.sum()) == pytest.approx(2 * math.log(2))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ProxyError, match="not divisible by 2"):
        zico(net, torch.ones(3, 1, dtype=torch.float64), torch.zeros(3, dtype=torch.long))


# --- SWAP -------------------------------------------------------------------------------------
def test_swap_by_hand():
    """Linear(1 -> 4) with weights (1, -1, 2, 3), biases (0, 0, -3, 0), then ReLU, on the
    inputs x = 1, -1, 2. Pre-activations per unit: (1, -1, 2), (-1, 1, -2), (-1, -5, 1),
    (3, -3, 6); patterns over the 3 samples: 101, 010, 001, 101: 3 distinct."""
    net = nn.Sequential(_linear([[1.0], [-1.0], [2.0], [3.0]], [0.0, 0.0, -3.0, 0.0]),
                        nn.ReLU(), _linear([[1.0, 1.0, 1.0, 1.0]]))
    x = torch.tensor([[1.0], [-1.0], [2.0]], dtype=torch.float64)
    assert swap(net, x) == 3.0
    assert swap(net, x[:1]) == 2.0  # one sample: patterns 1 and 0
    with pytest.raises(ProxyError, match="ReLU"):
        swap(nn.Sequential(_linear([[1.0]])), x)


# --- Zen-score --------------------------------------------------------------------------------
def test_zen_score_by_hand():
    """Conv1x1(1 -> 1, w = 2) -> BN -> global pool -> Linear, scored as it is
    (gaussian_init=False), x of 2 samples x 2 pixels, given eps, alpha = 0.5.
    BN normalises z = 2x with its batch statistics (train mode): f(x) = (z - mean) /
    sqrt(var + 1e-5) on each forward; Delta = mean over samples of ||f(x) - f(x')||_2 with
    x' = x + alpha eps; sigma = sqrt(var(2x)) of the unperturbed forward; Zen = log Delta +
    log sigma."""
    net = nn.Sequential(_conv1x1([[2.0]]), nn.BatchNorm2d(1).double(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), _linear([[1.0], [-1.0]]))
    x = torch.tensor([[[[1.0, 3.0]]], [[[5.0, 7.0]]]], dtype=torch.float64)   # (2, 1, 1, 2)
    eps = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 2.0]]]], dtype=torch.float64)

    def bn(z):
        return (z - z.mean()) / np.sqrt(z.var() + 1e-5)  # numpy var: biased, as BN's

    z, z2 = 2 * np.array([[1.0, 3.0], [5.0, 7.0]]), 2 * np.array([[1.5, 3.0], [5.0, 8.0]])
    delta = np.mean(np.linalg.norm(bn(z) - bn(z2), axis=1))
    expected = math.log(delta) + math.log(math.sqrt(z.var()))  # var(2x) = 20
    assert z.var() == pytest.approx(20.0)
    got = zen_score(net, x, alpha=0.5, noise=eps, gaussian_init=False)
    assert got == pytest.approx(expected, rel=1e-9)


def test_zen_score_is_seeded_and_needs_a_global_pool():
    net = NB201Space(channels=4, cells_per_stage=1).build(NB201Space().from_index(6111))
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = zen_score(net, x, generator=torch.Generator().manual_seed(1))
    b = zen_score(net, x, generator=torch.Generator().manual_seed(1))
    assert a == b and math.isfinite(a)
    with pytest.raises(ProxyError, match="AdaptiveAvgPool2d"):
        zen_score(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), x)


# --- AZ-NAS -----------------------------------------------------------------------------------
class _Blocks(nn.Module):
    """stem then cells, the shape AZ-NAS reads (as the NB201 network)."""

    def __init__(self, stem, cells):
        super().__init__()
        self.stem, self.cells = stem, nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.pool(x).flatten(1)


def test_az_nas_expressivity_and_progressivity_by_hand():
    """Stem = identity 1x1 conv on 2 channels, cell = 1x1 conv diag(1, 0.5), input of one
    image, 2x2 pixels: channel 1 = (1, -1, 1, -1), channel 2 = (2, 2, -2, -2). Stem
    features: covariance diag(1, 4) (centred, / 4 positions), p = (0.2, 0.8); cell features:
    channel 2 halved, covariance diag(1, 1), p = (0.5, 0.5). Entropies E0 = -(0.2 ln 0.2 +
    0.8 ln 0.8), E1 = ln 2; expressivity E0 + E1, progressivity E1 - E0."""
    net = _Blocks(_conv1x1([[1.0, 0.0], [0.0, 1.0]]), [_conv1x1([[1.0, 0.0], [0.0, 0.5]])])
    x = torch.tensor([[[[1.0, -1.0], [1.0, -1.0]], [[2.0, 2.0], [-2.0, -2.0]]]],
                     dtype=torch.float64)
    got = az_nas(net, x, kaiming_init=False, generator=torch.Generator().manual_seed(0))
    e0 = -(0.2 * math.log(0.2 + 1e-8) + 0.8 * math.log(0.8 + 1e-8))
    e1 = -2 * 0.5 * math.log(0.5 + 1e-8)
    assert got["az_expressivity"] == pytest.approx(e0 + e1, abs=1e-9)
    assert got["az_progressivity"] == pytest.approx(e1 - e0, abs=1e-9)
    assert got["az_complexity"] == 2 * (2 * 2 * 4 + 2 * 2 * 4)  # two 2x2 convs on 4 pixels


def test_az_nas_trainability_by_hand():
    """One channel: stem w = 1, cells w = 2 then w = 4 (1x1 convs). A cell's Jacobian is
    w times the identity, so M = w * mean(probe^2) = w exactly (a Rademacher probe squares
    to 1) and sigma = |w|: scores 2 - 2 - 1/2 = -0.5 and 2 - 4 - 1/4 = -2.25, mean -1.375.
    A cell that passes the probe through unchanged (identity) scores -inf."""
    net = _Blocks(_conv1x1([[1.0]]), [_conv1x1([[2.0]]), _conv1x1([[4.0]])])
    x = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = az_nas(net, x, kaiming_init=False, generator=torch.Generator().manual_seed(0))
    assert got["az_trainability"] == pytest.approx((-0.5 - 2.25) / 2, abs=1e-5)
    ident = _Blocks(_conv1x1([[1.0]]), [nn.Identity(), _conv1x1([[2.0]])])
    assert az_nas(ident, x, kaiming_init=False)["az_trainability"] == -math.inf


def test_az_nas_on_an_nb201_network_and_bad_input():
    space = NB201Space(channels=4, cells_per_stage=1)
    net = space.build(space.from_index(6111))
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = az_nas(net, x, generator=torch.Generator().manual_seed(3))
    b = az_nas(net, x, generator=torch.Generator().manual_seed(3))
    assert a == b and set(a) == {"az_expressivity", "az_progressivity", "az_trainability",
                                 "az_complexity"}
    assert all(math.isfinite(v) for v in a.values())
    with pytest.raises(ProxyError, match="no .stem and .cells; pass feature_modules"):
        az_nas(nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1)), x)


def test_az_nas_aggregate_by_hand():
    """Three networks, two proxies: ranks (1, 2, 3) and (3, 1, 2) (ascending): scores
    log(1/3) + log(3/3), log(2/3) + log(1/3), log(3/3) + log(2/3); NaN ranks lowest."""
    got = az_nas_aggregate({"a": [0.1, 0.2, 0.3], "b": [5.0, 1.0, 2.0]}, ["a", "b"])
    expected = [math.log(1 / 3), math.log(2 / 3) + math.log(1 / 3), math.log(2 / 3)]
    np.testing.assert_allclose(got, expected)
    got = az_nas_aggregate({"a": [float("nan"), 1.0]}, ["a"])
    np.testing.assert_allclose(got, [math.log(1 / 2), 0.0])
    with pytest.raises(ProxyError, match="no scores for"):
        az_nas_aggregate({"a": [1.0]}, ["b"])


def test_az_nas_aggregate_weights_by_hand():
    """Weights scale each proxy's log(rank/N): a weighted by 2, b by 0.5 on the networks of
    the test above; a weight of 0 drops a proxy; absent weights are 1."""
    scores = {"a": [0.1, 0.2, 0.3], "b": [5.0, 1.0, 2.0]}
    got = az_nas_aggregate(scores, ["a", "b"], weights={"a": 2.0, "b": 0.5})
    expected = [2 * math.log(1 / 3), 2 * math.log(2 / 3) + 0.5 * math.log(1 / 3),
                0.5 * math.log(2 / 3)]
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(az_nas_aggregate(scores, ["a", "b"], weights={"b": 0.0}),
                               [math.log(1 / 3), math.log(2 / 3), 0.0])
    with pytest.raises(ProxyError, match="not aggregated"):
        az_nas_aggregate(scores, ["a"], weights={"b": 1.0})
    with pytest.raises(ProxyError, match="finite and >= 0"):
        az_nas_aggregate(scores, ["a", "b"], weights={"a": -1.0})


def test_weighted_log_rank_fit_sees_only_its_cells():
    """scripts/zero_cost_recent_nb201.py's fit_weights chooses the weights on the cells it is
    given: there proxy a is the accuracy and b is noise, elsewhere the reverse; the chosen
    weights keep a and drop b."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "zero_cost_recent_nb201.py"
    spec = importlib.util.spec_from_file_location("zero_cost_recent_nb201_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    target = rng.normal(size=60)
    noise = rng.normal(size=60)
    train = np.arange(30)
    a = np.where(np.arange(60) < 30, target, noise)
    b = np.where(np.arange(60) < 30, noise, target)
    w = script.fit_weights({"a": a, "b": b}, target, train)
    assert w["a"] > 0 and w["b"] == 0.0
