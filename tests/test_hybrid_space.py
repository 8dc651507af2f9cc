"""The hybrid convolution-attention space (lightning_nas.spaces.hybrid): AutoFormer-style
weight entanglement (a step through a small choice trains the big block's leading slice),
extracted subnet == supernet path, sampling / mutation / JSON and string round trips, every
multi-trial sampler on it, bad YAML naming the field, and the SPOS fit + search configs a
few steps through the CLI (configs/spos/hybrid_cifar10_subset.yaml,
configs/search/spos_hybrid_cifar10_subset.yaml) on a miniature zip in CIFAR-10's layout."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from test_search_samplers import KINDS, make

from lightning_nas.search.multi_fidelity import BOHB, Hyperband
from lightning_nas.spaces.base import Arch, ArchError
from lightning_nas.spaces.hybrid import ElasticMBConv, ElasticTransformer, HybridSpace
from lightning_nas.strategies.common import space_from_spec, space_spec

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    {"name": "s1", "depth": [1, 2], "width": [8, 12], "stride": 1, "blocks": ["mbconv"],
     "kernel": [3, 5], "expand": [2, 2.5]},
    {"name": "s2", "depth": [1, 2], "width": [8, 16], "stride": 2,
     "blocks": ["mbconv", "transformer"], "expand": [2], "heads": [2, 4], "mlp_ratio": [1, 2]},
]


def space(**kw) -> HybridSpace:
    return HybridSpace(**{"stages": STAGES, "stem_channels": 8, "in_channels": 3,
                          "num_classes": 5, **kw})


def transformer_arch(sp: HybridSpace) -> Arch:
    """A path whose s2 block 0 is the smallest transformer (width 8, 2 heads, ratio 1)."""
    return sp.parse("s1:d1:w8:mb_k3_e2 | s2:d1:w8:vit_h2_r1")


def test_one_largest_block_per_position_and_a_small_choice_trains_its_leading_slice():
    torch.manual_seed(0)
    sp = space()
    net = sp.supernet()
    blocks = net.stages[1]["blocks"]
    assert len(blocks) == 2 and all(set(b) == {"mbconv", "transformer"} for b in blocks)
    assert sum(isinstance(m, ElasticTransformer) for m in net.modules()) == 2
    assert sum(isinstance(m, ElasticMBConv) for m in net.modules()) == 2 + 2
    big = blocks[0]["transformer"]
    assert big.q.weight.shape == (16, 16) and big.fc1.weight.shape == (32, 16)
    assert big.position_bias.table.shape[1] == 4
    before = {k: v.clone() for k, v in big.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss = net.forward_path(torch.randn(4, 3, 8, 8), transformer_arch(sp)).square().mean()
    loss.backward()
    opt.step()
    after = big.state_dict()
    for name, rows, cols in (("q.weight", 8, 8), ("proj.weight", 8, 8), ("fc1.weight", 8, 8),
                             ("fc2.weight", 8, 8)):
        assert not torch.equal(after[name][:rows, :cols], before[name][:rows, :cols]), name
        assert torch.equal(after[name][rows:], before[name][rows:]), name  # outside the slice
        assert torch.equal(after[name][:, cols:], before[name][:, cols:]), name
    for name in ("norm1.weight", "norm2.bias", "q.bias"):
        assert not torch.equal(after[name][:8], before[name][:8])
        assert torch.equal(after[name][8:], before[name][8:])
    table = "position_bias.table"
    assert not torch.equal(after[table][:, :2], before[table][:, :2])
    assert torch.equal(after[table][:, 2:], before[table][:, 2:])
    # the MBConv of that position was not on the path: untouched
    assert all(p.grad is None for p in blocks[0]["mbconv"].parameters())
    # the extracted block holds exactly the slices
    small = net.subnet(transformer_arch(sp)).stages[1][1]
    assert torch.equal(small.q.weight, big.q.weight[:8, :8])
    assert torch.equal(small.position_bias.table, big.position_bias.table[:, :2])


def test_a_smaller_kernel_is_the_centre_of_the_largest():
    sp = space()
    net = sp.supernet()
    arch = sp.parse("s1:d1:w8:mb_k3_e2 | s2:d1:w8:mb_k3_e2")
    dw = net.stages[0]["blocks"][0]["mbconv"].dw.weight
    assert dw.shape == (30, 1, 5, 5)  # 12 channels x expand 2.5
    small = net.subnet(arch).stages[0][1]
    assert torch.equal(small.dw.weight, dw[:16, :, 1:4, 1:4])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_extracted_subnet_equals_the_supernet_path(mode):
    torch.manual_seed(0)
    sp = space()
    net = sp.supernet()
    x = torch.randn(4, 3, 8, 8)
    rng = random.Random(0)
    archs = [sp.sample(rng) for _ in range(12)]
    assert {sp.attention_blocks(a) > 0 for a in archs} == {True, False}
    net.train()
    for a in archs[:4]:  # running statistics of some slices away from their init
        net.forward_path(x, a)
    for arch in archs:
        getattr(net, mode)()
        sub = getattr(net.subnet(arch), mode)()
        assert type(sub).__name__ == "HybridNetwork" and sp.build(arch).state_dict().keys() \
            == sub.state_dict().keys()
        with torch.no_grad():
            torch.testing.assert_close(sub(x), net.forward_path(x, arch), atol=1e-5, rtol=1e-4)


def test_sample_mutate_encode_and_round_trips():
    sp = space()
    rng = random.Random(1)
    seen = set()
    for _ in range(60):
        a = sp.sample(rng)
        seen.add(a)
        assert Arch.from_json(a.to_json()) == a and Arch.from_json(a.to_json()).digest == a.digest
        assert sp.parse(sp.to_string(a)) == a
        assert sp.decode(sp.encode(a)) == a
        m = sp.mutate(a, rng)
        assert m != a and sp.validate(m) == m
        for i in range(a["s2.depth"]):  # a block has its own type's fields only
            kind = a[f"s2.block{i}.type"]
            assert (f"s2.block{i}.heads" in a) == (kind == "transformer")
            assert (f"s2.block{i}.kernel" in a) == (kind == "mbconv")
    assert len(seen) > 50
    assert {a["s1.block0.expand"] for a in seen} == {2, 2.5}
    a = sp.parse("s1:d2:w12:mb_k5_e2.5,mb_k3_e2 | s2:d2:w16:vit_h4_r2,mb_k3_e2")
    assert a["s1.block0.expand"] == 2.5 and a["s2.block0.heads"] == 4
    assert sp.attention_blocks(a) == 1
    assert sp.to_string(a) == "s1:d2:w12:mb_k5_e2.5,mb_k3_e2 | s2:d2:w16:vit_h4_r2,mb_k3_e2"
    # the space spec of a checkpoint rebuilds the same space
    assert space_from_spec(json.loads(json.dumps(space_spec(sp)))).config() == sp.config()


def test_arch_outside_the_space_is_refused_naming_the_label():
    sp = space()
    a = sp.parse("s1:d1:w8:mb_k3_e2 | s2:d1:w8:vit_h2_r1")
    with pytest.raises(ArchError, match=r"s2.block0.heads: 3 is not one of \[2, 4\]"):
        sp.validate(a.replace(**{"s2.block0.heads": 3}))
    with pytest.raises(ArchError, match=r"s2.block0.kernel"):  # an MBConv field on attention
        sp.validate(a.replace(**{"s2.block0.kernel": 3}))
    with pytest.raises(ArchError, match=r"s2.block0.type: 'conv'"):
        sp.validate(a.replace(**{"s2.block0.type": "conv"}))
    with pytest.raises(ArchError, match=r"vit_h<heads>_r<mlp ratio>"):
        sp.parse("s1:d1:w8:mb_k3_e2 | s2:d1:w8:attn_h2")


@pytest.mark.parametrize("kind", [*KINDS, "hyperband", "bohb"])
def test_every_multi_trial_sampler_searches_the_space(kind):
    sp = space()
    if kind in ("hyperband", "bohb"):
        cls = Hyperband if kind == "hyperband" else BOHB
        sampler = cls(sp, min_fidelity=1, max_fidelity=3, eta=3, seed=0)
    else:
        sampler = make(kind, sp)
    for _ in range(12):
        arch = sampler.ask()
        assert sp.validate(arch) == arch
        # a toy objective: fewer transformer blocks and narrower is "better"
        sampler.tell(arch, -float(sp.attention_blocks(arch)) - arch["s2.width"] / 16)


def test_spos_draws_hybrid_paths_within_a_measured_cost_limit():
    """SPOS's hardware constraint on this space: CostHook metrics of each drawn path's
    standalone network (FLOPs here, so no timing decides the test; latency works alike with
    CostHook(latency=True) and max_latency_ms, as the search config measures it)."""
    from lightning_nas.hardware import CostHook
    from lightning_nas.hardware.objective import Constraints
    from lightning_nas.strategies.spos import SPOS

    sp = space()
    hook = CostHook(input_shape=(3, 8, 8))
    flops = sorted(hook(a, sp.build(a))["flops"] for a in (sp.sample(random.Random(k))
                                                           for k in range(20)))
    limit = flops[len(flops) // 2]
    model = SPOS(space=sp, num_classes=5, metric_hooks=[hook],
                 constraints=Constraints(max_flops=limit), seed=0)
    drawn = [model.draw(21, n) for n in range(10)]
    assert all(model.costs(a)["flops"] <= limit for a in drawn)
    assert model.rejected > 0 and len(set(drawn)) > 1


def test_bad_yaml_names_the_field():
    def stages(**changes):
        return [STAGES[0], {**STAGES[1], **changes}]

    with pytest.raises(ValueError, match=r"stages\[1\]\.heads: 3 heads do not divide the "
                                         r"embedding width 8"):
        HybridSpace(stages=stages(heads=[2, 3]))
    with pytest.raises(ValueError, match=r"stages\[1\]\.width must be a value or a list of "
                                         r"distinct choices, got \[\]"):
        HybridSpace(stages=stages(width=[]))
    with pytest.raises(ValueError, match=r"stages\[1\]\.mlp_ratio .* got \[\]"):
        HybridSpace(stages=stages(mlp_ratio=[]))
    with pytest.raises(ValueError, match=r"stages\[1\]\.blocks .* got \[\]"):
        HybridSpace(stages=stages(blocks=[]))
    with pytest.raises(ValueError, match=r"stages\[1\]\.blocks\[1\]: unknown block type "
                                         r"'attention'; the block types are \['mbconv', "
                                         r"'transformer'\]"):
        HybridSpace(stages=stages(blocks=["mbconv", "attention"]))
    with pytest.raises(ValueError, match=r"stages\[0\]\.heads applies to transformer blocks"):
        HybridSpace(stages=[{**STAGES[0], "heads": [2]}])
    with pytest.raises(ValueError, match=r"stages\[0\]\.kernel: 4 is not an odd kernel"):
        HybridSpace(stages=[{**STAGES[0], "kernel": [3, 4]}])
    with pytest.raises(ValueError, match=r"stages\[0\]: unknown field\(s\) \['ops'\]"):
        HybridSpace(stages=[{**STAGES[0], "ops": ["sep_conv_3x3"]}])
    with pytest.raises(ValueError, match="stages must be a non-empty list"):
        HybridSpace(stages=[])


def test_spos_fit_and_search_configs_run_through_the_cli(tmp_path):
    """configs/spos/hybrid_cifar10_subset.yaml two steps on a miniature zip in the CIFAR-10
    archive's layout (a smaller space: one narrow block per stage), then
    configs/search/spos_hybrid_cifar10_subset.yaml scores 3 paths with measured latency (its
    value is not checked: no test depends on timing)."""
    from test_data_folder import _write_zip, make_tree

    from lightning_nas.cli import main
    from lightning_nas.strategies.common import load_supernet

    files, _ = make_tree(n_train=4, n_test=1, size=16)
    archive = _write_zip(tmp_path / "mini_cifar.zip", files)
    small = [{"name": "s1", "depth": [1], "width": [8], "stride": 1, "blocks": ["mbconv"],
              "kernel": [3, 5], "expand": [2]},
             {"name": "s2", "depth": [1], "width": [8, 16], "stride": 2,
              "blocks": ["mbconv", "transformer"], "expand": [2], "heads": [2, 4],
              "mlp_ratio": [2]}]
    data = ["--data.init_args.root", str(archive), "--data.init_args.max_per_class_train",
            "4", "--data.init_args.val_fraction", "0.5", "--data.init_args.batch_size", "4"]
    run = tmp_path / "fit"
    main(["fit", "--config", str(ROOT / "configs/spos/hybrid_cifar10_subset.yaml"),
          "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir",
          str(run), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0.5",
          "--model.init_args.eval_paths", "1",
          "--model.init_args.space.init_args.stages", json.dumps(small), *data])
    sp, supernet, _ = load_supernet(run / "checkpoints" / "last.ckpt")
    arch = Arch.load(run / "arch.json")
    assert arch.space == sp.name == "hybrid_cifar10" and sp.validate(arch) == arch
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(supernet.subnet(arch).eval()(x), supernet.forward_path(x, arch))

    search = tmp_path / "search"
    main(["search", "--config", str(ROOT / "configs/search/spos_hybrid_cifar10_subset.yaml"),
          "--run_dir", str(search), "--evaluator.init_args.checkpoint",
          str(run / "checkpoints" / "last.ckpt"), "--evaluator.init_args.calibration_images",
          "8", *(f"--evaluator.init_args.data.init_args.{a[len('--data.init_args.'):]}"
                 if a.startswith("--") else a for a in data),
          "--space.init_args.stages", json.dumps(small), "--metric_hooks.init_args.repeats",
          "2", "--metric_hooks.init_args.warmup", "1", "--budget_trials", "3",
          "--sampler.init_args.population_size", "2", "--sampler.init_args.sample_size", "2",
          "--progress", "false"])
    assert json.loads((search / "summary.json").read_text())["counts"]["ok"] == 3
    records = [json.loads(line) for line in (search / "candidates.jsonl").read_text()
               .splitlines()]
    assert all({"accuracy", "latency_ms", "params"} <= set(r["metrics"]) for r in records)
    assert (search / "pareto.png").is_file()
