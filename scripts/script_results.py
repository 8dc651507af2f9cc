"""Shared output step of the reproduction scripts: results.json + results.md in one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(out: str | Path, results: dict[str, Any], table: str) -> str:
    """Write ``results`` as ``<out>/results.json`` and ``table`` as ``<out>/results.md``;
    print and return the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table)
    print(table)
    return table


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
