#!/usr/bin/env bash
# One GPU, about 8 minutes: the CUDA tests, then timings of DARTS / PC-DARTS / OFA steps and
# CUDA latency, all in one JSON (default gpu_check/gpu_check.json; the tests' log and JUnit
# XML next to it).
#
#   bash scripts/gpu_check.sh [--dry] [--out DIR] [--steps N]
#
# --dry (or GPU_CHECK_DRY=1): on CPU with tiny sizes, end to end (the GPU tests are then
# skipped and counted as such); tests/test_gpu_check.py runs it. PYTHON selects the
# interpreter (default: python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
OUT="gpu_check"
DRY="${GPU_CHECK_DRY:-0}"
STEPS=30
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry) DRY=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# 1. the CUDA tests: tests marked gpu, and the latency test of the cuda path
start=$(date +%s)
set +e
"$PYTHON" -m pytest -q -p no:cacheprovider -m gpu --timeout 300 \
  --junitxml "$OUT/gpu_tests.xml" "$ROOT/tests/test_gpu.py" \
  "$ROOT/tests/test_hardware_latency.py" > "$OUT/gpu_tests.log" 2>&1
tests_rc=$?
set -e
# pytest exits 5 when every selected test was deselected/skipped: not a failure here
"$PYTHON" - "$OUT/gpu_tests.xml" "$tests_rc" "$(( $(date +%s) - start ))" > "$OUT/gpu_tests.json" <<'PY'
import json, sys
import xml.etree.ElementTree as ET
path, rc, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
failed = []
try:
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else list(root)):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
except (OSError, ET.ParseError) as err:
    counts["report_error"] = str(err)
counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
print(json.dumps({"pytest_exit_code": rc, "seconds": seconds, **counts, "failed": failed}))
PY
echo "gpu_check: tests: $(cat "$OUT/gpu_tests.json")"

# 2. timings, with the tests' outcome merged into one JSON
args=(--out "$OUT/gpu_check.json" --steps "$STEPS" --pytest-json "$OUT/gpu_tests.json")
if [[ "$DRY" == "1" ]]; then args+=(--dry); fi
"$PYTHON" "$ROOT/scripts/gpu_check.py" "${args[@]}"
if [[ "$tests_rc" != 0 && "$tests_rc" != 5 ]]; then
  echo "gpu_check: GPU tests failed (exit $tests_rc), see $OUT/gpu_tests.log" >&2
  exit 1
fi
