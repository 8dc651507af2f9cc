"""MNIST from the official gzipped IDX files or from an ``.npz`` of uint8 arrays.

IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code
(0x08 = unsigned byte), the number of dimensions, then one big-endian uint32 per dimension
and the row-major data. Image files are (N, 28, 28), label files (N,).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from lightning_nas.data.base import ImageDataModule

__all__ = ["MNISTDataModule", "read_idx"]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped when the name ends in ``.gz``) into a uint8 array.

    Args:
        path: e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        uint8 array of the shape stored in the header.

    Raises:
        ValueError: bad magic number, a type other than unsigned byte, or a size mismatch.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX type code {raw[2]:#04x}, only 0x08 (unsigned byte) is "
                         "supported")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape).copy()  # writable (frombuffer views are read-only)


class MNISTDataModule(ImageDataModule):
    """MNIST (60,000 train / 10,000 test, 28x28 grayscale, 10 classes).

    Reads either ``npz`` (arrays ``x_train`` (N, 28, 28) uint8, ``y_train``, ``x_test``,
    ``y_test``, e.g. ``../shared/data/mnist/mnist_uint8.npz``) or the four official gzipped IDX
    files in ``root``. With ``download=True`` missing IDX files are fetched from ``base_url``
    (PyTorch's MNIST mirror; yann.lecun.com often refuses downloads) and each is checked
    against its MD5 in ``md5s``; without it a missing file raises ``FileNotFoundError``
    saying where to put it. Normalisation: mean 0.1307, std 0.3081. Default augmentation is a
    random crop with 2 pixels of padding (small shifts); no flips (digits are not symmetric).

    Args:
        root: folder with the IDX files (created on download).
        npz: path of an ``.npz`` with the four arrays; when given, ``root``/``download`` are
            not used.
        download: fetch missing IDX files.
        crop_padding: random-crop padding in pixels.
        hflip: random horizontal flip.
        **kwargs: :class:`~lightning_nas.data.base.ImageDataModule` arguments.
    """

    num_classes = 10
    in_channels = 1
    image_size = 28
    default_mean = (0.1307,)
    default_std = (0.3081,)
    base_url: ClassVar[str] = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    # role -> official file name
    files: ClassVar[dict[str, str]] = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    # file name -> MD5 of the official gzipped file (as published by torchvision and others)
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }

    def __init__(self, *, root: str = "data/mnist", npz: str | None = None,
                 download: bool = False, crop_padding: int = 2, hflip: bool = False,
                 **kwargs) -> None:
        self.root = Path(root).expanduser()
        self.npz = None if npz is None else Path(npz).expanduser()
        self.download = bool(download)
        super().__init__(crop_padding=crop_padding, hflip=hflip, **kwargs)

    def _ensure_files(self) -> None:
        if self.npz is not None:
            if not self.npz.is_file():
                raise FileNotFoundError(f"MNIST npz not found: {self.npz} does not exist "
                                        "(arrays x_train, y_train, x_test, y_test expected)")
            return
        for name in self.files.values():
            self._fetch_or_explain(self.root / name, url=self.base_url + name,
                                   md5=self.md5s.get(name), download=self.download,
                                   what="MNIST file")

    def prepare_data(self) -> None:
        """Download missing IDX files when ``download=True`` (rank 0 only)."""
        self._ensure_files()

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self._ensure_files()
        if self.npz is not None:
            with np.load(self.npz) as data:
                missing = [k for k in self.files if k not in data.files]
                if missing:
                    raise ValueError(f"{self.npz} lacks the arrays {missing} (has {data.files})")
                arrays = {k: data[k] for k in self.files}
        else:
            arrays = {k: read_idx(self.root / name) for k, name in self.files.items()}
        out = []
        for split in ("train", "test"):
            x = np.asarray(arrays[f"x_{split}"])
            if x.dtype != np.uint8:
                raise ValueError(f"MNIST x_{split} must be uint8, got {x.dtype}")
            if x.ndim == 3:  # (N, 28, 28) -> (N, 1, 28, 28)
                x = x[:, None]
            out += [torch.from_numpy(np.ascontiguousarray(x)),
                    torch.from_numpy(np.asarray(arrays[f"y_{split}"]).astype(np.int64))]
        return tuple(out)  # type: ignore[return-value]
