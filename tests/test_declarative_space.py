"""The declarative space: a 3-stage YAML space builds, samples, mutates, round-trips through
JSON and its string form, its one-path supernet's extracted subnet equals the standalone
network's function, SPOS trains it through the CLI, and bad YAML names the field."""

from __future__ import annotations

import random

import pytest
import torch
import yaml

from lightning_nas.spaces.base import Arch, ArchError
from lightning_nas.spaces.declarative import DeclarativeSpace
from lightning_nas.strategies.common import space_from_spec, space_spec

SPACE_YAML = """
name: tiny_hybrid
stem_channels: 4
stages:
  - {name: s1, depth: [1, 2], width: [4, 8], stride: 1,
     ops: [sep_conv_3x3, mbconv_3x3_e3, skip_connect], skip: [false, true]}
  - {name: s2, depth: [1, 2], width: [8], stride: 2,
     branches: [[sep_conv_3x3, self_attention], [none, squeeze_excite]]}
  - {name: s3, depth: 1, width: [8, 16], stride: 2,
     ops: [local_attention_3x3, self_attention, nor_conv_3x3]}
"""


def space(**kwargs) -> DeclarativeSpace:
    return DeclarativeSpace(**yaml.safe_load(SPACE_YAML), in_channels=1, **kwargs)


def test_three_stage_space_samples_mutates_and_round_trips():
    sp = space()
    rng = random.Random(0)
    seen_depths, seen_ops = set(), set()
    for _ in range(40):
        arch = sp.sample(rng)
        assert sp.validate(arch) == arch
        assert Arch.from_json(arch.to_json()) == arch
        assert sp.parse(sp.to_string(arch)) == arch
        assert sp.decode(sp.encode(arch)) == arch
        # blocks past the chosen depth are not part of the arch
        assert ("s1.block1.op" in arch) == (arch["s1.depth"] == 2)
        child = sp.mutate(arch, rng)
        sp.validate(child)
        assert child != arch
        seen_depths.add(arch["s2.depth"])
        seen_ops |= {arch["s3.block0.op"], arch["s2.block0.branch0"]}
    assert seen_depths == {1, 2}
    assert seen_ops == {"local_attention_3x3", "self_attention", "nor_conv_3x3", "sep_conv_3x3"}
    text = ("s1:d2:w8:mbconv_3x3_e3+,skip_connect | s2:d1:w8:self_attention&squeeze_excite | "
            "s3:d1:w16:local_attention_3x3")
    arch = sp.parse(text)
    assert arch["s2.block0.branch1"] == "squeeze_excite" and arch["s1.block0.skip"] is True
    assert sp.to_string(arch) == text
    with pytest.raises(ArchError, match=r"s2.block0.skip: True is not one of \[False\]"):
        sp.parse(text.replace("squeeze_excite", "squeeze_excite+"))
    net = sp.build(arch)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert sp.depth(arch) == 1 + (1 + 2) + (1 + 1) + (1 + 1)


def test_extracted_subnet_equals_the_supernet_path():
    torch.manual_seed(0)
    sp = space()
    net = sp.supernet(num_classes=5, in_channels=1)
    x = torch.randn(4, 1, 8, 8)
    rng = random.Random(1)
    for _ in range(3):
        arch = sp.sample(rng)
        net.train()
        net.forward_path(x, arch).sum().backward()  # a step's worth of batch statistics
        sub = net.subnet(arch)
        assert type(sub).__name__ == "DeclarativeNetwork"
        for mode in ("train", "eval"):
            getattr(net, mode)(), getattr(sub, mode)()
            torch.testing.assert_close(sub(x), net.forward_path(x, arch), atol=1e-5, rtol=1e-5)
        # only the path's modules ran: another width's transition got no gradient
        unused = [p for k, p in net.named_parameters() if "transition.c4_w4" in k]
        if arch["s1.width"] != 4:
            assert all(p.grad is None for p in unused)
        net.zero_grad(set_to_none=True)
    chosen = net.arch_of({label: options[-1] for label, options in sp.decisions()})
    assert net.choices_of(chosen)["s3.block0.op"] == "nor_conv_3x3"


def test_the_space_spec_rebuilds_it():
    sp = space()
    again = space_from_spec(space_spec(sp))
    assert again.config() == sp.config() and again.decisions() == sp.decisions()
    arch = sp.sample(random.Random(2))
    assert again.validate(arch) == arch
    with pytest.raises(ArchError, match="belongs to the 'tiny_hybrid' space"):
        DeclarativeSpace(stages=[{"width": 4, "ops": ["skip_connect", "sep_conv_3x3"]}]
                         ).validate(arch)


def test_bad_yaml_names_the_field(tmp_path):
    base = yaml.safe_load(SPACE_YAML)
    bad_heads = {**base, "stages": [*base["stages"][:2], {
        "name": "s3", "width": [6], "ops": [{"name": "attn_h4", "class_path":
                                             "lightning_nas.spaces.attention.SelfAttentionOp",
                                             "init_args": {"heads": 4}}]}]}
    with pytest.raises(ValueError, match=r"stages\[2\]\.ops\[0\] 'attn_h4' at width 6: .*heads=4 "
                                         r"must divide the op's 6 output channels"):
        DeclarativeSpace(**bad_heads)
    (tmp_path / "shrink_op.py").write_text(
        "from torch import nn\n"
        "def shrink(c_in, c_out, stride):\n"
        "    return nn.AvgPool2d(2)\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        shrinking = {**base, "stages": [base["stages"][0], {
            "name": "s2", "width": 8, "branches": [["sep_conv_3x3"], [
                {"name": "test_shrink", "class_path": "shrink_op.shrink"}]]}]}
        with pytest.raises(ValueError, match=r"stages\[1\]\.branches\[1\]\[0\] 'test_shrink' "
                                             r"changes the shape \(2, 8, 8, 8\) -> \(2, 8, 4, 4\)"):
            DeclarativeSpace(**shrinking)
    finally:
        sys.path.remove(str(tmp_path))
        from lightning_nas.spaces.registry import unregister_op

        unregister_op("test_shrink")
    with pytest.raises(ValueError, match=r"stages\[0\]: unknown field\(s\) \['kernel'\]"):
        DeclarativeSpace(stages=[{"width": 4, "ops": ["skip_connect"], "kernel": 3}])
    with pytest.raises(ValueError, match=r"stages\[0\]\.depth: 0 is not a block count"):
        DeclarativeSpace(stages=[{"width": 4, "depth": [0, 1], "ops": ["skip_connect"]}])
    with pytest.raises(ValueError, match=r"stages\[0\]: give either ops .* or branches"):
        DeclarativeSpace(stages=[{"width": 4}])


def test_spos_configs_train_and_search_the_declarative_space_through_the_cli(tmp_path):
    """configs/spos/declarative_digits.yaml a few steps (one validation batch: "1" would parse
    as 1.0, all batches); the checkpoint rebuilds the space; then
    configs/search/spos_declarative_digits.yaml scores 3 of its paths."""
    from pathlib import Path

    from lightning_nas.cli import main
    from lightning_nas.strategies.common import load_supernet

    root = Path(__file__).resolve().parents[1]
    main(["fit", "--config", str(root / "configs/spos/declarative_digits.yaml"),
          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir",
          str(tmp_path), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0.2",
          "--model.init_args.eval_paths", "1"])
    sp, supernet, _ = load_supernet(tmp_path / "checkpoints" / "last.ckpt")
    arch = Arch.load(tmp_path / "arch.json")
    assert arch.space == sp.name == "conv_attention_digits" and sp.validate(arch) == arch
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(supernet.subnet(arch).eval()(x), supernet.forward_path(x, arch))
    import json

    search = tmp_path / "search"
    main(["search", "--config", str(root / "configs/search/spos_declarative_digits.yaml"),
          "--run_dir", str(search), "--evaluator.init_args.checkpoint",
          str(tmp_path / "checkpoints" / "last.ckpt"), "--evaluator.init_args.calibration_images",
          "16", "--budget_trials", "3", "--sampler.init_args.population_size", "2",
          "--sampler.init_args.sample_size", "2", "--progress", "false"])
    assert json.loads((search / "summary.json").read_text())["counts"]["ok"] == 3
    assert sp.validate(Arch.load(search / "arch.json")).space == "conv_attention_digits"
