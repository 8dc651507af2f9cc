"""scripts/bench_darts.py runs end to end (tiny batch) and reports per-round ratios.

Only the report's structure is checked: the timings are the benchmark's business, never a
unit test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_rounds_run_every_config_and_ratios_are_taken_within_each_round(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_darts.py"), "--configs", "first", "gdas",
         "--rounds", "2", "--steps", "1", "--warmup", "0", "--batch-size", "2",
         "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert len(report["rounds"]) == 2
    for round_ in report["rounds"]:
        assert set(round_) == {"first", "gdas"}
        for result in round_.values():
            assert result["n"] == 1 and len(result["times_s"]) == 1
            assert result["peak_rss_gb"] > 0 and result["batch_size"] == 2
    ratio = report["ratio_gdas_to_first"]
    per_round = [r["gdas"]["median_s"] / r["first"]["median_s"] for r in report["rounds"]]
    assert ratio["per_round"] == per_round
    assert ratio["min"] <= ratio["median"] <= ratio["max"]
    assert "speedup_first_order" not in report  # no NNI python given
    assert "| first |" in report["table"] and "| gdas |" in report["table"]
