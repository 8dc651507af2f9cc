"""Published networks as reference points: parameters, FLOPs / multiply-adds, optionally
latency measured on this machine, and the published ImageNet top-1 accuracy, for Pareto
plots (:func:`~lightning_nas.hardware.report.write_pareto`'s ``references``) and reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lightning_nas.hardware.latency import measure_latency
from lightning_nas.hardware.metrics import count_flops, count_parameters

__all__ = ["PUBLISHED_TOP1", "preset_reference_points"]

#: ImageNet top-1 accuracy (%) as published: EfficientNet (Tan & Le 2019, Table 2), MnasNet-A1
#: (Tan et al. 2019, Table 1), MobileNetV3 (Howard et al. 2019, Tables 3-4), ProxylessNAS
#: (Cai et al. 2019, Tables 2-3 / the authors' evaluation logs). MnasNet-B1: not in a table we
#: cite.
PUBLISHED_TOP1: dict[str, float] = {
    "EfficientNet-B0": 77.1, "EfficientNet-B1": 79.1, "EfficientNet-B2": 80.1,
    "EfficientNet-B3": 81.6, "EfficientNet-B4": 82.9, "EfficientNet-B5": 83.6,
    "EfficientNet-B6": 84.0, "EfficientNet-B7": 84.3, "MnasNet-A1": 75.2,
    "MobileNetV3-Large": 75.2, "MobileNetV3-Small": 67.4, "ProxylessNAS-Mobile": 74.6,
    "ProxylessNAS-CPU": 75.3, "ProxylessNAS-GPU": 75.1,
}


def preset_reference_points(names: Sequence[str] | None = None, *, space: Any = None,
                            resolution: int | None = None, num_classes: int = 1000,
                            latency: bool = False, warmup: int = 5, repeats: int = 20,
                            num_threads: int | None = 1) -> list[dict[str, Any]]:
    """One record per preset of the mobile space: ``name``, ``arch`` (string form),
    ``resolution``, ``params``, ``macs``, ``flops`` (= 2 x macs; batch 1), the published
    ImageNet ``top1`` (None when not published) and, with ``latency=True``, ``latency_ms``
    (median of ``repeats`` timed CPU forward passes at batch 1 after ``warmup``, on
    ``num_threads`` threads) with ``latency_p25_ms`` / ``latency_p75_ms``.

    Args:
        names: preset names (default all, in :data:`~lightning_nas.spaces.mobile_blocks.PRESETS`
            order); an unknown name raises an ArchError listing the known ones.
        space: the :class:`~lightning_nas.spaces.mobile_blocks.MobileBlockSpace` that builds
            them (its ``input_size`` / ``stem_stride`` apply; default the ImageNet one).
        resolution: input resolution (default each network's own: 224, EfficientNet-Bn its
            published one; or the space's ``input_size``).
        num_classes: classifier width (1000: ImageNet, as the published counts).
    """
    from lightning_nas.spaces.mobile_blocks import PRESETS, MobileBlockSpace, preset

    space = space or MobileBlockSpace()
    records = []
    for name in names or list(PRESETS):
        arch = preset(name)
        r = resolution or space.input_size or int(arch["resolution"])
        with torch.device("meta"):
            meta = space.build(arch, num_classes=num_classes)
        count = count_flops(meta, (3, r, r))
        record = {"name": name, "arch": space.to_string(arch), "resolution": r,
                  "params": count_parameters(meta), "macs": count.macs, "flops": count.flops,
                  "top1": PUBLISHED_TOP1.get(name)}
        if latency:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net = space.build(arch, num_classes=num_classes)
            result = measure_latency(net, (3, r, r), batch_size=1, warmup=warmup,
                                     repeats=repeats, num_threads=num_threads)
            record.update(latency_ms=result.median_ms, latency_p25_ms=result.p25_ms,
                          latency_p75_ms=result.p75_ms, latency_repeats=result.repeats,
                          hardware=result.hardware)
        records.append(record)
    return records
