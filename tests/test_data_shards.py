"""ShardedImageDataModule: WebDataset-style tar shards read by random access give the same
batches as the same images in class folders."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from streaming_helpers import make_image_folder

from lightning_nas.data import ShardedImageDataModule, StreamingImageDataModule, scan_shards
from lightning_nas.data.image_folder import UnreadableImageError


def write_shards(folder, out, split, per_shard):
    """The images of ``folder/split/<class>/`` in the folder module's order (class, then
    file name) as ``<key>.jpg|png`` + ``<key>.cls`` samples, ``per_shard`` per tar."""
    classes = sorted(p.name for p in (folder / split).iterdir())
    files = [(c, f) for c in classes for f in sorted((folder / split / c).iterdir())]
    (out / split).mkdir(parents=True)
    for s in range(0, len(files), per_shard):
        with tarfile.open(out / split / f"shard-{s // per_shard:06d}.tar", "w") as tar:
            for cls, path in files[s:s + per_shard]:
                key = f"{cls}_{path.stem}"
                for name, data in ((f"{key}{path.suffix}", path.read_bytes()),
                                   (f"{key}.cls", str(classes.index(cls)).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    folder = make_image_folder(tmp_path_factory.mktemp("folder"), classes=3, per_class=6)
    shards = tmp_path_factory.mktemp("shards")
    write_shards(folder, shards, "train", per_shard=7)
    write_shards(folder, shards, "val", per_shard=100)
    return folder, shards


def batches(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def test_scan_indexes_samples_across_shards(both):
    _, shards = both
    index = scan_shards(shards / "train")
    assert len(index.shards) == 3 and len(index) == 18
    assert index.labels.tolist() == [c for c in range(3) for _ in range(6)]
    assert index.shard.tolist() == [i // 7 for i in range(18)]
    assert index.where(7).endswith("shard-000001.tar:class_1_001.jpg")
    limited = scan_shards(shards / "train", max_per_class=2)
    assert limited.labels.tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("search", [False, True])
def test_shards_give_the_folder_modules_batches(both, search):
    folder, shards = both
    kw = {"image_size": 16, "batch_size": 4, "num_workers": 0, "search": search, "seed": 2}
    from_folder = StreamingImageDataModule(root=str(folder), **kw)
    from_shards = ShardedImageDataModule(root=str(shards), **kw)
    assert from_shards.num_classes == 3  # from the .cls members
    for dm in (from_folder, from_shards):
        dm.setup("fit")
    assert from_shards.split_sizes() == from_folder.split_sizes()
    a, b = from_folder.train_dataloader(), from_shards.train_dataloader()
    pairs = zip(a.values(), b.values()) if search else [(a, b)]
    for la, lb in pairs:
        xa, ya = batches(la)
        xb, yb = batches(lb)
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    xa, ya = batches(from_folder.val_dataloader())
    xb, yb = batches(from_shards.val_dataloader())
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_shard_errors_name_the_member(tmp_path, both):
    folder, _ = both
    with pytest.raises(FileNotFoundError, match="shard folder"):
        ShardedImageDataModule(root=str(tmp_path / "none"), num_classes=3)
    (tmp_path / "a" / "train").mkdir(parents=True)
    (tmp_path / "a" / "val").mkdir()
    with tarfile.open(tmp_path / "a" / "train" / "0.tar", "w") as tar:
        info = tarfile.TarInfo("x1.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ValueError, match=r"0\.tar:x1\.jpg has no x1\.cls"):
        scan_shards(tmp_path / "a" / "train")
    # an undecodable image in a shard is named by shard and member
    bad = write_shards(folder, tmp_path / "b", "train", per_shard=100)
    write_shards(folder, bad, "val", per_shard=100)
    with tarfile.open(bad / "val" / "shard-000000.tar", "a") as tar:
        for name, data in (("zzz.jpg", b"not an image"), ("zzz.cls", b"1")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dm = ShardedImageDataModule(root=str(bad), num_classes=3, image_size=8, batch_size=4)
    dm.setup("fit")
    with pytest.raises(UnreadableImageError, match=r"shard-000000\.tar:zzz\.jpg"):
        batches(dm.val_dataloader())
    with pytest.raises(ValueError, match="num_classes is 2"):
        ShardedImageDataModule(root=str(bad), num_classes=2).setup("fit")


def test_shard_index_is_compact(both):
    _, shards = both
    index = scan_shards(shards / "train")
    per_sample = (index.shard.nbytes + index.offset.nbytes + index.size.nbytes
                  + index.labels.nbytes) / len(index)
    assert per_sample == 4 + 8 + 8 + 2
    assert np.all(index.size > 0)
