"""scripts/gpu_check.sh --dry: the GPU check end to end on CPU with tiny sizes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_one_json(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry", "--out",
                           str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] and report["machine"]["dry"]
    tests = report["tests"]
    assert tests["failures"] == tests["errors"] == 0 and tests["tests"] >= 1
    if not report["machine"].get("gpu"):  # CPU: every CUDA test is skipped
        assert tests["skipped"] == tests["tests"]
    timings = report["timings"]
    for item in (*timings["darts"], *timings["pc_darts"], *timings["ofa"].values()):
        assert item["steps"] == 3 and item["step_s_median"] > 0
    assert {t["precision"] for t in timings["darts"]} == {"32-true", "bf16-mixed"}
    assert set(timings["ofa"]) == {"full/32-true", "full/bf16-mixed",
                                   "depth_2_subnets_kd/32-true",
                                   "depth_2_subnets_kd/bf16-mixed"}
    assert all(math.isfinite(r["median_ms"]) and r["device"] == "cpu"
               for r in timings["latency"])
    assert timings["darts"][0]["epoch_s_projected"] == timings["darts"][0]["step_s_median"] * 391
