"""Zero-cost proxies: pinned against explicit hand calculations on a 2-layer network, the
invariances the papers state, every built-in space, and clear errors on bad input."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.estimation import zero_cost as zc
from lightning_nas.estimation.zero_cost import ProxyError, compute_proxies

K = zc.JACOB_COV_K


# ---------------------------------------------------------------------------------------
# a tiny network and its hand-computed proxies (numpy, explicit formulas)
# ---------------------------------------------------------------------------------------
def tiny_net(seed: int = 0, bias: bool = True, d: int = 6, h: int = 8, k: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h, bias=bias), nn.ReLU(), nn.Linear(h, k, bias=bias)).double()


def tiny_batch(seed: int = 1, b: int = 5, d: int = 6, k: int = 3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=gen, dtype=torch.float64)
    t = torch.randint(0, k, (b,), generator=gen)
    return x, t


def _arrays(net):
    w1 = net[0].weight.detach().numpy().copy()
    w2 = net[2].weight.detach().numpy().copy()
    b1 = net[0].bias.detach().numpy().copy() if net[0].bias is not None else np.zeros(len(w1))
    b2 = net[2].bias.detach().numpy().copy() if net[2].bias is not None else np.zeros(len(w2))
    return w1, b1, w2, b2


def hand_proxies(net, x, t) -> dict[str, float]:
    """Every proxy of ``Linear -> ReLU -> Linear`` with mean cross-entropy, by hand."""
    w1, b1, w2, b2 = _arrays(net)
    X, T = x.numpy(), t.numpy()
    B = len(X)
    h = X @ w1.T + b1                                    # (B, H) pre-activation
    m = (h > 0).astype(float)                            # (B, H) ReLU pattern
    a = h * m                                            # (B, H)
    y = a @ w2.T + b2                                    # (B, K) logits
    p = np.exp(y - y.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)                         # softmax
    onehot = np.eye(y.shape[1])[T]
    dy = (p - onehot) / B                                # dL/dy for the batch-mean CE
    g2 = dy.T @ a                                        # dL/dW2 (K, H)
    da = dy @ w2                                         # dL/da (B, H)
    dh = da * m                                          # dL/dh
    g1 = dh.T @ X                                        # dL/dW1 (H, D)
    out = {}
    out["grad_norm"] = np.linalg.norm(g1) + np.linalg.norm(g2)
    out["snip"] = np.abs(g1 * w1).sum() + np.abs(g2 * w2).sum()
    # fisher: activations are the Linear outputs h and y
    out["fisher"] = (0.5 * ((h * dh) ** 2).mean(0)).sum() + (0.5 * ((y * dy) ** 2).mean(0)).sum()
    # grasp: Hessian-vector product H g over the weights by Pearlmutter's R-operator with the
    # direction V = (g1, g2) on the weights (0 on the biases); the pattern m is fixed.
    V1, V2 = g1, g2
    Rh = X @ V1.T
    Ra = Rh * m
    Ry = Ra @ w2.T + a @ V2.T
    Rdy = np.stack([(np.diag(p[n]) - np.outer(p[n], p[n])) @ Ry[n] for n in range(B)]) / B
    Rg2 = Rdy.T @ a + dy.T @ Ra
    Rda = Rdy @ w2 + dy @ V2
    Rg1 = (Rda * m).T @ X
    out["grasp"] = -(w1 * Rg1).sum() - (w2 * Rg2).sum()
    # jacob_cov: J_n = d(sum_k y_nk)/dx_n = (m_n * (1^T W2)) W1
    J = (m * w2.sum(0)) @ w1
    eig = np.clip(np.linalg.eigvalsh(np.corrcoef(J)), 0, None)
    out["jacob_cov"] = -np.sum(np.log(eig + K) + 1.0 / (eig + K))
    # naswot: K_H[i, j] = N_A - Hamming(c_i, c_j), by explicit loops
    n_a = m.shape[1]
    kh = np.array([[n_a - np.sum(m[i] != m[j]) for j in range(B)] for i in range(B)], float)
    out["naswot_kernel"] = kh
    out["naswot"] = np.linalg.slogdet(kh)[1]
    # synflow: |theta|, all-ones input of one sample, R = sum of outputs
    A1, A2, c1, c2 = np.abs(w1), np.abs(w2), np.abs(b1), np.abs(b2)
    h1 = A1 @ np.ones(X.shape[1]) + c1                   # all units active (positive)
    R_dW2 = np.outer(np.ones(len(A2)), h1)               # dR/dW2[k, j] = h1_j
    R_dW1 = np.outer(A2.sum(0), np.ones(X.shape[1]))     # dR/dW1[j, d] = sum_k |W2|_kj
    out["synflow"] = (A1 * R_dW1).sum() + (A2 * R_dW2).sum()
    out["synflow_R"] = (A2 @ h1 + c2).sum()
    out["params"] = w1.size + b1.size * (net[0].bias is not None) + w2.size + \
        b2.size * (net[2].bias is not None)
    out["flops"] = 2 * (w1.size + w2.size)               # 2 FLOPs per multiply-add
    return out


@pytest.mark.parametrize("proxy", ["grad_norm", "snip", "grasp", "fisher", "jacob_cov",
                                   "naswot", "synflow", "params", "flops"])
def test_each_proxy_matches_hand_calculation(proxy):
    net = tiny_net()
    x, t = tiny_batch()
    expected = hand_proxies(net, x, t)[proxy]
    got = compute_proxies(net, x, t, proxies=[proxy])[proxy]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_standalone_functions_equal_shared_pass():
    net = tiny_net(3)
    x, t = tiny_batch(4)
    shared = compute_proxies(net, x, t)
    assert zc.grad_norm(net, x, t) == pytest.approx(shared["grad_norm"], rel=1e-12)
    assert zc.snip(net, x, t) == pytest.approx(shared["snip"], rel=1e-12)
    assert zc.grasp(net, x, t) == pytest.approx(shared["grasp"], rel=1e-12)
    assert zc.fisher(net, x, t) == pytest.approx(shared["fisher"], rel=1e-12)
    assert zc.jacob_cov(net, x) == pytest.approx(shared["jacob_cov"], rel=1e-12)
    assert zc.naswot(net, x) == pytest.approx(shared["naswot"], rel=1e-12)
    assert zc.synflow(net, x) == pytest.approx(shared["synflow"], rel=1e-12)


def test_naswot_kernel_is_hamming_kernel():
    net = tiny_net(5)
    x, t = tiny_batch(6, b=7)
    kernel, units = zc.naswot_kernel(net, x)
    hand = hand_proxies(net, x, t)["naswot_kernel"]
    assert units == 8  # N_A: the 8 hidden ReLU units
    np.testing.assert_array_equal(kernel.numpy(), hand)
    assert torch.equal(kernel, kernel.T)  # symmetric
    assert torch.all(torch.diagonal(kernel) == units)  # K_H[i, i] = N_A (Hamming 0)
    assert torch.all(kernel >= 0) and torch.all(kernel <= units)


# ---------------------------------------------------------------------------------------
# invariances the papers state
# ---------------------------------------------------------------------------------------
def test_synflow_is_data_free_and_sign_invariant():
    net = tiny_net(1)
    x1, _ = tiny_batch(1)
    x2, _ = tiny_batch(2)
    s = zc.synflow(net, x1)
    assert zc.synflow(net, x2 * 100) == s          # no dependence on the data
    assert zc.synflow(net, (6,)) == pytest.approx(s, rel=1e-12)  # only the shape matters
    flipped = tiny_net(1)
    with torch.no_grad():
        for p in flipped.parameters():
            p.neg_()
    assert zc.synflow(flipped, x1) == pytest.approx(s, rel=1e-12)  # |theta| (Tanaka Eq. 2)


def test_synflow_euler_identity_and_layer_rescaling():
    # Bias-free, positively homogeneous network: R is 1-homogeneous in each layer's weights,
    # so sum_l sum |W_l dR/dW_l| = L * R (Tanaka et al. 2020, conservation, Thm. 1).
    net = tiny_net(2, bias=False)
    s = zc.synflow(net, (6,))
    R = hand_proxies(net, *tiny_batch())["synflow_R"]
    assert s == pytest.approx(2 * R, rel=1e-12)
    # rescaling layer 1 by a and layer 2 by 1/a leaves the score unchanged
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.div_(3.0)
    assert zc.synflow(net, (6,)) == pytest.approx(s, rel=1e-12)


def test_snip_invariant_to_layer_rescaling_grad_norm_not():
    # For a bias-free ReLU net, W1 -> a W1, W2 -> W2 / a keeps the function, and
    # |g * w| per layer is unchanged (g scales by 1/a where w scales by a).
    net = tiny_net(4, bias=False)
    x, t = tiny_batch(3)
    before = compute_proxies(net, x, t, proxies=["snip", "grad_norm", "naswot", "jacob_cov"])
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.div_(4.0)
    after = compute_proxies(net, x, t, proxies=["snip", "grad_norm", "naswot", "jacob_cov"])
    assert after["snip"] == pytest.approx(before["snip"], rel=1e-10)
    assert after["naswot"] == pytest.approx(before["naswot"], rel=1e-12)  # same patterns
    assert after["jacob_cov"] == pytest.approx(before["jacob_cov"], rel=1e-8)
    assert after["grad_norm"] != pytest.approx(before["grad_norm"], rel=1e-3)


def test_naswot_and_jacob_cov_invariant_to_batch_order_and_input_scale():
    net = tiny_net(7, bias=False)
    x, t = tiny_batch(8, b=6)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    base = compute_proxies(net, x, t, proxies=["naswot", "jacob_cov"])
    permuted = compute_proxies(net, x[perm], t[perm], proxies=["naswot", "jacob_cov"])
    scaled = compute_proxies(net, 2.5 * x, t, proxies=["naswot", "jacob_cov"])
    for other in (permuted, scaled):
        assert other["naswot"] == pytest.approx(base["naswot"], rel=1e-12)
        assert other["jacob_cov"] == pytest.approx(base["jacob_cov"], rel=1e-8)


# ---------------------------------------------------------------------------------------
# the network is left alone; built-in spaces; devices
# ---------------------------------------------------------------------------------------
def _snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            [m.training for m in net.modules()],
            [None if p.grad is None else p.grad.clone() for p in net.parameters()])


def _assert_unchanged(net, snap):
    state, modes, grads = snap
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [m.training for m in net.modules()] == modes
    for p, g in zip(net.parameters(), grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)


def test_nb201_network_all_proxies_and_unchanged():
    from lightning_nas.spaces.nb201 import NB201Space

    space = NB201Space(channels=4, cells_per_stage=1)
    torch.manual_seed(0)
    net = space.build(space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|"
                                  "skip_connect~0|nor_conv_3x3~1|none~2|"))
    net.eval()  # a mode the proxies must restore (they score a train-mode copy)
    x = torch.randn(8, 3, 16, 16)
    t = torch.randint(0, 10, (8,))
    snap = _snapshot(net)
    scores = compute_proxies(net, x, t)
    _assert_unchanged(net, snap)
    assert set(scores) == set(zc.PROXIES)
    assert all(math.isfinite(v) for v in scores.values()), scores
    assert scores["params"] == sum(p.numel() for p in net.parameters())


def test_darts_network_tuple_output():
    from lightning_nas.spaces.darts import DartsSpace

    space = DartsSpace(channels=4, layers=3, auxiliary=False)
    arch = space.sample(random.Random(0))
    torch.manual_seed(0)
    net = space.build(arch)
    x = torch.randn(4, 3, 8, 8)
    t = torch.randint(0, 10, (4,))
    assert isinstance(net(x), tuple)
    snap = _snapshot(net)
    scores = compute_proxies(net, x, t, proxies=["grad_norm", "snip", "grasp", "fisher",
                                                  "synflow", "jacob_cov", "naswot"])
    _assert_unchanged(net, snap)
    assert all(math.isfinite(v) for v in scores.values()), scores


def test_existing_gradients_are_kept():
    net = tiny_net(9)
    x, t = tiny_batch()
    nn.functional.cross_entropy(net(x), t).backward()
    snap = _snapshot(net)
    compute_proxies(net, x, t)
    _assert_unchanged(net, snap)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    net = tiny_net(0)
    x, t = tiny_batch()
    cpu = compute_proxies(net, x, t, proxies=[p for p in zc.PROXIES if p != "flops"])
    gpu = compute_proxies(net.cuda(), x.cuda(), t.cuda(),
                          proxies=[p for p in zc.PROXIES if p != "flops"])
    for k in cpu:
        assert gpu[k] == pytest.approx(cpu[k], rel=1e-6), k


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_no_trainable_parameters():
    net = tiny_net()
    for p in net.parameters():
        p.requires_grad_(False)
    x, t = tiny_batch()
    for proxy in ("grad_norm", "snip", "grasp", "fisher", "synflow"):
        with pytest.raises(ProxyError, match="trainable parameters"):
            compute_proxies(net, x, t, proxies=[proxy])
    with pytest.raises(ProxyError, match="trainable parameters"):
        zc.synflow(nn.Sequential(nn.Flatten()), x)
    # activation-only proxies still work on a frozen network
    assert math.isfinite(zc.naswot(net, x))


def test_wrong_batch_shape():
    net = tiny_net()
    with pytest.raises(ProxyError, match=r"cannot run on inputs of shape \(5, 4\)"):
        compute_proxies(net, torch.randn(5, 4, dtype=torch.float64),
                        torch.zeros(5, dtype=torch.long), proxies=["snip"])
    with pytest.raises(ProxyError, match="batch dimension"):
        zc.naswot(net, torch.randn(6, dtype=torch.float64))
    with pytest.raises(ProxyError, match="floating-point"):
        zc.naswot(net, torch.zeros(5, 6, dtype=torch.uint8))
    x, _ = tiny_batch()
    with pytest.raises(ProxyError, match=r"targets must be a tensor of shape \(5,\)"):
        zc.snip(net, x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ProxyError, match="need targets"):
        zc.grasp(net, x, None)
    with pytest.raises(ProxyError, match="network has 3 outputs"):
        zc.fisher(net, x, torch.full((5,), 7))
    with pytest.raises(ProxyError, match="at least 2"):
        zc.jacob_cov(net, x[:1])
    with pytest.raises(ProxyError, match="unknown proxies"):
        compute_proxies(net, x, proxies=["synflo"])
    with pytest.raises(ProxyError, match="NaN"):
        zc.naswot(net, x * float("nan"))


def test_no_relu_for_naswot():
    net = nn.Sequential(nn.Linear(6, 3)).double()
    x, _ = tiny_batch()
    with pytest.raises(ProxyError, match="ReLU"):
        zc.naswot(net, x)


def test_constant_jacobian_gives_nan_and_rank_combination():
    # the output does not depend on the input: the Jacobian correlation is undefined
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        net[0].weight.zero_()
    x, _ = tiny_batch()
    assert math.isnan(zc.jacob_cov(net, x))
    ranks = zc.rank_combination({"a": [1.0, 3.0, float("nan")], "b": [2.0, 1.0, 0.0]},
                                ["a", "b"])
    np.testing.assert_array_equal(ranks, [2 + 3, 3 + 2, 1 + 1])
