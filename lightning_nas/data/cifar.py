"""CIFAR-10 and CIFAR-100 read straight from the official python-pickle ``.tar.gz`` archives.

Source: https://www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky 2009). The archive is never
extracted: the batch members are unpickled from the compressed stream. Each batch is a dict
with ``b"data"`` (N, 3072) uint8 rows (1024 red, 1024 green, 1024 blue values, row-major 32x32)
and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100) lists of ints.
"""

from __future__ import annotations

import pickle
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from lightning_nas.data.base import ImageDataModule

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "read_cifar_archive"]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and NumPy arrays.

    The CIFAR batches need nothing else; refusing other globals means a tampered archive cannot
    run code on load.
    """

    _allowed: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which a CIFAR "
                                     "batch never contains; the archive is not the official one")


def _get(entry: Mapping, key: bytes) -> Any:
    if key in entry:
        return entry[key]
    if key.decode() in entry:  # pickles written with str keys
        return entry[key.decode()]
    raise KeyError(f"batch has no {key!r} entry (keys: {sorted(map(repr, entry))})")


def read_cifar_archive(path: str | Path, splits: Mapping[str, Sequence[str]],
                       label_key: bytes) -> dict[str, tuple[Tensor, Tensor]]:
    """Read CIFAR batches from the official ``.tar.gz`` in one pass, without extracting it.

    Args:
        path: the archive (``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz``).
        splits: split name -> member base names in concatenation order, e.g.
            ``{"train": ["data_batch_1", ...], "test": ["test_batch"]}``.
        label_key: ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).

    Returns:
        split name -> (images uint8 (N, 3, 32, 32), labels int64 (N,)).

    Raises:
        ValueError: a member is missing or malformed.
    """
    wanted = {name for names in splits.values() for name in names}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            base = posixpath.basename(member.name)
            if base not in wanted or not member.isfile() or base in batches:
                continue
            f = tar.extractfile(member)
            assert f is not None
            entry = _BatchUnpickler(f, encoding="bytes").load()
            data = np.asarray(_get(entry, b"data"), dtype=np.uint8)
            labels = np.asarray(_get(entry, label_key), dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
                raise ValueError(f"{path}: member {member.name} holds data {data.shape} and "
                                 f"{len(labels)} labels; expected (N, 3072) and N labels")
            batches[base] = (data.reshape(-1, 3, 32, 32), labels)  # (N, C, H, W)
    missing = sorted(wanted - batches.keys())
    if missing:
        raise ValueError(f"{path} lacks the batch member(s) {missing}; is it the official "
                         "python version of the archive?")
    out = {}
    for split, names in splits.items():
        x = np.concatenate([batches[n][0] for n in names])
        y = np.concatenate([batches[n][1] for n in names])
        out[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    return out


class _CIFARDataModule(ImageDataModule):
    """Shared code of the CIFAR modules; see :class:`CIFAR10DataModule`."""

    in_channels = 3
    image_size = 32
    base_url: ClassVar[str] = "https://www.cs.toronto.edu/~kriz/"
    filename: ClassVar[str]
    md5: ClassVar[str]
    train_members: ClassVar[tuple[str, ...]]
    test_members: ClassVar[tuple[str, ...]]
    label_key: ClassVar[bytes]
    title: ClassVar[str]

    def __init__(self, *, root: str = "data", download: bool = False, crop_padding: int = 4,
                 hflip: bool = True, **kwargs) -> None:
        self.root = Path(root).expanduser()
        self.download = bool(download)
        super().__init__(crop_padding=crop_padding, hflip=hflip, **kwargs)

    @property
    def archive_path(self) -> Path:
        """Where the archive is expected: ``<root>/<filename>``."""
        return self.root / self.filename

    @property
    def url(self) -> str:
        """Download URL (``base_url + filename``; override ``base_url`` for a mirror)."""
        return self.base_url + self.filename

    def _ensure_archive(self) -> None:
        self._fetch_or_explain(self.archive_path, url=self.url, md5=self.md5,
                               download=self.download, what=f"{self.title} archive")

    def prepare_data(self) -> None:
        """Download the archive when ``download=True`` and it is missing (rank 0 only)."""
        self._ensure_archive()

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self._ensure_archive()
        arrays = read_cifar_archive(
            self.archive_path,
            {"train": self.train_members, "test": self.test_members},
            self.label_key,
        )
        return (*arrays["train"], *arrays["test"])


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB, 10 classes) from the official archive.

    Expects ``<root>/cifar-10-python.tar.gz`` (md5 c58f30108f718f92721af3b95e74349a). With
    ``download=True`` a missing archive is fetched from ``base_url`` and checked against
    ``md5``; without it, a missing archive raises ``FileNotFoundError`` saying where to put it.
    Default augmentation is the standard one (crop 32 with padding 4, horizontal flip);
    ``cutout=16`` adds DARTS' cutout. Normalisation uses the usual CIFAR-10 statistics.

    Args:
        root: folder holding the archive (created on download).
        download: fetch the archive when missing.
        crop_padding: random-crop padding in pixels.
        hflip: random horizontal flip.
        **kwargs: :class:`~lightning_nas.data.base.ImageDataModule` arguments.
    """

    num_classes = 10
    default_mean = (0.4914, 0.4822, 0.4465)
    default_std = (0.2470, 0.2435, 0.2616)
    filename = "cifar-10-python.tar.gz"
    md5 = "c58f30108f718f92721af3b95e74349a"
    train_members = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_members = ("test_batch",)
    label_key = b"labels"
    title = "CIFAR-10"


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (50,000 train / 10,000 test, 32x32 RGB, 100 fine classes), official archive.

    Expects ``<root>/cifar-100-python.tar.gz`` (md5 eb9058c3a382ffc7106e4002c42a8d85); members
    ``train`` and ``test`` with ``b"fine_labels"``. Download, augmentation and arguments as
    :class:`CIFAR10DataModule`, with the usual CIFAR-100 normalisation statistics.
    """

    num_classes = 100
    default_mean = (0.5071, 0.4865, 0.4409)
    default_std = (0.2673, 0.2564, 0.2762)
    filename = "cifar-100-python.tar.gz"
    md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_members = ("train",)
    test_members = ("test",)
    label_key = b"fine_labels"
    title = "CIFAR-100"
