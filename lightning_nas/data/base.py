"""Shared machinery of the image data modules: splits, samplers, loaders, augmentation hook.

Every concrete data module (digits, CIFAR, MNIST, image folder, synthetic) subclasses
:class:`ImageDataModule` and only says how to load ``(x_train, y_train, x_test, y_test)`` as
uint8 ``(N, C, H, W)`` images and int64 labels. The base class then provides:

* the splits: plain training, a held-out validation fraction, or DARTS' bilevel halves
  (``search=True``: weights half A, architecture half B; Liu et al. 2019, Sec. 3.3);
* loaders that yield uint8 batches, with a sampler whose order is a pure function of
  (seed, epoch) and a private ``torch.Generator`` per loader (the global RNG is never used);
* ``on_after_batch_transfer``: float conversion, training augmentation and normalisation as
  batched tensor ops on the device, seeded from (seed, epoch, global step, rank, split).

Resuming a run from an end-of-epoch checkpoint therefore replays exactly the batches and
augmentations of an uninterrupted run. (A checkpoint taken mid-epoch restarts that epoch's
loader from its first batch, as Lightning does for any loader without saved iterator state.)
Under DDP, Lightning wraps the samplers in its ``DistributedSamplerWrapper``, which forwards
``set_epoch`` and shards (and, for training, re-permutes with its own seeded generator) the
order; that too is a pure function of the seeds and the epoch.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from lightning_nas.data import augment as aug

__all__ = [
    "ArrayDataset",
    "ChecksumError",
    "EpochSampler",
    "ImageDataModule",
    "download_url",
    "md5_file",
    "mix_seed",
    "shared_data_dir",
    "stratified_halves",
    "stratified_holdout",
]

# Salts that decorrelate the random streams of different splits / purposes.
SPLIT_SALTS: dict[str, int] = {"train": 1, "weights": 2, "arch": 3, "eval": 4}
_SPLIT_PERMUTATION_SALT = 101  # search halves / held-out validation assignment
_SAMPLER_SALT = 202  # per-epoch shuffling
_LOADER_SALT = 303  # DataLoader generator (worker base seed)
_AUGMENT_SALT = 404  # augmentation generator
_STREAM_SALT = 505  # split_batches: the passes of an endless stream


def shared_data_dir() -> Path:
    """Folder with the shared reference data (``cifar10/cifar10_jpg.zip``, ``mnist/...``).

    Returns ``$LIGHTNING_NAS_SHARED_DATA`` when set, else ``<repo root>/../shared/data`` where
    the repo root is the folder holding the ``lightning_nas`` package. The folder may not
    exist; callers check.
    """
    env = os.environ.get("LIGHTNING_NAS_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    repo_root = Path(__file__).resolve().parents[2]  # lightning_nas/data/base.py -> repo root
    return (repo_root.parent / "shared" / "data").resolve()


# ---------------------------------------------------------------------------------------------
# Files: checksums and downloads
# ---------------------------------------------------------------------------------------------


class ChecksumError(RuntimeError):
    """A file's MD5 differs from the published one (corrupt or wrong download)."""


def md5_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def download_url(url: str, dest: str | os.PathLike, md5: str | None = None,
                 progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, verifying its MD5 first.

    The bytes go to a hidden temporary file next to ``dest``; only when the checksum matches is
    it renamed to ``dest`` (atomic on one file system), so an interrupted or corrupt download
    never leaves a file that looks complete. ``file://`` URLs work too (used by the tests).

    Args:
        url: http(s):// or file:// URL.
        dest: final path of the file; its folder is created.
        md5: expected hex MD5, or None to skip the check.
        progress: show a tqdm bar when the size is known and above 1 MiB.

    Returns:
        ``dest`` as a Path.

    Raises:
        ChecksumError: the downloaded bytes have another MD5 (nothing is written to ``dest``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0)
            bar = None
            if progress and total > (1 << 20):
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}")
            try:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
        digest = h.hexdigest()
        if md5 is not None and digest != md5.lower():
            raise ChecksumError(
                f"MD5 mismatch for {url}: expected {md5}, got {digest}. The download is corrupt "
                f"or the file changed upstream; nothing was written to {dest}. Retry, or place "
                f"a correct copy at {dest} by hand."
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


# ---------------------------------------------------------------------------------------------
# Seeds, splits, samplers, datasets
# ---------------------------------------------------------------------------------------------


def mix_seed(*values: int) -> int:
    """Hash non-negative integers into one 63-bit seed (NumPy ``SeedSequence`` mixing).

    Nearby inputs (epoch 3 vs 4, rank 0 vs 1) give unrelated streams, unlike ``seed + epoch``.
    """
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def _class_sorted_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices grouped by class, in a seeded random order within each class."""
    rng = np.random.default_rng(mix_seed(seed, _SPLIT_PERMUTATION_SALT))
    perm = rng.permutation(len(labels))
    return perm[np.argsort(labels[perm], kind="stable")]


def stratified_halves(labels: Sequence[int] | np.ndarray,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into two disjoint halves of equal size, stratified by class.

    Samples are grouped by class in a seeded random order and dealt alternately to A and B, so
    each class is split within one sample. With an odd count, the one sample left over is in
    neither half.

    Args:
        labels: (N,) integer class labels.
        seed: split seed.

    Returns:
        (A, B): sorted int64 index arrays of length ``N // 2`` each.
    """
    labels = np.asarray(labels)
    order = _class_sorted_order(labels, seed)
    half = len(order) // 2
    a, b = order[0::2][:half], order[1::2][:half]
    return np.sort(a).astype(np.int64), np.sort(b).astype(np.int64)


def stratified_holdout(labels: Sequence[int] | np.ndarray, fraction: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``floor(N * fraction)`` indices, spread evenly over the classes.

    Systematic sampling over the class-grouped, seeded-random order: element ``i`` is held out
    when ``floor((i + 1) f) > floor(i f)``, so every class contributes its share within one.

    Args:
        labels: (N,) integer class labels.
        fraction: held-out fraction in (0, 1).
        seed: split seed.

    Returns:
        (kept, held_out): sorted int64 index arrays.
    """
    labels = np.asarray(labels)
    order = _class_sorted_order(labels, seed)
    i = np.arange(len(order), dtype=np.float64)
    held = np.floor((i + 1) * fraction) > np.floor(i * fraction)
    return np.sort(order[~held]).astype(np.int64), np.sort(order[held]).astype(np.int64)


class EpochSampler(Sampler[int]):
    """Yields a fixed set of dataset indices, reshuffled per epoch as a pure function of it.

    The order of epoch ``e`` is ``indices[randperm(n, seed=mix(seed, salt, e))]``: it depends
    only on (seed, salt, epoch), never on how often the sampler was iterated before or on the
    global RNG, so a resumed run sees the same order. Lightning calls :meth:`set_epoch` each
    epoch; under DDP it wraps this sampler in its ``DistributedSamplerWrapper`` (which forwards
    ``set_epoch`` and shards the order), which is why this is not a ``DistributedSampler``.

    Args:
        indices: dataset indices to draw from.
        seed: base seed.
        shuffle: reshuffle every epoch (False: ``indices`` in the given order).
        salt: distinguishes samplers sharing a seed (e.g. the two search halves).
    """

    def __init__(self, indices: Sequence[int] | np.ndarray | Tensor, *, seed: int = 0,
                 shuffle: bool = True, salt: int = 0) -> None:
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long).reshape(-1).clone()
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.salt = int(salt)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> Tensor:
        """(n,) int64 dataset indices in the order of ``epoch`` (default: the current one)."""
        if not self.shuffle:
            return self.indices.clone()
        epoch = self.epoch if epoch is None else int(epoch)
        g = torch.Generator().manual_seed(mix_seed(self.seed, _SAMPLER_SALT, self.salt, epoch))
        return self.indices[torch.randperm(len(self.indices), generator=g)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return len(self.indices)


class ArrayDataset(Dataset):
    """In-memory images and labels; batched indexing returns a ready ``(x, y)`` batch.

    ``__getitems__`` (used by ``DataLoader`` with automatic batching) gathers a whole batch with
    one tensor index instead of stacking per-sample tensors; :func:`collate_batch` passes it on.

    Args:
        images: (N, C, H, W) uint8.
        labels: (N,) int64.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got "
                             f"{tuple(labels.shape)}")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64).contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]  # (B, C, H, W) uint8, (B,) int64


def collate_batch(batch: Any) -> Any:
    """Collate function: a batch pre-gathered by ``ArrayDataset.__getitems__`` passes through."""
    if isinstance(batch, tuple):
        return batch
    return default_collate(batch)


def _channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 images in [0, 1] units, from 256-bin histograms.

    Avoids materialising a float copy of the data (50k CIFAR images would need 1.2 GB as f64).
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        means.append(float(mean))
        stds.append(max(float(var.sqrt()), 1e-6))
    return tuple(means), tuple(stds)


# ---------------------------------------------------------------------------------------------
# The data module
# ---------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class ImageDataModule(L.LightningDataModule):
    """Base of all image data modules: splits, loaders and on-device augmentation.

    Subclasses set the class or instance attributes ``num_classes``, ``in_channels`` and
    ``image_size`` *before* calling ``super().__init__`` (so they exist right after
    construction and LightningCLI can link them into the model), and implement
    :meth:`_load`. Optionally they set ``default_mean`` / ``default_std`` (normalisation
    statistics in [0, 1] units; ``None`` means "computed from the training images").

    Splits:
        * ``search=False, val_fraction=0``: train on the whole training split, validate on the
          test split (the DARTS evaluation recipe).
        * ``search=False, val_fraction=f``: hold out ``floor(f N)`` training images
          (stratified) for validation.
        * ``search=True``: the training split is cut into two stratified halves of equal size;
          ``train_dataloader()`` returns ``{"weights": half A, "arch": half B}`` and
          ``val_dataloader()`` returns half B without augmentation (as the DARTS search code
          reports the supernet's accuracy on the architecture half).
        ``test_dataloader()`` is always the test split.

    Batches: loaders yield ``(x, y)`` with x uint8 (B, C, H, W) and y int64 (B,);
    :meth:`on_after_batch_transfer` turns x into normalised float32 and, for training batches,
    applies random crop / flip / cutout drawn from a generator seeded by
    (seed, epoch, global step, global rank, split, batch-in-epoch).

    Args:
        batch_size: training batch size (per device).
        eval_batch_size: batch size of validation/test loaders; ``None`` = ``batch_size``.
        num_workers: DataLoader worker processes (0 = load in the main process).
        pin_memory: pin host memory (faster host-to-GPU copies).
        search: bilevel split for one-shot search (see above).
        val_fraction: fraction of the training split held out for validation; must be 0 when
            ``search`` is True.
        seed: seed of the splits, the sampling order and the augmentation (>= 0).
        augment: apply training augmentation at all (False: only normalisation).
        crop_padding: random crop with this much zero padding per side, pixels (0 = off).
        hflip: random horizontal flip (p = 0.5).
        cutout: cutout square side in pixels (0 = off; DARTS uses 16 on CIFAR).
        mean: per-channel normalisation mean in [0, 1] units; ``None`` = the dataset's
            standard value, or computed from the training images where there is none.
        std: per-channel normalisation std; ``None`` as for ``mean``.
    """

    num_classes: int
    in_channels: int
    image_size: int
    default_mean: tuple[float, ...] | None = None
    default_std: tuple[float, ...] | None = None

    def __init__(
        self,
        *,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        search: bool = False,
        val_fraction: float = 0.0,
        seed: int = 0,
        augment: bool = True,
        crop_padding: int = 0,
        hflip: bool = False,
        cutout: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        # Records the init arguments of the whole subclass chain (saved in checkpoints as
        # "datamodule_hyper_parameters"). Not sent to the loggers: Lightning refuses to merge
        # them with the strategy's when a key differs, and the data's split seed and a
        # strategy's seed are both called `seed` (config.yaml keeps both).
        self.save_hyperparameters(logger=False)
        for attr in ("num_classes", "in_channels", "image_size"):
            if not isinstance(getattr(self, attr, None), int):
                raise TypeError(f"{type(self).__name__} must set the int attribute {attr!r} "
                                "before calling ImageDataModule.__init__")
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.eval_batch_size = (self.batch_size if eval_batch_size is None
                                else _check_int("eval_batch_size", eval_batch_size, 1))
        self.num_workers = _check_int("num_workers", num_workers, 0)
        self.pin_memory = bool(pin_memory)
        self.search = bool(search)
        if not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        if self.search and val_fraction > 0:
            raise ValueError(
                "val_fraction must be 0 when search=True: in search mode the training split is "
                "cut into the weights and architecture halves and validation uses the "
                "architecture half"
            )
        self.val_fraction = float(val_fraction)
        self.seed = _check_int("seed", seed, 0)
        self.augment = bool(augment)
        self.crop_padding = _check_int("crop_padding", crop_padding, 0)
        self.hflip = bool(hflip)
        self.cutout = _check_int("cutout", cutout, 0)
        if self.crop_padding > self.image_size:
            raise ValueError(f"crop_padding={crop_padding} exceeds the image size "
                             f"{self.image_size}")
        # Known statistics are set now; None ones are computed from the training images in setup.
        self._mean = self._check_stats("mean", mean if mean is not None else self.default_mean)
        self._std = self._check_stats("std", std if std is not None else self.default_std)
        if self._std is not None and min(self._std) <= 0:
            raise ValueError(f"std entries must be > 0, got {list(self._std)}")

        # Filled by setup().
        self._train_set: ArrayDataset | None = None
        self._test_set: ArrayDataset | None = None
        self._splits: dict[str, np.ndarray] = {}
        self._stat_cache: dict[str, tuple[Tensor, Tensor]] = {}
        # Training batches seen in the current epoch, per split (part of the augmentation seed).
        self._aug_epoch = -1
        self._aug_count: dict[str, int] = {}

    # -- copies: to another process, and one per fit -----------------------------------------
    _PER_FIT = {"_aug_epoch": -1, "_aug_count": dict, "trainer": None}
    _LOADED = {"_train_set": None, "_test_set": None, "_splits": dict, "_stat_cache": dict}

    def _state_without(self, *groups: Mapping[str, Any]) -> dict[str, Any]:
        state = dict(self.__dict__)
        for group in groups:
            for name, value in group.items():
                if name in state:
                    state[name] = value() if callable(value) else value
        return state

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the loaded images, splits and per-fit state (augmentation
        counters, the attached trainer): a process that receives the module (a search trial
        in a process pool, a spawned DDP rank) loads them again in :meth:`setup`, instead of
        receiving the arrays with every call."""
        return self._state_without(self._PER_FIT, self._LOADED)

    def __copy__(self) -> ImageDataModule:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def fresh_copy(self) -> ImageDataModule:
        """A copy for one more fit: it shares the loaded arrays and splits, with the per-fit
        state (augmentation counters, the attached trainer) reset."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self._state_without(self._PER_FIT))
        return clone

    def _check_stats(self, name: str, values: Sequence[float] | None) -> tuple[float, ...] | None:
        if values is None:
            return None
        values = tuple(float(v) for v in values)
        if len(values) != self.in_channels:
            raise ValueError(f"{name} needs {self.in_channels} values (one per channel), "
                             f"got {len(values)}")
        return values

    # -- subclass interface ------------------------------------------------------------------

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return ``(x_train, y_train, x_test, y_test)``: uint8 (N, C, H, W), int64 (N,)."""
        raise NotImplementedError

    # -- setup -------------------------------------------------------------------------------

    def _check_arrays(self, split: str, x: Tensor, y: Tensor) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected or x.dtype != torch.uint8:
            raise ValueError(f"{type(self).__name__}: {split} images are {x.dtype} "
                             f"{tuple(x.shape)}, expected uint8 (N, "
                             f"{', '.join(map(str, expected))})")
        if y.shape != (x.shape[0],):
            raise ValueError(f"{type(self).__name__}: {split} has {x.shape[0]} images but "
                             f"labels of shape {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"{type(self).__name__}: {split} labels span "
                             f"[{int(y.min())}, {int(y.max())}], expected [0, {self.num_classes})")

    def training_splits(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Indices of the training images per split, from their labels: the bilevel halves
        ``weights``/``arch`` (``search``), ``train``/``val`` (``val_fraction``) or ``train``."""
        n = len(labels)
        if self.search:
            if n < 2:
                raise ValueError(f"search mode needs at least 2 training images, got {n}")
            return dict(zip(("weights", "arch"), stratified_halves(labels, self.seed)))
        if self.val_fraction > 0:
            train_idx, val_idx = stratified_holdout(labels, self.val_fraction, self.seed)
            if len(val_idx) == 0 or len(train_idx) == 0:
                raise ValueError(f"val_fraction={self.val_fraction} of {n} training images "
                                 f"leaves {len(train_idx)} for training and {len(val_idx)} "
                                 "for validation; both must be >= 1")
            return {"train": train_idx, "val": val_idx}
        return {"train": np.arange(n, dtype=np.int64)}

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays (once) and compute the splits and normalisation statistics."""
        if self._train_set is not None:
            return
        x_train, y_train, x_test, y_test = self._load()
        self._check_arrays("train", x_train, y_train)
        self._check_arrays("test", x_test, y_test)
        self._train_set = ArrayDataset(x_train, y_train)
        self._test_set = ArrayDataset(x_test, y_test)
        self._splits = self.training_splits(y_train.numpy())
        if self._mean is None or self._std is None:
            stats = _channel_stats(x_train)
            self._mean = self._mean if self._mean is not None else stats[0]
            self._std = self._std if self._std is not None else stats[1]

    def _require_setup(self) -> None:
        if self._train_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the loaders or "
                               "the batch transform are used")

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean in [0, 1] units.

        Known from construction when given or standard for the data set; otherwise computed
        from the training images in :meth:`setup`.
        """
        if self._mean is None:
            self._require_setup()
        return self._mean  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation std in [0, 1] units (available as :attr:`mean`)."""
        if self._std is None:
            self._require_setup()
        return self._std  # type: ignore[return-value]

    def split_indices(self) -> dict[str, np.ndarray]:
        """Indices into the training split per role (``train``/``val`` or ``weights``/``arch``)."""
        self._require_setup()
        return {k: v.copy() for k, v in self._splits.items()}

    def split_sizes(self) -> dict[str, int]:
        """Number of images per role, test included (for logs and reports)."""
        self._require_setup()
        sizes = {k: len(v) for k, v in self._splits.items()}
        sizes["test"] = len(self._test_set)  # type: ignore[arg-type]
        return sizes

    # -- loaders -------------------------------------------------------------------------------

    def _loader(self, dataset: ArrayDataset, indices: np.ndarray, *, train: bool,
                salt: str) -> DataLoader:
        sampler = EpochSampler(indices, seed=self.seed, shuffle=train, salt=SPLIT_SALTS[salt])
        # Own generator: DataLoader draws its worker base seed from it, not the global RNG.
        generator = torch.Generator().manual_seed(
            mix_seed(self.seed, _LOADER_SALT, SPLIT_SALTS[salt], int(train)))
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            pin_memory=self.pin_memory,
            drop_last=False,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """Training batches; in search mode ``{"weights": half A, "arch": half B}``."""
        self._require_setup()
        if self.search:
            return {
                "weights": self._loader(self._train_set, self._splits["weights"], train=True,
                                        salt="weights"),
                "arch": self._loader(self._train_set, self._splits["arch"], train=True,
                                     salt="arch"),
            }
        return self._loader(self._train_set, self._splits["train"], train=True, salt="train")

    def val_dataloader(self) -> DataLoader:
        """Half B (search), the held-out fraction (``val_fraction > 0``) or the test split."""
        self._require_setup()
        if self.search:
            return self._loader(self._train_set, self._splits["arch"], train=False, salt="arch")
        if "val" in self._splits:
            return self._loader(self._train_set, self._splits["val"], train=False, salt="eval")
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader:
        """The test split, in order."""
        self._require_setup()
        return self._loader(self._test_set, np.arange(len(self._test_set)), train=False,
                            salt="eval")

    def split_batches(self, split: str, *, epoch: int, rank: int = 0, world_size: int = 1,
                      batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """An endless stream of uint8 ``(x, y)`` batches of one split, outside the trainer's
        loaders (e.g. ENAS trains its controller on the architecture half after the epoch's
        weight steps).

        Pass ``p`` over the split is in a seeded order that depends only on (seed, split,
        ``epoch``, p), so a resumed run draws the same batches. Under DDP rank ``r`` of
        ``world_size`` takes every ``world_size``-th image of that order (rank r's k-th batch
        and the other ranks' k-th batches together are the single-process k-th batch of
        ``world_size`` times the size). Apply :meth:`transform_batch` on the device.

        Args:
            split: ``"weights"``/``"arch"`` (search mode), ``"train"``, ``"val"``.
            epoch: selects the orders.
            rank, world_size: this process's shard.
            batch_size: images per batch and rank (default the training batch size).
        """
        self._require_setup()
        if split not in self._splits:
            raise ValueError(f"{type(self).__name__} has no split {split!r} in this mode "
                             f"(splits: {sorted(self._splits)}; search halves need search=True)")
        indices = torch.as_tensor(np.asarray(self._splits[split]), dtype=torch.long)
        size = batch_size or self.batch_size
        if len(indices) < world_size:
            raise ValueError(f"split {split!r} has {len(indices)} images for {world_size} ranks")
        p = 0
        while True:
            g = torch.Generator().manual_seed(
                mix_seed(self.seed, _STREAM_SALT, SPLIT_SALTS.get(split, 0), epoch, p))
            order = indices[torch.randperm(len(indices), generator=g)]
            usable = len(order) - len(order) % world_size  # equal shards, as DistributedSampler
            shard = order[:usable][rank::world_size]
            for start in range(0, len(shard) - size + 1, size):  # full batches only
                yield self._train_set.__getitems__(shard[start:start + size].tolist())
            if len(shard) < size:
                raise ValueError(f"split {split!r} holds {len(shard)} images per rank, fewer "
                                 f"than one batch of {size}")
            p += 1

    def predict_dataloader(self) -> DataLoader:
        """Same as :meth:`test_dataloader`."""
        return self.test_dataloader()

    # -- on-device transform -----------------------------------------------------------------

    def _stats_on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        key = str(device)
        if key not in self._stat_cache:
            self._stat_cache[key] = (torch.tensor(self.mean, dtype=torch.float32, device=device),
                                     torch.tensor(self.std, dtype=torch.float32, device=device))
        return self._stat_cache[key]

    def augmentation_seed(self, split: str = "train") -> int:
        """Seed for the next training batch of ``split``; advances the in-epoch batch count.

        A function of (seed, epoch, global step, global rank, split, batches of this split
        already transformed in this epoch). Without a trainer, epoch, step and rank are 0.
        """
        trainer = self.trainer
        epoch = int(trainer.current_epoch) if trainer is not None else 0
        step = int(trainer.global_step) if trainer is not None else 0
        rank = int(trainer.global_rank) if trainer is not None else 0
        if epoch != self._aug_epoch:
            self._aug_epoch, self._aug_count = epoch, {}
        count = self._aug_count.get(split, 0)
        self._aug_count[split] = count + 1
        return mix_seed(self.seed, _AUGMENT_SALT, SPLIT_SALTS.get(split, 0), epoch, step, rank,
                        count)

    def transform_batch(self, batch: tuple[Tensor, Tensor], *, train: bool,
                        split: str = "train",
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """uint8 ``(x, y)`` -> float32 normalised ``(x, y)``, augmented when ``train``.

        Args:
            batch: x (B, C, H, W) uint8, y (B,) integer labels, on any device.
            train: apply the configured augmentation (if ``augment`` is on).
            split: which training stream the batch belongs to (``train``, ``weights``,
                ``arch``); selects the augmentation seed salt.
            generator: explicit RNG on x's device; default: seeded by
                :meth:`augmentation_seed`.

        Returns:
            (x float32 (B, C, H, W), y int64 (B,)).
        """
        x, y = batch
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 image batch, got {x.dtype}; the loaders of "
                            f"{type(self).__name__} yield uint8 and this hook normalises")
        mean, std = self._stats_on(x.device)
        active = bool(train and self.augment and (self.crop_padding or self.hflip or self.cutout))
        if active and generator is None:
            generator = torch.Generator(device=x.device).manual_seed(self.augmentation_seed(split))
        x = aug.augment_batch(x, mean=mean, std=std, generator=generator if active else None,
                              crop_padding=self.crop_padding, hflip=self.hflip, cutout=self.cutout)
        return x, y.to(torch.int64)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise (and, while training, augment) a batch already on its device.

        Training is detected from ``trainer.training``; without a trainer (unit tests), a dict
        batch (search mode) counts as training and a tuple batch as evaluation.
        """
        trainer = self.trainer
        if isinstance(batch, Mapping):
            train = bool(trainer.training) if trainer is not None else True
            return {k: self.transform_batch(v, train=train, split=k) for k, v in batch.items()}
        train = bool(trainer.training) if trainer is not None else False
        return self.transform_batch(batch, train=train, split="train")

    # -- files -------------------------------------------------------------------------------

    @staticmethod
    def _fetch_or_explain(path: Path, *, url: str, md5: str | None, download: bool,
                          what: str) -> None:
        """Make sure ``path`` exists: download it when allowed, else say what to do."""
        if path.is_file():
            return
        if download:
            download_url(url, path, md5)
            return
        raise FileNotFoundError(
            f"{what} not found: {path} does not exist. Put {path.name} (from {url}"
            f"{', md5 ' + md5 if md5 else ''}) into {path.parent}, or pass "
            "`--data.download true` (download=True) to fetch it."
        )
