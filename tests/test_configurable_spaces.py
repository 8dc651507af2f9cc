"""DARTS and NB201 cell spaces with their op set from config: sampling, mutation, encoding,
strings, supernets, derive, specs and latency tables follow the set; defaults unchanged."""

from __future__ import annotations

import random

import pytest
import torch

from lightning_nas.hardware.cell_latency import enumerate_parts
from lightning_nas.search.evaluators import TabularEvaluator
from lightning_nas.spaces.base import Arch, ArchError
from lightning_nas.spaces.darts import PRIMITIVES, DartsSpace
from lightning_nas.spaces.nb201 import OPS, NB201Space
from lightning_nas.spaces.registry import UnknownOpError
from lightning_nas.strategies.common import space_from_spec, space_spec

DARTS_OPS = ["none", "skip_connect", "sep_conv_3x3", "self_attention", "squeeze_excite"]
NB201_OPS = ["none", "skip_connect", "nor_conv_3x3", "local_attention_3x3"]


def test_default_op_sets_and_specs_are_unchanged():
    assert DartsSpace().ops == PRIMITIVES and NB201Space().ops == OPS
    assert "ops" not in DartsSpace().config() and "ops" not in NB201Space().config()
    assert len(NB201Space()) == 15625 and NB201Space().is_benchmark


def test_darts_space_samples_mutates_and_encodes_only_its_ops():
    space = DartsSpace(ops=DARTS_OPS, channels=4, layers=3)
    assert space.search_ops == ("skip_connect", "sep_conv_3x3", "self_attention",
                                "squeeze_excite")
    rng = random.Random(0)
    seen = set()
    for _ in range(30):
        arch = space.sample(rng)
        child = space.mutate(arch, rng)
        for a in (arch, child):
            ops = {op for c in ("normal", "reduce") for op, _ in a[c]}
            assert ops <= set(space.search_ops)
            seen |= ops
            assert space.in_search_space(a)
            assert space.parse(space.to_string(a)) == a
        assert space.decode(space.encode(arch)) == arch  # (a mutated child's edges may be
        # listed in another order than the canonical one decode gives)
    assert seen == set(space.search_ops)
    assert all(options == space.search_ops for label, options in space.decisions()
               if ".op" in label)
    # an op of the default set that this space does not list is no search op
    other = space.sample(random.Random(1))
    edges = list(other["normal"])
    edges[0] = ("dil_conv_3x3", edges[0][1])
    assert not space.in_search_space(other.replace(normal=tuple(edges)))
    logits, _ = space.build(arch)(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 10)


def test_darts_supernet_weights_derive_and_paths_follow_the_op_set():
    space = DartsSpace(ops=DARTS_OPS)
    torch.manual_seed(0)
    net = space.supernet(channels=4, layers=3, channels_last=False, checkpoint_cells=0)
    assert net.alpha_shapes() == {"normal": (14, 5), "reduce": (14, 5)}
    assert net.space is space
    weights = {c: torch.zeros(14, 5) for c in ("normal", "reduce")}
    weights["normal"][:, 3] = 1.0  # self_attention strongest everywhere
    weights["reduce"][:, 4] = 1.0  # squeeze_excite
    derived = net.derive(weights)
    assert {op for op, _ in derived["normal"]} == {"self_attention"}
    assert {op for op, _ in derived["reduce"]} == {"squeeze_excite"}
    assert net.forward_path(torch.randn(2, 3, 8, 8), derived).shape == (2, 10)
    mixed = net.forward_weighted(torch.randn(2, 3, 8, 8),
                                 {c: torch.softmax(torch.randn(14, 5), -1) for c in weights})
    assert mixed.shape == (2, 10)
    assert {d.options for d in net.decisions() if d.kind == "op"} == {space.search_ops}
    with pytest.raises(ArchError, match="not one of the supernet's"):
        net.forward_path(torch.randn(1, 3, 8, 8), DartsSpace().sample(random.Random(0)))


def test_nb201_space_with_attention_ops():
    space = NB201Space(ops=NB201_OPS, channels=4, cells_per_stage=1)
    assert len(space) == 4 ** 6 and not space.is_benchmark
    rng = random.Random(0)
    seen = set()
    for _ in range(40):
        arch = space.sample(rng)
        child = space.mutate(arch, rng)
        assert sum(arch[k] != child[k] for k in arch) == 1
        seen |= set(arch.values())
        assert space.decode(space.encode(arch)) == arch
        assert space.parse(space.to_string(arch)) == arch
    assert seen == set(NB201_OPS)
    with pytest.raises(ArchError, match="the space's operations are none, skip_connect"):
        space.parse("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ArchError, match="benchmark's op set .* only"):
        space.index(arch)
    with pytest.raises(ValueError, match="NAS-Bench-201 table holds the benchmark's 5 ops"):
        TabularEvaluator(space=space)
    net = space.supernet()
    assert net.alpha_shapes() == {"cell": (6, 4)} and net.op_names == tuple(NB201_OPS)
    derived = net.derive({"cell": torch.eye(6, 4)[[3, 3, 2, 1, 0, 3]]})
    assert space.to_string(derived) == ("|local_attention_3x3~0|+|local_attention_3x3~0|"
                                        "nor_conv_3x3~1|+|skip_connect~0|none~1|"
                                        "local_attention_3x3~2|")
    x = torch.randn(2, 3, 8, 8)
    assert net.forward_path(x, derived).shape == (2, 10)
    # the standalone network with the supernet's weights computes the path's function
    sub = net.subnet(derived).train()
    torch.testing.assert_close(sub(x), net.train().forward_path(x, derived), atol=1e-5,
                               rtol=1e-5)
    assert space.build(derived)(x).shape == (2, 10)


def test_bad_op_sets_name_the_field():
    with pytest.raises(UnknownOpError, match=r"DartsSpace: ops\[2\]: unknown operation 'attn'"):
        DartsSpace(ops=["none", "skip_connect", "attn"])
    with pytest.raises(ValueError, match="other than 'none'"):
        DartsSpace(ops=["none", "skip_connect"])
    with pytest.raises(ValueError, match="NB201Space: ops is empty"):
        NB201Space(ops=[])
    with pytest.raises(ValueError, match="other than 'none'"):
        NB201Space(ops=["none"])
    with pytest.raises(ValueError, match="nothing to choose"):
        NB201Space(ops=["nor_conv_3x3"])
    with pytest.raises(ValueError, match="lists 'none' twice"):
        NB201Space(ops=["none", "skip_connect", "none"])


def test_space_specs_rebuild_the_op_set():
    for space in (DartsSpace(ops=DARTS_OPS, channels=8), NB201Space(ops=NB201_OPS)):
        again = space_from_spec(space_spec(space))
        assert type(again) is type(space) and again.ops == space.ops
        assert again.config() == space.config()
    arch = Arch.from_json(NB201Space(ops=NB201_OPS).sample(random.Random(3)).to_json())
    assert NB201Space(ops=NB201_OPS).validate(arch) == arch


def test_latency_tables_list_the_spaces_ops():
    parts = enumerate_parts(NB201Space(ops=NB201_OPS, channels=4, cells_per_stage=1), (3, 8, 8))
    assert {k.split("|")[1] for k in parts if k.startswith("op|")} == set(NB201_OPS)
    parts = enumerate_parts(DartsSpace(ops=DARTS_OPS, channels=4, layers=3), (3, 8, 8))
    assert {k.split("|")[1] for k in parts if k.startswith("op|")} == set(DARTS_OPS) - {"none"}


def test_path_and_hard_sample_strategies_follow_the_op_set():
    """ENAS's controller and GDAS's hard sample on supernets with attention ops (the CLI
    runs of every strategy on these spaces are in the configs' tests' style, not repeated)."""
    from lightning_nas.strategies.controller import Controller

    torch.manual_seed(0)
    for space, options in ((NB201Space(ops=NB201_OPS), {"channels": 4, "cells_per_stage": 1}),
                           (DartsSpace(ops=DARTS_OPS), {"channels": 4, "layers": 3,
                                                        "channels_last": False})):
        net = space.supernet(**options)
        controller = Controller(net.decisions(), hidden=8)
        generator = torch.Generator().manual_seed(0)
        chosen = set()
        x = torch.randn(2, 3, 8, 8)
        for _ in range(4):
            arch = net.arch_of(controller.sample(generator).choices)
            space.validate(arch)
            chosen |= {v for v in net.choices_of(arch).values() if isinstance(v, str)}
            assert net.forward_path(x, arch).shape == (2, 10)
        assert chosen <= set(space.ops) - ({"none"} if isinstance(space, DartsSpace) else set())
        assert chosen & {"self_attention", "local_attention_3x3", "squeeze_excite"}
        # GDAS: one op per edge runs, and every alpha gets a gradient (straight-through)
        alphas = {c: torch.zeros(shape, requires_grad=True)
                  for c, shape in net.alpha_shapes().items()}
        none = torch.tensor([op == "none" for op in space.ops]) * -1e9  # every edge reaches
        hard = {c: torch.nn.functional.gumbel_softmax(a + none, tau=1.0, hard=True)  # the output
                for c, a in alphas.items()}
        active = {c: [[int(row.argmax())] for row in h] for c, h in hard.items()}
        net.forward_weighted(x, hard, active).sum().backward()
        ops = [k for k, op in enumerate(space.ops) if op != "none"]  # (masked: no gradient)
        assert all((a.grad[:, ops] != 0).all() for a in alphas.values())


def test_nb201_cells_with_another_node_count():
    """5 nodes: 10 edges, the string has 4 node groups; supernet, derive, extraction, the
    latency table and the picture follow; the benchmark's index does not apply."""
    from lightning_nas.pictures import draw_nb201_cell

    space = NB201Space(ops=NB201_OPS, nodes=5, channels=4, cells_per_stage=1)
    assert space.edges[-1] == "4<-3" and len(space.edges) == 10 and len(space) == 4 ** 10
    arch = space.sample(random.Random(0))
    text = space.to_string(arch)
    assert text.count("+") == 3 and text.endswith("~3|") and space.parse(text) == arch
    assert space.decode(space.encode(arch)) == arch and len(space.encode(arch)) == 10
    assert space_from_spec(space_spec(space)).nodes == 5
    with pytest.raises(ArchError, match="of 5 nodes has edges"):
        space.validate(NB201Space(ops=NB201_OPS).sample(random.Random(0)))
    with pytest.raises(ArchError, match="4-node cells only"):
        NB201Space(nodes=5).index(NB201Space(nodes=5).sample(random.Random(0)))
    net = space.supernet()
    assert net.alpha_shapes() == {"cell": (10, 4)}
    assert net.edge_groups() == {"cell": [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9]]}
    derived = net.derive({"cell": torch.eye(4)[[2] * 10]})
    assert set(derived.values()) == {"nor_conv_3x3"} and NB201Space.cell_depth(derived) == 4
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(net.subnet(derived).train()(x),
                               net.train().forward_path(x, derived), atol=1e-5, rtol=1e-5)
    parts = enumerate_parts(space, (3, 8, 8))
    assert "op|local_attention_3x3|c4|h8" in parts
    fig = draw_nb201_cell(arch)
    assert len([t for t in fig.axes[0].texts if (t.get_gid() or "").startswith("edge:")]) == \
        sum(op != "none" for op in arch.values())
    with pytest.raises(ValueError, match="nodes must be an integer >= 2"):
        NB201Space(nodes=1)
