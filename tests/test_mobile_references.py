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
from lightning_nas.spaces.mobile_blocks import PRESETS, MobileBlockSpace, count_macs

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


def _params_clock(monkeypatch):
    """Latency measurements of the search's CostHook with a fake clock: every timed forward
    pass of a network lasts (its parameter count) ns, so latency_ms = params / 1e6."""
    import itertools

    from lightning_nas.hardware import costs
    from lightning_nas.hardware.latency import measure_latency
    from lightning_nas.hardware.metrics import count_parameters

    def fake(model, shape, **kwargs):
        ticks = itertools.count(0, count_parameters(model))
        return measure_latency(model, shape, **{**kwargs, "clock": lambda: next(ticks)})

    monkeypatch.setattr(costs, "measure_latency", fake)


def test_seeded_evolution_config_draws_reference_presets(tmp_path, monkeypatch, capsys):
    """configs/search/cifar10_mobile_seeded_evolution.yaml on synthetic 32x32 images: the
    first trials are the seeds (published networks trained like any candidate), and
    pareto.reference_presets are built for the run (32x32, 10 classes, stride-1 stem) and
    measured by the run's CostHook, so a preset that is also a trial has the same params /
    MACs / latency as its trial; they are in pareto.json and summary.json, never in the front;
    a wrong name fails before any trial."""
    _params_clock(monkeypatch)
    data = json.dumps({"class_path": "lightning_nas.data.SyntheticDataModule",
                       "init_args": {"image_size": 32, "train_size": 16, "test_size": 8,
                                     "batch_size": 8, "val_fraction": 0.5}})
    args = ["--config", str(ROOT / "configs/search/cifar10_mobile_seeded_evolution.yaml"),
            "--budget_trials", "2", "--progress", "false", "--evaluator.init_args.data", data,
            "--sampler.init_args.initial", "[MobileNetV3-Small, MnasNet-A1]",
            "--sampler.init_args.population_size", "2", "--sampler.init_args.sample_size", "1"]
    summary = main_search([*args, "--run_dir", str(tmp_path / "run"),
                           "--pareto.reference_presets", "[MnasNet-A1, MobileNetV3-Small]"])
    saved = json.loads((tmp_path / "run" / "pareto.json").read_text())
    refs = {r["name"]: r for r in saved["references"]}
    assert list(refs) == ["MnasNet-A1", "MobileNetV3-Small"]
    assert summary["counts"]["ok"] == 2
    ok = [r for r in read_journal(tmp_path / "run") if r["status"] == "ok"]
    assert [r["arch_json"] for r in ok] == [PRESETS["MobileNetV3-Small"].to_dict(),
                                            PRESETS["MnasNet-A1"].to_dict()]
    trials = {r["arch"]: r["metrics"] for r in ok}
    cifar = MobileBlockSpace(num_classes=10, input_size=32, stem_stride=1)
    for name, ref in refs.items():
        metrics = trials[ref["arch"]]  # the same network as a trial of the search
        params, macs = count_macs(PRESETS[name], space=cifar, resolution=32, num_classes=10)
        assert (ref["params"], ref["macs"], ref["flops"]) == (params, macs, 2 * macs)
        assert (ref["params"], ref["macs"]) == (metrics["params"], metrics["macs"])
        assert ref["latency_ms"] == metrics["latency_ms"] == params / 1e6  # the params clock
        assert ref["resolution"] == 32 and ref["latency_source"] == "hook"
        assert ref["published_top1"] == PUBLISHED_TOP1[name] and "accuracy" not in ref
    # 3,887,038 at 1000 classes less the classifier's 990 x (1280 + 1) weights and biases
    assert refs["MnasNet-A1"]["params"] == 2_618_848
    assert all(m["arch"] in trials for m in saved["front"])
    assert [r["name"] for r in summary["reference_presets"]] == list(refs)

    with pytest.raises(SystemExit):
        main_search([*args, "--run_dir", str(tmp_path / "bad"),
                     "--pareto.reference_presets", "[EfficientNet-B0, EfficientNet-B9]"])
    err = capsys.readouterr().err
    assert "unknown preset(s) 'EfficientNet-B9'; known presets: MnasNet-A1" in err
    assert not (tmp_path / "bad").exists()


def test_bad_reference_preset_name_lists_the_presets():
    from lightning_nas.hardware.reference import check_preset_names

    with pytest.raises(ArchError, match=r"pareto.reference_presets: unknown preset\(s\) "
                                        r"'MobileNetV3-Tiny'; known presets: MnasNet-A1, .*"
                                        r"EfficientNet-B7"):
        check_preset_names(["MobileNetV3-Small", "MobileNetV3-Tiny"],
                           what="pareto.reference_presets")


def test_reference_presets_of_a_table_search_are_measured_on_the_tables_device():
    """A hook that cannot take a preset (a latency table predicts only its OFA space's
    subnets) is replaced, for latency, by a measurement with the table's device, batch and
    threads; the presets of an OFA CIFAR search are built with its stride-1 stem."""
    from lightning_nas.hardware.reference import reference_space_for, run_reference_points
    from lightning_nas.spaces.mobilenet import MobileNetV3Space

    class TableLike:  # LatencyTableHook's interface
        latency = True
        latency_kwargs = {"warmup": 0, "repeats": 3}  # a CostHook's; fewer passes in a test
        table = type("T", (), {"metadata": {"device": "cpu", "batch_size": 2,
                                            "num_threads": 1}})()

        def __call__(self, arch, model=None):
            raise ArchError(f"{arch.space!r} is not the table's space")

    space = reference_space_for(MobileNetV3Space.cifar(), input_size=32, num_classes=10)
    assert (space.input_size, space.stem_stride) == (32, 1)
    assert reference_space_for(MobileBlockSpace(), input_size=32, num_classes=10).input_size \
        is None  # a mobile search builds its presets as its own candidates
    ticks = iter(range(0, 10**9, 250_000))  # every timed pass: 0.25 ms
    (ref,) = run_reference_points(["MobileNetV3-Small"], space=space, input_shape=(3, 32, 32),
                                  hooks=[TableLike()], num_classes=10,
                                  clock=lambda: next(ticks))
    assert ref["latency_ms"] == 0.25 and ref["latency_source"] == "measured"
    assert ref["params"] == count_macs(PRESETS["MobileNetV3-Small"], space=space,
                                       resolution=32, num_classes=10)[0]


def test_pareto_figure_draws_references_without_accuracy_as_vertical_lines():
    from lightning_nas.hardware.report import pareto_figure, pareto_summary

    cands = [{"arch": "a", "accuracy": 70.0, "latency_ms": 2.0},
             {"arch": "b", "accuracy": 80.0, "latency_ms": 4.0}]
    summary = pareto_summary(cands)
    fig = pareto_figure(cands, summary, references=[
        {"name": "EfficientNet-B0", "latency_ms": 3.5}, {"name": "no x", "params": 5}])
    ax = fig.axes[0]
    vertical = [tuple(line.get_xdata()) for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert vertical == [(3.5, 3.5)]
    assert [t.get_text() for t in ax.texts if t.get_rotation() == 90] == ["EfficientNet-B0"]
    assert any("no accuracy here" in t.get_text() for t in ax.get_legend().get_texts())
