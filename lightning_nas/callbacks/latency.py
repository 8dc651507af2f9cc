"""Latency profiling of a strategy's architectures on the target device, every N epochs.

:class:`LatencyProfiler` asks the strategy for the architectures it derived or scored this
epoch (``scored_architectures()``: DARTS / PC-DARTS / GDAS the derived genotype, ENAS the
current best path, SPOS every fixed evaluation path, OFA the tracked subnets; any module
with ``current_arch()`` otherwise), builds each one's standalone network with the space
(``space.build``, in/out sizes from the data module) and measures it on the target:

* ``cpu``: PyTorch eager on the host CPU with ``num_threads`` intra-op threads;
* ``cuda`` / ``cuda:N``: PyTorch eager on that GPU (each run synchronised);
* ``torchscript``: the traced network (``torch.jit.trace``) on the CPU;
* ``onnxruntime``: the network exported to ONNX and run by ONNX Runtime's CPU execution
  provider (``pip install 'lightning-nas[export]'``).

Each measurement: ``warmup`` untimed runs, then ``repeats`` timed runs of one batch of
``batch_size`` (default: the data module's batch size) at the data's input shape; median and
quartiles in ms per batch, plus parameters and FLOPs per sample. With ``table`` (a latency
table of the space, e.g. ``python -m lightning_nas.hardware.cell_latency``) the table's
prediction is recorded too, and ``predict_only`` skips the measurement.

Results go to every logger (``latency/<name>_ms``, ``latency/<name>_iqr_ms``,
``cost/<name>_params``, ``cost/<name>_mflops``; targets other than ``cpu`` log
``latency/<target>/<name>_ms``) and to ``latency.json`` in the run folder
(``{"target", "hardware", "records": [...]}``, one record per architecture per epoch;
``latency_<target>.json`` for the other targets, so several profilers can share a run). A
:class:`~lightning_nas.callbacks.pareto.ParetoCallback` with ``from_strategy=True`` takes its
candidates from here. Measurement runs on global rank 0 only; it costs about
``(warmup + repeats) x`` one forward pass per architecture and epoch.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_nas.callbacks.export import run_dir
from lightning_nas.hardware.latency import LatencyResult, device_name, measure_latency
from lightning_nas.hardware.metrics import count_flops, count_parameters, make_input
from lightning_nas.hardware.onnx_export import LogitsOnly

__all__ = ["LatencyProfiler", "TARGETS", "measure_on_target", "architectures_of"]

#: the targets :class:`LatencyProfiler` measures on (``cuda:N`` too)
TARGETS = ("cpu", "cuda", "torchscript", "onnxruntime")


def _check_target(target: str) -> str:
    if target in TARGETS or (target.startswith("cuda:") and target[5:].isdigit()):
        return target
    raise ValueError(f"unknown latency target {target!r}: use one of {list(TARGETS)} or "
                     "'cuda:N'")


def architectures_of(module: Any) -> list[tuple[str, Any, float | None]]:
    """``(name, arch, accuracy)`` of what the strategy derived or scored this epoch."""
    if hasattr(module, "scored_architectures"):
        return [tuple(s) for s in module.scored_architectures()]
    if hasattr(module, "current_arch"):
        value = module.trainer.callback_metrics.get("val/acc") if module._trainer else None
        return [("current", module.current_arch(), None if value is None else float(value))]
    raise TypeError(f"{type(module).__name__} has neither scored_architectures() nor "
                    "current_arch(): the latency profiler needs a search strategy")


def _time_onnxruntime(net: nn.Module, input_shape: Sequence[int], *, batch_size: int,
                      warmup: int, repeats: int, num_threads: int,
                      clock: Callable[[], int]) -> LatencyResult:
    """ONNX Runtime (CPU execution provider) latency of ``net`` exported to a temp file."""
    from lightning_nas.hardware.onnx_export import export_onnx, ort_session

    example = make_input(input_shape, batch_size)  # (B, C, H, W)
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, example, Path(folder) / "net.onnx")
        session = ort_session(path, threads=num_threads)
        feed = {session.get_inputs()[0].name: example.numpy()}
        for _ in range(warmup):
            session.run(None, feed)
        times = []
        for _ in range(repeats):
            start = clock()
            session.run(None, feed)
            times.append((clock() - start) / 1e6)  # ns -> ms
    return LatencyResult.from_times(times, device="onnxruntime", batch_size=batch_size,
                                    input_shape=input_shape,
                                    hardware=f"ONNX Runtime CPU EP on {device_name('cpu')}")


def measure_on_target(net: nn.Module, input_shape: Sequence[int], target: str, *,
                      batch_size: int = 1, warmup: int = 5, repeats: int = 20,
                      num_threads: int | None = 1,
                      clock: Callable[[], int] = time.perf_counter_ns) -> LatencyResult:
    """Latency of one forward pass of a ``(batch_size, *input_shape)`` batch on ``target``
    (ms per batch; see the module docstring for the targets)."""
    target = _check_target(target)
    net = LogitsOnly(net).eval()
    if target == "onnxruntime":
        return _time_onnxruntime(net, input_shape, batch_size=batch_size, warmup=warmup,
                                 repeats=repeats, num_threads=num_threads or 1, clock=clock)
    if target == "torchscript":
        with torch.no_grad():
            net = torch.jit.trace(net, make_input(input_shape, batch_size))
        target = "cpu"
    return measure_latency(net, input_shape, device=target, batch_size=batch_size,
                           warmup=warmup, repeats=repeats,
                           num_threads=num_threads if target == "cpu" else None, clock=clock)


class LatencyProfiler(Callback):
    """Measure the strategy's architectures on the target device (module docstring).

    Args:
        target: ``cpu``, ``cuda``, ``cuda:N``, ``torchscript`` or ``onnxruntime``.
        num_threads: CPU intra-op threads while measuring (CPU, TorchScript, ONNX Runtime).
        batch_size: samples per timed batch; default the data module's ``batch_size``.
        input_shape: one sample ``[C, H, W]``; default the data module's; an OFA subnet's
            own resolution replaces H and W.
        every_n_epochs: profile after every n-th validation epoch.
        warmup: untimed runs before the timed ones.
        repeats: timed runs (each one sample of the median and quartiles).
        build_options: keyword arguments of ``space.build`` for the profiled network (e.g.
            ``{channels: 16, layers: 5}``: the network you will deploy, not the space's
            default); ``in_channels`` and ``num_classes`` come from the data.
        table: a latency table JSON of the space (cell spaces: ``hardware/cell_latency``,
            MobileNetV3: ``hardware/latency_lut``); its prediction is recorded as
            ``predicted_ms``.
        predict_only: use the table's prediction as the latency and measure nothing.
        max_architectures: profile at most this many of the strategy's architectures per
            epoch (the strategy lists its best first).
        clock: time source in ns (tests pass a fake clock).
        costs_only: record parameters and FLOPs only, no latency (what a Pareto front of
            accuracy against size uses without a profiler).
    """

    def __init__(self, target: str = "cpu", *, num_threads: int | None = 1,
                 batch_size: int | None = None, input_shape: list[int] | None = None,
                 every_n_epochs: int = 1, warmup: int = 5, repeats: int = 20,
                 build_options: dict[str, Any] | None = None, table: str | None = None,
                 predict_only: bool = False, max_architectures: int = 16,
                 clock: Callable[[], int] = time.perf_counter_ns, costs_only: bool = False):
        self.target = _check_target(target)
        self.costs_only = costs_only
        for name, value, low in (("every_n_epochs", every_n_epochs, 1), ("warmup", warmup, 0),
                                 ("repeats", repeats, 1),
                                 ("max_architectures", max_architectures, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if predict_only and table is None:
            raise ValueError("predict_only needs a latency table (table: path/to/table.json)")
        if input_shape is not None and len(input_shape) != 3:
            raise ValueError(f"input_shape is one sample [C, H, W], got {input_shape}")
        self.num_threads = num_threads
        self.batch_size = batch_size
        self.input_shape = list(input_shape) if input_shape is not None else None
        self.every_n_epochs = every_n_epochs
        self.warmup, self.repeats = warmup, repeats
        self.build_options = dict(build_options or {})
        self.table_path = table
        self.predict_only = predict_only
        self.max_architectures = max_architectures
        self.clock = clock
        self.records: list[dict[str, Any]] = []
        self._table: Any = None
        self._profiled: dict[int, list[dict[str, Any]]] = {}  # epoch -> its records

    @property
    def state_key(self) -> str:
        """One per target: a CPU and an ONNX Runtime profiler can share a trainer."""
        return self._generate_state_key(target=self.target)

    # --- what is measured -------------------------------------------------------------
    def _data_shape(self, trainer: L.Trainer) -> tuple[list[int], int, int | None]:
        """(one sample [C, H, W], batch size, classes) from the data module / settings."""
        data = getattr(trainer, "datamodule", None)
        shape = self.input_shape
        if shape is None:
            if data is None or not hasattr(data, "image_size"):
                raise ValueError("LatencyProfiler needs input_shape [C, H, W] when the data "
                                 "module does not say its image_size and in_channels")
            shape = [int(data.in_channels), int(data.image_size), int(data.image_size)]
        batch = self.batch_size or int(getattr(data, "batch_size", 1) or 1)
        classes = getattr(data, "num_classes", None)
        return shape, batch, classes

    def network(self, module: Any, arch: Any, shape: Sequence[int], classes: int | None
                ) -> tuple[nn.Module, list[int]]:
        """The standalone network of ``arch`` and its input shape (one sample)."""
        space = module.space
        defaults = getattr(space, "build_defaults", {})
        options = {k: v for k, v in (("in_channels", shape[0]), ("num_classes", classes))
                   if k in defaults and v is not None}
        shape = list(shape)
        if "resolution" in arch:  # OFA: the subnet runs at its own resolution
            shape[1] = shape[2] = int(arch["resolution"])
        return space.build(arch, **{**options, **self.build_options}), shape

    def table(self, module: Any) -> Any:
        if self._table is None and self.table_path is not None:
            from lightning_nas.hardware.cell_latency import CellLatencyTable
            from lightning_nas.hardware.latency_lut import LatencyTable

            cls = LatencyTable if hasattr(module.space, "largest") else CellLatencyTable
            self._table = cls.load(self.table_path, module.space)
        return self._table

    def profile(self, trainer: L.Trainer, module: Any) -> list[dict[str, Any]]:
        """This epoch's records (measured once per epoch, on global rank 0; [] elsewhere)."""
        epoch = trainer.current_epoch
        if epoch in self._profiled:
            return self._profiled[epoch]
        if not trainer.is_global_zero:
            return []
        shape, batch, classes = self._data_shape(trainer)
        records = []
        for name, arch, accuracy in architectures_of(module)[:self.max_architectures]:
            records.append(self._profile_one(module, name, arch, accuracy, shape, batch,
                                             classes, epoch, trainer.global_step))
        self._profiled = {epoch: records}
        self.records.extend(records)
        return records

    def _profile_one(self, module: Any, name: str, arch: Any, accuracy: float | None,
                     shape: Sequence[int], batch: int, classes: int | None, epoch: int,
                     step: int) -> dict[str, Any]:
        net, net_shape = self.network(module, arch, shape, classes)
        flops = count_flops(LogitsOnly(net), tuple(net_shape)).flops_per_sample
        record: dict[str, Any] = {
            "epoch": epoch, "step": step, "name": name, "arch": module.space.to_string(arch),
            "accuracy": accuracy, "target": self.target, "batch_size": batch,
            "input_shape": list(net_shape), "params": count_parameters(net),
            "flops": flops, "threads": self.num_threads}
        table = self.table(module)
        if table is not None:
            record["predicted_ms"] = float(table.predict(arch))
        if self.predict_only:
            record.update(latency_ms=record["predicted_ms"], median_ms=record["predicted_ms"])
            return record
        if self.costs_only:
            return record
        result = measure_on_target(net, net_shape, self.target, batch_size=batch,
                                   warmup=self.warmup, repeats=self.repeats,
                                   num_threads=self.num_threads, clock=self.clock)
        record.update(latency_ms=result.median_ms, median_ms=result.median_ms,
                      q1_ms=result.p25_ms, q3_ms=result.p75_ms, iqr_ms=result.iqr_ms,
                      runs=result.repeats, hardware=result.hardware)
        return record

    # --- Lightning hooks ----------------------------------------------------------------
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        folder = run_dir(trainer)  # on every rank: trainer.log_dir is a collective
        records = self.profile(trainer, pl_module)
        if not trainer.is_global_zero or not records or self.costs_only:
            return
        metrics: dict[str, float] = {}
        prefix = "latency/" if self.target == "cpu" else f"latency/{self.target}/"
        for r in records:
            metrics[f"{prefix}{r['name']}_ms"] = r["latency_ms"]
            if "iqr_ms" in r:
                metrics[f"{prefix}{r['name']}_iqr_ms"] = r["iqr_ms"]
            if "predicted_ms" in r:
                metrics[f"{prefix}{r['name']}_predicted_ms"] = r["predicted_ms"]
            metrics[f"cost/{r['name']}_params"] = float(r["params"])
            metrics[f"cost/{r['name']}_mflops"] = r["flops"] / 1e6
        metrics["epoch"] = trainer.current_epoch
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        first = records[0]
        rank_zero_info(f"[epoch {trainer.current_epoch}] latency on {self.target} of "
                       f"{first['name']}: {first['latency_ms']:.3f} ms per batch of "
                       f"{first['batch_size']} ({first['params'] / 1e6:.3f} M params, "
                       f"{first['flops'] / 1e6:.2f} MFLOPs per sample)")
        self._write(folder)

    def _write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        hardware = next((r["hardware"] for r in reversed(self.records) if "hardware" in r),
                        "table prediction" if self.predict_only else device_name("cpu"))
        payload = {"target": self.target, "hardware": hardware, "records": self.records}
        name = "latency.json" if self.target == "cpu" else f"latency_{self.target}.json"
        tmp = folder / (name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
        os.replace(tmp, folder / name)  # a reader never sees half a file

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            try:
                self.table(pl_module)  # a table for another space fails now, not at epoch 1
            except Exception as err:
                raise ValueError(f"LatencyProfiler: latency table {self.table_path}: {err}"
                                 ) from err
            if self.target == "onnxruntime":
                import importlib.util

                if importlib.util.find_spec("onnxruntime") is None:
                    raise ImportError("LatencyProfiler(target='onnxruntime') needs ONNX "
                                      "Runtime: pip install 'lightning-nas[export]'") from None
            if (self.target.startswith("cuda") and not self.costs_only
                    and not torch.cuda.is_available()):
                raise RuntimeError(f"LatencyProfiler(target={self.target!r}) but "
                                   "torch.cuda.is_available() is False: measure on 'cpu', "
                                   "'torchscript' or 'onnxruntime' here")

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))

