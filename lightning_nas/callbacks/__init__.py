"""Lightning callbacks: zero-cost scoring, learning-curve early stopping, architecture pictures.

Imported on first use (each pulls in Lightning and its estimation module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning_nas.callbacks.early_stopping import LearningCurveEarlyStopping
    from lightning_nas.callbacks.pictures import ArchPictures
    from lightning_nas.callbacks.zero_cost import ZeroCostScoring

__all__ = ["ArchPictures", "LearningCurveEarlyStopping", "ZeroCostScoring"]

_HOMES = {"ArchPictures": "lightning_nas.callbacks.pictures",
          "LearningCurveEarlyStopping": "lightning_nas.callbacks.early_stopping",
          "ZeroCostScoring": "lightning_nas.callbacks.zero_cost"}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
