"""Test-wide settings: one intra-op thread per process (tests use tiny networks, and DDP
tests start two processes on a 2-core machine), offline W&B, no accidental downloads."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)
