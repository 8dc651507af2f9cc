"""Once-for-All under DDP on CPU (gloo, 2 processes): every rank trains the same subnets."""

import json

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from ofa_helpers import tiny_data, tiny_space

from lightning_nas.strategies.ofa import OnceForAll, Phase


class RecordPerRank(Callback):
    """Each rank writes the subnets it trained, its first labels and a weight checksum."""

    def __init__(self, out_dir):
        self.out_dir = str(out_dir)
        self.first_labels = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_labels is None:
            self.first_labels = batch[1].tolist()

    def on_train_end(self, trainer, pl_module):
        weights = torch.cat([p.detach().reshape(-1) for p in pl_module.supernet.parameters()])
        record = {"sampled": list(pl_module.sampled), "labels": self.first_labels,
                  "weights": weights.tolist()[:4000], "weight_sum": float(weights.double().sum())}
        with open(f"{self.out_dir}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(record, f)


def test_ddp_every_rank_trains_the_same_subnets_and_weights(tmp_path):
    phases = [Phase("full", 1, 0.05, resolutions=[6, 8]),
              Phase("elastic", 2, 0.02, kernels=[3, 5, 7], depths=[1, 2], expands=[3, 4, 6],
                    resolutions=[6, 8], subnets_per_step=2, sandwich=False)]
    model = OnceForAll(num_classes=4, in_channels=3, space=tiny_space(), phases=phases,
                       bn_calibration_batches=1, channels_last=False, seed=0)
    trainer = L.Trainer(accelerator="cpu", strategy="ddp_spawn", devices=2, max_epochs=3,
                        default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, limit_val_batches=1,
                        callbacks=[RecordPerRank(tmp_path)])
    trainer.fit(model, tiny_data(train_size=64))
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["labels"] != r1["labels"]  # the ranks saw different data
    assert len(r0["sampled"]) == 3 * 4  # 64 images / 2 ranks / batch 8 = 4 steps per epoch
    assert r0["sampled"] == r1["sampled"]  # ... but trained the same subnets at every step
    assert len({s for step in r0["sampled"][4:] for s in step}) > 4  # and they vary
    assert r0["weights"] == r1["weights"] and r0["weight_sum"] == r1["weight_sum"]
