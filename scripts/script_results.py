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
