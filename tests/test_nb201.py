"""NAS-Bench-201 space: string form, benchmark index order, categorical view, networks."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest
import torch

from lightning_nas.spaces.base import Arch, ArchError, Constraints
from lightning_nas.spaces.darts import PRESETS as DARTS_PRESETS
from lightning_nas.spaces.nb201 import (
    EDGE_LABELS,
    NUM_ARCHS,
    OPS,
    NB201Cell,
    NB201Space,
    arch_from_ops,
    arch_index,
    extract_subnet,
    make_op,
)

EXAMPLE = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
           "skip_connect~2|")


def _shared() -> Path:
    env = os.environ.get("LIGHTNING_NAS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


TABLE = _shared() / "nb201" / "nb201_accuracy.csv"
ZERO_COST = _shared() / "nb201" / "zero_cost_scores.csv"


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()


# --- string form ----------------------------------------------------------------------------
def test_parse_and_print_round_trip(space):
    arch = space.parse(EXAMPLE)
    assert arch.space == "nb201"
    assert dict(arch) == {"1<-0": "nor_conv_3x3", "2<-0": "nor_conv_3x3", "2<-1": "avg_pool_3x3",
                          "3<-0": "skip_connect", "3<-1": "nor_conv_3x3", "3<-2": "skip_connect"}
    assert space.to_string(arch) == EXAMPLE
    assert Arch.from_json(arch.to_json()) == arch
    assert space.load(EXAMPLE) == arch


@pytest.mark.parametrize("text, fragment", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "3 node groups"),
    ("|conv_5x5~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
     "unknown operation 'conv_5x5'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~1|avg_pool_3x3~0|+|skip_connect~0|nor_conv_3x3~1|none~2|",
     "expected input node 0"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|none~2|",
     "node 2 must list 2"),
    ("|nor_conv_3x3|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
     "'op~input'"),
    ("nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
     "start and end with '|'"),
    ("Genotype(normal=[], normal_concat=[], reduce=[], reduce_concat=[])", "node groups"),
])
def test_malformed_strings_name_the_problem(space, text, fragment):
    with pytest.raises(ArchError, match=None) as info:
        space.parse(text)
    assert fragment in str(info.value)


def test_foreign_and_broken_archs_are_refused(space):
    with pytest.raises(ArchError, match="'darts' space"):
        space.validate(DARTS_PRESETS["DARTS_V2"])
    with pytest.raises(ArchError, match="'darts' space"):
        space.to_string(DARTS_PRESETS["DARTS_V2"])
    with pytest.raises(ArchError, match="edges"):
        space.validate(Arch("nb201", {"1<-0": "none"}))
    with pytest.raises(ArchError, match="unknown operation 'max_pool_3x3'"):
        space.validate(Arch("nb201", {**{k: "none" for k in EDGE_LABELS}, "2<-1": "max_pool_3x3"}))


# --- index order ----------------------------------------------------------------------------
# Cells at known indices of the benchmark (index 0 and 1 are the first rows of the released
# table; 9 and 123 are checked by the benchmark's own meta-data generation; 6111 is the best
# CIFAR-10 test cell).
KNOWN = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
       "skip_connect~2|",
    1: EXAMPLE,
    9: "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    123: "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|"
         "nor_conv_3x3~2|",
    6111: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
          "nor_conv_1x1~2|",
}


def test_generated_order_matches_known_indices(space):
    for index, text in KNOWN.items():
        assert space.to_string(space.from_index(index)) == text
        assert space.index(text) == index
        assert space.index(space.parse(text)) == index


def test_generated_order_is_a_permutation_of_the_space(space):
    strings = {space.to_string(space.from_index(i)) for i in range(0, NUM_ARCHS, 7)}
    assert len(strings) == len(range(0, NUM_ARCHS, 7))
    rng = random.Random(0)
    for _ in range(300):
        arch = space.sample(rng)
        assert space.from_index(space.index(arch)) == arch
    assert len(space) == NUM_ARCHS == 5 ** 6
    with pytest.raises(ArchError, match="0 to 15624"):
        space.from_index(NUM_ARCHS)
    with pytest.raises(ArchError, match="unknown operation"):
        arch_index("|x~0|+|none~0|none~1|+|none~0|none~1|none~2|")


@pytest.mark.skipif(not TABLE.is_file(), reason="NB201 table not in ../shared/data")
def test_all_strings_and_indices_match_the_benchmark_table(space):
    with TABLE.open(newline="") as f:
        rows = [(int(r["index"]), r["arch_str"]) for r in csv.DictReader(f)]
    assert len(rows) == NUM_ARCHS
    for index, text in rows:
        arch = space.parse(text)
        assert space.to_string(arch) == text
        assert space.index(arch) == index
        assert space.from_index(index) == arch


# --- categorical view, sampling, mutation ---------------------------------------------------
def test_decisions_encode_decode_one_hot(space):
    decisions = space.decisions()
    assert [label for label, _ in decisions] == list(EDGE_LABELS)
    assert all(options == OPS for _, options in decisions)
    arch = space.parse(EXAMPLE)
    assert space.encode(arch) == [3, 3, 4, 1, 3, 1]
    assert space.decode([3, 3, 4, 1, 3, 1]) == arch
    vec = space.one_hot(arch)
    assert vec.shape == (30,) and float(vec.sum()) == 6.0
    assert vec.view(6, 5).argmax(1).tolist() == [3, 3, 4, 1, 3, 1]
    with pytest.raises(ArchError, match="6 decision"):
        space.decode([0, 1])
    with pytest.raises(ArchError, match="out of range"):
        space.decode([0, 0, 0, 0, 0, 5])


def test_sample_is_seeded_and_covers_ops(space):
    a = [space.sample(random.Random(3)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(0)
    counts = {op: 0 for op in OPS}
    for _ in range(600):
        for op in space.sample(rng).values():
            counts[op] += 1
    assert all(600 < c < 840 for c in counts.values())  # 720 expected each


def test_mutate_changes_exactly_one_edge(space):
    rng = random.Random(1)
    arch = space.parse(EXAMPLE)
    touched = set()
    for _ in range(200):
        child = space.mutate(arch, rng)
        diff = [k for k in EDGE_LABELS if child[k] != arch[k]]
        assert len(diff) == 1
        touched.add(diff[0])
    assert touched == set(EDGE_LABELS)


def test_depth(space):
    assert space.depth(space.parse(EXAMPLE)) == 17
    assert NB201Space(cells_per_stage=1).depth(space.parse(EXAMPLE)) == 5
    conv = arch_from_ops(["nor_conv_3x3"] * 6)
    assert NB201Space.cell_depth(conv) == 3
    assert NB201Space.cell_depth(arch_from_ops(["skip_connect"] * 6)) == 0
    cut = arch_from_ops(["nor_conv_3x3", "none", "none", "none", "none", "none"])
    assert NB201Space.cell_depth(cut) == 0  # output not connected
    assert NB201Space.cell_depth(space.parse(EXAMPLE)) == 2


# --- networks -------------------------------------------------------------------------------
def _expected_params(ops, num_classes=10, c=16, n=5):
    """Closed-form parameter count of the NB201 network (independent of the module code)."""
    total = 3 * c * 9 + 2 * c  # stem conv + BN
    for stage in range(3):
        ch = c * 2 ** stage
        if stage:
            cin = ch // 2
            total += cin * ch * 9 + 2 * ch + ch * ch * 9 + 2 * ch + cin * ch  # residual block
        per_cell = sum(ch * ch * (9 if op == "nor_conv_3x3" else 1) + 2 * ch
                       for op in ops if op.startswith("nor_conv"))
        total += n * per_cell
    return total + 2 * 4 * c + 4 * c * num_classes + num_classes  # lastact BN + classifier


def test_parameter_counts_match_published_figures(space):
    conv3 = arch_from_ops(["nor_conv_3x3"] * 6)
    assert space.count_params(conv3) == 1_531_546  # NATS-Bench: 1.531546 MB
    for op in ("none", "skip_connect", "avg_pool_3x3"):
        assert space.count_params(arch_from_ops([op] * 6)) == 73_306  # 0.073306 MB
    rng = random.Random(5)
    for _ in range(10):
        arch = space.sample(rng)
        for classes in (10, 100, 120):
            assert space.count_params(arch, num_classes=classes) == \
                _expected_params(list(arch.values()), classes)


@pytest.mark.skipif(not ZERO_COST.is_file(), reason="NASLib scores not in ../shared/data")
def test_parameter_counts_match_naslib_table(space):
    classes = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
    with ZERO_COST.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["params"]]
    checked = 0
    for row in rows[::12]:
        arch = space.parse(row["arch_str"])
        count = space.count_params(arch, num_classes=classes[row["dataset"]])
        assert count == round(float(row["params"]) * 1e6), row
        checked += 1
    assert checked > 100


def test_forward_shapes(space):
    torch.manual_seed(0)
    net = space.build(space.parse(EXAMPLE))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    net = space.build(space.parse(EXAMPLE), num_classes=120, channels=8, cells_per_stage=1)
    assert net(torch.randn(3, 3, 16, 16)).shape == (3, 120)
    with pytest.raises(TypeError, match="unknown build options"):
        space.build(space.parse(EXAMPLE), layers=3)
    with pytest.raises(ValueError):
        NB201Space(channels=0)


def test_cell_semantics_none_skip_pool():
    x = torch.randn(2, 4, 6, 6)
    none_cell = NB201Cell(["none"] * 6, 4)
    assert torch.equal(none_cell(x), torch.zeros_like(x))
    # node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x
    skip_cell = NB201Cell(["skip_connect"] * 6, 4)
    assert torch.allclose(skip_cell(x), 4 * x)
    pool = make_op("avg_pool_3x3", 4)
    ones = torch.ones(1, 4, 5, 5)
    assert torch.allclose(pool(ones), ones)  # padding not counted: the corners stay 1
    conv = make_op("nor_conv_3x3", 4)
    assert [type(m).__name__ for m in conv] == ["ReLU", "Conv2d", "BatchNorm2d"]


def test_constraints_are_enforced():
    small = NB201Space(constraints=Constraints(max_params=200_000))
    with pytest.raises(ArchError, match="max_params"):
        small.validate(arch_from_ops(["nor_conv_3x3"] * 6))
    small.validate(arch_from_ops(["skip_connect"] * 6))


# --- supernet -------------------------------------------------------------------------------
def test_supernet_one_hot_path_equals_extracted_subnet(space):
    torch.manual_seed(0)
    supernet = space.supernet(channels=8, cells_per_stage=1, affine=True,
                              track_running_stats=True)
    x = torch.randn(4, 3, 16, 16)
    supernet.train()
    supernet(x, torch.softmax(torch.randn(6, 5), 1))  # move the BN running stats
    arch = space.parse(EXAMPLE)
    weights = torch.nn.functional.one_hot(torch.tensor(space.encode(arch)), 5).float()
    subnet, missing = space.extract(supernet, arch)
    assert missing == []
    supernet.eval()
    subnet.eval()
    with torch.no_grad():
        assert torch.allclose(supernet(x, weights), subnet(x), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(6, 5\)"):
        supernet(x, torch.ones(5, 6))


def test_supernet_default_is_non_affine_and_extraction_reports_missing(space):
    supernet = space.supernet(channels=4, cells_per_stage=1)
    out = supernet(torch.randn(2, 3, 8, 8), torch.full((6, 5), 0.2))
    assert out.shape == (2, 10)
    arch = arch_from_ops(["nor_conv_1x1"] * 6)
    _, missing = extract_subnet(supernet, arch)
    assert missing and all(".edges." in k for k in missing)
    assert any(k.endswith("running_mean") for k in missing)
