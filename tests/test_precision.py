"""Lightning's precision plugins with the manually optimised strategies.

* ``--trainer.precision bf16-mixed`` on CPU: the forward passes run in bfloat16 under
  autocast and a few steps of DARTS, PC-DARTS (DARTS space, ImageNet stem) and OFA train.
* ``16-mixed``'s loss scaler: the strategies differentiate ``scale * loss`` and hand the plugin
  scaled gradients, which its step unscales; checked on CPU with a plugin whose autocast is
  off (float32 numerics, only the scaling differs), so a scaled step must equal a plain one,
  and overflowing gradients must skip the step without stopping the run.
"""

from __future__ import annotations

import contextlib
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from ofa_helpers import tiny_data, tiny_space

from lightning_nas.data import SyntheticDataModule
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.darts import DartsSearch
from lightning_nas.strategies.ofa import OnceForAll
from lightning_nas.strategies.pc_darts import PCDarts
from lightning_nas.strategies.spos import SPOS


class ScaledFloat32(MixedPrecision):
    """16-mixed's GradScaler without autocast: float32 numerics, scaled gradients."""

    def __init__(self, init_scale: float) -> None:
        super().__init__("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu",
                                                                       init_scale=init_scale))

    def forward_context(self):
        return contextlib.nullcontext()


def search_data(**kw) -> SyntheticDataModule:
    return SyntheticDataModule(num_classes=4, image_size=16, train_size=32, test_size=8,
                               batch_size=8, search=True, seed=0, **kw)


def nb201_darts(**kw) -> DartsSearch:
    return DartsSearch(space=NB201Space(channels=4, cells_per_stage=1, num_classes=4),
                       num_classes=4, seed=0, **kw)


def trainer(steps: int = 2, **kw) -> L.Trainer:
    return L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                     **kw)


def conv_output_dtypes(module: torch.nn.Module) -> list[torch.dtype]:
    dtypes: list[torch.dtype] = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
            break
    return dtypes


@pytest.mark.parametrize("make", [
    lambda: nb201_darts(),
    lambda: PCDarts(space=DartsSpace(), channels=4, layers=3, stem="imagenet",
                    partial_channels=2, num_classes=4, channels_last=True, seed=0),
], ids=["darts-nb201", "pc-darts-imagenet-stem"])
def test_bf16_mixed_trains_the_bilevel_strategies(make):
    model = make()
    alphas = [a.detach().clone() for a in model.alphas]
    dtypes = conv_output_dtypes(model.supernet)
    data = search_data() if isinstance(model.space, NB201Space) else SyntheticDataModule(
        num_classes=4, image_size=32, train_size=32, test_size=8, batch_size=8, search=True)
    t = trainer(steps=4, precision="bf16-mixed")
    t.fit(model, datamodule=data)
    assert t.global_step == 2 * 2  # two batches, two optimiser steps each
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert any(not torch.equal(a, b) for a, b in zip(alphas, model.alphas))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(a.dtype == torch.float32 for a in model.alphas)  # master weights stay fp32


def test_bf16_mixed_trains_once_for_all():
    model = OnceForAll(num_classes=4, in_channels=3, space=tiny_space(), channels_last=False,
                       phases=[{"name": "full", "epochs": 1, "lr": 0.1, "resolutions": [6, 8]}],
                       eval_subnets={"largest": "largest"}, bn_calibration_batches=1, seed=0)
    before = [p.detach().clone() for p in model.supernet.parameters()]
    dtypes = conv_output_dtypes(model.supernet)
    t = trainer(steps=3, precision="bf16-mixed")
    t.fit(model, datamodule=tiny_data())
    assert t.global_step == 3 and set(dtypes) == {torch.bfloat16}
    changed = [not torch.equal(a, b) for a, b in zip(before, model.supernet.parameters())]
    assert sum(changed) > len(changed) // 2


def _one_step(make, data, plugin=None):
    model = make()
    t = trainer(steps=1, plugins=[plugin] if plugin else None)
    t.fit(model, datamodule=data)
    return model


@pytest.mark.parametrize("order", [1, 2])
def test_a_loss_scaled_darts_step_equals_the_plain_step(order):
    """Before scaling was handled, the plugin divided unscaled gradients by the scale: the
    SGD weight step was 1024 times too small."""
    plain = _one_step(lambda: nb201_darts(order=order), search_data())
    scaled = _one_step(lambda: nb201_darts(order=order), search_data(), ScaledFloat32(1024.0))
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    moved = [not torch.equal(a, b) for a, b in
             zip(nb201_darts(order=order).parameters(), scaled.parameters())]
    assert sum(moved) > len(moved) // 2


def test_loss_scaled_ofa_and_spos_steps_equal_the_plain_steps():
    def ofa():
        return OnceForAll(num_classes=4, in_channels=3, space=tiny_space(),
                          channels_last=False, dropout=0.0, eval_subnets={"largest": "largest"},
                          phases=[{"name": "full", "epochs": 1, "lr": 0.1}], seed=0)

    def spos():
        return SPOS(space=NB201Space(channels=4, cells_per_stage=1, num_classes=4),
                    num_classes=4, seed=0)

    for make, data in ((ofa, tiny_data), (spos, lambda: tiny_data(image_size=16))):
        plain = _one_step(make, data())
        scaled = _one_step(make, data(), ScaledFloat32(512.0))
        for a, b in zip(plain.parameters(), scaled.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_overflowing_gradients_skip_the_step_without_an_error():
    """An infinite scale makes every scaled gradient non-finite, as float16 overflow does:
    the plugin skips the steps (nothing moves) and the strategies do not raise."""
    for make, data in ((nb201_darts, search_data),
                       (lambda: SPOS(space=NB201Space(channels=4, cells_per_stage=1,
                                                      num_classes=4), num_classes=4, seed=0),
                        lambda: tiny_data(image_size=16))):
        start = [p.detach().clone() for p in make().parameters()]
        model = _one_step(make, data(), ScaledFloat32(float("inf")))
        assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))


def test_the_cli_accepts_trainer_precision(tmp_path):
    """`--trainer.precision bf16-mixed` with a shipped config (DARTS on NB201, digits)."""
    from lightning_nas.cli import main

    main(["fit", "--config", "configs/darts/nb201_digits.yaml", "--trainer.precision",
          "bf16-mixed", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
          "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(tmp_path),
          "--trainer.logger.init_args.save_dir", str(tmp_path),
          "--trainer.enable_progress_bar", "false",
          "--model.init_args.space.init_args.channels", "4",
          "--model.init_args.space.init_args.cells_per_stage", "1"])
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history and (tmp_path / "arch.json").is_file()


def test_depthwise_convs_under_cpu_bf16_autocast_have_the_right_weight_gradient():
    """torch's own bf16 channels-last dilated depthwise weight gradient on CPU is off by
    several times its size; DepthwiseConv2d computes in float32 under CPU autocast."""
    from lightning_nas.spaces.depthwise import DepthwiseConv2d

    torch.manual_seed(0)
    for dilation in (1, 2):
        conv = DepthwiseConv2d(4, 4, 3, padding=dilation, dilation=dilation, groups=4,
                               bias=False).to(memory_format=torch.channels_last)
        x = torch.randn(8, 4, 16, 16).contiguous(memory_format=torch.channels_last)
        truth, = torch.autograd.grad(torch.nn.functional.conv2d(
            x, conv.weight, None, 1, dilation, dilation, 4).sum(), [conv.weight])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        got, = torch.autograd.grad(out.float().sum(), [conv.weight])
        torch.testing.assert_close(got, truth, rtol=1e-4, atol=1e-3)
