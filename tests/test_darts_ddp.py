"""DARTS under DDP on CPU (gloo, 2 processes): identical alphas, files from rank 0 only."""

import json

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lightning_nas.data import SyntheticDataModule
from lightning_nas.strategies.darts import DartsSearch


class GatherAlphas(Callback):
    """At the end of training, every rank's alphas and data are gathered to rank 0."""

    def __init__(self, out):
        self.out = str(out)
        self.first_labels = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_labels is None:
            self.first_labels = batch["arch"][1].clone()

    def on_train_end(self, trainer, pl_module):
        alphas = torch.stack([a.detach() for a in pl_module.alphas])  # (2, edges, ops)
        gathered = pl_module.all_gather(alphas)                        # (world, 2, edges, ops)
        labels = pl_module.all_gather(self.first_labels)               # (world, B)
        weight = pl_module.all_gather(pl_module.supernet.classifier.weight.detach())
        if trainer.is_global_zero:
            torch.save({"alphas": gathered, "labels": labels, "classifier": weight}, self.out)


def test_ddp_alphas_identical_on_both_ranks_and_only_rank0_writes(tmp_path):
    model = DartsSearch(num_classes=4, in_channels=3, channels=4, layers=3, seed=0,
                        checkpoint_cells=0, channels_last=False)
    init = torch.stack([a.detach().clone() for a in model.alphas])
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=64,
                               test_size=16, batch_size=8, search=True, seed=0, hflip=True)
    trainer = L.Trainer(accelerator="cpu", strategy="ddp_spawn", devices=2, max_epochs=2,
                        default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[GatherAlphas(tmp_path / "gathered.pt")])
    trainer.fit(model, data)

    result = torch.load(tmp_path / "gathered.pt")
    alphas = result["alphas"]
    assert alphas.shape[0] == 2
    # the ranks saw different data ...
    assert not torch.equal(result["labels"][0], result["labels"][1])
    # ... yet their alphas and weights are bit-identical, and they did move
    assert torch.equal(alphas[0], alphas[1])
    assert torch.equal(result["classifier"][0], result["classifier"][1])
    assert (alphas[0] - init).abs().max() > 1e-4
    # only rank 0 wrote the run files: one history line per epoch, not two
    history = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["epoch"] for h in history] == [0, 1]
    assert (tmp_path / "arch.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.json", "gathered.pt",
                                                          "history.jsonl"]
