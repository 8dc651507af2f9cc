"""The operation registry: built-in ops by name, registration from Python and from a
``class_path`` entry, and the errors for bad input."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from lightning_nas.spaces import registry
from lightning_nas.spaces.ops import DARTS_OPS, EXTRA_OPS
from lightning_nas.spaces.registry import (
    OpBuilderError,
    UnknownOpError,
    build_op,
    register_op,
    registered_ops,
    resolve_ops,
    unregister_op,
)

NEW_OPS = ("self_attention", "local_attention_3x3", "squeeze_excite")
NB201_CONVS = ("nor_conv_1x1", "nor_conv_3x3")


def test_every_builtin_op_is_registered_and_keeps_or_halves_the_resolution():
    names = registered_ops()
    for name in (*DARTS_OPS, *EXTRA_OPS, *NB201_CONVS, *NEW_OPS, "mbconv_3x3_e3"):
        assert name in names
    x = torch.randn(2, 8, 8, 8)  # (B, C, H, W)
    for name in names:
        for stride, side in ((1, 8), (2, 4)):
            out = build_op(name, 8, 8, stride, affine=False)(x)
            assert out.shape == (2, 8, side, side), (name, stride)


def test_ops_that_change_the_channel_count():
    x = torch.randn(2, 4, 8, 8)
    for name in ("none", "skip_connect", "sep_conv_3x3", "dil_conv_5x5", "nor_conv_3x3",
                 *NEW_OPS):
        for stride in (1, 2):
            assert build_op(name, 4, 8, stride)(x).shape == (2, 8, 8 // stride, 8 // stride)
    with pytest.raises(ValueError, match="keeps the channel count"):
        build_op("max_pool_3x3", 4, 8, 1)


def test_darts_entries_build_the_same_modules_as_the_paper_table():
    """Same parameter names and shapes as DARTS_OPS (so checkpoints and tables stay valid)."""
    for name, factory in {**DARTS_OPS, **EXTRA_OPS}.items():
        for stride in (1, 2):
            for affine in (True, False):
                ours = build_op(name, 6, 6, stride, affine=affine).state_dict()
                theirs = factory(6, stride, affine).state_dict()
                assert {k: v.shape for k, v in ours.items()} == \
                    {k: v.shape for k, v in theirs.items()}, (name, stride, affine)


def test_unknown_op_lists_the_registered_ones():
    with pytest.raises(UnknownOpError) as err:
        build_op("sep_conv_9x9", 4, 4, 1)
    message = str(err.value)
    assert "'sep_conv_9x9'" in message and "sep_conv_3x3" in message and "self_attention" in message
    with pytest.raises(UnknownOpError, match=r"ops\[1\]: unknown operation 'conv_9x9'"):
        resolve_ops(["none", "conv_9x9"])


def test_register_from_python_as_decorator_and_function():
    @register_op("test_double")
    def double(c_in, c_out, stride):  # no affine: the registry does not pass it
        return nn.Conv2d(c_in, c_out, 1, stride=stride)

    try:
        assert "test_double" in registered_ops()
        assert build_op("test_double", 3, 5, 2, affine=False)(torch.randn(1, 3, 6, 6)).shape == \
            (1, 5, 3, 3)
        with pytest.raises(ValueError, match="registered already"):
            register_op("test_double", double)
        register_op("test_double", lambda c_in, c_out, stride: nn.Identity(), overwrite=True)
        assert isinstance(build_op("test_double", 3, 3, 1), nn.Identity)
    finally:
        unregister_op("test_double")
    assert "test_double" not in registered_ops()


def test_bad_registrations_say_what_to_fix():
    with pytest.raises(OpBuilderError, match=r"\(C_in, C_out, stride\)"):
        register_op("test_two_args", lambda c, stride: nn.Identity())
    with pytest.raises(ValueError, match="identifier"):
        register_op("sep conv", lambda c_in, c_out, stride: nn.Identity())
    register_op("test_not_a_module", lambda c_in, c_out, stride: "conv")
    try:
        with pytest.raises(OpBuilderError, match="returned str, not an nn.Module"):
            build_op("test_not_a_module", 4, 4, 1)
    finally:
        unregister_op("test_not_a_module")
    with pytest.raises(ValueError, match="is empty"):
        resolve_ops([])
    with pytest.raises(ValueError, match="lists 'skip_connect' twice"):
        resolve_ops(["skip_connect", "none", "skip_connect"])


def test_class_path_entries_register_a_users_op(tmp_path, monkeypatch):
    (tmp_path / "user_ops_a.py").write_text(
        "from torch import nn\n"
        "class Shift(nn.Module):\n"
        "    def __init__(self, c_in, c_out, stride, amount=1.0):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(c_in, c_out, 1, stride=stride)\n"
        "        self.amount = amount\n"
        "    def forward(self, x):\n"
        "        return self.conv(x) + self.amount\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = {"name": "test_shift", "class_path": "user_ops_a.Shift", "init_args": {"amount": 2.0}}
    try:
        assert resolve_ops(["none", entry]) == ("none", "test_shift")
        op = build_op("test_shift", 2, 2, 1)
        assert type(op).__name__ == "Shift" and op.amount == 2.0
        assert resolve_ops([entry]) == ("test_shift",)  # the same entry again: no error
        assert registry.op_entries(["none", "test_shift"]) == ["none", entry]
        with pytest.raises(ValueError, match="registered already .* other settings"):
            resolve_ops([{**entry, "init_args": {"amount": 3.0}}])
        with pytest.raises(OpBuilderError, match=r"ops\[0\]: .*init_args \['scale'\]"):
            resolve_ops([{"name": "test_shift2", "class_path": "user_ops_a.Shift",
                          "init_args": {"scale": 1}}])
    finally:
        unregister_op("test_shift")
        sys.modules.pop("user_ops_a", None)
    with pytest.raises(ValueError, match=r"ops\[0\]: cannot import 'no_such_module'"):
        resolve_ops([{"name": "x", "class_path": "no_such_module.Op"}])
    with pytest.raises(ValueError, match="needs the keys name and class_path"):
        resolve_ops([{"class_path": "user_ops_a.Shift"}])


def test_a_file_never_imports_an_op_module():
    """A checkpoint's space spec naming an op of a module not imported is refused."""
    from lightning_nas.strategies.common import space_from_spec

    spec = {"class_path": "lightning_nas.spaces.darts.DartsSpace",
            "init_args": {"ops": ["none", "skip_connect", {"name": "evil",
                                                           "class_path": "os_helpers_x.Evil"}]}}
    with pytest.raises(ValueError, match="import 'os_helpers_x'"):
        space_from_spec(spec)
    assert "os_helpers_x" not in sys.modules
