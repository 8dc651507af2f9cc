"""StreamingImageDataModule: file index, crops, splits, determinism across workers, errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from streaming_helpers import COLOURS, make_image_folder

from lightning_nas.data import (
    FileIndex,
    ImageFolderDataModule,
    StreamingImageDataModule,
    StreamingImageDataset,
    scan_class_folders,
    stratified_halves,
)
from lightning_nas.data.image_folder import UnreadableImageError
from lightning_nas.data.streaming import IMAGENET_MEAN, IMAGENET_STD, eval_box, random_resized_box


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imgs"))


def module(root, **kwargs):
    kwargs = {"image_size": 24, "batch_size": 4, "num_workers": 0, **kwargs}
    dm = StreamingImageDataModule(root=str(root), **kwargs)
    dm.setup("fit")
    return dm


def all_batches(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def test_file_index_round_trip_subset_and_pickle():
    paths = [f"n{c:08d}/img_{i}.JPEG" for c in range(3) for i in range(5)] + ["é/ü.jpg"]
    labels = [c for c in range(3) for _ in range(5)] + [3]
    index = FileIndex.from_lists(paths, labels)
    assert len(index) == 16 and [index.path(i) for i in range(16)] == paths
    assert index.labels.dtype == np.int16 and index.labels.tolist() == labels
    sub = index.subset(np.array([15, 2, 7]))
    assert [sub.path(i) for i in range(3)] == [paths[15], paths[2], paths[7]]
    assert sub.labels.tolist() == [3, 0, 1]
    again = pickle.loads(pickle.dumps(index))
    assert [again.path(i) for i in range(16)] == paths
    # compact: the bytes of the paths plus 8 + 2 bytes per file
    assert index.nbytes == sum(len(p.encode()) for p in paths) + 8 * 17 + 2 * 16


def test_scan_sorts_files_and_limits_per_class(folder):
    index = scan_class_folders(folder / "train", ["class_0", "class_2"], max_per_class=4)
    assert [index.path(i) for i in range(len(index))] == [
        f"class_{c}/{i:03d}.jpg" for c in (0, 2) for i in range(4)]
    assert index.labels.tolist() == [0] * 4 + [1] * 4


def test_random_resized_box_stays_inside_with_its_area_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(500):
        w = int(rng.integers(100, 400))
        h = int(w * rng.uniform(0.8, 1.25))  # within the ratios: the fallback is the whole image
        left, top, right, bottom = random_resized_box(w, h, rng, scale=(0.25, 0.9),
                                                      ratio=(3 / 4, 4 / 3))
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        bw, bh = right - left, bottom - top
        if (bw, bh) != (w, h):  # a sampled box (not the fallback)
            assert 0.25 * w * h * 0.8 <= bw * bh <= 0.9 * w * h * 1.2  # rounding of sides
            assert 3 / 4 * 0.8 <= bw / bh <= 4 / 3 * 1.25
    # an extreme image that no box fits falls back to the central box, ratio clamped
    assert random_resized_box(400, 10, np.random.default_rng(1), scale=(0.9, 1.0),
                              ratio=(1.0, 1.0)) == (195, 0, 205, 10)


def test_eval_box_is_resize_then_centre_crop():
    # 400x300, size 224 from 256: shorter side 300 -> 256, centre 224 = 262.5 original pixels
    left, top, right, bottom = eval_box(400, 300, 224, 0.875)
    assert right - left == pytest.approx(300 * 224 / 256) == bottom - top
    assert (left + right) / 2 == 200 and (top + bottom) / 2 == 150


def test_eval_crop_keeps_the_centre_of_a_picture(tmp_path):
    # left third red, middle third green, right third blue: a centre crop of a wide image
    # with crop fraction 1/3 sees only green
    pixels = np.zeros((30, 90, 3), np.uint8)
    pixels[:, :30, 0] = pixels[:, 30:60, 1] = pixels[:, 60:, 2] = 255
    (tmp_path / "c").mkdir()
    Image.fromarray(pixels).save(tmp_path / "c" / "a.png")
    ds = StreamingImageDataset(tmp_path, FileIndex.from_lists(["c/a.png"], [0]), size=8,
                               train=False, eval_crop_fraction=0.5)
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.uint8 and int(y) == 0
    assert x[1].min() == 255 and x[0].max() == 0 and x[2].max() == 0


def test_batches_are_uint8_with_the_right_labels_and_normalised_on_transfer(folder):
    dm = module(folder)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (3, 3, 24)
    assert dm.split_sizes() == {"train": 18, "test": 18}
    x, y = all_batches(dm.val_dataloader())
    assert x.shape == (18, 3, 24, 24) and x.dtype == torch.uint8
    # every image has its class's colour (JPEG noise and +-10 pixel noise aside)
    colours = torch.tensor(COLOURS, dtype=torch.float32)[y]
    assert (x.float().mean((2, 3)) - colours).abs().max() < 6
    xf, yf = dm.transform_batch((x, y), train=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(xf, (x.float() / 255 - mean) / std)
    assert torch.equal(yf, y)


def test_training_crops_are_seeded_by_epoch_and_equal_across_worker_counts(folder):
    dm0 = module(folder, num_workers=0)
    dm2 = module(folder, num_workers=2, persistent_workers=True)
    loader0, loader2 = dm0.train_dataloader(), dm2.train_dataloader()
    epochs = []
    for epoch in (0, 1):
        loader0.sampler.set_epoch(epoch)
        loader2.sampler.set_epoch(epoch)
        a, b = all_batches(loader0), all_batches(loader2)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        epochs.append(a)
    # another epoch: another order and other crops of the same images
    assert not torch.equal(epochs[0][1], epochs[1][1])
    order0, order1 = loader0.sampler.order(0), loader0.sampler.order(1)
    first = int(order0[0])
    at = int((order1 == first).nonzero())
    assert not torch.equal(epochs[0][0][0], epochs[1][0][at])
    assert torch.equal(epochs[0][1].sort().values, epochs[1][1].sort().values)


def test_search_split_matches_the_in_memory_modules_interface(folder):
    dm = module(folder, search=True)
    loaders = dm.train_dataloader()
    assert set(loaders) == {"weights", "arch"}
    halves = dm.split_indices()
    labels = dm._train_index.labels.astype(np.int64)
    expected = stratified_halves(labels, dm.seed)
    assert np.array_equal(halves["weights"], expected[0])
    assert np.array_equal(halves["arch"], expected[1])
    assert not set(halves["weights"]) & set(halves["arch"])
    # validation = the architecture half, unaugmented and in order
    xv, yv = all_batches(dm.val_dataloader())
    assert yv.tolist() == labels[halves["arch"]].tolist()
    # training batches are dicts after the transfer hook as well
    batch = {k: next(iter(v)) for k, v in loaders.items()}
    out = dm.on_after_batch_transfer(batch, 0)
    assert set(out) == {"weights", "arch"} and out["arch"][0].dtype == torch.float32
    # the ENAS stream of the architecture half: full batches of its images
    xs, ys = next(dm.split_batches("arch", epoch=0, batch_size=3))
    assert xs.shape == (3, 3, 24, 24) and set(ys.tolist()) <= set(yv.tolist())


def test_the_same_folder_splits_as_the_in_memory_image_folder(folder):
    """Same classes and labels as ImageFolderDataModule on the same files (eval split
    named test there)."""
    stream = module(folder, eval_split="val")
    memory = ImageFolderDataModule(root=str(folder), test_split="val", resize=24)
    memory.setup("fit")
    assert stream.classes == memory.classes
    _, y_stream = all_batches(stream.test_dataloader())
    _, y_memory = all_batches(memory.test_dataloader())
    assert torch.equal(y_stream, y_memory)


def test_single_folder_layout_holds_out_a_seeded_fraction(tmp_path):
    root = make_image_folder(tmp_path, splits=(), per_class=10)
    dm = module(root, eval_fraction=0.3, seed=3)
    sizes = dm.split_sizes()
    assert sizes == {"train": 21, "test": 9}
    train = {dm._train_index.path(i) for i in range(len(dm._train_index))}
    held = {dm._test_set.index.path(i) for i in range(len(dm._test_set))}
    assert not train & held and len(train | held) == 30
    assert np.bincount(dm._test_set.index.labels).tolist() == [3, 3, 3]
    # the same seed, the same split; another seed, another
    assert held == {module(root, eval_fraction=0.3, seed=3)._test_set.index.path(i)
                    for i in range(9)}
    other = module(root, eval_fraction=0.3, seed=4)._test_set
    assert held != {other.index.path(i) for i in range(9)}
    limited = module(root, eval_fraction=0.3, max_per_class_train=2, max_per_class_eval=1)
    assert limited.split_sizes() == {"train": 6, "test": 3}


def test_val_fraction_holds_out_training_images(folder):
    dm = module(folder, val_fraction=0.5)
    assert dm.split_sizes() == {"train": 9, "val": 9, "test": 18}


def test_clear_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        StreamingImageDataModule(root=str(tmp_path / "nope"))
    empty = make_image_folder(tmp_path / "e", classes=2, per_class=2)
    (empty / "train" / "class_9").mkdir()
    with pytest.raises(ValueError, match=r"class_9 holds no image file"):
        StreamingImageDataModule(root=str(empty))
    no_val = make_image_folder(tmp_path / "v", classes=2, per_class=2, splits=("train",))
    with pytest.raises(FileNotFoundError, match="evaluation folder"):
        StreamingImageDataModule(root=str(no_val))
    with pytest.raises(ValueError, match="not an option"):
        StreamingImageDataModule(root=str(folder), crop_padding=4)
    with pytest.raises(ValueError, match="crop_scale"):
        StreamingImageDataModule(root=str(folder), crop_scale=(0.5, 0.2))


def test_an_unreadable_image_is_named(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=3)
    bad = root / "val" / "class_1" / "001.jpg"
    bad.write_bytes(b"not a jpeg at all")
    dm = module(root)
    with pytest.raises(UnreadableImageError, match=r"val/class_1/001\.jpg"):
        all_batches(dm.val_dataloader())
    truncated = root / "train" / "class_0" / "000.jpg"
    truncated.write_bytes(truncated.read_bytes()[:60])
    dm = module(root, num_workers=1, persistent_workers=False)
    with pytest.raises(Exception, match=r"train/class_0/000\.jpg"):  # re-raised from the worker
        all_batches(dm.train_dataloader())


def test_jpeg_draft_decoding_matches_full_decoding(tmp_path):
    """A large JPEG decoded at a reduced DCT scale gives nearly the same evaluation crop."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    pixels = np.stack([xx * 255 // 640, yy * 255 // 480, (xx + yy) % 256], -1).astype(np.uint8)
    pixels = np.clip(pixels + rng.integers(-3, 4, pixels.shape), 0, 255).astype(np.uint8)
    (tmp_path / "c").mkdir()
    Image.fromarray(pixels).save(tmp_path / "c" / "a.jpg", quality=95)
    index = FileIndex.from_lists(["c/a.jpg"], [0])
    x, _ = StreamingImageDataset(tmp_path, index, size=32, train=False)[0]
    with Image.open(tmp_path / "c" / "a.jpg") as im:
        full = np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR,
                                                  box=eval_box(640, 480, 32, 0.875)))
    diff = np.abs(x.permute(1, 2, 0).numpy().astype(int) - full.astype(int))
    assert diff.mean() < 4 and math.isfinite(diff.max())


def test_items_carry_the_epoch_through_lightnings_distributed_wrapper(folder):
    """Under DDP Lightning wraps the sampler (forwarding set_epoch, materialising the order):
    the two ranks' items are disjoint, cover the split and decode to the wrapper's epoch."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    dm = module(folder)
    sampler = dm.train_dataloader().sampler
    dataset = dm.train_dataloader().dataset
    seen = []
    for rank in (0, 1):
        wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
        wrapper.set_epoch(3)
        items = [dataset._split_item(item) for item in wrapper]
        assert {epoch for _, epoch in items} == {3}
        seen += [index for index, _ in items]
    assert sorted(seen) == list(range(18))
    # the same image at the same epoch is the same crop, whoever decodes it
    index = seen[0]
    assert torch.equal(dataset[3 * len(dataset) + index][0], dataset[(index, 3)][0])
