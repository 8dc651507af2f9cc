"""`lightning-nas fit --trainer.strategy ddp --trainer.devices 2` on CPU (gloo) through the
real command in a subprocess: Lightning's `ddp` (not `ddp_spawn`) re-launches the command
for rank 1, so this is how a user runs it with torchrun-style launching on one machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_with_the_ddp_strategy_through_the_cli(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lightning_nas.cli", "fit", "--config",
           str(ROOT / "configs/quickstart.yaml"), "--trainer.default_root_dir", str(run),
           "--trainer.logger.init_args.save_dir", str(run), "--trainer.enable_progress_bar",
           "false", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
           "--trainer.devices", "2", "--trainer.max_epochs", "1",
           "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
           "--model.init_args.channels", "4", "--model.init_args.layers", "3",
           "--model.init_args.warmup_epochs", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "All distributed processes registered. Starting with 2 processes" in \
        proc.stderr + proc.stdout
    # rank 0 wrote the run folder once; the alphas are the same on both ranks (all-reduced)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0]
    arch = json.loads((run / "arch.json").read_text())
    assert arch["space"] == "darts"
    assert (run / "checkpoints" / "last.ckpt").is_file()
