"""Per-layer latency lookup table (Once-for-All, Sec. 3.3): keys, sums, files, hook, and the
table against whole networks.

No test depends on wall-clock timing: the table is built with a fake measurement in which a
forward pass takes 1 ns per FLOP (:func:`flop_measure`), so the entries, their ordering and
the whole-network check are exact. How well a real table predicts real networks is measured
by ``scripts/ofa_latency_lut.py``, not here."""

from __future__ import annotations

import inspect
import itertools
import json
import random

import pytest
import torch

from lightning_nas.hardware import (
    LatencyModel,
    LatencyTable,
    LatencyTableHook,
    MissingEntryError,
    measure_latency,
)
from lightning_nas.hardware.latency_lut import arch_layer_keys, enumerate_layers, main
from lightning_nas.hardware.latency import LatencyResult
from lightning_nas.hardware.metrics import count_flops, count_parameters
from lightning_nas.spaces.base import ArchError
from lightning_nas.spaces.mobilenet import MobileNetV3Space

TINY_STAGES = [{"width": 8, "stride": 1, "se": False, "act": "relu"},
               {"width": 16, "stride": 2, "se": True, "act": "hswish"}]


def tiny_space(**kwargs) -> MobileNetV3Space:
    options = {"stages": TINY_STAGES, "depths": (1, 2), "kernels": (3, 5), "expands": (3, 4),
               "stem_width": 8, "final_width": 32, "feature_width": 64, **kwargs}
    return MobileNetV3Space.cifar(**options)


@pytest.fixture(scope="module")
def space() -> MobileNetV3Space:
    return tiny_space()


def flop_measure(model: torch.nn.Module, input_shape, *, batch_size: int = 1,
                 **kwargs) -> LatencyResult:
    """:func:`measure_latency` with a fake clock under which every timed forward pass takes
    1 ns per FLOP of ``model`` (so a latency in ms is MFLOPs): deterministic, exact, and
    still a real run of the measuring code (forward passes, statistics, hardware name)."""
    flops = count_flops(model, input_shape, batch_size=batch_size).flops
    ticks = itertools.count(0, flops)  # read before and after each pass: +flops per pass
    return measure_latency(model, input_shape, batch_size=batch_size,
                           clock=lambda: next(ticks), **kwargs)


@pytest.fixture(scope="module")
def table(space) -> LatencyTable:
    """The tiny space's table with FLOP-proportional entries (see :func:`flop_measure`)."""
    return LatencyTable.build(space, warmup=1, repeats=2, rounds=2, progress=False,
                              measure=flop_measure)


def expected_keys() -> set[str]:
    # 32x32 input, stride-1 stem -> stage 1 (stride 1) at 32 -> stage 2 (stride 2) 32 -> 16
    keys = {"stem|r32", "first|r32", "head|r16"}
    for k in (3, 5):
        for e in (3, 4):
            keys |= {f"block|s1b1|r32|k{k}|e{e}", f"block|s1b2|r32|k{k}|e{e}",
                     f"block|s2b1|r32|k{k}|e{e}", f"block|s2b2|r16|k{k}|e{e}"}
    return keys


def test_keys_are_exactly_the_layers_of_the_space(space, table):
    assert set(table.entries) == expected_keys()
    for key, spec in enumerate_layers(space).items():  # each entry is its layer's MFLOPs
        assert table.entries[key] == pytest.approx(
            count_flops(spec.build(), spec.input_shape).flops / 1e6, rel=1e-12), key
    assert len(table) == 3 + 2 * 2 * 2 * 2  # stem/first/head + stages x positions x k x e
    assert table.missing_keys() == []
    assert all(v > 0 for v in table.entries.values())
    assert table.metadata["num_threads"] == 1 and table.metadata["batch_size"] == 1
    assert table.metadata["torch"] == torch.__version__ and table.metadata["hardware"]
    assert isinstance(table, LatencyModel)


def test_entry_count_of_the_default_spaces():
    # OFA ImageNet: 4 resolutions x 5 stages x 2 positions x 3 kernels x 3 expands + 3 x 4
    assert len(enumerate_layers(MobileNetV3Space())) == 360 + 12
    assert len(enumerate_layers(MobileNetV3Space.cifar())) == 90 + 3
    assert len(enumerate_layers(tiny_space(depths=(1,)))) == 3 + 2 * 4  # no later blocks


def test_layers_chain_and_match_the_network(space):
    """The standalone layers of an arch chain shape by shape and hold exactly the network's
    parameters: same constructors as MobileNetV3Network."""
    layers = enumerate_layers(space)
    rng = random.Random(0)
    for arch in [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(4))]:
        keys = arch_layer_keys(space, arch)
        assert sum(count_parameters(layers[k].build()) for k in keys) == \
            count_parameters(space.build(arch))
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            for k in keys:
                assert tuple(x.shape[1:]) == layers[k].input_shape, k
                x = layers[k].build().eval()(x)
        assert x.shape == (1, 10)


def test_predict_is_the_sum_of_the_active_layers(space, table):
    e = table.entries
    small, large = space.smallest(), space.largest()
    want_small = (e["stem|r32"] + e["first|r32"] + e["block|s1b1|r32|k3|e3"]
                  + e["block|s2b1|r32|k3|e3"] + e["head|r16"])
    want_large = (e["stem|r32"] + e["first|r32"] + e["block|s1b1|r32|k5|e4"]
                  + e["block|s1b2|r32|k5|e4"] + e["block|s2b1|r32|k5|e4"]
                  + e["block|s2b2|r16|k5|e4"] + e["head|r16"])
    assert table.predict(small) == pytest.approx(want_small)
    assert table.predict(large) == pytest.approx(want_large)
    assert table.predict(space.to_string(large)) == pytest.approx(want_large)
    assert list(table.breakdown(small)) == ["stem|r32", "first|r32", "block|s1b1|r32|k3|e3",
                                            "block|s2b1|r32|k3|e3", "head|r16"]
    calibrated = LatencyTable(space, e, metadata=table.metadata, overhead_ms=0.25, scale=1.5)
    assert calibrated.predict(small) == pytest.approx(1.5 * want_small + 0.25)
    assert calibrated.uncalibrated().predict(small) == pytest.approx(want_small)


def test_inactive_blocks_do_not_count(space, table):
    arch = space.smallest()
    other = arch.replace(**{"stage1.block2.kernel": 5, "stage1.block2.expand": 4})
    assert table.predict(other) == table.predict(arch)
    with pytest.raises(ArchError):
        table.predict(arch.replace(resolution=64))


def test_prediction_grows_with_kernel_expand_and_depth(space, table):
    """With FLOP-proportional entries every bigger choice must cost more, for every arch:
    this checks that the table maps each choice to the entry of the right layer."""
    def gain(a, label: str, lo, hi) -> float:
        return table.predict(a.replace(**{label: hi})) - table.predict(a.replace(**{label: lo}))

    rng = random.Random(1)
    archs = [space.sample(rng) for _ in range(30)]
    deep = [a.replace(**{"stage1.depth": 2, "stage2.depth": 2}) for a in archs]
    blocks = [(i, j) for i in (1, 2) for j in (1, 2)]
    for a, d in zip(archs, deep):
        for i in (1, 2):  # one more block: a whole layer more
            assert gain(a, f"stage{i}.depth", 1, 2) > 0, (a, i)
        for i, j in blocks:
            assert gain(d, f"stage{i}.block{j}.expand", 3, 4) > 0, (d, i, j)
            assert gain(d, f"stage{i}.block{j}.kernel", 3, 5) > 0, (d, i, j)
    assert table.predict(space.largest()) > table.predict(space.smallest())
    # the kernel of an inactive block changes nothing (depth 1: block 2 does not run)
    shallow = space.smallest()
    assert gain(shallow, "stage1.block2.kernel", 3, 5) == 0


def test_save_load_round_trip(space, table, tmp_path):
    table.calibration = {"fit": "linear", "n": 0}
    table.overhead_ms, table.scale = 0.1, 1.2
    try:
        path = table.save(tmp_path / "sub" / "lut.json")
        doc = json.loads(path.read_text())
        assert doc["space"]["stages"][1] == TINY_STAGES[1]
        assert doc["metadata"]["num_threads"] == 1 and doc["unit"] == "ms per batch"
        for loaded in (LatencyTable.load(path, space=space), LatencyTable.load(path)):
            assert loaded.entries == table.entries and loaded.iqr_ms == table.iqr_ms
            assert loaded.overhead_ms == 0.1 and loaded.scale == 1.2
            assert loaded.metadata == table.metadata and loaded.calibration["fit"] == "linear"
            assert loaded.predict(space.largest()) == pytest.approx(
                table.predict(space.largest()))
    finally:
        table.calibration, table.overhead_ms, table.scale = None, 0.0, 1.0


def test_load_refuses_another_space(space, table, tmp_path):
    path = table.save(tmp_path / "lut.json")
    for other in (tiny_space(kernels=(3, 5, 7)), tiny_space(stem_width=16),
                  tiny_space(num_classes=100), MobileNetV3Space.cifar()):
        with pytest.raises(ValueError, match="another space configuration"):
            LatencyTable.load(path, space=other)


def test_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        LatencyTable.load(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "lightning_nas.latency_table", "entr')
    with pytest.raises(ValueError, match="corrupt.json.*not readable JSON"):
        LatencyTable.load(corrupt)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="other.json is not a latency table"):
        LatencyTable.load(other)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "lightning_nas.latency_table", "version": 1, "space": {}}')
    with pytest.raises(ValueError, match="broken.json is malformed"):
        LatencyTable.load(broken)


def test_missing_entry_says_rebuild(space, table):
    entries = {k: v for k, v in table.entries.items() if k != "block|s2b1|r32|k5|e4"}
    partial = LatencyTable(space, entries)
    assert partial.missing_keys() == ["block|s2b1|r32|k5|e4"]
    assert partial.predict(space.smallest()) > 0  # does not use the missing entry
    with pytest.raises(KeyError) as err:
        partial.predict(space.largest())
    assert isinstance(err.value, MissingEntryError)
    assert "block|s2b1|r32|k5|e4" in str(err.value) and "rebuild" in str(err.value)


def test_calibrate_fits(space, table):
    archs = [space.smallest(), space.largest(), space.sample(random.Random(3))]
    sums = [table.layer_sum(a) for a in archs]
    fitted = table.uncalibrated()
    cal = fitted.calibrate(archs, fit="linear", measured_ms=[2 * s + 0.5 for s in sums])
    assert fitted.scale == pytest.approx(2.0) and fitted.overhead_ms == pytest.approx(0.5)
    assert cal["mape_calibrated_pct"] == pytest.approx(0.0, abs=1e-9)
    assert cal["archs"][0] == space.to_string(space.smallest())
    fitted.calibrate(archs, fit="scale", measured_ms=[1.5 * s for s in sums])
    assert fitted.scale == pytest.approx(1.5) and fitted.overhead_ms == 0.0
    fitted.calibrate(archs, fit="offset", measured_ms=[s + 0.3 for s in sums])
    assert fitted.scale == 1.0 and fitted.overhead_ms == pytest.approx(0.3)
    with pytest.raises(ValueError, match="one positive latency"):
        fitted.calibrate(archs, measured_ms=[1.0])
    with pytest.raises(ValueError, match="fit"):
        fitted.calibrate(archs, fit="cubic", measured_ms=sums)
    picked = table.calibration_archs(5, seed=0)
    assert picked[:2] == [space.smallest(), space.largest()] and len(set(picked)) == 5


def test_hook(space, table, tmp_path):
    path = table.save(tmp_path / "lut.json")
    hook = LatencyTableHook(str(path), space=space)
    assert hook.needs_network is False
    arch = space.sample(random.Random(5))
    out = hook(arch, None)
    assert out == {"latency_ms": pytest.approx(table.predict(arch))}
    assert hook(arch, space.build(arch)) == out  # the model is ignored, the result cached
    assert LatencyTableHook(str(path))(arch, None) == out  # space read from the file
    with pytest.raises(ValueError, match="another space configuration"):
        LatencyTableHook(str(path), space="cifar")
    with pytest.raises(ValueError, match="batch_size"):
        LatencyTableHook(str(path), space=space, batch_size=8)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        LatencyTableHook(str(tmp_path / "missing.json"), space=space)


def test_hook_builds_if_missing(space, tmp_path):
    path = tmp_path / "built.json"
    hook = LatencyTableHook(str(path), space=space, build_if_missing=True, warmup=1, repeats=2,
                            rounds=1, calibrate=2)
    assert path.exists() and hook.table.calibration["n"] == 2
    assert hook(space.largest(), None)["latency_ms"] > 0
    with pytest.raises(ValueError, match="needs the space"):
        LatencyTableHook(str(tmp_path / "again.json"), build_if_missing=True)


def test_hook_from_yaml_style_config(space, table, tmp_path):
    from jsonargparse import ArgumentParser

    path = table.save(tmp_path / "lut.json")
    parser = ArgumentParser()
    parser.add_argument("--hook", type=LatencyTableHook)
    cfg = parser.parse_object({"hook": {"class_path": "lightning_nas.hardware.LatencyTableHook",
                                        "init_args": {"path": str(path), "cache": False}}})
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    hook = instantiate(cfg).hook
    assert isinstance(hook, LatencyTableHook) and not hook.cache
    assert hook(space.smallest(), None)["latency_ms"] == pytest.approx(
        table.predict(space.smallest()))


def test_cli_builds_a_table(tmp_path, capsys):
    out = tmp_path / "cli.json"
    table = main(["--space", "cifar", "--resolutions", "32", "--out", str(out), "--warmup", "0",
                  "--repeats", "1", "--rounds", "1", "--calibrate", "0"])
    assert out.exists() and len(table) == 93
    assert "93/93 entries" in capsys.readouterr().err
    assert LatencyTable.load(out, space=MobileNetV3Space.cifar()).entries == table.entries


def test_prediction_equals_the_measurement_of_the_whole_network(space, table):
    """Same fake measurement (1 ns per FLOP) for the layers and for whole built networks: the
    table's sum must equal the network's number, so a missing or extra layer, or a layer
    built with the wrong shape, channels or stride, fails (how close a real table comes to
    real timings is the job of ``scripts/ofa_latency_lut.py``)."""
    rng = random.Random(2)
    archs = [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(6))]
    measured = table.measure_archs(archs, warmup=0, repeats=1, rounds=1, measure=flop_measure)
    for arch, ms in zip(archs, measured):
        assert table.predict(arch) == pytest.approx(ms, rel=1e-9), arch
        # the tolerance is far below the smallest layer: no layer can go missing unnoticed
        assert min(table.breakdown(arch).values()) > 1e3 * 1e-9 * ms
    assert measured[1] > measured[0]  # the fake measurement does tell networks apart


def test_build_forwards_the_measurement_to_the_calibration(space, table):
    cal_table = LatencyTable.build(space, warmup=0, repeats=1, rounds=1, progress=False,
                                   calibrate=3, measure=flop_measure)
    assert cal_table.entries == pytest.approx(table.entries, rel=1e-12)
    cal = cal_table.calibration
    assert cal["n"] == 3 and cal["measured"] == "calibrate"
    # whole networks measured with the same fake clock: the plain sum is exact, scale 1
    assert cal_table.scale == pytest.approx(1.0, rel=1e-9) and cal_table.overhead_ms == 0.0
    assert cal["mape_sum_pct"] == pytest.approx(0.0, abs=1e-6)
    # the default is still the real measurement
    for method in (LatencyTable.build, LatencyTable.measure_archs, LatencyTable.calibrate):
        assert inspect.signature(method).parameters["measure"].default is measure_latency
