"""WebDataset-style tar shards, read by random access: ``<root>/<split>/*.tar``.

A shard holds samples as consecutive members ``<key>.<image ext>`` and ``<key>.cls`` (the
class index as decimal text), the layout WebDataset's ImageNet shards use. The shards are
scanned once (tar headers and the small ``.cls`` members only) into flat arrays of
(shard, byte offset, size, label); an image is then one ``pread`` of its bytes, so the
streaming module's samplers, seeded crops, search halves and DDP sharding work unchanged,
and a sample's order does not depend on how the data was sharded.

    data = ShardedImageDataModule(root="data/imagenet-wds", num_classes=1000)

with ``data/imagenet-wds/train/shard-000000.tar`` ... and ``data/imagenet-wds/val/*.tar``.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.data.base import SPLIT_SALTS, _check_int
from lightning_nas.data.image_folder import IMAGE_EXTENSIONS
from lightning_nas.data.streaming import StreamingImageDataModule, StreamingImageDataset

__all__ = ["ShardIndex", "ShardedImageDataModule", "ShardedImageDataset", "scan_shards"]


class ShardIndex:
    """Samples of a list of tar shards as flat arrays.

    Attributes:
        shards: the shard paths (index = ``shard`` value).
        shard: (N,) int32 shard of each sample.
        offset: (N,) int64 byte offset of the image's data in its shard.
        size: (N,) int64 bytes of the image.
        labels: (N,) int16/int32 class index.
    """

    def __init__(self, shards: list[str], shard: np.ndarray, offset: np.ndarray,
                 size: np.ndarray, labels: np.ndarray) -> None:
        self.shards = list(shards)
        self.shard = np.ascontiguousarray(shard, dtype=np.int32)
        self.offset = np.ascontiguousarray(offset, dtype=np.int64)
        self.size = np.ascontiguousarray(size, dtype=np.int64)
        big = labels.size and int(np.max(labels)) >= 2 ** 15
        self.labels = np.ascontiguousarray(labels, dtype=np.int32 if big else np.int16)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ShardIndex:
        indices = np.asarray(indices, dtype=np.int64)
        return ShardIndex(self.shards, self.shard[indices], self.offset[indices],
                          self.size[indices], self.labels[indices])

    def read(self, i: int) -> bytes:
        """The bytes of sample ``i``'s image."""
        fd = os.open(self.shards[int(self.shard[i])], os.O_RDONLY)
        try:
            return os.pread(fd, int(self.size[i]), int(self.offset[i]))
        finally:
            os.close(fd)

    def where(self, i: int) -> str:
        """``<shard>:<member name>`` of sample ``i`` (the name from its tar header)."""
        path = self.shards[int(self.shard[i])]
        try:
            fd = os.open(path, os.O_RDONLY)
            try:  # the member's header is the 512-byte block before its data
                header = os.pread(fd, tarfile.BLOCKSIZE, int(self.offset[i]) - tarfile.BLOCKSIZE)
            finally:
                os.close(fd)
            name = tarfile.TarInfo.frombuf(header, tarfile.ENCODING, "surrogateescape").name
        except (OSError, tarfile.TarError):
            name = f"<member at byte {int(self.offset[i])}>"
        return f"{path}:{name}"


def _key_and_ext(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name: the key up to the first dot of the base name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower() if dot else ""


def scan_shards(folder: str | os.PathLike, max_per_class: int | None = None) -> ShardIndex:
    """Index every sample (an image member and a ``.cls`` member of one key) of the sorted
    ``*.tar`` files of ``folder``.

    ``max_per_class`` keeps the first N samples of each class in shard order.

    Raises:
        FileNotFoundError: ``folder`` is missing or holds no ``.tar`` file.
        ValueError: an image without a ``.cls`` member, a ``.cls`` that is not an integer, a
            shard that is not a tar file (each names the shard and member).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"shard folder {folder} does not exist")
    shards = sorted(str(p) for p in folder.glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"{folder} holds no .tar shard")
    image_exts = {e.lstrip(".") for e in IMAGE_EXTENSIONS}
    shard_ids: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    labels: list[int] = []
    counts: dict[int, int] = {}
    for s, path in enumerate(shards):
        pending: dict[str, tuple[int, int, str]] = {}  # key -> image (offset, size, name)
        classes: dict[str, int] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    key, ext = _key_and_ext(m.name)
                    if ext in image_exts:
                        pending[key] = (m.offset_data, m.size, m.name)
                    elif ext == "cls":
                        text = tar.extractfile(m).read().decode(errors="replace").strip()
                        try:
                            classes[key] = int(text)
                        except ValueError:
                            raise ValueError(f"{path}:{m.name} holds {text[:20]!r}, not a class "
                                             "index") from None
        except tarfile.TarError as err:
            raise ValueError(f"{path} is not a readable tar shard ({err})") from err
        for key, (offset, size, name) in pending.items():
            if key not in classes:
                raise ValueError(f"{path}:{name} has no {key}.cls member (the class index)")
            label = classes[key]
            if label < 0:
                raise ValueError(f"{path}:{key}.cls is {label}; class indices start at 0")
            if max_per_class is not None and counts.get(label, 0) >= max_per_class:
                continue
            counts[label] = counts.get(label, 0) + 1
            shard_ids.append(s)
            offsets.append(offset)
            sizes.append(size)
            labels.append(label)
    return ShardIndex(shards, np.array(shard_ids), np.array(offsets), np.array(sizes),
                      np.array(labels, dtype=np.int64))


class ShardedImageDataset(StreamingImageDataset):
    """:class:`StreamingImageDataset` over a :class:`ShardIndex` (same crops and items)."""

    def __init__(self, index: ShardIndex, **kwargs: Any) -> None:
        super().__init__("", index, **kwargs)  # type: ignore[arg-type]

    def where(self, i: int) -> str:
        return self.index.where(i)

    def source(self, i: int) -> io.BytesIO:
        return io.BytesIO(self.index.read(i))


class ShardedImageDataModule(StreamingImageDataModule):
    """:class:`~lightning_nas.data.streaming.StreamingImageDataModule` over WebDataset-style
    tar shards ``<root>/<train_split>/*.tar`` and ``<root>/<eval_split>/*.tar`` (module
    docstring); every option of the streaming module applies.

    Args:
        root: folder holding the two shard folders.
        num_classes: the number of classes; ``None`` = the largest training ``.cls`` + 1
            (known only after scanning the training shards, which ``__init__`` then does).
        **kwargs: :class:`StreamingImageDataModule` arguments (``eval_fraction`` does not
            apply: shards come split).
    """

    def __init__(self, *, root: str, num_classes: int | None = None, train_split: str = "train",
                 eval_split: str = "val", **kwargs: Any) -> None:
        self._shard_cache: dict[str, ShardIndex] = {}
        root_path = Path(root).expanduser()
        for split in (train_split, eval_split):
            if not (root_path / split).is_dir():
                raise FileNotFoundError(f"shard folder {root_path / split} does not exist "
                                        f"(expected {root_path}/{split}/*.tar)")
        if num_classes is None:
            train = self._scan(root_path / train_split, kwargs.get("max_per_class_train"))
            num_classes = int(train.labels.max()) + 1 if len(train) else 0
        self._num_classes = _check_int("num_classes", num_classes, 1)
        super().__init__(root=root, train_split=train_split, eval_split=eval_split, **kwargs)

    def _scan(self, folder: Path, limit: int | None) -> ShardIndex:
        key = f"{folder}|{limit}"
        if key not in self._shard_cache:
            self._shard_cache[key] = scan_shards(folder, limit)
        return self._shard_cache[key]

    def _list_classes(self) -> None:
        self.single_folder = False
        self.classes = [str(c) for c in range(self._num_classes)]

    def _indices(self) -> tuple[Path, Any, Path, Any]:
        train_dir, eval_dir = self.root / self.train_split, self.root / self.eval_split
        train = self._scan(train_dir, self.max_per_class_train)
        evaluation = self._scan(eval_dir, self.max_per_class_eval)
        for name, index in (("training", train), ("evaluation", evaluation)):
            if len(index) and int(index.labels.max()) >= self.num_classes:
                raise ValueError(f"{name} shards have class {int(index.labels.max())} but "
                                 f"num_classes is {self.num_classes}")
        if len(train) == 0:
            raise ValueError(f"the shards of {train_dir} hold no image sample")
        self._shard_cache.clear()
        return train_dir, train, eval_dir, evaluation

    def _dataset(self, root: Path, index: Any, *, train: bool, salt: str) -> ShardedImageDataset:
        return ShardedImageDataset(index, size=self.image_size, train=train, seed=self.seed,
                                   salt=SPLIT_SALTS[salt], crop_scale=self.crop_scale,
                                   crop_ratio=self.crop_ratio, hflip=self.stream_hflip,
                                   eval_crop_fraction=self.eval_crop_fraction)
