"""MNIST from IDX files (built small here), from an npz, and the real shared npz if present."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.data import ChecksumError, MNISTDataModule, read_idx, shared_data_dir


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_mnist_files(folder: Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in MNISTDataModule.files.items():
        _write_idx(folder / name, arrays[role])
    return arrays


def test_read_idx_round_trip_and_bad_magic(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")


def test_reads_idx_folder(tmp_path):
    arrays = make_mnist_files(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), batch_size=5)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 28)
    assert (dm.crop_padding, dm.hflip) == (2, False)
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 20, "test": 10}
    assert torch.equal(dm._train_set.images[:, 0], torch.from_numpy(arrays["x_train"]))
    assert dm._test_set.labels.tolist() == arrays["y_test"].tolist()
    assert dm.mean == (0.1307,) and dm.std == (0.3081,)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64


def test_reads_npz(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "y_train": np.arange(12, dtype=np.uint8) % 10,
              "x_test": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "y_test": np.arange(4, dtype=np.uint8)}
    np.savez(tmp_path / "m.npz", **arrays)
    dm = MNISTDataModule(npz=str(tmp_path / "m.npz"), root="/nonexistent", search=True)
    dm.setup("fit")
    assert dm.split_sizes() == {"weights": 6, "arch": 6, "test": 4}
    assert torch.equal(dm._test_set.images[:, 0], torch.from_numpy(arrays["x_test"]))
    np.savez(tmp_path / "bad.npz", x_train=arrays["x_train"])
    with pytest.raises(ValueError, match="y_train"):
        MNISTDataModule(npz=str(tmp_path / "bad.npz")).setup()


def test_missing_file_says_what_to_do(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg
    assert "--data.download true" in msg and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg


def test_download_from_file_url_and_checksum_mismatch(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    arrays = make_mnist_files(mirror)
    md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in mirror.iterdir()}
    monkeypatch.setattr(MNISTDataModule, "base_url", mirror.as_uri() + "/")
    monkeypatch.setattr(MNISTDataModule, "md5s", md5s)
    dm = MNISTDataModule(root=str(tmp_path / "data"), download=True)
    dm.prepare_data()
    dm.setup("fit")
    assert torch.equal(dm._train_set.images[:, 0], torch.from_numpy(arrays["x_train"]))

    bad = dict(md5s, **{"t10k-labels-idx1-ubyte.gz": "f" * 32})
    monkeypatch.setattr(MNISTDataModule, "md5s", bad)
    root = tmp_path / "data2"
    with pytest.raises(ChecksumError, match="t10k-labels"):
        MNISTDataModule(root=str(root), download=True).prepare_data()
    assert "t10k-labels-idx1-ubyte.gz" not in {p.name for p in root.iterdir()}
    assert not any(p.name.endswith(".part") for p in root.iterdir())


def test_real_shared_npz():
    path = shared_data_dir() / "mnist" / "mnist_uint8.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    dm = MNISTDataModule(npz=str(path), batch_size=256, val_fraction=0.1)
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 54000, "val": 6000, "test": 10000}
    x = dm.transform_batch((dm._train_set.images[:10000], dm._train_set.labels[:10000]),
                           train=False)[0]
    # Published MNIST statistics normalise the training images to ~zero mean, unit std.
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1.0) < 0.02
