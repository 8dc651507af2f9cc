"""Architecture pictures and alpha heatmaps: the labels drawn are the genotype's ops, the PNGs
have the documented names and real content, and the ArchPictures callback writes them in a
tiny DARTS run and logs images and the genotype table to an offline W&B run."""

from __future__ import annotations

import json
import random
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_nas.callbacks.pictures import ArchPictures
from lightning_nas.pictures import (
    _overlap,
    alpha_heatmap,
    arch_pictures,
    draw_nb201_cell,
    read_alpha_records,
    save_alpha_heatmap,
    save_arch_pictures,
)
from lightning_nas.spaces.darts import PRESETS, DartsSpace, Genotype
from lightning_nas.spaces.mobilenet import MobileNetV3Space
from lightning_nas.spaces.nb201 import NB201Space

PRIMS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
         "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


def edge_labels(fig) -> list[str]:
    """The op labels of a cell figure, in drawing order (Text objects with gid 'edge:...')."""
    return [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("edge:")]


def assert_labels_apart(fig) -> None:
    """No edge label's box overlaps another label's or a node's."""
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t.get_window_extent(renderer) for t in ax.texts
              if (t.get_gid() or "").startswith("edge:")]
    nodes = [p.get_window_extent(renderer) for p in ax.patches if type(p).__name__ == "Circle"]
    for i, box in enumerate(labels):
        assert all(_overlap(box, other) == 0 for other in labels[i + 1:] + nodes)


def assert_real_png(path: Path, min_bytes: int = 5000) -> None:
    """A PNG of non-trivial size whose pixels are not all one colour."""
    assert path.is_file() and path.stat().st_size > min_bytes, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 300 and image.height >= 200
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24)  # [(count, colour), ...]
    assert len(colours) > 20  # text, arrows, fills: not a blank image
    assert max(count for count, _ in colours) < 0.99 * rgb.width * rgb.height


def test_darts_v2_cells_are_labelled_with_the_genotype_ops_in_order():
    genotype = Genotype.from_arch(PRESETS["DARTS_V2"])
    figures = arch_pictures(DartsSpace(), PRESETS["DARTS_V2"])
    assert list(figures) == ["cell_normal", "cell_reduce"]
    for name, edges in (("cell_normal", genotype.normal), ("cell_reduce", genotype.reduce)):
        fig = figures[name]
        assert edge_labels(fig) == [op for op, _ in edges]
        assert len(edge_labels(fig)) == 8
        assert_labels_apart(fig)
        nodes = {t.get_gid(): t.get_text() for t in fig.axes[0].texts
                 if (t.get_gid() or "").startswith("node:")}
        assert nodes == {"node:0": "$c_{k-2}$", "node:1": "$c_{k-1}$", "node:2": "0",
                         "node:3": "1", "node:4": "2", "node:5": "3", "node:out": "$c_{k}$"}


def test_five_node_cell_with_a_repeated_input_keeps_labels_apart():
    genotype = Genotype.from_arch(PRESETS["ENAS"])  # node 2 takes input 1 twice
    fig = arch_pictures(DartsSpace(), PRESETS["ENAS"])["cell_normal"]
    assert edge_labels(fig) == [op for op, _ in genotype.normal]
    assert_labels_apart(fig)


def test_nb201_cell_labels_the_edges_that_are_not_none():
    space = NB201Space()
    full = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
                       "|skip_connect~0|nor_conv_1x1~1|skip_connect~2|")
    fig = arch_pictures(space, full)["cell"]
    assert edge_labels(fig) == ["nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3",
                                "skip_connect", "nor_conv_1x1", "skip_connect"]
    assert_labels_apart(fig)
    sparse = space.parse("|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|"
                         "avg_pool_3x3~2|")
    fig = draw_nb201_cell(sparse)
    assert edge_labels(fig) == ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"]
    dashed = [p for p in fig.axes[0].patches if p.get_linestyle() == "--"]
    assert len(dashed) == 2  # the 'none' edges: faint and dashed, no label


def test_pictures_are_written_with_the_documented_names(tmp_path):
    darts = save_arch_pictures(DartsSpace(), PRESETS["DARTS_V2"], tmp_path / "darts")
    nb201 = save_arch_pictures(NB201Space(), NB201Space().sample(random.Random(0)),
                               tmp_path / "nb201")
    mobilenet = MobileNetV3Space()
    arch = mobilenet.make(160, [2, 3, 4, 2, 3], [3, 5, 7, 3] * 5, [3, 4, 6, 6] * 5)
    mbv3 = save_arch_pictures(mobilenet, arch, tmp_path / "mbv3")
    assert [p.name for p in darts] == ["cell_normal.png", "cell_reduce.png"]
    assert [p.name for p in nb201] == ["cell.png"]
    assert [p.name for p in mbv3] == ["arch.png"]
    for path in [*darts, *nb201, *mbv3]:
        assert_real_png(path)
    assert sorted(p.name for p in tmp_path.rglob("*")
                  if p.is_file()) == ["arch.png", "cell.png", "cell_normal.png",
                                      "cell_reduce.png"]  # no temporary files left
    # the MobileNet strip: one box text per active block, the resolution in the title
    fig = arch_pictures(mobilenet, arch)["arch"]
    blocks = [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("block:")]
    assert len(blocks) == 2 + 3 + 4 + 2 + 3 and blocks[:3] == ["k3\ne3", "k5\ne4", "k3\ne3"]
    assert "160x160" in fig.axes[0].get_title()
    # a space without pictures: nothing, no error
    other = SimpleNamespace(name="other")
    assert arch_pictures(other, PRESETS["DARTS_V2"]) == {}
    assert save_arch_pictures(other, PRESETS["DARTS_V2"], tmp_path / "none") == []


NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def synthetic_records(epochs: int, cells=("normal", "reduce"), edges=14, primitives=PRIMS,
                      seed=0):
    """History records with softmaxed random alphas that sharpen over the epochs."""
    rng = np.random.default_rng(seed)
    records = []
    for epoch in range(epochs):
        alphas = {}
        for cell in cells:
            logits = rng.normal(size=(edges, len(primitives))) * (1 + 2 * epoch)
            probs = np.exp(logits - logits.max(1, keepdims=True))
            alphas[cell] = (probs / probs.sum(1, keepdims=True)).tolist()
        records.append({"epoch": epoch, "primitives": primitives, "alphas": alphas})
    return records


@pytest.mark.parametrize("epochs, cells, edges, primitives", [
    (1, ("cell",), 6, NB201_OPS),  # NB201: one cell type, 6 edges, 5 ops
    (3, ("normal", "reduce"), 14, PRIMS),  # the DARTS space
])
def test_alpha_heatmap_from_synthetic_records(tmp_path, epochs, cells, edges, primitives):
    records = synthetic_records(epochs, cells, edges, primitives)
    # a history.jsonl with a record without alphas, a repeated epoch and a cut-off line
    history_file = tmp_path / "history.jsonl"
    lines = [json.dumps({"epoch": -1, "string": "no alphas"})]
    lines += [json.dumps(r) for r in records[::-1]] + [json.dumps(records[-1]),
                                                       '{"epoch": 9, "alph']
    history_file.write_text("\n".join(lines) + "\n")
    assert [r["epoch"] for r in read_alpha_records(history_file)] == list(range(epochs))

    fig = alpha_heatmap(read_alpha_records(history_file)[::-1])  # any order: sorted by epoch
    heatmaps = [ax for ax in fig.axes if ax.images]
    # per cell type: the last epoch (edges x ops) and the history (edges x epochs)
    assert len(heatmaps) == 2 * len(cells)
    cell = cells[0]
    final = np.asarray(records[-1]["alphas"][cell])
    top = next(ax for ax in heatmaps if ax.get_title().startswith(f"{cell}: softmax"))
    np.testing.assert_allclose(top.images[0].get_array(), final)
    assert f"epoch {epochs - 1}" in top.get_title()
    values = [t.get_text() for t in top.texts]
    assert len(values) == edges * len(primitives) and values[0] == f"{final[0, 0]:.2f}"
    assert [t.get_text() for t in top.get_yticklabels()][:3] == (
        ["1<-0", "2<-0", "2<-1"] if cell == "cell" else ["2<-0", "2<-1", "3<-0"])
    history = next(ax for ax in heatmaps if ax.get_title().startswith(f"{cell}: weight"))
    track = np.asarray(history.images[0].get_array())
    assert track.shape == (edges, epochs)
    np.testing.assert_allclose(track[:, -1], final[:, 1:].max(1))  # 'none' left out
    if epochs == 1:
        assert_real_png(save_alpha_heatmap(history_file, tmp_path / "alphas.png"))


def test_alpha_heatmap_without_alphas_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="alphas"):
        alpha_heatmap([{"epoch": 0, "string": "x"}])
    (tmp_path / "history.jsonl").write_text(json.dumps({"epoch": 0}) + "\n")
    with pytest.raises(ValueError, match="no record"):
        save_alpha_heatmap(tmp_path / "history.jsonl", tmp_path / "alphas.png")


class FakeModule:
    """What ArchPictures reads from a strategy: space, current_arch, arch_summary."""

    space = NB201Space()

    def __init__(self):
        self.arch = self.space.sample(random.Random(1))

    def current_arch(self):
        return self.arch

    def arch_summary(self):
        return {"primitives": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                               "avg_pool_3x3"], "alphas": {"cell": [[0.2] * 5] * 6}}


def test_callback_state_resume_every_n_and_drawing_failure(tmp_path, monkeypatch):
    callback = ArchPictures(every_n_epochs=2, dirpath=str(tmp_path / "out"))
    module = FakeModule()
    trainer = SimpleNamespace(current_epoch=0, global_step=0, is_global_zero=True, loggers=[])
    callback.on_train_epoch_end(trainer, module)
    assert not (tmp_path / "out").exists()  # epoch 0 of every 2: nothing drawn
    trainer.current_epoch = 1
    callback.on_train_epoch_end(trainer, module)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alphas.png", "cell.png"]
    assert [r["epoch"] for r in callback.records] == [0, 1]
    text = module.space.to_string(module.arch)
    assert callback.genotypes == [[0, text], [1, text]]
    # the state goes through a weights-only checkpoint; a resume repeats epoch 1
    path = tmp_path / "state.pt"
    torch.save(callback.state_dict(), path)
    resumed = ArchPictures(every_n_epochs=2, dirpath=str(tmp_path / "out"))
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert resumed.records == callback.records and resumed.genotypes == callback.genotypes
    resumed.on_train_epoch_end(trainer, module)
    assert [r["epoch"] for r in resumed.records] == [0, 1]
    # a drawing failure is warned about once and never raised
    import lightning_nas.pictures as pictures

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(pictures, "save_arch_pictures", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in (3, 5):
            trainer.current_epoch = epoch
            resumed.on_train_epoch_end(trainer, module)
    messages = [str(w.message) for w in caught if "ArchPictures" in str(w.message)]
    assert len(messages) == 1 and "no fonts" in messages[0]
    assert [r["epoch"] for r in resumed.records] == [0, 1, 3, 5]
    # not rank 0: nothing written
    trainer.is_global_zero, trainer.current_epoch = False, 7
    ArchPictures(dirpath=str(tmp_path / "rank1")).on_train_epoch_end(trainer, module)
    assert not (tmp_path / "rank1").exists()
    with pytest.raises(ValueError, match="every_n_epochs"):
        ArchPictures(every_n_epochs=0)


def test_callback_in_a_darts_run_with_offline_wandb(tmp_path, offline_wandb):
    wandb = pytest.importorskip("wandb")
    import lightning as L
    from lightning.pytorch.loggers import WandbLogger

    from lightning_nas.data import SyntheticDataModule
    from lightning_nas.strategies.darts import DartsSearch

    save_dir = offline_wandb

    model = DartsSearch(space=DartsSpace(), num_classes=4, in_channels=3, channels=4, layers=3,
                        checkpoint_cells=0, channels_last=False, seed=0)
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=32,
                               test_size=8, batch_size=16, search=True, seed=0)
    logger = WandbLogger(project="lightning-nas-test", save_dir=str(save_dir), offline=True)
    callback = ArchPictures()
    trainer = L.Trainer(max_epochs=2, logger=logger, callbacks=[callback],
                        default_root_dir=tmp_path / "root", limit_train_batches=1,
                        limit_val_batches=1, num_sanity_val_steps=0, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        accelerator="cpu", devices=1)
    try:
        trainer.fit(model, data)
    finally:
        wandb.finish()
        wandb.teardown()

    # the run folder (the logger's save_dir) has arch.json and the pictures next to it
    assert (save_dir / "arch.json").is_file()
    for name in ("cell_normal.png", "cell_reduce.png", "alphas.png"):
        assert_real_png(save_dir / name)
    assert [r["epoch"] for r in callback.records] == [0, 1]
    strings = [json.loads(line)["string"]
               for line in (save_dir / "history.jsonl").read_text().splitlines()]
    assert [row[1] for row in callback.genotypes] == strings

    runs = sorted((save_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    media = runs[0] / "files" / "media"
    for name in ("cell_normal", "cell_reduce", "alphas"):
        images = sorted((media / "images" / "arch").glob(f"{name}_*.png"))
        assert len(images) == 2, (name, images)  # one per epoch
        assert_real_png(images[-1])
    tables = [json.loads(p.read_text())
              for p in (media / "table" / "arch").glob("genotype_*.table.json")]
    assert len(tables) == 2
    assert all(t["columns"] == ["epoch", "architecture"] for t in tables)
    rows = max((t["data"] for t in tables), key=len)
    assert rows == [[0, strings[0]], [1, strings[1]]]  # accumulated over the epochs
    assert rows[1][1].startswith("Genotype(normal=[")
    # logged like Lightning's metrics: with trainer/global_step
    raw = next(runs[0].glob("*.wandb"))
    for _ in range(100):
        if raw.stat().st_size > 100:
            break
        time.sleep(0.1)
    records = raw.read_bytes()
    assert b"arch/genotype" in records and b"arch/cell_normal" in records
    assert b"trainer/global_step" in records
