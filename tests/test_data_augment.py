"""Batched augmentation ops against hand-computed expectations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.data import augment as aug


def _batch(b=4, c=3, h=8, w=8, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (b, c, h, w), generator=g, dtype=torch.int64).to(torch.uint8)


def test_crop_at_centre_offset_is_identity():
    x = _batch()
    p = 3
    offsets = torch.full((x.shape[0], 2), p)
    assert torch.equal(aug.crop_at(x, p, offsets), x)


def test_crop_at_zero_offset_shifts_down_right_with_zero_fill():
    x = _batch(h=6, w=7)
    p = 2
    out = aug.crop_at(x, p, torch.zeros(x.shape[0], 2, dtype=torch.long))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out[:, :, p:, p:], x[:, :, :-p, :-p])
    assert (out[:, :, :p, :] == 0).all() and (out[:, :, :, :p] == 0).all()


def test_crop_at_per_sample_offsets_match_a_loop_reference():
    x = _batch(b=5, c=2, h=5, w=6)
    p = 2
    offsets = torch.tensor([[0, 0], [4, 4], [1, 3], [2, 2], [4, 0]])
    out = aug.crop_at(x, p, offsets)
    padded = F.pad(x, (p, p, p, p))
    for i, (r, c) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, r:r + 5, c:c + 6])


def test_random_crop_uses_only_its_generator():
    x = _batch(b=16)
    state = torch.random.get_rng_state()
    a = aug.random_crop(x, 4, torch.Generator().manual_seed(7))
    b = aug.random_crop(x, 4, torch.Generator().manual_seed(7))
    c = aug.random_crop(x, 4, torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Every output is some window of the padded image: count of non-padding pixels shrinks.
    assert ((a != 0).sum(dim=(1, 2, 3)) <= (x != 0).sum(dim=(1, 2, 3))).all()


def test_hflip_where_and_twice_is_identity():
    x = _batch(b=4)
    flags = torch.tensor([True, False, True, False])
    out = aug.hflip_where(x, flags)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    assert torch.equal(aug.hflip_where(out, flags), x)
    g = torch.Generator().manual_seed(0)
    y = aug.random_hflip(x, g)
    assert all(torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1)) for i in range(4))


def test_random_hflip_flips_about_half():
    x = torch.arange(4, dtype=torch.float32).reshape(1, 1, 1, 4).expand(2000, 1, 1, 4)
    y = aug.random_hflip(x, torch.Generator().manual_seed(1))
    flipped = (y[:, 0, 0, 0] == 3).float().mean().item()
    assert 0.45 < flipped < 0.55


def test_cutout_far_from_border_zeroes_exactly_length_squared_pixels():
    x = torch.ones(2, 3, 16, 16)
    out = aug.cutout_at(x, torch.tensor([[8, 8], [5, 10]]), 4)
    assert ((out == 0).sum(dim=(1, 2, 3)) == 4 * 4 * 3).all()
    # Square of sample 0 spans rows/cols [6, 10): DARTS' y1 = y - L//2, y2 = y + L//2.
    assert (out[0, :, 6:10, 6:10] == 0).all()
    assert out[0, :, 5, :].ne(0).all() and out[0, :, 10, :].ne(0).all()


def test_cutout_is_clipped_at_the_border_and_odd_length_has_side_length():
    x = torch.ones(2, 1, 10, 10)
    out = aug.cutout_at(x, torch.tensor([[0, 0], [9, 5]]), 4)
    assert (out[0] == 0).sum() == 2 * 2  # rows/cols [-2, 2) clipped to [0, 2)
    assert (out[1] == 0).sum() == 3 * 4  # rows [7, 11) -> [7, 10), cols [3, 7)
    out = aug.cutout_at(torch.ones(1, 1, 9, 9), torch.tensor([[4, 4]]), 3)
    assert (out == 0).sum() == 9 and (out[0, 0, 3:6, 3:6] == 0).all()


def test_random_cutout_counts():
    x = torch.ones(64, 2, 12, 12)
    out = aug.random_cutout(x, 6, torch.Generator().manual_seed(3))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert (zeros > 0).all() and (zeros <= 6 * 6 * 2).all()
    assert (zeros % 2 == 0).all()  # all channels together
    assert (zeros == 72).any() and (zeros < 72).any()  # some inside, some clipped


def test_normalize_gives_zero_mean_unit_std_per_channel():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.rand(32, 8, 8, generator=g) * 0.5,
                     0.2 + torch.rand(32, 8, 8, generator=g) * 0.1], dim=1)  # (32, 2, 8, 8)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    y = aug.normalize(x, mean, std)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4)
    c = aug.normalize(torch.full((1, 3, 2, 2), 0.5), (0.25, 0.5, 0.75), (0.5, 0.25, 0.5))
    assert torch.allclose(c[0, :, 0, 0], torch.tensor([0.5, 0.0, -0.5]))
    with pytest.raises(ValueError, match="channels"):
        aug.normalize(x, (0.5,), (0.5,))


def test_augment_batch_eval_path_and_to_float():
    x = _batch()
    assert aug.to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [0.0, 1.0]
    out = aug.augment_batch(x, mean=(0.5,) * 3, std=(0.25,) * 3, generator=None, crop_padding=4,
                            hflip=True, cutout=4)
    assert out.dtype == torch.float32
    assert torch.allclose(out, (x.float() / 255 - 0.5) / 0.25)


def test_augment_batch_train_path_is_deterministic_and_leaves_global_rng():
    x = _batch(b=8, h=16, w=16)
    state = torch.random.get_rng_state()
    kw = dict(mean=(0.5,) * 3, std=(0.25,) * 3, crop_padding=2, hflip=True, cutout=4)
    a = aug.augment_batch(x, generator=torch.Generator().manual_seed(1), **kw)
    b = aug.augment_batch(x, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.allclose(a, aug.augment_batch(x, generator=None, **kw))
    assert (a == 0).sum() >= 3  # cutout zeros in normalised space
