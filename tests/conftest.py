"""Test-wide settings: one intra-op thread per process (tests use tiny networks, and DDP
tests start two processes on a 2-core machine), offline W&B, no accidental downloads."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode with every folder it writes under ``tmp_path``; yields the
    folder for a logger's ``save_dir`` (``tmp_path / "wb"``); finishes the run after."""
    wandb = pytest.importorskip("wandb")
    for var, sub in [("WANDB_DIR", "wb"), ("WANDB_CONFIG_DIR", "wbconfig"),
                     ("WANDB_CACHE_DIR", "wbcache"), ("WANDB_DATA_DIR", "wbdata")]:
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield tmp_path / "wb"
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


@pytest.fixture(autouse=True)
def _isolated_op_registry():
    """Ops a test registers (from Python or a YAML class_path entry run in-process) are
    forgotten after it: the registry is process-global, and a later test that builds every
    registered op must see only the built-ins and its own."""
    from lightning_nas.spaces import registry

    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
