"""scikit-learn's embedded 8x8 digits: the default data set, no download, seconds on a CPU."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lightning_nas.data.base import ImageDataModule, stratified_holdout

__all__ = ["DigitsDataModule"]


class DigitsDataModule(ImageDataModule):
    """The 1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits``.

    (A copy of the test set of the UCI "optical recognition of handwritten digits" data.)

    Pixel values 0..16 are rescaled to 0..255 (``round(v * 255 / 16)``) and stored as uint8
    (N, 1, 8, 8). The train/test split is stratified, ``test_fraction`` of each class held out,
    and fixed by ``split_seed`` (independent of ``seed``, so runs with different seeds are
    scored on the same test images): 1,438 train / 359 test with the defaults. Normalisation
    statistics are computed from the training images. Digits are not mirror-symmetric, so
    horizontal flips are off by default; the crop pads by one pixel.

    Args:
        test_fraction: fraction of each class held out as the test split, in (0, 1).
        split_seed: seed of the train/test split (>= 0).
        crop_padding: random-crop padding in pixels.
        hflip: random horizontal flip.
        **kwargs: :class:`~lightning_nas.data.base.ImageDataModule` arguments (``batch_size``,
            ``search``, ``seed``, ``cutout`` ...).
    """

    num_classes = 10
    in_channels = 1
    image_size = 8

    def __init__(self, *, test_fraction: float = 0.2, split_seed: int = 0, crop_padding: int = 1,
                 hflip: bool = False, **kwargs) -> None:
        if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            raise ValueError(f"split_seed must be an integer >= 0, got {split_seed!r}")
        self.test_fraction = float(test_fraction)
        self.split_seed = split_seed
        super().__init__(crop_padding=crop_padding, hflip=hflip, **kwargs)

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # (1797, 8, 8) float64 in 0..16 -> (1797, 1, 8, 8) uint8 in 0..255
        images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
        labels = digits.target.astype(np.int64)
        train_idx, test_idx = stratified_holdout(labels, self.test_fraction, self.split_seed)
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
