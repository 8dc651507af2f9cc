"""Export a network to ONNX or TorchScript, and check the exported file against PyTorch.

* :func:`export_onnx` writes an ONNX file with the TorchScript-based exporter
  (``torch.onnx.export(..., dynamo=False)``, opset :data:`OPSET`): the model in eval mode,
  one input ``input`` (B, C, H, W) and one output ``logits`` (B, num_classes), the batch axis
  dynamic. A network that returns a tuple (DARTS: ``(logits, aux_logits)``) is wrapped so
  only the logits are exported (:class:`LogitsOnly`).
* :func:`ort_session` opens a file in ONNX Runtime on the CPU execution provider with a
  given number of intra-op threads; :func:`check_onnx` compares ONNX Runtime's logits with
  PyTorch's and raises :class:`ExportMismatchError` beyond a tolerance.
* :func:`export_torchscript` traces the model (``torch.jit.trace``), saves it, reloads the
  file and checks its logits equal PyTorch's within 1e-5.

The ONNX parts need the optional packages ``onnx`` and ``onnxruntime``
(``pip install lightning-nas[export]``); without them the functions raise an ImportError
that says so. TorchScript needs nothing beyond torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: ONNX opset of :func:`export_onnx`: 17 has every op the project's networks use
#: (BatchNormalization, AveragePool with count_include_pad, HardSwish/HardSigmoid) and is
#: read by every ONNX Runtime release since 1.11.
OPSET = 17
#: Names of the graph's input and output.
INPUT_NAME, OUTPUT_NAME = "input", "logits"
#: Tolerance of the TorchScript round trip (max absolute difference of the logits).
TORCHSCRIPT_ATOL = 1e-5

INSTALL_HINT = ("pip install 'lightning-nas[export]' (or: pip install onnx onnxruntime)")


class ExportMismatchError(ValueError):
    """An exported network whose outputs differ from PyTorch's beyond the tolerance."""


class LogitsOnly(nn.Module):
    """``net`` with its first output only: (B, C, H, W) -> logits (B, num_classes).

    DARTS networks return ``(logits, aux_logits)``; exporters need one tensor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)`` modules, or an ImportError naming what to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX export needs the optional packages onnx and onnxruntime "
                          f"({err}); install them with {INSTALL_HINT}") from None
    return onnx, onnxruntime


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; its own mode (and its children's) after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's logits of ``model`` (eval mode, no gradient) for ``x`` (B, C, H, W)."""
    with _eval_mode(model), torch.no_grad():
        return LogitsOnly(model).eval()(x)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, *,
                opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX to ``path`` and return the path.

    Args:
        model: any network mapping (B, C, H, W) to logits (B, classes) or to a tuple whose
            first item is the logits; exported in eval mode (its mode is restored after).
        example: an input (B, C, H, W) on the CPU; fixes C, H, W (the batch axis is dynamic).
        path: output file (``.onnx``); folders are created.
        opset: ONNX opset (default :data:`OPSET`).
    """
    onnx, _ = require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter announces its deprecation and that it cannot fold some slices
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        torch.onnx.export(LogitsOnly(model).eval(), (example,), str(path), dynamo=False,
                          opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    onnx.checker.check_model(str(path))
    return path


def ort_session(path: str | Path, threads: int = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``path`` on the CPU execution provider with
    ``threads`` intra-op threads (one inter-op thread, sequential execution)."""
    _, ort = require_onnx()
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session: Any, x: torch.Tensor) -> torch.Tensor:
    """ONNX Runtime's logits of ``session`` for ``x`` (B, C, H, W), as a tensor."""
    name = session.get_inputs()[0].name
    out = session.run(None, {name: x.detach().cpu().contiguous().numpy()})[0]
    return torch.from_numpy(out)


def check_onnx(model: nn.Module, path: str | Path, example: torch.Tensor,
               atol: float = 1e-4) -> float:
    """Max absolute difference between ONNX Runtime's and PyTorch's logits for ``example``.

    Raises:
        ExportMismatchError: the difference is above ``atol``; the message gives it and the
            largest absolute logit of each runtime.
    """
    expected = logits_of(model, example)
    got = run_session(ort_session(path, threads=1), example)
    return _compare(expected, got, atol, f"ONNX Runtime ({Path(path).name})")


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Trace ``model`` (eval mode, logits only) with ``example`` (B, C, H, W), save it to
    ``path`` (``.pt``), reload the file and check its logits equal PyTorch's within
    :data:`TORCHSCRIPT_ATOL`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(LogitsOnly(model).eval(), (example,), check_trace=False)
        torch.jit.save(traced, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.no_grad():
        got = loaded(example)
    _compare(logits_of(model, example), got, TORCHSCRIPT_ATOL, f"TorchScript ({path.name})")
    return path


def _compare(expected: torch.Tensor, got: torch.Tensor, atol: float, what: str) -> float:
    """Max |expected - got|; ExportMismatchError above ``atol`` (or on another shape)."""
    if tuple(expected.shape) != tuple(got.shape):
        raise ExportMismatchError(f"{what} returns logits of shape {tuple(got.shape)}, PyTorch "
                                  f"{tuple(expected.shape)}")
    diff = float((expected.float() - got.float()).abs().max()) if expected.numel() else 0.0
    if not diff <= atol:  # also catches NaN
        raise ExportMismatchError(
            f"{what} differs from PyTorch: max |difference| of the logits = {diff:.3g} > "
            f"tolerance {atol:g} (largest |logit|: PyTorch {float(expected.abs().max()):.4g}, "
            f"{what.split(' (')[0]} {float(got.abs().max()):.4g}); the exported graph does not "
            "compute the same function: check for train-mode-only branches or data-dependent "
            "control flow in the network")
    return diff


__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "ExportMismatchError", "LogitsOnly",
           "check_onnx", "export_onnx", "export_torchscript", "logits_of", "ort_session",
           "require_onnx", "run_session"]
