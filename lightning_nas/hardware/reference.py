"""Published networks as reference points: parameters, FLOPs / multiply-adds, optionally
latency measured on this machine, and the published ImageNet top-1 accuracy, for Pareto
plots (:func:`~lightning_nas.hardware.report.write_pareto`'s ``references``) and reports.

:func:`preset_reference_points` measures presets at a given resolution on its own;
:func:`run_reference_points` measures them as a search measures its candidates: built for the
run's input size and classes, through the run's own metric hooks (a
:class:`~lightning_nas.hardware.costs.CostHook` gives them the candidates' params, FLOPs and
latency settings), so a preset sits on the same axes as the searched architectures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from lightning_nas.hardware.costs import model_costs
from lightning_nas.hardware.latency import measure_latency
from lightning_nas.hardware.metrics import count_flops, count_parameters

__all__ = ["PUBLISHED_TOP1", "check_preset_names", "preset_reference_points",
           "reference_space_for", "run_reference_points"]

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


def check_preset_names(names: Sequence[str], *, what: str = "reference_presets") -> list[str]:
    """``names`` as a list when every one is a mobile preset; otherwise an ArchError that
    names the unknown ones and lists the known presets."""
    from lightning_nas.spaces.base import ArchError
    from lightning_nas.spaces.mobile_blocks import PRESETS

    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise ArchError(f"{what}: unknown preset(s) {', '.join(map(repr, unknown))}; known "
                        f"presets: {', '.join(PRESETS)}")
    return list(names)


def reference_space_for(search_space: Any, *, input_size: int, num_classes: int,
                        in_channels: int = 3) -> Any:
    """The :class:`~lightning_nas.spaces.mobile_blocks.MobileBlockSpace` that builds the
    presets as networks of a run whose images are ``input_size`` pixels.

    * the search space itself when it is a mobile-block space (the presets are then built
      exactly as a searched architecture; a compound-scaling grid's ``base_space`` likewise);
    * otherwise a mobile-block space for ``input_size`` inputs whose stem stride is the search
      space's (Once-for-All's CIFAR space: 1) or, for spaces without one, 1 for inputs of
      64 pixels or fewer (the project's 32x32 convention: no 224-pixel upsampling, the
      stride-2 stem dropped) and the preset's own (2) above.
    """
    from lightning_nas.spaces.mobile_blocks import MobileBlockSpace

    for candidate in (search_space, getattr(search_space, "base_space", None)):
        if isinstance(candidate, MobileBlockSpace):
            return candidate
    stem_stride = getattr(search_space, "stem_stride", None)
    if stem_stride not in (1, 2):
        stem_stride = 1 if input_size <= 64 else None
    return MobileBlockSpace(num_classes=num_classes, in_channels=in_channels,
                            input_size=int(input_size), stem_stride=stem_stride)


def _latency_settings(hook: Any) -> dict[str, Any]:
    """Where a latency hook's numbers come from (device, batch, threads): a CostHook's
    measurement settings, a LatencyTableHook's table metadata."""
    kwargs = dict(getattr(hook, "latency_kwargs", {}) or {})
    table = getattr(hook, "table", None)
    meta = dict(getattr(table, "metadata", {}) or {})
    out = {"device": kwargs.get("device") or meta.get("device") or "cpu",
           "batch_size": int(getattr(hook, "batch_size", None) or meta.get("batch_size") or 1),
           "num_threads": kwargs.get("num_threads", meta.get("num_threads")),
           "warmup": int(kwargs.get("warmup", 10)), "repeats": int(kwargs.get("repeats", 50))}
    return out


def run_reference_points(names: Sequence[str], *, space: Any, input_shape: Sequence[int],
                         hooks: Sequence[Callable[..., Any]] = (), num_classes: int = 10,
                         clock: Callable[[], int] | None = None) -> list[dict[str, Any]]:
    """Presets measured like the candidates of a search.

    Each preset is built by ``space.build(arch, num_classes=, in_channels=)`` (see
    :func:`reference_space_for`), counted with
    :func:`~lightning_nas.hardware.costs.model_costs` (params, FLOPs, MACs per sample at the
    network's own ``resolution``, as :class:`~lightning_nas.hardware.costs.CostHook` counts a
    candidate), then given to every metric hook of the run, whose values win (a CostHook:
    the candidates' latency measurement). A hook that cannot take a preset (a
    :class:`~lightning_nas.hardware.latency_lut.LatencyTableHook` predicts only the
    architectures of its Once-for-All space) is replaced, for its latency, by a measurement
    of the preset with the hook's device, batch size and threads (``latency_source``
    ``"measured"``; a table's latency is calibrated on whole networks, so the two are on one
    scale within the table's error, about 10%).

    Args:
        names: preset names (checked first: an unknown one is an ArchError listing them all).
        space: the mobile-block space that builds them.
        input_shape: one sample of the run, ``(C, H, W)``.
        hooks: the run's metric hooks, ``hook(arch, model) -> dict``.
        num_classes: the run's classes.
        clock: the time source of the fallback latency measurement (a fake clock in tests).

    Returns:
        One record per preset: ``name``, ``arch`` (string form), ``resolution``, ``params``,
        ``flops``, ``macs``, the hooks' metrics (e.g. ``latency_ms`` and its spread),
        ``latency_source`` (``"hook"`` or ``"measured"`` when latency is there) and
        ``published_top1`` (ImageNet top-1 % of the paper, not an accuracy on this run's
        data: it is kept out of the run's accuracy axis).
    """
    from lightning_nas.spaces.base import ArchError
    from lightning_nas.spaces.mobile_blocks import preset

    names = check_preset_names(names)
    channels = int(input_shape[0])
    records = []
    for name in names:
        arch = preset(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = space.build(arch, num_classes=num_classes, in_channels=channels)
        r = int(getattr(net, "resolution", None) or input_shape[-1])
        shape = (channels, r, r)
        record: dict[str, Any] = {"name": name, "arch": space.to_string(arch),
                                  "resolution": r, **model_costs(net, shape)}
        for hook in hooks:
            try:
                out = hook(arch, net)
            except (ArchError, KeyError, ValueError, TypeError) as err:
                if getattr(hook, "latency", None) is not True:
                    raise ArchError(f"metric hook {hook!r} cannot measure the reference preset "
                                    f"{name!r} ({type(err).__name__}: {err}); drop it from "
                                    "pareto.reference_presets") from err
                settings = _latency_settings(hook)
                extra = {"clock": clock} if clock is not None else {}
                res = measure_latency(net, shape, **settings, **extra)
                record.update(latency_ms=res.median_ms, latency_p10_ms=res.p10_ms,
                              latency_p90_ms=res.p90_ms, latency_iqr_ms=res.iqr_ms,
                              latency_source="measured")
                continue
            record.update(out)
            if "latency_ms" in out:
                record["latency_source"] = "hook"
        record["published_top1"] = PUBLISHED_TOP1.get(name)
        records.append(record)
    return records
