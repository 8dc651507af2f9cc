"""Image folders too large for memory (ImageNet): decoded per batch in DataLoader workers.

Layouts (``root``):

* ``<root>/<train_split>/<class>/<file>`` and ``<root>/<eval_split>/<class>/<file>``: the
  ImageNet layout (``train/`` and ``val/`` with one folder per class; ImageNet's flat
  validation folder must first be sorted into class folders, as the usual preparation
  scripts do);
* ``<root>/<class>/<file>``: one folder, cut into training and evaluation images by a seeded,
  class-stratified ``eval_fraction``.

Only the file names are kept, compactly: the relative paths of all files are one ``bytes``
buffer with int64 offsets into it and the labels an int16 array (about 40 MB for ImageNet's
1.28M training files, instead of ~150 MB of Python strings whose reference counts would also
turn the workers' copy-on-write pages into private copies). The images are decoded in the
workers with PIL (JPEG decoding at a reduced DCT scale when the crop allows it, ``draft``),
so the memory of a run does not grow with the number of images
(``scripts/bench_streaming_data.py`` measures it).

Training images get a random-resized crop (Szegedy et al. 2015: an area fraction in
``crop_scale`` and an aspect ratio in ``crop_ratio``, log-uniform, up to 10 tries then a
centre crop) resized to ``image_size`` and a horizontal flip (p = 0.5); evaluation images are
resized to ``image_size / eval_crop_fraction`` on the shorter side and centre-cropped to
``image_size`` (224 from 256). Each image's crop and flip draw from a generator seeded by
(seed, split, epoch, image index), so a run is reproducible whatever the number of workers.
Loaders yield uint8 (B, 3, S, S) batches; normalisation (ImageNet mean/std) happens on the
device in ``on_after_batch_transfer``, as for the in-memory modules.

WebDataset-style tar shards: :class:`~lightning_nas.data.shards.ShardedImageDataModule`.

Once-for-All trains subnets at several resolutions: set ``image_size`` to the space's largest
resolution and the strategy resizes each batch to the subnet's resolution on the device
(``OnceForAll._input``), as it does for the in-memory modules.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_nas.data.base import (
    _LOADER_SALT,
    SPLIT_SALTS,
    EpochSampler,
    ImageDataModule,
    _check_int,
    collate_batch,
    mix_seed,
    stratified_holdout,
)
from lightning_nas.data.image_folder import _DECODE_ERRORS, IMAGE_EXTENSIONS, UnreadableImageError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FileIndex",
    "StreamingImageDataModule",
    "StreamingImageDataset",
    "eval_box",
    "random_resized_box",
    "scan_class_folders",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CROP_SALT = 606  # per-image crop/flip generator
_EVAL_SPLIT_SALT = 707  # single-folder layout: training vs evaluation images


class FileIndex:
    """File paths and labels in three flat numpy arrays.

    ``data`` holds the UTF-8 paths back to back, ``offsets[i]:offsets[i + 1]`` is path ``i``
    and ``labels[i]`` its class. Pickling (to spawned workers) copies three arrays; forked
    workers share their pages, which indexing never writes to.

    Args:
        data: (total bytes,) uint8.
        offsets: (N + 1,) int64, non-decreasing, ``offsets[0] == 0``.
        labels: (N,) integer labels.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> None:
        self.data = np.ascontiguousarray(data, dtype=np.uint8)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.labels = np.ascontiguousarray(labels, dtype=np.int16 if labels.size == 0 or
                                           int(np.max(labels)) < 2 ** 15 else np.int32)
        if self.offsets.shape != (len(self.labels) + 1,) or self.offsets[0] != 0 \
                or self.offsets[-1] != len(self.data):
            raise ValueError("offsets must be (N + 1,) from 0 to len(data)")

    @classmethod
    def from_lists(cls, paths: Sequence[str], labels: Sequence[int]) -> FileIndex:
        """Build from a list of paths (small inputs and tests)."""
        encoded = [p.encode() for p in paths]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return cls(data, offsets, np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        """Relative path of file ``i``."""
        return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes().decode()

    def subset(self, indices: np.ndarray) -> FileIndex:
        """A new index of the files ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.offsets[indices + 1] - self.offsets[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # gather every byte of the chosen paths with one fancy index
        starts = np.repeat(self.offsets[indices] - offsets[:-1], lengths)
        data = self.data[starts + np.arange(offsets[-1], dtype=np.int64)]
        return FileIndex(data, offsets, self.labels[indices])

    @property
    def nbytes(self) -> int:
        """Bytes held by the three arrays."""
        return self.data.nbytes + self.offsets.nbytes + self.labels.nbytes


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and
                     not e.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder} has no class folders (expected {folder}/<class>/*.jpg|png)")
    return classes


def _first_image(folder: Path) -> str | None:
    with os.scandir(folder) as it:
        for e in it:
            if _is_image_name(e.name) and e.is_file():
                return e.name
    return None


def scan_class_folders(folder: str | os.PathLike, classes: Sequence[str],
                       max_per_class: int | None = None) -> FileIndex:
    """Index ``<folder>/<class>/<file>`` for the given classes (label = position).

    Files are sorted by name within a class; ``max_per_class`` keeps the first ones.
    Only one class's names are held as Python strings at a time.

    Raises:
        FileNotFoundError: a class folder is missing.
        ValueError: a class folder holds no image file.
    """
    folder = Path(folder)
    chunks: list[bytes] = []
    lengths: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for label, cls in enumerate(classes):
        cdir = folder / cls
        if not cdir.is_dir():
            raise FileNotFoundError(f"class folder {cdir} does not exist (the classes are the "
                                    f"training split's folders)")
        with os.scandir(cdir) as it:
            names = sorted(e.name for e in it if _is_image_name(e.name) and e.is_file())
        if not names:
            raise ValueError(f"class folder {cdir} holds no image file "
                             f"({'/'.join(IMAGE_EXTENSIONS)}); remove it or add images")
        if max_per_class is not None:
            names = names[:max_per_class]
        encoded = [f"{cls}/{n}".encode() for n in names]
        chunks.append(b"".join(encoded))
        lengths.append(np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded)))
        labels.append(np.full(len(encoded), label, dtype=np.int64))
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    data = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return FileIndex(data, offsets, np.concatenate(labels) if labels else np.zeros(0, np.int64))


# ---------------------------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------------------------


def random_resized_box(width: int, height: int, rng: np.random.Generator, *,
                       scale: tuple[float, float] = (0.08, 1.0),
                       ratio: tuple[float, float] = (3 / 4, 4 / 3)
                       ) -> tuple[int, int, int, int]:
    """A random crop box ``(left, top, right, bottom)`` in pixels of a width x height image.

    Area fraction uniform in ``scale``, aspect ratio (w / h) log-uniform in ``ratio``; up to
    10 tries for a box that fits, else the central box with the ratio clamped into ``ratio``
    (Szegedy et al. 2015, "Going deeper with convolutions", Sec. 6's crop sampling).
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def eval_box(width: int, height: int, size: int, crop_fraction: float
             ) -> tuple[float, float, float, float]:
    """The box of a width x height image that "resize the shorter side to
    ``size / crop_fraction``, then centre-crop ``size``" keeps, in original pixels."""
    side = min(width, height) * crop_fraction  # the crop's side in original pixels
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


class StreamingImageDataset(Dataset):
    """Decodes the files of a :class:`FileIndex` on demand into uint8 (3, S, S) tensors.

    Items are ``epoch * len(dataset) + index`` (plain indices are epoch 0) or ``(index,
    epoch)`` pairs; a training image's random crop and flip are drawn from ``(seed, salt,
    epoch, index)``. One int per item keeps the order list that Lightning's distributed
    sampler wrapper materialises each epoch as small as the in-memory modules'.
    ``__getitems__`` returns a whole ``(x (B, 3, S, S) uint8, y (B,) int64)`` batch.

    Args:
        root: folder the index's paths are relative to.
        index: the files and labels.
        size: output side S in pixels.
        train: random-resized crop + flip (else resize + centre crop).
        seed, salt: seed the per-image crops.
        crop_scale, crop_ratio: of the random-resized crop.
        hflip: flip training images with p = 0.5.
        eval_crop_fraction: evaluation crop side / resized shorter side.
    """

    def __init__(self, root: str | os.PathLike, index: FileIndex, *, size: int, train: bool,
                 seed: int = 0, salt: int = 0, crop_scale: tuple[float, float] = (0.08, 1.0),
                 crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = True,
                 eval_crop_fraction: float = 0.875) -> None:
        self.root = str(root)
        self.index = index
        self.size = int(size)
        self.train = bool(train)
        self.seed, self.salt = int(seed), int(salt)
        self.crop_scale = tuple(float(v) for v in crop_scale)
        self.crop_ratio = tuple(float(v) for v in crop_ratio)
        self.hflip = bool(hflip)
        self.eval_crop_fraction = float(eval_crop_fraction)

    def __len__(self) -> int:
        return len(self.index)

    def where(self, i: int) -> str:
        """Full path of file ``i`` (what error messages name)."""
        return os.path.join(self.root, self.index.path(i))

    def source(self, i: int) -> Any:
        """What PIL opens for image ``i``: its path (tar shards: its bytes)."""
        return self.where(i)

    def load(self, i: int, epoch: int = 0) -> np.ndarray:
        """Image ``i`` cropped and resized: (S, S, 3) uint8.

        Raises:
            UnreadableImageError: PIL cannot decode the file (names it).
        """
        s = self.size
        try:
            with Image.open(self.source(i)) as im:
                width, height = im.size
                flip = False
                if self.train:
                    rng = np.random.default_rng([self.seed, _CROP_SALT, self.salt, epoch, i])
                    box = random_resized_box(width, height, rng, scale=self.crop_scale,
                                             ratio=self.crop_ratio)
                    flip = self.hflip and bool(rng.integers(0, 2))
                else:
                    box = eval_box(width, height, s, self.eval_crop_fraction)
                bw, bh = box[2] - box[0], box[3] - box[1]
                if im.format == "JPEG":
                    # decode at 1/2, 1/4 or 1/8 scale while the box keeps >= S pixels a side
                    im.draft("RGB", (math.ceil(width * s / bw), math.ceil(height * s / bh)))
                    sx, sy = im.size[0] / width, im.size[1] / height
                    box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
                im = im.convert("RGB")
                im = im.resize((s, s), Image.BILINEAR, box=box)
                if flip:
                    im = im.transpose(Image.FLIP_LEFT_RIGHT)
                return np.asarray(im, dtype=np.uint8)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"image file {self.where(i)} is gone (listed when the data "
                                    "module was set up)") from err
        except _DECODE_ERRORS as err:
            raise UnreadableImageError(
                f"unreadable image file {self.where(i)}: {type(err).__name__}: {err}; fix or "
                "remove it") from err

    def _split_item(self, item: Any) -> tuple[int, int]:
        """(index, epoch) of an item."""
        if isinstance(item, (tuple, list)):
            return int(item[0]), int(item[1])
        epoch, index = divmod(int(item), len(self.index))
        return index, epoch

    def __getitem__(self, item: Any) -> tuple[Tensor, Tensor]:
        i, epoch = self._split_item(item)
        x = torch.from_numpy(self.load(i, epoch).copy()).permute(2, 0, 1).contiguous()  # (3, S, S)
        return x, torch.tensor(int(self.index.labels[i]), dtype=torch.int64)

    def __getitems__(self, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        s = self.size
        out = np.empty((len(items), s, s, 3), dtype=np.uint8)  # (B, S, S, 3)
        labels = np.empty(len(items), dtype=np.int64)
        for b, item in enumerate(items):
            i, epoch = self._split_item(item)
            out[b] = self.load(i, epoch)
            labels[b] = self.index.labels[i]
        x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (B, 3, S, S)
        return x, torch.from_numpy(labels)


class _EpochTaggedSampler(EpochSampler):
    """:class:`EpochSampler` whose items carry the epoch, ``epoch * stride + index``
    (``stride`` = the dataset's length): the workers seed each image's crop from its epoch
    (persistent workers never see ``set_epoch``)."""

    def __init__(self, indices: np.ndarray, *, stride: int, **kwargs: Any) -> None:
        super().__init__(indices, **kwargs)
        self.stride = int(stride)

    def __iter__(self) -> Iterator[int]:
        return iter((self.order() + self.epoch * self.stride).tolist())


# ---------------------------------------------------------------------------------------------
# The data module
# ---------------------------------------------------------------------------------------------


class StreamingImageDataModule(ImageDataModule):
    """Class-per-folder images decoded in DataLoader workers (module docstring).

    Splits follow :class:`~lightning_nas.data.base.ImageDataModule`: ``search=True`` gives
    ``train_dataloader() == {"weights": half A, "arch": half B}`` (stratified halves of the
    training images) and validates on half B without augmentation; ``val_fraction`` holds
    out training images for validation; otherwise validation is the evaluation split.

    Args:
        root: the data folder (layouts in the module docstring).
        train_split, eval_split: sub-folders of the two-folder layout. When
            ``<root>/<train_split>`` is not a folder, ``root`` is one folder of classes.
        eval_fraction: single-folder layout: fraction of each class held out (seeded) as the
            evaluation split.
        image_size: side S of the batches' images (OFA: the space's largest resolution).
        max_per_class_train, max_per_class_eval: keep the first N files (by name) per class,
            a deterministic subset (e.g. a search subset of ImageNet).
        crop_scale, crop_ratio: random-resized crop ranges (ImageNet: (0.08, 1), (3/4, 4/3);
            OFA and PC-DARTS use the same).
        hflip: random horizontal flip of training images.
        eval_crop_fraction: centre crop side / resized shorter side (0.875: 224 of 256).
        persistent_workers: keep the worker processes between epochs.
        prefetch_factor: batches each worker loads ahead.
        mean, std: normalisation in [0, 1] units; default ImageNet's.
        **kwargs: :class:`ImageDataModule` arguments (batch_size, num_workers, pin_memory,
            search, val_fraction, seed, ...).
    """

    default_mean = IMAGENET_MEAN
    default_std = IMAGENET_STD

    def __init__(self, *, root: str, train_split: str = "train", eval_split: str = "val",
                 eval_fraction: float = 0.1, image_size: int = 224,
                 max_per_class_train: int | None = None, max_per_class_eval: int | None = None,
                 crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True,
                 eval_crop_fraction: float = 0.875, persistent_workers: bool = True,
                 prefetch_factor: int = 2, **kwargs: Any) -> None:
        for name, value in (("max_per_class_train", max_per_class_train),
                            ("max_per_class_eval", max_per_class_eval)):
            if value is not None:
                _check_int(name, value, 1)
        if not 0.0 < float(eval_fraction) < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
        crop_scale, crop_ratio = tuple(map(float, crop_scale)), tuple(map(float, crop_ratio))
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got "
                             f"{crop_scale}")
        if len(crop_ratio) != 2 or not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"crop_ratio must be (low, high) with 0 < low <= high, got "
                             f"{crop_ratio}")
        if not 0 < float(eval_crop_fraction) <= 1:
            raise ValueError(f"eval_crop_fraction must be in (0, 1], got {eval_crop_fraction}")
        for key in ("crop_padding", "cutout"):
            if kwargs.get(key):
                raise ValueError(f"{key} is not an option of StreamingImageDataModule (training "
                                 "images get a random-resized crop)")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder root {self.root} does not exist or is not a "
                                    f"folder (expected {train_split}/<class>/ and "
                                    f"{eval_split}/<class>/, or <class>/ folders)")
        self.train_split, self.eval_split = train_split, eval_split
        self.eval_fraction = float(eval_fraction)
        self._list_classes()
        self.num_classes = len(self.classes)
        self.in_channels = 3
        self.image_size = _check_int("image_size", image_size, 8)
        self.max_per_class_train, self.max_per_class_eval = max_per_class_train, max_per_class_eval
        self.crop_scale, self.crop_ratio = crop_scale, crop_ratio
        self.stream_hflip = bool(hflip)
        self.eval_crop_fraction = float(eval_crop_fraction)
        self.persistent_workers = bool(persistent_workers)
        self.prefetch_factor = _check_int("prefetch_factor", prefetch_factor, 1)
        # the base's on-device augmentation stays off: crops and flips happen in the workers
        super().__init__(crop_padding=0, hflip=False, cutout=0, **kwargs)

    def _list_classes(self) -> None:
        """Find the layout and the classes (sorted training class folders), checking that
        each holds an image; cheap: it stops at each class's first image."""
        train_split, eval_split = self.train_split, self.eval_split
        self.single_folder = not (self.root / train_split).is_dir()
        train_dir = self.root if self.single_folder else self.root / train_split
        self.classes: list[str] = _class_folders(train_dir)
        for cls in self.classes:
            if _first_image(train_dir / cls) is None:
                raise ValueError(f"class folder {train_dir / cls} holds no image file "
                                 f"({'/'.join(IMAGE_EXTENSIONS)}); remove it or add images")
        if not self.single_folder:
            eval_dir = self.root / eval_split
            if not eval_dir.is_dir():
                raise FileNotFoundError(f"evaluation folder {eval_dir} does not exist "
                                        f"({self.root} has {train_split}/; give eval_split)")
            unknown = sorted(set(_class_folders(eval_dir)) - set(self.classes))
            if unknown:
                raise ValueError(f"{eval_dir} has classes {unknown[:5]} that {train_dir} lacks")

    # -- setup -------------------------------------------------------------------------------

    def _indices(self) -> tuple[Path, FileIndex, Path, FileIndex]:
        if not self.single_folder:
            train_dir, eval_dir = self.root / self.train_split, self.root / self.eval_split
            train = scan_class_folders(train_dir, self.classes, self.max_per_class_train)
            eval_classes = set(_class_folders(eval_dir))
            present = [c for c in self.classes if c in eval_classes]
            index = scan_class_folders(eval_dir, present, self.max_per_class_eval)
            # labels refer to the training classes
            remap = np.array([self.classes.index(c) for c in present], dtype=np.int64)
            evaluation = FileIndex(index.data, index.offsets, remap[index.labels])
            return train_dir, train, eval_dir, evaluation
        full = scan_class_folders(self.root, self.classes)
        kept, held = stratified_holdout(full.labels.astype(np.int64), self.eval_fraction,
                                        mix_seed(self.seed, _EVAL_SPLIT_SALT))
        if len(held) == 0:
            raise ValueError(f"eval_fraction={self.eval_fraction} of {len(full)} images holds "
                             "out none for evaluation")
        kept = self._limit(kept, full.labels, self.max_per_class_train)
        held = self._limit(held, full.labels, self.max_per_class_eval)
        return self.root, full.subset(kept), self.root, full.subset(held)

    @staticmethod
    def _limit(indices: np.ndarray, labels: np.ndarray, limit: int | None) -> np.ndarray:
        """The first ``limit`` of ``indices`` (sorted, so by file name) of each class."""
        if limit is None:
            return indices
        lab = labels[indices]
        order = np.argsort(lab, kind="stable")
        rank = np.arange(len(order)) - np.searchsorted(lab[order], lab[order])
        keep = np.zeros(len(indices), dtype=bool)
        keep[order[rank < limit]] = True
        return indices[keep]

    def _dataset(self, root: Path, index: FileIndex, *, train: bool, salt: str
                 ) -> StreamingImageDataset:
        return StreamingImageDataset(root, index, size=self.image_size, train=train,
                                     seed=self.seed, salt=SPLIT_SALTS[salt],
                                     crop_scale=self.crop_scale, crop_ratio=self.crop_ratio,
                                     hflip=self.stream_hflip,
                                     eval_crop_fraction=self.eval_crop_fraction)

    def setup(self, stage: str | None = None) -> None:
        """List the files (once) and compute the splits."""
        if self._train_set is not None:
            return
        train_dir, train, eval_dir, evaluation = self._indices()
        if len(evaluation) == 0:
            raise ValueError(f"no evaluation images under {eval_dir}")
        self._train_root, self._train_index = train_dir, train
        # with the evaluation transform: the inherited split_batches (ENAS's reward batches)
        # decodes the training images in this process without augmentation
        self._train_set = self._dataset(train_dir, train, train=False, salt="eval")
        self._test_set = self._dataset(eval_dir, evaluation, train=False, salt="eval")
        self._splits = self.training_splits(train.labels.astype(np.int64))

    # -- loaders -------------------------------------------------------------------------------

    def _loader(self, dataset: Dataset, indices: np.ndarray, *, train: bool,
                salt: str) -> DataLoader:
        if train:
            dataset = self._dataset(self._train_root, self._train_index, train=True, salt=salt)
            sampler = _EpochTaggedSampler(indices, stride=len(self._train_index),
                                          seed=self.seed, shuffle=True,
                                          salt=SPLIT_SALTS[salt])
        else:
            sampler = EpochSampler(indices, seed=self.seed, shuffle=False, salt=SPLIT_SALTS[salt])
        generator = torch.Generator().manual_seed(
            mix_seed(self.seed, _LOADER_SALT, SPLIT_SALTS[salt], int(train)))
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_batch,
            pin_memory=self.pin_memory,
            drop_last=False,
            generator=generator,
            persistent_workers=self.persistent_workers and workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
        )
