"""Image-folder reader on temp folders and zips built here, and on the shared CIFAR-10 zip."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_nas.data import ImageFolderDataModule, clear_decode_cache, shared_data_dir

CLASSES = ["cat", "ant", "bee"]  # written unsorted; labels follow the sorted order


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _truncated_jpeg(size: int = 32) -> bytes:
    """First half of a real ``size`` x ``size`` JPEG: at 32 px the cut falls in the scan data,
    so PIL opens it (header intact) and only fails when the pixels are decoded."""
    arr = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    data = _jpeg(arr)
    return data[: len(data) // 2]


NOT_AN_IMAGE = b"this is a text file, not a JPEG\n"


def make_tree(n_train: int = 4, n_test: int = 2, size: int = 6, seed: int = 0):
    """{relative name: PNG bytes} and the expected (images, labels) per split."""
    rng = np.random.default_rng(seed)
    files, expected = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        xs, ys = [], []
        for label, cls in enumerate(sorted(CLASSES)):
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                files[f"{split}/{cls}/{i:03d}.png"] = _png(arr)
                xs.append(arr.transpose(2, 0, 1))
                ys.append(label)
        expected[split] = (np.stack(xs), np.asarray(ys))
    return files, expected


def _write_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in reversed(list(files.items())):
            zf.writestr(prefix + name, data)
        zf.writestr("README.md", "not an image")
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_decode_cache()
    yield
    clear_decode_cache()


def _check(dm: ImageFolderDataModule, expected) -> None:
    assert dm.classes == ["ant", "bee", "cat"]
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (3, 3, 6)
    dm.setup("fit")
    for split, ds in (("train", dm._train_set), ("test", dm._test_set)):
        assert torch.equal(ds.images, torch.from_numpy(expected[split][0]))
        assert ds.labels.tolist() == expected[split][1].tolist()


def test_folder(tmp_path):
    files, expected = make_tree()
    _check(ImageFolderDataModule(root=str(_write_dir(tmp_path / "imgs", files))), expected)


def test_zip_equals_folder_and_wrapping_folder_is_found(tmp_path):
    files, expected = make_tree()
    _check(ImageFolderDataModule(root=str(_write_zip(tmp_path / "a.zip", files))), expected)
    _check(ImageFolderDataModule(root=str(_write_zip(tmp_path / "b.zip", files, "top/"))),
           expected)


def test_max_per_class_takes_first_files_in_sorted_order(tmp_path):
    files, expected = make_tree(n_train=5, n_test=3)
    dm = ImageFolderDataModule(root=str(_write_zip(tmp_path / "a.zip", files)),
                               max_per_class_train=2, max_per_class_test=1)
    dm.setup()
    assert dm.split_sizes() == {"train": 6, "test": 3}
    keep = [c * 5 + i for c in range(3) for i in range(2)]
    assert torch.equal(dm._train_set.images, torch.from_numpy(expected["train"][0][keep]))
    assert dm.selection("train")[:2] == [("train/ant/000.png", 0), ("train/ant/001.png", 0)]


def test_stats_default_to_training_images_and_can_be_given(tmp_path):
    files, expected = make_tree()
    root = str(_write_dir(tmp_path / "imgs", files))
    dm = ImageFolderDataModule(root=root)
    dm.setup()
    x = expected["train"][0] / 255.0
    assert np.allclose(dm.mean, x.mean(axis=(0, 2, 3)), atol=1e-9)
    assert np.allclose(dm.std, x.std(axis=(0, 2, 3)), atol=1e-9)
    given = ImageFolderDataModule(root=root, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    given.setup()
    assert given.mean == (0.5, 0.5, 0.5)


def test_grayscale_and_resize(tmp_path):
    files, _ = make_tree()
    dm = ImageFolderDataModule(root=str(_write_dir(tmp_path / "imgs", files)), grayscale=True,
                               resize=4, crop_padding=1)
    assert (dm.in_channels, dm.image_size) == (1, 4)
    dm.setup()
    assert dm._train_set.images.shape == (12, 1, 4, 4)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataModule(root=str(tmp_path / "missing"))
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolderDataModule(root=str(tmp_path / "empty"))
    (tmp_path / "notzip.zip").write_text("hello")
    with pytest.raises(ValueError, match="not a zip"):
        ImageFolderDataModule(root=str(tmp_path / "notzip.zip"))
    files, _ = make_tree()
    files["test/dog/000.png"] = files["test/ant/000.png"]
    with pytest.raises(ValueError, match="dog"):
        ImageFolderDataModule(root=str(_write_zip(tmp_path / "x.zip", files)))
    files, _ = make_tree()
    files["train/ant/999.png"] = _png(np.zeros((5, 6, 3), np.uint8))
    dm = ImageFolderDataModule(root=str(_write_zip(tmp_path / "y.zip", files)))
    with pytest.raises(ValueError, match="resize=6"):
        dm.setup()
    with pytest.raises(ValueError, match="max_per_class_train"):
        ImageFolderDataModule(root=str(tmp_path / "y.zip"), max_per_class_train=0)


def _write(tmp_path: Path, files: dict[str, bytes], source: str) -> Path:
    if source == "zip":
        return _write_zip(tmp_path / "bad.zip", files)
    return _write_dir(tmp_path / "imgs", files)


def _shown(root: Path, name: str, source: str) -> str:
    """How the error names a file: ``<zip>:<inner name>`` or ``<folder>/<name>``."""
    return f"{root}:{name}" if source == "zip" else str(root / name)


@pytest.mark.parametrize("source", ["folder", "zip"])
@pytest.mark.parametrize("bad, what", [(NOT_AN_IMAGE, "not an image PIL can read"),
                                       (_truncated_jpeg(), "truncated or corrupt image")],
                         ids=["text_named_jpg", "truncated_jpeg"])
def test_unreadable_file_raises_with_its_name_and_the_skip_option(tmp_path, source, bad, what):
    files, _ = make_tree(size=32)
    files["train/bee/x.jpg"] = bad
    root = _write(tmp_path, files, source)
    dm = ImageFolderDataModule(root=str(root))  # the probe reads train/ant/000.png: fine
    with pytest.raises(ValueError) as info:
        dm.setup()
    msg = str(info.value)
    assert msg.startswith("unreadable image file ")
    assert _shown(root, "train/bee/x.jpg", source) in msg
    assert what in msg and "skip_unreadable=True" in msg


@pytest.mark.parametrize("source", ["folder", "zip"])
def test_unreadable_first_file_fails_the_size_probe_with_its_name(tmp_path, source):
    files, _ = make_tree(size=32)
    files["train/ant/0.jpg"] = _truncated_jpeg()  # sorts before 000.png: the probed file
    root = _write(tmp_path, files, source)
    with pytest.raises(ValueError, match="truncated or corrupt image") as info:
        ImageFolderDataModule(root=str(root))
    assert _shown(root, "train/ant/0.jpg", source) in str(info.value)
    assert "skip_unreadable=True" in str(info.value)


@pytest.mark.parametrize("source", ["folder", "zip"])
def test_skip_unreadable_drops_bad_files_keeps_labels_and_warns_once(tmp_path, source):
    files, expected = make_tree(size=32)  # expected: the PNGs only, in sorted order
    files["train/ant/0.jpg"] = _truncated_jpeg()  # first file: the size probe skips it too
    files["train/bee/x.jpg"] = NOT_AN_IMAGE
    files["test/cat/x.jpg"] = NOT_AN_IMAGE
    root = _write(tmp_path, files, source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm = ImageFolderDataModule(root=str(root), skip_unreadable=True)
        assert dm.image_size == 32
        dm.setup()
    skipped = [w for w in caught if "unreadable" in str(w.message)]
    assert len(skipped) == 1, [str(w.message) for w in caught]
    msg = str(skipped[0].message)
    assert "skipped 3 unreadable image file(s)" in msg
    assert "2 in 'train'" in msg and "1 in 'test'" in msg
    assert "train/ant/0.jpg" in msg and "test/cat/x.jpg" in msg
    for split, ds in (("train", dm._train_set), ("test", dm._test_set)):
        assert torch.equal(ds.images, torch.from_numpy(expected[split][0]))
        assert ds.labels.tolist() == expected[split][1].tolist()
    assert dm.skipped == {"train": ["train/ant/0.jpg", "train/bee/x.jpg"],
                          "test": ["test/cat/x.jpg"]}


def test_decode_cache_keeps_skip_and_strict_runs_apart(tmp_path):
    files, _ = make_tree(size=32)
    files["train/bee/x.jpg"] = NOT_AN_IMAGE
    root = str(_write_dir(tmp_path / "imgs", files))
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ImageFolderDataModule(root=root, skip_unreadable=True).setup()
    # Same files, strict: must decode again (and fail), not reuse the skipped arrays.
    with pytest.raises(ValueError, match="skip_unreadable"):
        ImageFolderDataModule(root=root).setup()
    # A second skip run reuses the cached arrays and still warns.
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ImageFolderDataModule(root=root, skip_unreadable=True).setup()


def test_real_cifar10_zip_slice():
    path = shared_data_dir() / "cifar10" / "cifar10_jpg.zip"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    dm = ImageFolderDataModule(root=str(path), max_per_class_train=5, max_per_class_test=5,
                               search=True, batch_size=10, cutout=16)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 3, 32)
    assert dm.classes[:3] == ["airplane", "automobile", "bird"] and dm.classes[-1] == "truck"
    dm.setup("fit")
    assert dm.split_sizes() == {"weights": 25, "arch": 25, "test": 50}
    assert dm.selection("test")[0] == ("test/airplane/0000.jpg", 0)
    labels = dm._train_set.labels
    assert torch.bincount(labels, minlength=10).tolist() == [5] * 10
    batch = {k: next(iter(v)) for k, v in dm.train_dataloader().items()}
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["weights"][0].shape == (10, 3, 32, 32)
    # Natural images: the pixel means are mid-range, not 0 or 255 (a decoding sanity check).
    assert all(0.3 < m < 0.7 for m in dm.mean)
