"""The search journal: ``candidates.jsonl`` (one record per trial) and the saved loop state.

Records are appended one JSON line at a time and flushed before the loop asks for the next
architecture, so a crash loses at most the trials in flight. The loop state (sampler
state, trials in flight, budget used) is written with ``torch.save`` to a temporary file
and renamed over ``search_state.pt`` after every record, so it is never half written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from lightning_nas.checkpoints import CheckpointError, load_checkpoint

JOURNAL_NAME = "candidates.jsonl"
STATE_NAME = "search_state.pt"
#: What defines a search (space, sampler and its settings, evaluator, objective,
#: constraints): written when it starts, compared when it is resumed.
IDENTITY_NAME = "search_identity.json"
#: Record fields that depend on the machine's speed, left out when comparing two runs.
TIMING_FIELD = "timing"


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN) and make mappings plain."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return value


class Journal:
    """``run_dir/candidates.jsonl`` plus ``run_dir/search_state.pt``.

    Args:
        run_dir: the run folder (created if missing).
        durable: ``os.fsync`` after every write (survives power loss; slower).
    """

    def __init__(self, run_dir: str | Path, *, durable: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / JOURNAL_NAME
        self.state_path = self.run_dir / STATE_NAME
        self.durable = durable
        self._file = None

    def exists(self) -> bool:
        return (self.path.is_file() and self.path.stat().st_size > 0) or self.state_path.is_file()

    def read(self, *, repair: bool = False) -> list[dict[str, Any]]:
        """All complete records. A last line cut off by a crash is dropped (and, with
        ``repair``, cut from the file); a bad line elsewhere is an error."""
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        records, good_bytes = [], 0
        for k, line in enumerate(lines):
            if not line.strip():
                good_bytes += len(line) + 1
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if k == len(lines) - 1:  # the last line, without newline: cut off mid-write
                    if repair:
                        with self.path.open("r+b") as f:
                            f.truncate(good_bytes)
                    break
                raise ValueError(f"{self.path}: line {k + 1} is not valid JSON") from None
            good_bytes += len(line) + 1
        return records

    def append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(_json_safe(record), sort_keys=True) + "\n")
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())

    def save_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        torch.save(state, tmp)
        if self.durable:
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def load_state(self) -> dict[str, Any] | None:
        """The saved loop state, or None before the first save.

        A state file that cannot be read (truncated, corrupt, or asking to build objects a
        state never holds) is an error naming the file and the way out: without it,
        ``--resume`` replays the whole search from the journal."""
        if not self.state_path.is_file():
            return None
        replay = (f"The search can be replayed from its journal ({self.path}, "
                  f"{len(self.read())} records): delete {self.state_path} and resume again")
        state = load_checkpoint(self.state_path, what="search state", require_state_dict=False,
                                advice=replay)
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.state_path} is not a search state (a "
                                  f"{type(state).__name__}); {replay}")
        return state

    def check_identity(self, identity: dict[str, Any]) -> None:
        """Refuse to continue this journal with settings that change what is measured or
        how the sampler proceeds: a ``ValueError`` naming the first difference. A journal
        from before identities were recorded is accepted (and gets this identity)."""
        path = self.run_dir / IDENTITY_NAME
        if not path.is_file():
            return
        try:
            saved = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError) as err:
            raise ValueError(f"{path} cannot be read ({err}); restore it, or delete it to "
                             "resume without checking the settings") from None
        # parameters added to a class since the search started are not a difference
        difference = first_difference(saved, _json_safe(identity), new_init_args_ok=True)
        if difference is not None:
            where, before, now = difference
            raise ValueError(
                f"cannot resume the search in {self.run_dir}: {where} was {before!r} when it "
                f"started, now {now!r}. A resumed search must measure and sample as the "
                f"journaled one did (its settings are in {path.name} and config.yaml); resume "
                "with those settings, or start a new --run_dir")

    def save_identity(self, identity: dict[str, Any]) -> None:
        path = self.run_dir / IDENTITY_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(_json_safe(identity), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def first_difference(before: Any, now: Any, where: str = "", *,
                     new_init_args_ok: bool = False) -> tuple[str, Any, Any] | None:
    """``(dotted path, value before, value now)`` of the first difference between two JSON
    values (mappings in sorted key order; a missing key reads as ``<absent>``), or None.

    ``new_init_args_ok``: a key of an ``init_args`` mapping that only ``now`` has is no
    difference: a parameter a newer version of a class added (with its default; e.g. a
    space's ``ops``), which a search started before it was added never had."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in sorted(set(before) | set(now)):
            if key not in before and new_init_args_ok and where.endswith("init_args"):
                continue
            if key not in before or key not in now:
                return (f"{where}.{key}".lstrip("."), before.get(key, "<absent>"),
                        now.get(key, "<absent>"))
            found = first_difference(before[key], now[key], f"{where}.{key}",
                                     new_init_args_ok=new_init_args_ok)
            if found is not None:
                return found
        return None
    if isinstance(before, list) and isinstance(now, list) and len(before) == len(now):
        for i, (b, n) in enumerate(zip(before, now)):
            found = first_difference(b, n, f"{where}[{i}]", new_init_args_ok=new_init_args_ok)
            if found is not None:
                return found
        return None
    return None if before == now else (where.lstrip(".") or "<the settings>", before, now)


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``candidates.jsonl`` (or of the one in a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / JOURNAL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no search journal at {str(path)!r}")
    journal = Journal(path.parent)
    journal.path = path
    return journal.read()


def without_timing(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records minus their machine-dependent ``timing`` field (to compare two runs)."""
    return [{k: v for k, v in r.items() if k != TIMING_FIELD} for r in records]
