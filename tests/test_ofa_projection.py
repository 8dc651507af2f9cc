"""Published mobile networks as seeds of Once-for-All specialisation: the projection of a
mobile-block architecture to the nearest subnet of an OFA space (stages matched in order,
depth / kernel / expand to the nearest choices), its diff, and SeededEvolution taking presets
in an OFA space."""

from __future__ import annotations

import json
import random

import pytest

from lightning_nas.search.seeded import SeededEvolution
from lightning_nas.spaces.base import ArchError
from lightning_nas.spaces.mobile_blocks import (
    PRESETS,
    MobileBlockSpace,
    from_ofa_arch,
    make_arch,
    project_to_ofa,
)
from lightning_nas.spaces.mobilenet import MobileNetV3Space


def test_mobilenetv3_large_projects_onto_ofa_with_only_its_fractional_expands_changed():
    """OFA's space has MobileNetV3-Large's stage table, so the projection keeps every stage's
    depth and kernels; only the expand ratios 2.5 / 2.3 / 2.3 (200, 184, 184 channels) are not
    choices and become 3."""
    p = project_to_ofa("MobileNetV3-Large", MobileNetV3Space())
    assert p["string"] == ("r224|d2,3,4,2,3|k3,3,3,3,5,5,5,3,3,3,3,3,3,3,3,3,5,5,5,3|"
                           "e4,3,3,3,3,3,3,3,6,3,3,3,6,6,3,3,6,6,6,3")
    changed = [s for s in p["stages"] if s["expands"][0] != s["expands"][1]]
    assert [(s["stage"], s["expands"]) for s in changed] == [(3, [[6, 2.5, 2.3, 2.3],
                                                                  [6, 3, 3, 3]])]
    assert all(s["width"][0] == s["width"][1] and s["act"][0] == s["act"][1]
               for s in p["stages"])
    assert p.diff().splitlines()[4] == ("  stage 3 <- stage 4: depth 4; k 3,3,3,3; "
                                        "e 6,2.5,2.3,2.3 -> 6,3,3,3; width 80; stride 2; SE no; "
                                        "act hswish")
    json.dumps({k: v for k, v in p.items() if k != "arch"})  # JSON-ready


def test_efficientnet_merges_its_stride_one_last_stage_and_clamps_depth():
    p = project_to_ofa("EfficientNet-B0", MobileNetV3Space.cifar())
    assert p.arch["resolution"] == 32  # the CIFAR space's only resolution
    last = p["stages"][-1]
    assert last["from"] == "stages 6+7" and last["depth"] == [5, 4]  # 4 x 192 ch + 1 x 320 ch
    assert last["kernels"] == [[5, 5, 5, 5, 3], [5, 5, 5, 5]]  # OFA keeps the first blocks
    assert [s["depth"][1] for s in p["stages"]] == [2, 2, 3, 3, 4]
    assert "first block k3 16 ch SE yes swish -> k3 16 ch SE no relu" in p.diff()
    # B7's first stage has 4 MBConv1 blocks: they become OFA's one fixed first block
    b7 = project_to_ofa("EfficientNet-B7", MobileNetV3Space())
    assert [s["depth"] for s in b7["stages"]] == [[7, 4], [7, 4], [10, 4], [10, 4], [17, 4]]
    assert b7["fixed"]["first block"][0] == "k3 32 ch SE yes swish x4"
    assert b7["resolution"] == [600, 224]


def test_mobilenetv3_small_gets_the_fixed_first_block_and_short_stages_repeat():
    p = project_to_ofa("MobileNetV3-Small", MobileNetV3Space())
    assert p["fixed"]["first block"] == ["none", "k3 16 ch SE no relu"]
    first = p["stages"][0]
    assert first["depth"] == [1, 2] and first["kernels"] == [[3], [3, 3]]
    assert first["expands"] == [[1], [3, 3]]  # expand 1 -> the nearest choice 3
    assert p["stages"][1]["expands"] == [[4.5, 3.67], [4, 4]]  # 4.5: a tie goes to 4
    # a network with fewer stages than the space: the missing stages repeat its last block
    two = make_arch(resolution=160, stem=[16, 3, 2, "relu"],
                    blocks=[["mbconv", 1, 3, 1, 1, 16, 0, "relu"],
                            ["mbconv", 3, 7, 2, 6, 24, 0, "relu"],
                            ["mbconv", 1, 5, 2, 4, 40, 0, "relu"]], head=[960, "hswish"])
    q = project_to_ofa(two, MobileNetV3Space())
    assert q.arch["resolution"] == 160
    assert [s["from"] for s in q["stages"]][2:] == ["nothing (repeats the last block)"] * 3
    assert q["string"].startswith("r160|d3,2,2,2,2|k7,7,7,3,5,5,3,3,5,5,3,3,5,5,3,3,5,5,3,3|")


@pytest.mark.parametrize("space", [MobileNetV3Space(), MobileNetV3Space.cifar()])
def test_an_ofa_subnet_as_a_mobile_arch_projects_back_to_itself(space):
    rng = random.Random(0)
    for _ in range(10):
        arch = space.sample(rng)
        p = project_to_ofa(from_ofa_arch(space, arch), space)
        assert p.arch == space.canonical(arch)
        assert all(s["depth"][0] == s["depth"][1] for s in p["stages"])


def test_seeded_evolution_projects_presets_in_an_ofa_space(capsys, tmp_path):
    space = MobileNetV3Space.cifar()
    sampler = SeededEvolution(space, initial=["MobileNetV3-Large", "EfficientNet-B0"],
                              population_size=4, sample_size=2, seed=0)
    assert "seed projected to the nearest subnet" in capsys.readouterr().err
    asked = [sampler.ask() for _ in range(2)]
    assert asked == [project_to_ofa(n, space).arch for n in ("MobileNetV3-Large",
                                                             "EfficientNet-B0")]
    assert [p["seed"] for p in sampler.projections] == ["MobileNetV3-Large", "EfficientNet-B0"]
    assert sampler.projections[1]["subnet"] == space.to_string(asked[1])
    PRESETS["MnasNet-A1"].save(tmp_path / "mnas.json")  # a mobile arch.json seeds too
    from_file = SeededEvolution(space, initial=[str(tmp_path / "mnas.json")])
    assert from_file.initial == [project_to_ofa("MnasNet-A1", space).arch]
    assert from_file.projections[0]["source"] == "mnas.json"
    with pytest.raises(ArchError, match="is a mobile network, not a subnet .* project: true"):
        SeededEvolution(space, initial=["MnasNet-A1"], project=False)
    with pytest.raises(ArchError, match=r"seed 'MobileNetV3-Huge' is not a mobilenetv3 string, "
                                        r"an arch.json or a mobile preset .*; mobile presets: "
                                        r"MnasNet-A1, "):
        SeededEvolution(space, initial=["MobileNetV3-Huge"])
    with pytest.raises(ArchError, match="needs a Once-for-All MobileNetV3Space"):
        project_to_ofa("MnasNet-A1", MobileBlockSpace())
    assert PRESETS["MnasNet-A1"].space == "mobile"
