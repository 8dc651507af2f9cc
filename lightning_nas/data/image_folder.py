"""Images in ``<root>/<split>/<class>/*.jpg|*.png``, from a folder or read in place from a zip.

Example: ``../shared/data/cifar10/cifar10_jpg.zip`` holds ``train/<class>/NNNN.jpg`` and
``test/<class>/NNNN.jpg`` (60,000 32x32 JPEGs); ``max_per_class_train=500`` turns it into a
5,000-image CIFAR-10 subset that trains on a CPU. Images are decoded once with PIL into
uint8 arrays kept in memory (nothing is written to disk).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lightning_nas.data.base import ImageDataModule

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataModule", "UnreadableImageError"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_PROGRESS_THRESHOLD = 2000  # show a progress bar when decoding more files than this
_CACHE_ENTRIES = 4
_SKIPPED_NAMED = 3  # skipped files named per split in the warning
# (source identity, split, selection, options) -> (images uint8 (N, C, H, W), labels int64 (N,),
# names of the skipped unreadable files)
_DECODED: OrderedDict[tuple, tuple[Tensor, Tensor, tuple[str, ...]]] = OrderedDict()
# What PIL raises on a file it cannot decode (UnidentifiedImageError is an OSError; some
# plugins raise SyntaxError / struct.error / zlib.error / EOFError on corrupt data).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
                  zlib.error, Image.DecompressionBombError)


class UnreadableImageError(ValueError):
    """An image file that PIL cannot decode: not an image, truncated or corrupt."""


def clear_decode_cache() -> None:
    """Forget the decoded arrays kept for reuse across data module instances."""
    _DECODED.clear()


def _is_image(name: str) -> bool:
    parts = name.split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return name.lower().endswith(IMAGE_EXTENSIONS)


class _ImageTree:
    """Lists ``<split>/<class>/<file>`` entries of a folder or a zip and reads their bytes."""

    def __init__(self, root: Path, train_split: str) -> None:
        if not root.exists():
            raise FileNotFoundError(f"image folder root {root} does not exist (expected a folder "
                                    f"or .zip with {train_split}/<class>/*.jpg|png)")
        self.root = root
        self.is_zip = root.is_file()
        if self.is_zip and not zipfile.is_zipfile(root):
            raise ValueError(f"{root} is a file but not a zip archive; give a folder or a .zip")
        if self.is_zip:
            with zipfile.ZipFile(root) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
        else:
            names = [p.relative_to(root).as_posix() for p in self._walk(root)]
        self.prefix = self._find_prefix(names, train_split)
        # (split, class) -> sorted file names (full names inside the zip / relative to root)
        self.entries: dict[str, dict[str, list[str]]] = {}
        for name in names:
            if not name.startswith(self.prefix) or not _is_image(name):
                continue
            parts = name[len(self.prefix):].split("/")
            if len(parts) != 3:
                continue
            split, cls, _ = parts
            self.entries.setdefault(split, {}).setdefault(cls, []).append(name)
        for classes in self.entries.values():
            for files in classes.values():
                files.sort()
        stat = root.stat()
        self.identity = (str(root.resolve()), stat.st_size, stat.st_mtime_ns, self.prefix)

    @staticmethod
    def _walk(root: Path) -> list[Path]:
        out: list[Path] = []
        # Depth is at most <top>/<split>/<class>/<file>: no need for a full recursive walk.
        for dirpath, dirnames, filenames in os.walk(root):
            if len(Path(dirpath).relative_to(root).parts) >= 3:
                dirnames[:] = []  # class folders are at depth 2 (3 under a wrapping folder)
            out.extend(Path(dirpath) / f for f in filenames)
        return out

    @staticmethod
    def _find_prefix(names: list[str], train_split: str) -> str:
        """'' if ``<train_split>/`` is at the top, else ``<dir>/`` when one top folder holds it."""
        if any(n.startswith(f"{train_split}/") for n in names):
            return ""
        tops = {n.split("/", 1)[0] for n in names
                if n.count("/") >= 3 and n.split("/")[1] == train_split}
        return f"{tops.pop()}/" if len(tops) == 1 else ""

    def classes(self, split: str) -> dict[str, list[str]]:
        return self.entries.get(split, {})

    def where(self, name: str) -> str:
        """How to show a file to the user: ``<root>/<name>`` or ``<archive.zip>:<name>``."""
        return f"{self.root}:{name}" if self.is_zip else str(self.root / name)

    @contextmanager
    def reader(self) -> Iterator[Callable[[str], bytes]]:
        """Yields ``read(name) -> bytes``; a zip is opened once for all reads."""
        if self.is_zip:
            with zipfile.ZipFile(self.root) as zf:
                yield zf.read
        else:
            yield lambda name: (self.root / name).read_bytes()


class ImageFolderDataModule(ImageDataModule):
    """Class-per-folder images: ``<root>/<split>/<class>/*.jpg|*.jpeg|*.png``.

    ``root`` is a folder or a ``.zip`` with that layout (read in place; a single wrapping top
    folder inside the zip is found automatically). Classes are the sub-folders of the training
    split, sorted alphabetically (label = position); the test split may not introduce new
    classes. ``max_per_class_*`` keep the first N files of each class in sorted file-name
    order, a deterministic subset. Images are decoded with PIL to RGB (or grayscale) uint8 and
    must all be ``image_size`` square, unless ``resize`` rescales them. Normalisation
    statistics default to the per-channel mean/std of the loaded training images.

    A file PIL cannot decode (not an image, truncated or corrupt) raises
    :class:`UnreadableImageError` naming it, unless ``skip_unreadable`` is set: then such files
    are left out (the same ones on every run, labels stay aligned), one warning gives their
    count per split, and :attr:`skipped` lists them after ``setup``.

    The folder is scanned and one image decoded in ``__init__`` so that ``num_classes``,
    ``in_channels`` and ``image_size`` are known before ``setup``.

    Args:
        root: folder or ``.zip`` file.
        train_split: name of the training split folder.
        test_split: name of the test split folder.
        max_per_class_train: keep at most this many training images per class (None = all).
        max_per_class_test: same for the test split.
        grayscale: decode as 1-channel grayscale instead of RGB.
        resize: resize every image to ``resize`` x ``resize`` pixels (bilinear); None = keep.
        crop_padding: random-crop padding in pixels.
        hflip: random horizontal flip.
        skip_unreadable: leave out files PIL cannot decode instead of raising. A skipped file
            is dropped, not replaced by the next one, so a class may keep fewer than
            ``max_per_class_*`` images.
        **kwargs: :class:`~lightning_nas.data.base.ImageDataModule` arguments (``mean`` and
            ``std`` override the computed statistics).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folders with images, unknown test classes, bad arguments.
        UnreadableImageError: (a ``ValueError``) a file PIL cannot decode, without
            ``skip_unreadable``; raised by ``__init__`` for the probed first training image,
            else by ``setup``.
    """

    def __init__(self, *, root: str, train_split: str = "train", test_split: str = "test",
                 max_per_class_train: int | None = None, max_per_class_test: int | None = None,
                 grayscale: bool = False, resize: int | None = None, crop_padding: int = 4,
                 hflip: bool = True, skip_unreadable: bool = False, **kwargs) -> None:
        for name, value in (("max_per_class_train", max_per_class_train),
                            ("max_per_class_test", max_per_class_test), ("resize", resize)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        self.root = Path(root).expanduser()
        self.train_split, self.test_split = train_split, test_split
        self.max_per_class_train, self.max_per_class_test = max_per_class_train, max_per_class_test
        self.grayscale = bool(grayscale)
        self.resize = resize
        self.skip_unreadable = bool(skip_unreadable)
        # split -> names of the unreadable files left out (filled by setup)
        self.skipped: dict[str, list[str]] = {}
        self._tree = _ImageTree(self.root, train_split)
        train_classes = self._tree.classes(train_split)
        if not train_classes:
            found = sorted(self._tree.entries)
            raise ValueError(
                f"no class folders with images under {self.root}/{self._tree.prefix}"
                f"{train_split}/ (expected {train_split}/<class>/*.jpg|png; splits found: "
                f"{found or 'none'})"
            )
        self.classes: list[str] = sorted(train_classes)
        test_classes = self._tree.classes(test_split)
        if not test_classes:
            raise ValueError(f"no test split: {self.root} has no {test_split}/<class>/ folders "
                             f"with images (splits found: {sorted(self._tree.entries)})")
        unknown = sorted(set(test_classes) - set(self.classes))
        if unknown:
            raise ValueError(f"test split {test_split!r} has classes {unknown} that the "
                             f"training split {train_split!r} lacks")
        self.num_classes = len(self.classes)
        self.in_channels = 1 if self.grayscale else 3
        self.image_size = resize if resize is not None else self._probe_size()
        super().__init__(crop_padding=crop_padding, hflip=hflip, **kwargs)

    def _decode(self, data: bytes, name: str) -> np.ndarray:
        """Pixels of file ``name`` (its bytes ``data``): (H, W) or (H, W, 3) uint8.

        Raises:
            UnreadableImageError: PIL cannot decode it.
        """
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()  # decode now: PIL opens lazily, a truncated file fails only here
                im = im.convert("L" if self.grayscale else "RGB")
                if self.resize is not None:
                    im = im.resize((self.resize, self.resize), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except _DECODE_ERRORS as err:
            raise self._unreadable(name, err) from err
        return arr  # (H, W) or (H, W, 3)

    def _unreadable(self, name: str, err: Exception) -> UnreadableImageError:
        if isinstance(err, Image.UnidentifiedImageError):
            what = "not an image PIL can read"  # PIL's own text only names a BytesIO
        elif isinstance(err, Image.DecompressionBombError):
            what = f"more pixels than PIL's decompression-bomb limit ({err})"
        else:
            what = f"truncated or corrupt image ({type(err).__name__}: {err})"
        return UnreadableImageError(
            f"unreadable image file {self._tree.where(name)}: {what}; fix or remove it, or pass "
            "skip_unreadable=True to skip unreadable files"
        )

    def _probe_size(self) -> int:
        """Side of the first readable training image, in pixels (read in sorted order)."""
        train = self._tree.classes(self.train_split)
        names = [f for cls in self.classes for f in train[cls]]
        with self._tree.reader() as read:
            for first in names:
                try:
                    arr = self._decode(read(first), first)
                    break
                except UnreadableImageError:
                    if not self.skip_unreadable:
                        raise
            else:
                raise UnreadableImageError(
                    f"none of the {len(names)} image files under "
                    f"{self._tree.where(self._tree.prefix + self.train_split)} can be decoded "
                    f"(first: {self._tree.where(names[0])})")
        h, w = arr.shape[:2]
        if h != w:
            raise ValueError(f"{first} is {w}x{h} pixels; images must be square, or pass "
                             "resize=<size>")
        return h

    def selection(self, split: str) -> list[tuple[str, int]]:
        """The (file name, label) pairs loaded for ``split``: first N per class, sorted."""
        limit = self.max_per_class_train if split == self.train_split else self.max_per_class_test
        out = []
        for cls, files in sorted(self._tree.classes(split).items()):
            label = self.classes.index(cls)
            out += [(f, label) for f in (files if limit is None else files[:limit])]
        return out

    def _read_split(self, split: str) -> tuple[Tensor, Tensor, tuple[str, ...]]:
        """Images uint8 (N, C, H, W), labels int64 (N,) and the skipped unreadable files."""
        items = self.selection(split)
        names_digest = hashlib.sha1("\n".join(n for n, _ in items).encode()).hexdigest()
        key = (*self._tree.identity, split, names_digest, tuple(self.classes), self.grayscale,
               self.resize, self.skip_unreadable)
        if key in _DECODED:
            _DECODED.move_to_end(key)
            return _DECODED[key]
        s, c = self.image_size, self.in_channels
        images = np.empty((len(items), s, s, c), dtype=np.uint8)  # (N, H, W, C)
        labels: list[int] = []  # of the decoded images, in the order of ``items``
        skipped: list[str] = []
        from tqdm.auto import tqdm

        with self._tree.reader() as read:
            for name, label in tqdm(items, desc=f"decode {split} images",
                                    disable=len(items) <= _PROGRESS_THRESHOLD, unit="img"):
                try:
                    arr = self._decode(read(name), name)
                except UnreadableImageError:
                    if not self.skip_unreadable:
                        raise
                    skipped.append(name)
                    continue
                if arr.shape[:2] != (s, s):
                    raise ValueError(f"{name} is {arr.shape[1]}x{arr.shape[0]} pixels, expected "
                                     f"{s}x{s}; pass resize={s} to rescale all images")
                images[len(labels)] = arr.reshape(s, s, c)
                labels.append(label)
        if not labels:
            raise UnreadableImageError(
                f"none of the {len(items)} selected {split!r} image files in {self.root} can be "
                f"decoded (first: {self._tree.where(items[0][0])})")
        images = images[:len(labels)]  # (N - skipped, H, W, C)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
        y = torch.tensor(labels, dtype=torch.int64)
        _DECODED[key] = (x, y, tuple(skipped))
        while len(_DECODED) > _CACHE_ENTRIES:
            _DECODED.popitem(last=False)
        return _DECODED[key]

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x_train, y_train, skip_train = self._read_split(self.train_split)
        x_test, y_test, skip_test = self._read_split(self.test_split)
        self.skipped = {split: list(names) for split, names in
                        ((self.train_split, skip_train), (self.test_split, skip_test)) if names}
        if self.skipped:
            total = sum(len(names) for names in self.skipped.values())
            per_split = []
            for split, names in self.skipped.items():
                shown = names[:_SKIPPED_NAMED] + ([f"... {len(names) - _SKIPPED_NAMED} more"]
                                                  if len(names) > _SKIPPED_NAMED else [])
                per_split.append(f"{len(names)} in {split!r} ({', '.join(shown)})")
            warnings.warn(f"skipped {total} unreadable image file(s) in {self.root} "
                          f"(skip_unreadable=True): {'; '.join(per_split)}", stacklevel=3)
        return x_train, y_train, x_test, y_test
