"""DARTS cell space: presets, networks, string/JSON forms, derivation, errors."""

import json
import random

import pytest
import torch

from lightning_nas.spaces.base import Arch, ArchError, Constraints
from lightning_nas.spaces.darts import (
    PRESETS,
    PRIMITIVES,
    DartsNetwork,
    DartsSpace,
    DartsSupernet,
    Genotype,
    derive_genotype,
    parse_genotype,
)

SPACE = DartsSpace()


def test_primitives_are_the_eight_darts_ops_in_paper_order():
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                          "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def test_darts_v2_cifar_network_has_the_published_parameter_count():
    # The DARTS code logs "param size = 3.349342MB" for DARTS_V2 at 36 channels, 20 cells
    # (auxiliary head excluded); the paper's Table 1 rounds it to 3.3 M.
    assert SPACE.count_params(PRESETS["DARTS_V2"], channels=36, layers=20) == 3_349_342


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_runs_on_cifar_shaped_input(name):
    with torch.device("meta"):
        net = SPACE.build(PRESETS[name], channels=36, layers=20, auxiliary=True)
        net.train()
        logits, aux = net(torch.empty(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux.shape == (2, 10)


def test_imagenet_network_uses_the_three_conv_stem_and_aux_head_at_14x14():
    with torch.device("meta"):
        net = SPACE.build(PRESETS["DARTS_V2"], num_classes=1000, channels=48, layers=14,
                          auxiliary=True, stem="imagenet")
        net.train()
        logits, aux = net(torch.empty(2, 3, 224, 224))
    convs = [m for m in list(net.stem0) + list(net.stem1) if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 3
    assert logits.shape == (2, 1000) and aux.shape == (2, 1000)
    # paper Table 3: DARTS (mobile setting) 4.7 M parameters, auxiliary head excluded
    params = SPACE.count_params(PRESETS["DARTS_V2"], num_classes=1000, channels=48, layers=14,
                                stem="imagenet")
    assert 4.6e6 < params < 4.8e6


def test_reduction_cells_sit_at_one_and_two_thirds_depth():
    net = SPACE.build(PRESETS["DARTS_V1"], channels=4, layers=8)
    assert [c.reduction for c in net.cells] == [False, False, True, False, False, True, False,
                                                False]


def test_genotype_string_round_trip_matches_published_text():
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=[2, 3, 4, 5])")
    arch = SPACE.parse(text)
    assert arch == PRESETS["DARTS_V2"]
    assert SPACE.to_string(arch) == text
    # the published form with range(2, 6) parses too
    assert SPACE.parse(text.replace("[2, 3, 4, 5]", "range(2, 6)")) == arch


def test_arch_json_round_trip_and_stable_digest(tmp_path):
    arch = PRESETS["PC_DARTS"]
    path = arch.save(tmp_path / "arch.json", note="x")
    assert Arch.load(path) == arch
    assert json.loads(path.read_text())["note"] == "x"
    assert arch.digest == Arch.from_json(arch.to_json()).digest
    assert hash(arch) == hash(Arch.from_json(arch.to_json()))
    with pytest.raises(AttributeError):
        arch.foo = 1


def test_load_accepts_preset_string_and_path(tmp_path):
    arch = PRESETS["ENAS"]
    arch.save(tmp_path / "a.json")
    assert SPACE.load("ENAS") == arch
    assert SPACE.load(str(tmp_path / "a.json")) == arch
    assert SPACE.load(SPACE.to_string(arch)) == arch


@pytest.mark.parametrize("text, message", [
    ("Genotype(normal=[('sep_conv_9x9', 0)]", "does not parse"),
    ("Genoype(normal=[])", "must look like Genotype"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2])",
     "missing ['reduce', 'reduce_concat']"),
])
def test_malformed_genotype_strings_say_what_is_wrong(text, message):
    with pytest.raises(ArchError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(")):
        parse_genotype(text)


def test_unknown_operation_is_named_with_the_known_ones():
    bad = PRESETS["DARTS_V2"].replace(normal=[("sep_conv_9x9", 0)] + [("skip_connect", 0)] * 7)
    with pytest.raises(ArchError, match=r"normal\[0\]: unknown operation 'sep_conv_9x9'.*"
                                        "sep_conv_3x3"):
        SPACE.validate(bad)


def test_input_from_a_later_node_is_rejected():
    edges = list(PRESETS["DARTS_V2"]["normal"])
    edges[0] = ("sep_conv_3x3", 2)  # node 2 cannot read itself
    with pytest.raises(ArchError, match=r"normal\[0\]: input 2 is not an earlier node of node 2"):
        SPACE.validate(PRESETS["DARTS_V2"].replace(normal=edges))


def test_architecture_from_another_space_is_rejected():
    with pytest.raises(ArchError, match="belongs to the 'nb201' space, not 'darts'"):
        SPACE.validate(Arch("nb201", {"1<-0": "nor_conv_3x3"}))


def test_malformed_json_says_what_is_wrong(tmp_path):
    (tmp_path / "a.json").write_text('{"space": "darts", "arch": ')
    with pytest.raises(ArchError, match="does not parse"):
        Arch.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"normal": []}')
    with pytest.raises(ArchError, match='must be an object {"space"'):
        Arch.load(tmp_path / "b.json")


def test_sample_mutate_encode_decode_stay_in_the_space():
    rng = random.Random(0)
    for _ in range(50):
        arch = SPACE.sample(rng)
        assert SPACE.in_search_space(arch)
        assert SPACE.decode(SPACE.encode(arch)) == arch
        child = SPACE.mutate(arch, rng)
        assert child != arch and SPACE.in_search_space(child)
        changed = sum(a != b for c in ("normal", "reduce") for a, b in zip(arch[c], child[c]))
        assert changed == 1
    assert len(SPACE.decisions()) == 2 * 4 * 3
    assert SPACE.one_hot(arch).sum() == len(SPACE.decisions())


def test_same_seed_same_sample():
    assert SPACE.sample(random.Random(3)) == SPACE.sample(random.Random(3))


def test_constraints_are_checked_by_validate():
    small = DartsSpace(channels=36, layers=20, constraints=Constraints(max_params=3_000_000))
    with pytest.raises(ArchError, match="3,349,342 parameters, over max_params=3,000,000"):
        small.validate(PRESETS["DARTS_V2"])
    shallow = DartsSpace(layers=20, constraints=Constraints(max_layers=8))
    with pytest.raises(ArchError, match="20 layers deep, over max_layers=8"):
        shallow.validate(PRESETS["DARTS_V2"])


def test_derive_genotype_keeps_top_two_edges_by_strongest_non_none_op():
    # node 2: edges from 0 and 1; node 3: edges 0, 1, 2 -- hand-made weights
    n_ops = len(PRIMITIVES)
    w = torch.full((14, n_ops), 0.01)
    idx = PRIMITIVES.index
    w[0, idx("sep_conv_3x3")] = 0.5          # 0 -> 2
    w[1, idx("max_pool_3x3")] = 0.4          # 1 -> 2
    w[2, idx("none")] = 0.99                 # 0 -> 3: 'none' is ignored ...
    w[2, idx("dil_conv_5x5")] = 0.2          # ... so this edge has strength 0.2
    w[3, idx("skip_connect")] = 0.6          # 1 -> 3
    w[4, idx("avg_pool_3x3")] = 0.3          # 2 -> 3
    arch = derive_genotype(w, w)
    assert arch["normal"][:4] == (("sep_conv_3x3", 0), ("max_pool_3x3", 1),
                                  ("skip_connect", 1), ("avg_pool_3x3", 2))
    assert arch["normal_concat"] == (2, 3, 4, 5)


def test_supernet_output_and_alpha_shapes():
    net = DartsSupernet(num_classes=7, channels=4, layers=3, checkpoint_cells=0,
                        channels_last=False)
    w = torch.softmax(torch.zeros(net.num_edges, len(PRIMITIVES)), -1)
    assert net(torch.randn(2, 3, 16, 16), w, w).shape == (2, 7)
    assert net.num_edges == 14


def test_supernet_checkpointing_and_channels_last_do_not_change_the_math():
    torch.manual_seed(0)
    plain = DartsSupernet(num_classes=3, channels=4, layers=3, checkpoint_cells=0,
                          channels_last=False)
    fast = DartsSupernet(num_classes=3, channels=4, layers=3, checkpoint_cells=3)
    fast.load_state_dict(plain.state_dict())
    alpha = torch.randn(14, len(PRIMITIVES), requires_grad=True)
    x = torch.randn(4, 3, 8, 8)
    grads = []
    for net in (plain, fast):
        out = net(x, alpha.softmax(-1), alpha.softmax(-1))
        grads.append(torch.autograd.grad(out.square().sum(), alpha)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_evaluation_cell_with_drop_path_keeps_identity_edges():
    net = DartsNetwork(Genotype.from_arch(PRESETS["DARTS_V2"]), num_classes=10, channels=4,
                       layers=3, auxiliary=False, drop_path_prob=0.9)
    net.train()
    out, aux = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and aux is None


def test_mixed_op_equals_the_weighted_sum_of_the_paper_ops():
    """MixedOp (shared ReLU, 'none' skipped) against the plain formula sum_k w_k * op_k(x)
    with the standard ops (non-affine BN, batch statistics), values and alpha gradients."""
    from lightning_nas.spaces.darts import MixedOp
    from lightning_nas.spaces.ops import DARTS_OPS

    torch.manual_seed(0)
    for stride in (1, 2):
        mixed = MixedOp(6, stride, PRIMITIVES)
        reference = {}
        for name in PRIMITIVES:
            op = DARTS_OPS[name](6, stride, False)
            if "pool" in name:
                op = torch.nn.Sequential(op, torch.nn.BatchNorm2d(6, affine=False))
            reference[name] = op
        # copy MixedOp's conv weights into the reference ops, in module order
        for k, body in zip(mixed.index, mixed.ops):
            src = [m for m in body.modules() if isinstance(m, torch.nn.Conv2d)]
            dst = [m for m in reference[PRIMITIVES[k]].modules() if isinstance(m, torch.nn.Conv2d)]
            assert len(src) == len(dst)
            for a, b in zip(src, dst):
                b.weight.data.copy_(a.weight.data)
        x = torch.randn(4, 6, 8, 8)
        alpha = torch.randn(len(PRIMITIVES), requires_grad=True)
        got = mixed(x, alpha.softmax(-1))
        expected = sum(alpha.softmax(-1)[k] * reference[name](x)
                       for k, name in enumerate(PRIMITIVES))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        g = torch.randn(got.shape)
        torch.testing.assert_close(torch.autograd.grad((got * g).sum(), alpha)[0],
                                   torch.autograd.grad((expected * g).sum(), alpha)[0],
                                   rtol=1e-4, atol=1e-5)


def test_pools_are_computed_once_per_state_with_the_same_math():
    """The parameter-free pool + BN outputs are shared by every edge out of a state: 5
    states per 4-node cell instead of 14 edges, and values and gradients equal the
    per-edge computation (PC-DARTS' partial channels and one-path GDAS included)."""
    import copy

    from lightning_nas.spaces.darts import SearchCell

    for partial in (1, 2):
        torch.manual_seed(0)
        net = DartsSupernet(num_classes=3, channels=4, layers=3, checkpoint_cells=1,
                            partial_channels=partial)
        per_edge = copy.deepcopy(net)
        for m in per_edge.modules():
            if isinstance(m, SearchCell):
                m.share_pools = False
        calls = []
        for m in net.modules():
            if isinstance(m, torch.nn.MaxPool2d) and m.kernel_size == 3:
                m.register_forward_hook(lambda *_: calls.append(1))
        alpha = torch.randn(14, len(PRIMITIVES), requires_grad=True)
        x = torch.randn(4, 3, 8, 8)
        results = []
        for model in (net, per_edge):
            out = model(x, alpha.softmax(-1), alpha.softmax(-1))
            grads = torch.autograd.grad(out.square().sum(), [alpha, *model.parameters()])
            results.append((out, *grads))
        # 3 cells x 5 states (the shared outputs are outside the recomputed edges)
        assert len(calls) == 3 * 5
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # one path per edge: only the states whose out-edges run a pool compute it
    calls.clear()
    active = {kind: [[1] if e % 3 == 0 else [4] for e in range(14)]
              for kind in ("normal", "reduce")}
    net(x, alpha.softmax(-1), alpha.softmax(-1), active=active)
    per_state = {j: any(e % 3 == 0 for e in _edges_out_of(j)) for j in range(6)}
    assert len(calls) == 3 * sum(per_state.values())


def _edges_out_of(j: int, steps: int = 4) -> list[int]:
    return [sum(2 + n for n in range(i)) + j for i in range(max(0, j - 1), steps)]
