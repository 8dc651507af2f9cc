"""The one supernet interface (spaces/supernet.py) on the DARTS, NAS-Bench-201 and MobileNetV3
supernets: decisions <-> Arch, one op per decision on a path, path = weighted forward with
one-hot weights = the subnet, derive, and clear errors."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from ofa_helpers import tiny_space
from space_helpers import PlainSpace
from torch import nn

from lightning_nas.spaces.base import ArchError
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.nb201 import OPS, NB201Space, arch_from_ops
from lightning_nas.spaces.supernet import (
    NoSupernetError,
    Supernet,
    WeightedSupernet,
    supernet_of,
    with_running_stats,
)
from lightning_nas.strategies.sync_bn import GlobalBatchNorm2d, globalise_batchnorm


def supernets():
    torch.manual_seed(0)
    return {
        "darts": (DartsSpace(), supernet_of(DartsSpace(), weighted=True, channels=4, layers=3,
                                            checkpoint_cells=0, channels_last=False)),
        "nb201": (NB201Space(channels=4, cells_per_stage=1),
                  supernet_of(NB201Space(channels=4, cells_per_stage=1), weighted=True)),
        "mobilenet": (tiny_space(), supernet_of(tiny_space())),
    }


@pytest.mark.parametrize("name", ["darts", "nb201", "mobilenet"])
def test_decisions_round_trip_every_sampled_arch(name):
    space, net = supernets()[name]
    assert isinstance(net, Supernet) and net.space.name == space.name
    labels = [d.label for d in net.decisions()]
    assert len(labels) == len(set(labels))
    rng = random.Random(0)
    for _ in range(20):
        arch = space.sample(rng)
        choices = net.choices_of(arch)
        assert list(choices) == labels
        assert all(choices[d.label] in d.options for d in net.decisions())
        assert net.arch_of(choices) == arch


def test_darts_decisions_are_enas_micro_order():
    _, net = supernets()["darts"]
    first = net.decisions()[:5]
    assert [(d.label, d.kind) for d in first] == [
        ("normal.node2.input0", "input"), ("normal.node2.input1", "input"),
        ("normal.node2.op0", "op"), ("normal.node2.op1", "op"), ("normal.node3.input0", "input")]
    assert first[0].options == (0, 1) and first[4].options == (0, 1, 2)
    assert "none" not in first[2].options and len(net.decisions()) == 2 * 4 * 4


@pytest.mark.parametrize("name", ["darts", "nb201"])
def test_a_path_runs_exactly_one_op_per_decision(name):
    """Count the op modules that run in one forward: exactly the path's."""
    space, net = supernets()[name]
    calls: Counter = Counter()
    hooks = []
    for edge_name, edge in net.named_modules():
        if type(edge).__name__ in ("MixedOp", "NB201MixedOp"):
            for op_name, op in edge.ops.named_children():
                # every layer: DARTS' MixedOp runs an op's layers without its container
                for layer in op.modules():
                    hooks.append(layer.register_forward_hook(
                        lambda m, i, o, key=(edge_name, op_name): calls.update([key])))
        if edge_name.endswith(".pools"):  # DARTS cells run a pool once per state
            for pool_name, (pool, _) in edge.items():  # (pool layer, its BN)
                hooks.append(pool.register_forward_hook(
                    lambda m, i, o, key=(edge_name, pool_name): calls.update([key])))
    arch = space.sample(random.Random(3))
    net.forward_path(torch.randn(2, 3, 8, 8), arch)
    for h in hooks:
        h.remove()
    calls = Counter(set(calls))  # ops that ran, once each
    if name == "nb201":
        cells = 3  # one per stage
        runs = sum(op != "none" for op in arch.values())
        assert len(calls) == cells * runs
    else:  # each edge one op, but a pool once per (state, pool): the cell shares it
        pools = ("max_pool_3x3", "avg_pool_3x3")

        def runs(ops):
            return (sum(op not in pools for op, _ in ops)
                    + len({(op, j) for op, j in ops if op in pools}))

        assert len(calls) == runs(arch["normal"]) + 2 * runs(arch["reduce"])  # 3 cells: N R R


@pytest.mark.parametrize("name", ["darts", "nb201"])
def test_path_equals_one_hot_weights_and_the_subnet(name):
    space, net = supernets()[name]
    x = torch.randn(4, 3, 8, 8)
    for seed in range(3):
        arch = space.sample(random.Random(seed))
        weights, _ = net.path_weights(arch)
        full = net.forward_weighted(x, weights if isinstance(weights, dict) else {"cell": weights})
        path = net.forward_path(x, arch)
        torch.testing.assert_close(path, full)  # the skipped ops would add w * op = 0
        sub = net.subnet(arch).train()  # batch statistics, as the supernet
        torch.testing.assert_close(sub(x), path)


def test_mobilenet_path_equals_its_extracted_subnet():
    space, net = supernets()["mobilenet"]
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    arch = space.sample(random.Random(1))
    r = int(arch["resolution"])
    expected = net.subnet(arch).eval()(nn.functional.interpolate(x, size=(r, r),
                                                                  mode="bilinear",
                                                                  align_corners=False))
    torch.testing.assert_close(net.forward_path(x, arch), expected)


def test_derive_nb201_takes_the_strongest_op_none_included():
    _, net = supernets()["nb201"]
    weights = torch.full((6, 5), 0.1)
    for edge, op in enumerate([0, 3, 1, 4, 2, 0]):
        weights[edge, op] = 0.9
    assert net.derive({"cell": weights}) == arch_from_ops(
        [OPS[k] for k in [0, 3, 1, 4, 2, 0]])
    assert net.alpha_shapes() == {"cell": (6, 5)} and net.op_names == OPS


def test_a_space_without_a_supernet_is_a_clear_error():
    with pytest.raises(NoSupernetError, match="'plain' space has no weight-sharing supernet"):
        supernet_of(PlainSpace(), strategy="ENAS")
    with pytest.raises(NoSupernetError, match="no weights per decision.*DARTS cannot"):
        supernet_of(tiny_space(), weighted=True, strategy="DARTS")
    assert not isinstance(supernets()["mobilenet"][1], WeightedSupernet)


def test_paths_outside_the_supernet_are_refused():
    _, net = supernets()["darts"]
    with pytest.raises(ArchError, match="nb201"):
        net.choices_of(NB201Space().sample(random.Random(0)))
    five_nodes = DartsSpace.presets["NASNet"]
    with pytest.raises(ArchError, match="4 nodes per cell"):
        net.forward_path(torch.randn(1, 3, 8, 8), five_nodes)


def test_running_stats_copy_and_global_batchnorm_keep_the_function():
    _, net = supernets()["nb201"]
    x = torch.randn(4, 3, 8, 8)
    arch = NB201Space().sample(random.Random(2))
    copy = with_running_stats(net)
    bns = [m for m in copy.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.track_running_stats and m.running_mean is not None for m in bns)
    torch.testing.assert_close(copy.train().forward_path(x, arch), net.forward_path(x, arch))
    before = net.forward_path(x, arch)
    assert globalise_batchnorm(net) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(type(m) is GlobalBatchNorm2d for m in net.modules()
               if isinstance(m, nn.BatchNorm2d))
    torch.testing.assert_close(net.forward_path(x, arch), before)  # one process: plain BN
