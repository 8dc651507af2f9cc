"""Synthetic class-pattern images for tests: any shape, no files, learnable above chance."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lightning_nas.data.base import ImageDataModule, _check_int, mix_seed

__all__ = ["SyntheticDataModule"]

_PATTERN_SALT = 505


class SyntheticDataModule(ImageDataModule):
    """Random images with a per-class pattern, deterministic from ``seed``.

    Each class ``k`` owns a blocky +-1 pattern ``P_k`` of shape (C, S, S) (a random sign per
    4x4-pixel block and channel). An image of class ``k`` is
    ``clip(round(128 + signal * P_k + noise * N(0, 1)), 0, 255)`` as uint8, so a linear model
    or a small conv net separates the classes well above chance while single pixels stay
    noisy. Labels are balanced (``i % num_classes``, shuffled). Train and test images are
    independent draws with the same patterns. Normalisation statistics are computed from the
    training images. Augmentation is off by default (``crop_padding=0``, ``hflip=False``).

    Args:
        num_classes: number of classes (>= 2).
        in_channels: image channels (>= 1).
        image_size: side of the square images in pixels (>= 1).
        train_size: number of training images (>= 2).
        test_size: number of test images (>= 1).
        signal: pattern amplitude in pixel units (0..255 scale).
        noise: standard deviation of the per-pixel Gaussian noise in pixel units.
        crop_padding: random-crop padding in pixels.
        hflip: random horizontal flip.
        **kwargs: :class:`~lightning_nas.data.base.ImageDataModule` arguments.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 train_size: int = 512, test_size: int = 128, signal: float = 48.0,
                 noise: float = 48.0, crop_padding: int = 0, hflip: bool = False,
                 **kwargs) -> None:
        self.num_classes = _check_int("num_classes", num_classes, 2)
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.image_size = _check_int("image_size", image_size, 1)
        self.train_size = _check_int("train_size", train_size, 2)
        self.test_size = _check_int("test_size", test_size, 1)
        if signal < 0 or noise < 0:
            raise ValueError(f"signal and noise must be >= 0, got {signal}, {noise}")
        self.signal, self.noise = float(signal), float(noise)
        super().__init__(crop_padding=crop_padding, hflip=hflip, **kwargs)

    def patterns(self) -> np.ndarray:
        """(num_classes, C, S, S) float array of +-1 class patterns."""
        rng = np.random.default_rng(mix_seed(self.seed, _PATTERN_SALT))
        blocks = -(-self.image_size // 4)  # ceil(S / 4) blocks per side
        low = rng.choice([-1.0, 1.0], size=(self.num_classes, self.in_channels, blocks, blocks))
        full = low.repeat(4, axis=2).repeat(4, axis=3)
        return full[:, :, : self.image_size, : self.image_size]

    def _draw(self, n: int, stream: int, patterns: np.ndarray) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng(mix_seed(self.seed, _PATTERN_SALT, stream))
        labels = rng.permutation(np.arange(n) % self.num_classes)
        noise = rng.standard_normal((n, self.in_channels, self.image_size, self.image_size))
        x = 128.0 + self.signal * patterns[labels] + self.noise * noise
        images = np.clip(np.rint(x), 0, 255).astype(np.uint8)  # (N, C, S, S)
        return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        patterns = self.patterns()
        return (*self._draw(self.train_size, 1, patterns), *self._draw(self.test_size, 2, patterns))
