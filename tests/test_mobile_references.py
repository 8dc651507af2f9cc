"""Published networks as first-class citizens: reference points (params, FLOPs, latency,
published top-1) drawn in Pareto plots, and seeds of regularized evolution (also through
`lightning-nas search`)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lightning_nas.hardware.reference import PUBLISHED_TOP1, preset_reference_points
from lightning_nas.hardware.report import write_pareto
from lightning_nas.search import read_journal
from lightning_nas.search.cli import main_search
from lightning_nas.search.seeded import SeededEvolution
from lightning_nas.spaces.base import ArchError
from lightning_nas.spaces.mobile_blocks import PRESETS, MobileBlockSpace

ROOT = Path(__file__).resolve().parents[1]


def test_reference_points_of_presets():
    refs = preset_reference_points(["MnasNet-A1", "MobileNetV3-Small"])
    assert [r["name"] for r in refs] == ["MnasNet-A1", "MobileNetV3-Small"]
    assert refs[0]["params"] == 3_887_038 and refs[0]["macs"] == 311_579_072
    assert refs[0]["flops"] == 2 * refs[0]["macs"] and refs[0]["top1"] == 75.2
    assert refs[1]["resolution"] == 224 and "latency_ms" not in refs[1]
    # at the CIFAR setting, with a measured latency (its value is not checked: no timing)
    space = MobileBlockSpace(num_classes=10, input_size=32, stem_stride=1)
    (small,) = preset_reference_points(["MobileNetV3-Small"], space=space, num_classes=10,
                                       latency=True, warmup=1, repeats=3)
    assert small["resolution"] == 32 and small["latency_ms"] > 0
    assert small["latency_p25_ms"] <= small["latency_p75_ms"] and small["latency_repeats"] == 3
    assert set(PUBLISHED_TOP1) <= set(PRESETS)
    with pytest.raises(ArchError, match="known presets"):
        preset_reference_points(["EfficientNet-B9"])


def test_pareto_plot_draws_references_outside_the_front(tmp_path):
    rng = random.Random(0)
    cands = [{"arch": f"a{i}", "accuracy": rng.uniform(60, 80), "latency_ms": rng.uniform(1, 9)}
             for i in range(12)]
    refs = [{"name": "EfficientNet-B0", "accuracy": 99.0, "latency_ms": 0.5},
            {"name": "no latency", "accuracy": 50.0}]
    summary = write_pareto(tmp_path, cands, references=refs)
    saved = json.loads((tmp_path / "pareto.json").read_text())
    assert saved["references"] == [dict(r) for r in refs]
    assert all(m["arch"].startswith("a") for m in saved["front"])  # a reference never joins
    assert Path(summary["png_path"]).stat().st_size > 1000


def test_seeded_evolution_asks_the_seeds_first_then_mutates():
    space = MobileBlockSpace()
    sampler = SeededEvolution(space, initial=["MnasNet-A1", "EfficientNet-B0"],
                              population_size=4, sample_size=2, seed=0)
    asked = []
    for _ in range(8):
        arch = sampler.ask()
        asked.append(arch)
        sampler.tell(arch, -space.count_params(arch) / 1e6)  # fitness: fewer parameters
    assert asked[:2] == [PRESETS["MnasNet-A1"], PRESETS["EfficientNet-B0"]]
    assert len({a.digest for a in asked}) == 8
    state = sampler.state_dict()
    again = SeededEvolution(space, initial=["MnasNet-A1", "EfficientNet-B0"],
                            population_size=4, sample_size=2, seed=0)
    again.load_state_dict(state)
    assert again.ask() == sampler.ask()
    with pytest.raises(ValueError, match="3 seeds do not fit a population of 2"):
        SeededEvolution(space, initial=["MnasNet-A1"] * 3, population_size=2, sample_size=1)
    with pytest.raises(ArchError, match="known presets"):
        SeededEvolution(space, initial=["MnasNet-A9"])


def test_seeded_evolution_config_runs(tmp_path):
    """configs/search/cifar10_mobile_seeded_evolution.yaml on synthetic 32x32 images: the
    first trials are the seeds (published networks trained like any candidate)."""
    data = json.dumps({"class_path": "lightning_nas.data.SyntheticDataModule",
                       "init_args": {"image_size": 32, "train_size": 16, "test_size": 8,
                                     "batch_size": 8, "val_fraction": 0.5}})
    summary = main_search([
        "--config", str(ROOT / "configs/search/cifar10_mobile_seeded_evolution.yaml"),
        "--run_dir", str(tmp_path), "--budget_trials", "2", "--progress", "false",
        "--evaluator.init_args.data", data,
        "--sampler.init_args.initial", "[MobileNetV3-Small, MnasNet-A1]",
        "--sampler.init_args.population_size", "2", "--sampler.init_args.sample_size", "1"])
    assert summary["counts"]["ok"] == 2
    ok = [r for r in read_journal(tmp_path) if r["status"] == "ok"]
    assert [r["arch_json"] for r in ok] == [PRESETS["MobileNetV3-Small"].to_dict(),
                                            PRESETS["MnasNet-A1"].to_dict()]
    assert all(r["metrics"]["latency_ms"] > 0 and r["metrics"]["macs"] > 0 for r in ok)
