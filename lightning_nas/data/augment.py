"""Batched image augmentation as tensor ops, on whatever device the batch lives on.

Every function takes a whole batch ``(B, C, H, W)`` and draws per-sample randomness from an
explicit ``torch.Generator`` on the batch's device, never from the global RNG, so a data
module can seed augmentation from (seed, epoch, step, rank) and a resumed run reproduces it.
No Python loop runs over the samples of a batch.

The random ops are split into a deterministic core (``crop_at``, ``hflip_where``,
``cutout_at``) that takes the per-sample parameters explicitly, and a ``random_*`` wrapper that
draws those parameters, so tests can check the core against hand-computed expectations.

The order used by :func:`augment_batch` follows the DARTS CIFAR recipe (Liu et al. 2019,
``utils._data_transforms_cifar10``): random crop with zero padding and horizontal flip in
pixel space, then conversion to float and per-channel normalisation, then cutout (DeVries &
Taylor 2017), which zeroes a square *after* normalisation (i.e. fills it with the mean colour).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "augment_batch",
    "crop_at",
    "cutout_at",
    "hflip_where",
    "normalize",
    "random_crop",
    "random_cutout",
    "random_hflip",
    "to_float",
]


def _check_batch(x: Tensor, name: str = "x") -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} must be a batch of images (B, C, H, W); "
                         f"got shape {tuple(x.shape)}")


def to_float(x: Tensor) -> Tensor:
    """uint8 pixels in 0..255 -> float32 in [0, 1] (like torchvision's ``ToTensor``).

    Args:
        x: (B, C, H, W) uint8 batch. Float input is returned as float32 unchanged.

    Returns:
        (B, C, H, W) float32.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def normalize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """Per-channel ``(x - mean) / std``.

    Args:
        x: (B, C, H, W) float batch, values in [0, 1].
        mean: C channel means, in the same [0, 1] units.
        std: C channel standard deviations (> 0).

    Returns:
        (B, C, H, W) float tensor.
    """
    _check_batch(x)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    if mean_t.shape[1] != x.shape[1] or std_t.shape[1] != x.shape[1]:
        raise ValueError(
            f"mean/std have {mean_t.shape[1]}/{std_t.shape[1]} entries but the batch has "
            f"{x.shape[1]} channels"
        )
    return (x - mean_t) / std_t


def crop_at(x: Tensor, padding: int, offsets: Tensor) -> Tensor:
    """Zero-pad each image by ``padding`` on every side and cut an (H, W) window per sample.

    The window of sample ``b`` starts at row ``offsets[b, 0]`` and column ``offsets[b, 1]`` of
    the padded image, so offset ``(padding, padding)`` returns the image unchanged and offset
    ``(0, 0)`` shifts it down-right by ``padding`` pixels. One ``gather`` does all samples.

    Args:
        x: (B, C, H, W) batch of any dtype.
        padding: pixels of zero padding per side (>= 0).
        offsets: (B, 2) integer (row, col) window origins in ``[0, 2 * padding]``.

    Returns:
        (B, C, H, W) tensor of x's dtype.
    """
    _check_batch(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    b, c, h, w = x.shape
    if offsets.shape != (b, 2):
        raise ValueError(f"offsets must have shape ({b}, 2), got {tuple(offsets.shape)}")
    if padding == 0:
        return x
    offsets = offsets.to(device=x.device, dtype=torch.long)
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p), zeros
    wp = w + 2 * padding
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (B, H) padded-row index
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (B, W) padded-col index
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w)  # (B, 1, H*W)
    out = torch.gather(padded.reshape(b, c, -1), 2, flat.expand(b, c, h * w))
    return out.reshape(b, c, h, w)


def random_crop(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Random crop with zero padding (torchvision ``RandomCrop(size, padding)``), per sample.

    Args:
        x: (B, C, H, W) batch.
        padding: pixels of zero padding per side; the offsets are uniform in ``[0, 2p]``.
        generator: RNG on ``x.device``.

    Returns:
        (B, C, H, W) tensor of x's dtype.
    """
    _check_batch(x)
    if padding == 0:
        return x
    offsets = torch.randint(0, 2 * padding + 1, (x.shape[0], 2), generator=generator,
                            device=x.device)
    return crop_at(x, padding, offsets)


def hflip_where(x: Tensor, flags: Tensor) -> Tensor:
    """Mirror the images whose flag is True left-right.

    Args:
        x: (B, C, H, W) batch.
        flags: (B,) bool.

    Returns:
        (B, C, H, W) tensor.
    """
    _check_batch(x)
    flags = flags.to(device=x.device, dtype=torch.bool).reshape(-1, 1, 1, 1)
    return torch.where(flags, x.flip(-1), x)


def random_hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Flip each image left-right with probability ``p``.

    Args:
        x: (B, C, H, W) batch.
        generator: RNG on ``x.device``.
        p: flip probability.

    Returns:
        (B, C, H, W) tensor.
    """
    flags = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return hflip_where(x, flags)


def cutout_at(x: Tensor, centres: Tensor, length: int) -> Tensor:
    """Zero a ``length`` x ``length`` square per sample, clipped at the image border.

    The square of sample ``b`` covers rows ``[cy - length // 2, cy - length // 2 + length)`` and
    the same for columns, intersected with the image; all channels are zeroed. For even
    ``length`` this is exactly DeVries & Taylor's / DARTS' ``Cutout`` (``y1 = clip(y - L//2)``,
    ``y2 = clip(y + L//2)``); for odd ``length`` the side is ``length`` rather than ``length-1``.

    Args:
        x: (B, C, H, W) batch (normally float, after normalisation).
        centres: (B, 2) integer (row, col) centres, anywhere in the image.
        length: side of the square in pixels (>= 0; 0 is a no-op).

    Returns:
        (B, C, H, W) tensor.
    """
    _check_batch(x)
    if length < 0:
        raise ValueError(f"cutout length must be >= 0, got {length}")
    if length == 0:
        return x
    b, _, h, w = x.shape
    if centres.shape != (b, 2):
        raise ValueError(f"centres must have shape ({b}, 2), got {tuple(centres.shape)}")
    centres = centres.to(device=x.device, dtype=torch.long)
    top_left = centres - length // 2  # (B, 2), may be negative: clipping is implicit below
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top_left[:, 0, None]) & (rows < top_left[:, 0, None] + length)  # (B, H)
    in_cols = (cols >= top_left[:, 1, None]) & (cols < top_left[:, 1, None] + length)  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return x.masked_fill(mask[:, None], 0)


def random_cutout(x: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """Cutout with the centre uniform over all pixels (so the square may be clipped).

    Args:
        x: (B, C, H, W) batch.
        length: side of the square in pixels; 0 disables.
        generator: RNG on ``x.device``.

    Returns:
        (B, C, H, W) tensor.
    """
    _check_batch(x)
    if length == 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator, device=x.device)
    cx = torch.randint(0, w, (b,), generator=generator, device=x.device)
    return cutout_at(x, torch.stack([cy, cx], dim=1), length)


def augment_batch(
    x: Tensor,
    *,
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    generator: torch.Generator | None = None,
    crop_padding: int = 0,
    hflip: bool = False,
    cutout: int = 0,
) -> Tensor:
    """uint8 batch -> normalised float32 batch, with optional training augmentation.

    Order (DARTS CIFAR recipe): crop (zero padding, pixel space) -> flip -> to float in [0, 1]
    -> normalise -> cutout (zeros in normalised space). With ``generator=None`` no augmentation
    is applied (evaluation).

    Args:
        x: (B, C, H, W) uint8 batch.
        mean: C channel means in [0, 1] units.
        std: C channel standard deviations in [0, 1] units.
        generator: RNG on ``x.device``; ``None`` means no augmentation.
        crop_padding: random-crop padding in pixels (0 = off).
        hflip: random horizontal flip with probability 0.5.
        cutout: cutout square side in pixels (0 = off).

    Returns:
        (B, C, H, W) float32 normalised batch.
    """
    _check_batch(x)
    if generator is not None:
        if crop_padding:
            x = random_crop(x, crop_padding, generator)
        if hflip:
            x = random_hflip(x, generator)
    out = normalize(to_float(x), mean, std)
    if generator is not None and cutout:
        out = random_cutout(out, cutout, generator)
    return out
