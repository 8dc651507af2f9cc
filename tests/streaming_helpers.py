"""Tiny generated image folders for the streaming data module's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# one distinct colour per class (RGB)
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 50, 210), (230, 220, 40)]


def make_image_folder(root: Path, *, classes: int = 3, per_class: int = 6,
                      splits: tuple[str, ...] = ("train", "val"), sizes=((48, 40), (40, 56)),
                      seed: int = 0) -> Path:
    """``root/<split>/<class>/NNN.jpg`` (and one PNG per class): noisy solid-colour images of
    the class's colour, of alternating non-square sizes; ``splits=()`` writes
    ``root/<class>/...`` (one folder)."""
    rng = np.random.default_rng(seed)
    for split in splits or ("",):
        for c in range(classes):
            folder = root / split / f"class_{c}" if split else root / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = sizes[i % len(sizes)]
                pixels = np.array(COLOURS[c], dtype=np.int16) + rng.integers(-10, 11, (h, w, 3))
                im = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                if i == per_class - 1:
                    im.save(folder / f"{i:03d}.png")
                else:
                    im.save(folder / f"{i:03d}.jpg", quality=92)
    return root
