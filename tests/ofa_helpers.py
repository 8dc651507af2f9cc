"""A tiny elastic MobileNetV3 space and data for fast OFA tests (2 stages, 8x8 inputs).

Imported as ``from ofa_helpers import ...``: pytest puts ``tests/`` on ``sys.path`` (no package).
"""

from lightning_nas.data import SyntheticDataModule
from lightning_nas.spaces.mobilenet import MobileNetV3Space

TINY_STAGES = [{"width": 8, "stride": 1, "se": False, "act": "relu"},
               {"width": 16, "stride": 2, "se": True, "act": "hswish"}]


def tiny_space(**overrides) -> MobileNetV3Space:
    options = dict(stages=TINY_STAGES, depths=(1, 2), kernels=(3, 5, 7), expands=(3, 4, 6),
                   resolutions=(6, 8), stem_width=8, final_width=32, feature_width=32,
                   num_classes=4, in_channels=3, stem_stride=1)
    options.update(overrides)
    return MobileNetV3Space(**options)


def tiny_data(**overrides) -> SyntheticDataModule:
    """48 train / 16 test random 3x8x8 images in 4 classes, batch 8."""
    options = dict(num_classes=4, in_channels=3, image_size=8, train_size=48, test_size=16,
                   batch_size=8, seed=0, hflip=True)
    options.update(overrides)
    return SyntheticDataModule(**options)
