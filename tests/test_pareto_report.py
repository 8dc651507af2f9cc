"""pareto.json / pareto.png writer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from lightning_nas.hardware import hypervolume
from lightning_nas.hardware.report import derive_reference, pareto_summary, write_pareto

CANDS = [
    {"arch": "fast", "accuracy": 0.80, "latency_ms": 5.0, "params": 1.0e6, "flops": 1e8,
     "reward": 0.84},
    {"arch": "big", "accuracy": 0.90, "latency_ms": 10.0, "params": 4.0e6, "flops": 6e8,
     "reward": 0.86},
    {"arch": "bad", "accuracy": 0.70, "latency_ms": 12.0, "params": 5.0e6, "flops": 7e8,
     "reward": 0.60},
    {"arch": "mid", "accuracy": 0.85, "latency_ms": 11.0, "params": 2.0e6, "flops": 3e8,
     "reward": 0.80},
]


def test_write_pareto_files_and_content(tmp_path):
    out = write_pareto(tmp_path / "run", CANDS, reference=[0.0, 20.0])
    data = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert data["objectives"] == {"accuracy": "max", "latency_ms": "min"}
    assert [r["arch"] for r in data["front"]] == ["big", "fast"]  # best accuracy first
    assert data["front_indices"] == [0, 1] and data["ranks"] == [0, 0, 2, 1]
    assert data["reference"] == [0.0, 20.0] and data["reference_source"] == "given"
    # hand area: 0.9 x (20 - 10) + 0.8 x (10 - 5) = 9 + 4
    assert data["hypervolume"] == pytest.approx(13.0)
    assert data["front"][0]["params"] == 4.0e6 and data["front"][0]["index"] == 1
    assert data["best"]["arch"] == "big"  # default: the front's best first objective
    assert out["png_path"].endswith("pareto.png")
    with Image.open(tmp_path / "run" / "pareto.png") as img:
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 200
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["pareto.json", "pareto.png"]


def test_x_limits_drawn_and_stored(tmp_path):
    plain = write_pareto(tmp_path / "plain", CANDS)
    marked = write_pareto(tmp_path / "marked", CANDS, x_limits={"6 ms": 6.0, "10.5 ms": 10.5})
    assert "x_limits" not in plain
    assert json.loads((tmp_path / "marked" / "pareto.json").read_text())["x_limits"] == {
        "6 ms": 6.0, "10.5 ms": 10.5}
    with Image.open(plain["png_path"]) as a, Image.open(marked["png_path"]) as b:
        changed = np.abs(np.asarray(a.convert("L"), dtype=int)
                         - np.asarray(b.convert("L"), dtype=int)) > 30
    assert changed.mean() > 0.005  # two dashed lines, two rings, two legend rows


def test_score_key_picks_best_and_derived_reference(tmp_path):
    out = write_pareto(tmp_path, CANDS, {"accuracy": "max", "params": "min"}, score_key="reward",
                       plot=False)
    assert out["best"]["arch"] == "big" and out["png_path"] is None
    assert out["reference_source"] == "derived"
    pts = np.array([[c["accuracy"], c["params"]] for c in CANDS])
    ref = derive_reference(pts, ["max", "min"])
    # 10% of the range beyond the worst value
    assert ref == pytest.approx([0.70 - 0.02, 5.0e6 + 0.4e6])
    assert out["hypervolume"] == pytest.approx(hypervolume(pts, ref, ["max", "min"]))
    assert not (tmp_path / "pareto.png").exists()


def test_three_objectives_and_one_objective_plot(tmp_path):
    out = write_pareto(tmp_path / "three", CANDS,
                       {"accuracy": "max", "latency_ms": "min", "flops": "min"})
    assert {r["arch"] for r in out["front"]} == {"fast", "big", "mid"}
    out = write_pareto(tmp_path / "one", CANDS, {"accuracy": "max"})
    assert [r["arch"] for r in out["front"]] == ["big"]
    assert (tmp_path / "one" / "pareto.png").stat().st_size > 1000


def test_numpy_values_and_nonfinite_extras_are_jsonable(tmp_path):
    cands = [{"arch": "a", "accuracy": np.float32(0.5), "latency_ms": np.float64(2.0),
              "note": math.nan, "shape": np.array([3, 32, 32])}]
    write_pareto(tmp_path, cands, plot=False)
    rec = json.loads((tmp_path / "pareto.json").read_text())["front"][0]
    assert rec["note"] is None and rec["shape"] == [3, 32, 32] and rec["accuracy"] == 0.5


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(KeyError, match=r"'latency_ms'.*available"):
        pareto_summary([{"arch": "a", "accuracy": 0.5}])
    with pytest.raises(KeyError, match="no 'arch'"):
        pareto_summary([{"accuracy": 0.5, "latency_ms": 1.0}])
    with pytest.raises(ValueError, match="accuracy = nan"):
        pareto_summary([{"arch": "a", "accuracy": math.nan, "latency_ms": 1.0}])
    with pytest.raises(ValueError, match="'max' or 'min'"):
        pareto_summary(CANDS, {"accuracy": "up"})
    with pytest.raises(KeyError, match="score_key 'nope'"):
        pareto_summary(CANDS, score_key="nope")


def test_empty_candidates(tmp_path):
    out = write_pareto(tmp_path, [])
    assert out["front"] == [] and out["best"] is None and out["hypervolume"] == 0.0
