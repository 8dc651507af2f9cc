"""ParetoCallback and W&B logging, offline, no account, files checked on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lightning_nas.callbacks.pareto import ParetoCallback, log_pareto_to_wandb

wandb = pytest.importorskip("wandb")
L = pytest.importorskip("lightning")

CANDS = [
    {"arch": "|a|", "accuracy": 0.80, "latency_ms": 5.0, "params": 1.0e6, "flops": 1e8},
    {"arch": "|b|", "accuracy": 0.90, "latency_ms": 10.0, "params": 4.0e6, "flops": 6e8},
    {"arch": "|c|", "accuracy": 0.70, "latency_ms": 12.0, "params": 5.0e6, "flops": 7e8},
]


def finish_wandb() -> None:
    """Finish the run and stop the W&B service, so the ``.wandb`` file is flushed to disk."""
    wandb.finish()
    wandb.teardown()


def run_records(folder: Path) -> bytes:
    """Raw bytes of the run's ``.wandb`` file (protobuf records; keys appear verbatim)."""
    path = next(folder.glob("*.wandb"))
    for _ in range(100):  # teardown flushes it; wait a little more on a loaded machine
        if path.stat().st_size > 100:
            break
        time.sleep(0.1)
    return path.read_bytes()


def run_folder(wandb_dir: Path) -> Path:
    runs = sorted((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_log_pareto_to_wandb_offline(offline_wandb):
    run = wandb.init(project="lightning-nas-test", dir=str(offline_wandb))
    summary = log_pareto_to_wandb(run, CANDS, {"accuracy": "max", "latency_ms": "min"},
                                  reference=[0.0, 20.0])
    finish_wandb()
    assert summary["best"]["arch"] == "|b|"
    folder = run_folder(offline_wandb)
    tables = list((folder / "files" / "media" / "table" / "pareto").glob("candidates_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["index", "arch", "accuracy", "latency_ms", "params", "flops",
                                "objective", "on_front", "front_rank"]
    assert table["data"][1] == [1, "|b|", 0.9, 10.0, 4.0e6, 6e8, 0.9, True, 0]
    assert table["data"][2][-2:] == [False, 1]
    images = list((folder / "files" / "media" / "images" / "pareto").glob("front_*.png"))
    assert len(images) == 1 and images[0].stat().st_size > 1000
    raw = run_records(folder)
    assert b"wandb/scatter/v0" in raw  # the scatter chart over the table
    assert b"pareto/best_arch" in raw and b'"|b|"' in raw  # summary
    assert b"pareto/best/latency_ms" in raw
    assert b"pareto/hypervolume" in raw


class TinySearch(L.LightningModule):
    """Scores two fake 'sub-networks' each validation epoch and hands them to the callback."""

    def __init__(self, pareto: ParetoCallback):
        super().__init__()
        self.net = nn.Linear(4, 2)
        self.pareto = pareto
        self.written_before_epoch: list[int | None] = []

    def on_train_epoch_start(self):
        last = self.pareto.last_summary
        self.written_before_epoch.append(last["n_candidates"] if last else None)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self.net(x), y))

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        epoch = self.current_epoch
        self.pareto.add({"arch": f"wide-{epoch}", "accuracy": 0.5 + 0.1 * epoch,
                         "latency_ms": 4.0, "params": 2000, "flops": 4e4})
        self.pareto.add({"arch": "narrow", "accuracy": 0.4 + 0.05 * epoch,
                         "latency_ms": 1.0, "params": 500, "flops": 1e4})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    return torch.utils.data.DataLoader(data, batch_size=4)


def test_callback_with_wandb_logger(offline_wandb, tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    pareto = ParetoCallback(reference=[0.0, 10.0])
    logger = WandbLogger(project="lightning-nas-test", save_dir=str(offline_wandb),
                         offline=True)
    trainer = L.Trainer(default_root_dir=tmp_path / "root", max_epochs=2, logger=logger,
                        callbacks=[pareto], limit_train_batches=1, limit_val_batches=1,
                        num_sanity_val_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        accelerator="cpu", devices=1)
    module = TinySearch(pareto)
    trainer.fit(module, loader(), loader())
    finish_wandb()
    # epoch 0's records were written when its validation ended, before epoch 1 started
    assert module.written_before_epoch == [None, 2]

    # the run folder is the logger's save_dir (the same place ArchExport writes arch.json)
    out = offline_wandb
    data = json.loads((out / "pareto.json").read_text())
    # "narrow" was re-scored in epoch 1 and replaced; wide-0 is dominated by wide-1
    assert [r["arch"] for r in pareto.records] == ["wide-0", "wide-1", "narrow"]
    assert pareto.records[-1]["accuracy"] == pytest.approx(0.45)
    assert {r["arch"] for r in data["front"]} == {"wide-1", "narrow"}
    assert data["best"]["arch"] == "wide-1" and (out / "pareto.png").is_file()
    folder = run_folder(offline_wandb)
    tables = sorted((folder / "files" / "media" / "table" / "pareto").glob("*.table.json"))
    assert len(tables) == 2  # one per validation epoch, each with that epoch's records
    rows = sorted(len(json.loads(t.read_text())["data"]) for t in tables)
    assert rows == [2, 3]
    assert list((folder / "files" / "media" / "images" / "pareto").glob("front_*.png"))
    raw = run_records(folder)
    assert b"pareto/best_arch" in raw and b'"wide-1"' in raw


def test_callback_without_wandb_rank_zero_and_state(tmp_path):
    pareto = ParetoCallback(dirpath=str(tmp_path / "out"), objectives={"accuracy": "max"})
    assert pareto.write() is None  # nothing collected yet
    pareto.extend(CANDS)
    not_zero = SimpleNamespace(is_global_zero=False)
    assert pareto.write(not_zero) is None and not (tmp_path / "out").exists()
    summary = pareto.write()
    assert summary["best"]["arch"] == "|b|" and (tmp_path / "out" / "pareto.json").is_file()

    restored = ParetoCallback(objectives={"accuracy": "max"})
    restored.load_state_dict(pareto.state_dict())
    assert restored.records == pareto.records and len(restored) == 3
    with pytest.raises(ValueError, match="trainer or a dirpath"):
        restored.write()
    assert restored.write(dirpath=tmp_path / "again")["front"][0]["arch"] == "|b|"


def test_callback_add_errors_and_dedupe_off():
    pareto = ParetoCallback()
    with pytest.raises(KeyError, match="no 'arch'"):
        pareto.add({"accuracy": 0.5, "latency_ms": 1.0})
    with pytest.raises(KeyError, match=r"'latency_ms'.*keys: \['accuracy', 'arch'\]"):
        pareto.add({"arch": "x", "accuracy": 0.5})
    with pytest.raises(ValueError, match="accuracy = nan"):
        pareto.add({"arch": "x", "accuracy": float("nan"), "latency_ms": 1.0})
    with pytest.raises(ValueError, match="reference has 1 values"):
        ParetoCallback(reference=[0.0])
    keep_all = ParetoCallback(dedupe=False)
    keep_all.extend([CANDS[0], CANDS[0]])
    assert len(keep_all) == 2
