"""LightningDataModules for image classification and one-shot (bilevel) search.

All modules share :class:`ImageDataModule`: uint8 loaders, deterministic resumable sampling,
on-device augmentation and normalisation in ``on_after_batch_transfer``, and the DARTS
``search=True`` split into weight and architecture halves.
"""

from lightning_nas.data.augment import (
    augment_batch,
    crop_at,
    cutout_at,
    hflip_where,
    normalize,
    random_crop,
    random_cutout,
    random_hflip,
    to_float,
)
from lightning_nas.data.base import (
    ArrayDataset,
    ChecksumError,
    EpochSampler,
    ImageDataModule,
    download_url,
    md5_file,
    mix_seed,
    shared_data_dir,
    stratified_halves,
    stratified_holdout,
)
from lightning_nas.data.cifar import CIFAR10DataModule, CIFAR100DataModule, read_cifar_archive
from lightning_nas.data.digits import DigitsDataModule
from lightning_nas.data.image_folder import ImageFolderDataModule, clear_decode_cache
from lightning_nas.data.mnist import MNISTDataModule, read_idx
from lightning_nas.data.shards import (
    ShardedImageDataModule,
    ShardIndex,
    scan_shards,
)
from lightning_nas.data.streaming import (
    FileIndex,
    StreamingImageDataModule,
    StreamingImageDataset,
    scan_class_folders,
)
from lightning_nas.data.synthetic import SyntheticDataModule

__all__ = [
    "ArrayDataset",
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "ChecksumError",
    "DigitsDataModule",
    "EpochSampler",
    "FileIndex",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "StreamingImageDataModule",
    "StreamingImageDataset",
    "ShardIndex",
    "ShardedImageDataModule",
    "SyntheticDataModule",
    "augment_batch",
    "clear_decode_cache",
    "crop_at",
    "cutout_at",
    "download_url",
    "hflip_where",
    "md5_file",
    "mix_seed",
    "normalize",
    "random_crop",
    "random_cutout",
    "random_hflip",
    "read_cifar_archive",
    "read_idx",
    "scan_class_folders",
    "scan_shards",
    "shared_data_dir",
    "stratified_halves",
    "stratified_holdout",
    "to_float",
]
