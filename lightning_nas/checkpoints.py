"""Reading user-supplied checkpoint files without running code from them.

A ``.ckpt`` written by ``torch.save`` is a zip holding a pickle; unpickling an arbitrary file
can call any function (a crafted ``__reduce__`` runs ``os.system``). Every file the project
reads on a user's behalf (``export --ckpt``, ``export --subnet``, ``--model.init_from``,
``--ckpt_path``, a supernet checkpoint of a specialisation search, a search's saved state)
goes through :func:`load_checkpoint`, which uses ``torch.load(weights_only=True)``: tensors,
plain containers and scalars only, plus the few extra types in :data:`ALLOWED_GLOBALS`.
A file that needs anything else is refused with :class:`UnsafeCheckpointError` before any of
its objects is built.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

#: Types beyond torch's weights-only defaults that the project's own checkpoints may hold.
#: Lightning's checkpoints of lightning-nas strategies need none today (hyper-parameters are
#: plain values, RNG states are tuples and tensors); keep this list short and reasoned.
ALLOWED_GLOBALS: list[Any] = []

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, of the wrong kind or unsafe to load."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle needs objects beyond tensors and plain data (never built)."""


def load_checkpoint(path: str | Path, *, what: str = "checkpoint",
                    require_state_dict: bool = True, advice: str | None = None
                    ) -> dict[str, Any]:
    """Load ``path`` weights-only on the CPU, with errors that say what to do.

    Args:
        path: the file.
        what: how the messages call the file (e.g. ``"search state"``).
        require_state_dict: the file must be a Lightning checkpoint (a dict with a
            ``state_dict``).
        advice: what to do about an unreadable or unsafe file (default: use another
            checkpoint of the run / a file written by lightning-nas).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle refers to a function or class outside the
            weights-only allow-list (nothing of it was executed).
        CheckpointError: truncated, not a torch file, or not a Lightning checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        name = found.group(1) if found else "a Python object"
        raise UnsafeCheckpointError(
            f"refusing to load {what} {str(path)!r}: it asks to build {name}, which a "
            "lightning-nas checkpoint never holds (only tensors and plain data are loaded, so "
            "nothing in the file was run). " + (advice or "Use a file written by lightning-nas; "
                                                "for another tool's file, load it yourself "
                                                "where you trust it and save its state_dict")
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"cannot read {what} {str(path)!r} ({type(err).__name__}: {_first_line(err)}); "
            "the file is truncated or not a torch checkpoint. " + (
                advice or "Use another one (e.g. from the run's checkpoints/ folder)")
        ) from None
    if require_state_dict and (not isinstance(checkpoint, dict) or "state_dict" not in checkpoint):
        raise CheckpointError(f"{str(path)!r} is not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def checkpoint_strategy(checkpoint: dict[str, Any]) -> str | None:
    """The ``module.Class`` of the strategy that wrote a lightning-nas checkpoint (or None)."""
    info = checkpoint.get("lightning_nas")
    if isinstance(info, dict) and isinstance(info.get("strategy"), str):
        return info["strategy"]
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict) and isinstance(hparams.get("_class_path"), str):
        return hparams["_class_path"]
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else ""
