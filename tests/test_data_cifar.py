"""CIFAR archives in the official python-pickle format, built small, read back; download."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.data import (
    ChecksumError,
    CIFAR10DataModule,
    CIFAR100DataModule,
    read_cifar_archive,
)


def _add(tar: tarfile.TarFile, name: str, obj) -> None:
    data = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_cifar_archive(path: Path, *, hundred: bool = False, per_batch: int = 3,
                       seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write a miniature archive in the official layout; return the expected arrays.

    Members are added in a shuffled order to check the reader does not depend on it.
    """
    rng = np.random.default_rng(seed)
    folder, label_key = (("cifar-100-python", b"fine_labels") if hundred
                         else ("cifar-10-batches-py", b"labels"))
    classes = 100 if hundred else 10
    names = {"train": ["train"], "test": ["test"]} if hundred else {
        "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    members, expected = [], {}
    for split, batch_names in names.items():
        xs, ys = [], []
        for name in batch_names:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, classes, per_batch).tolist()
            entry = {b"batch_label": name.encode(), label_key: labels, b"data": data,
                     b"filenames": [f"{i}.png".encode() for i in range(per_batch)]}
            if hundred:
                entry[b"coarse_labels"] = [c // 5 for c in labels]
            members.append((f"{folder}/{name}", entry))
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(np.asarray(labels))
        expected[split] = (np.concatenate(xs), np.concatenate(ys))
    members.append((f"{folder}/batches.meta", {b"label_names": [b"x"] * classes}))
    order = rng.permutation(len(members))
    with tarfile.open(path, "w:gz") as tar:
        for i in order:
            _add(tar, *members[i])
    return expected


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("cls", [CIFAR10DataModule, CIFAR100DataModule])
def test_reads_official_layout(tmp_path, cls):
    hundred = cls is CIFAR100DataModule
    expected = make_cifar_archive(tmp_path / cls.filename, hundred=hundred)
    dm = cls(root=str(tmp_path), batch_size=4)
    dm.setup("fit")
    n_train = 3 if hundred else 15
    assert dm.split_sizes() == {"train": n_train, "test": 3}
    assert torch.equal(dm._train_set.images, torch.from_numpy(expected["train"][0]))
    assert dm._train_set.labels.tolist() == expected["train"][1].tolist()
    assert torch.equal(dm._test_set.images, torch.from_numpy(expected["test"][0]))
    assert dm._test_set.labels.dtype == torch.int64
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (min(4, n_train), 3, 32, 32) and x.dtype == torch.uint8
    xo, _ = dm.transform_batch((x, y), train=True)
    assert xo.dtype == torch.float32 and xo.shape == x.shape


def test_pixel_layout_is_channel_major(tmp_path):
    """Row 0 of the official data holds 1024 red, then green, then blue values, row-major."""
    path = tmp_path / "cifar-10-python.tar.gz"
    expected = make_cifar_archive(path)
    arrays = read_cifar_archive(path, {"train": ["data_batch_1"]}, b"labels")
    flat = expected["train"][0][0].reshape(-1)
    img = arrays["train"][0][0]
    assert int(img[0, 0, 0]) == flat[0] and int(img[0, 0, 1]) == flat[1]
    assert int(img[0, 1, 0]) == flat[32] and int(img[1, 0, 0]) == flat[1024]
    assert int(img[2, 31, 31]) == flat[3071]


def test_defaults_and_stats():
    dm = CIFAR10DataModule(root="/nonexistent")
    assert (dm.crop_padding, dm.hflip, dm.cutout) == (4, True, 0)
    assert dm.mean == (0.4914, 0.4822, 0.4465) and dm.std == (0.2470, 0.2435, 0.2616)
    dm100 = CIFAR100DataModule(root="/nonexistent", cutout=16)
    assert dm100.cutout == 16 and dm100.mean == (0.5071, 0.4865, 0.4409)
    assert dm100.std == (0.2673, 0.2564, 0.2762)
    assert CIFAR10DataModule.md5 == "c58f30108f718f92721af3b95e74349a"
    assert CIFAR100DataModule.md5 == "eb9058c3a382ffc7106e4002c42a8d85"


def test_missing_archive_says_what_to_do(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path / "nowhere") in msg
    assert "--data.download true" in msg and "https://www.cs.toronto.edu/~kriz/" in msg
    with pytest.raises(FileNotFoundError):
        dm.setup("fit")


def test_download_from_file_url(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    expected = make_cifar_archive(mirror / "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10DataModule, "base_url", mirror.as_uri() + "/")
    monkeypatch.setattr(CIFAR10DataModule, "md5", _md5(mirror / "cifar-10-python.tar.gz"))
    root = tmp_path / "data"
    dm = CIFAR10DataModule(root=str(root), download=True)
    dm.prepare_data()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    dm.setup("fit")
    assert torch.equal(dm._test_set.images, torch.from_numpy(expected["test"][0]))


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_cifar_archive(mirror / "cifar-100-python.tar.gz", hundred=True)
    monkeypatch.setattr(CIFAR100DataModule, "base_url", mirror.as_uri() + "/")
    monkeypatch.setattr(CIFAR100DataModule, "md5", "0" * 32)
    root = tmp_path / "data"
    dm = CIFAR100DataModule(root=str(root), download=True)
    with pytest.raises(ChecksumError, match="MD5 mismatch.*expected 0{32}"):
        dm.prepare_data()
    assert list(root.iterdir()) == []


def test_missing_member_and_foreign_pickles_are_refused(tmp_path):
    path = tmp_path / "broken.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/data_batch_1",
             {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(ValueError, match="data_batch_2"):
        read_cifar_archive(path, {"train": ["data_batch_1", "data_batch_2"]}, b"labels")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/test_batch", {b"data": Evil(), b"labels": [0]})
    with pytest.raises(pickle.UnpicklingError, match="print"):
        read_cifar_archive(path, {"test": ["test_batch"]}, b"labels")
