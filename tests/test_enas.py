"""ENAS: the controller's REINFORCE gradient by hand, learning a synthetic best cell, the
strategy end to end on NAS-Bench-201, resume = uninterrupted bit for bit, clear errors."""

from __future__ import annotations

import csv
import json
import math

import lightning as L
import pytest
import torch
from fault_helpers import StopAfterEpoch
from space_helpers import PlainSpace
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_nas.data import SyntheticDataModule
from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.mobilenet import MobileNetV3Space
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.spaces.supernet import Decision, NoSupernetError
from lightning_nas.strategies.controller import Controller, reinforce_loss
from lightning_nas.strategies.enas import ENAS


def test_reinforce_gradient_equals_a_hand_computation():
    """One 3-way decision, no logit shaping: L = -(A log p_k + lam H), so
    dL/dlogits = -A (onehot_k - p) - lam dH/dlogits, dH/dlogit_j = -p_j (log p_j + H), and
    the head's weight gradient is that vector times the LSTM output (outer product)."""
    torch.manual_seed(0)
    ctl = Controller([Decision("op", ("a", "b", "c"))], hidden=2, temperature=None,
                     tanh_constant=None)
    sampled = ctl.sample(torch.Generator().manual_seed(1))
    advantage, lam = 0.7, 0.05
    loss = reinforce_loss(sampled, advantage, lam)
    grad_w, grad_b = torch.autograd.grad(loss, [ctl.heads[0].weight, ctl.heads[0].bias])

    with torch.no_grad():
        h, _ = ctl.lstm(ctl.g_emb)  # (1, 2)
        logits = ctl.heads[0](h)[0]  # (3,)
        p = logits.softmax(-1)
        k = ("a", "b", "c").index(sampled.choices["op"])
        entropy = -(p * p.log()).sum()
        d_entropy = -p * (p.log() + entropy)
        d_logits = -advantage * (torch.nn.functional.one_hot(torch.tensor(k), 3) - p) \
            - lam * d_entropy
    torch.testing.assert_close(grad_b, d_logits)
    torch.testing.assert_close(grad_w, torch.outer(d_logits, h[0]))
    torch.testing.assert_close(sampled.log_prob, p[k].log())
    torch.testing.assert_close(sampled.entropy, entropy)


def test_logit_shaping_is_temperature_then_tanh_with_the_op_reduction():
    torch.manual_seed(0)
    ctl = Controller([Decision("op", tuple(range(5)))], hidden=4, temperature=5.0,
                     tanh_constant=1.1, op_tanh_reduce=2.5)
    with torch.no_grad():
        h, _ = ctl.lstm(ctl.g_emb)
        raw = ctl.heads[0](h)[0]
        shaped = (1.1 / 2.5) * torch.tanh(raw / 5.0)
        expected = torch.log_softmax(shaped, -1)[3]
    torch.testing.assert_close(ctl.evaluate({"op": 3}).log_prob, expected)
    # the cap: no 5-way op decision can exceed exp(0.44) / (exp(0.44) + 4 exp(-0.44))
    assert math.exp(0.44) / (math.exp(0.44) + 4 * math.exp(-0.44)) < 0.38


def test_controller_learns_a_synthetic_best_cell():
    """Reward = the share of NB201 edges matching one best cell; REINFORCE (10 paths per
    update, moving baseline) raises the controller's probability of that cell above 0.5 in
    at most 300 updates.

    Without ENAS's logit caps (with them no cell can pass 0.38^6) and with an entropy bonus
    of 0.05: ENAS's op head is shared by every decision and fed the previous choice, so at
    1e-4 the policy often locks into repeating one op (3 of 6 edges right here), measured on
    pilot seeds; 0.05 found the cell in 65-92 updates on 6 of 6 seeds."""
    net = NB201Space(channels=1, cells_per_stage=0).supernet()
    target = NB201Space().parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|"
        "nor_conv_3x3~2|")
    torch.manual_seed(0)
    ctl = Controller(net.decisions(), hidden=32, temperature=None, tanh_constant=None)
    opt = torch.optim.Adam(ctl.parameters(), lr=0.01, betas=(0.0, 0.999))
    baseline, g = 0.0, torch.Generator().manual_seed(0)
    target_choices = net.choices_of(target)

    def p_target() -> float:
        with torch.no_grad():
            return float(ctl.evaluate(target_choices).log_prob.exp())

    start = p_target()
    for step in range(300):
        opt.zero_grad()
        for _ in range(10):
            sampled = ctl.sample(g)
            reward = sum(sampled.choices[k] == v for k, v in target_choices.items()) / 6
            baseline = 0.99 * baseline + 0.01 * reward
            (reinforce_loss(sampled, reward - baseline, 0.05) / 10).backward()
        opt.step()
        if p_target() > 0.5:
            break
    assert start < 0.01 and p_target() > 0.5, (step, p_target())


def tiny_data(**kw) -> SyntheticDataModule:
    options = dict(num_classes=4, in_channels=3, image_size=8, train_size=64, test_size=16,
                   batch_size=8, seed=0, search=True)
    return SyntheticDataModule(**{**options, **kw})


def tiny_enas(**kw) -> ENAS:
    options = dict(num_classes=4, in_channels=3, space=NB201Space(channels=4, cells_per_stage=1),
                   controller_steps=2, controller_aggregate=2, eval_samples=3, final_samples=4,
                   eval_batches=1, hidden=16, seed=0)
    return ENAS(**{**options, **kw})


def trainer(root, epochs, extra=(), **kw) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=epochs, default_root_dir=root,
                     logger=L.pytorch.loggers.CSVLogger(root, name="", version=""),
                     enable_progress_bar=False, enable_model_summary=False,
                     log_every_n_steps=1, limit_val_batches=2,
                     callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True),
                                *extra], **kw)


def test_enas_searches_nb201_and_writes_the_run_folder(tmp_path):
    model = tiny_enas()
    trainer(tmp_path, 2).fit(model, tiny_data())
    arch = Arch.load(tmp_path / "arch.json")
    NB201Space().validate(arch)
    assert arch == model.current_arch() and model.best_reward is not None
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"controller/reward", "controller/entropy", "controller/baseline",
            "controller/best_reward", "val/acc"} <= logged
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1] and "baseline" in history[-1]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert "baseline" in ckpt["state_dict"] and any(k.startswith("controller.lstm")
                                                    for k in ckpt["state_dict"])
    assert 0 < float(ckpt["state_dict"]["baseline"]) < 1  # moved towards the rewards
    assert ckpt["lightning_nas"]["string"] == NB201Space().to_string(arch)
    # the weight phase used one path per batch: 4 batches of the 32-image weights half x 2
    assert len(model.sampled) == 2 * 4


def test_stop_and_resume_equals_an_uninterrupted_search(tmp_path):
    full = tiny_enas()
    trainer(tmp_path / "full", 3).fit(full, tiny_data())
    part = tiny_enas()
    trainer(tmp_path / "part", 3, extra=[StopAfterEpoch(0)]).fit(part, tiny_data())
    assert not torch.equal(part.baseline, full.baseline)  # really stopped early
    resumed = tiny_enas(hidden=16)
    with torch.no_grad():  # the checkpoint's weights and controller must win
        for p in resumed.parameters():
            p.add_(1.0)
    trainer(tmp_path / "part", 3).fit(resumed, tiny_data(),
                                      ckpt_path=tmp_path / "part" / "checkpoints" / "last.ckpt")
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.best_arch == full.best_arch and resumed.best_reward == full.best_reward
    assert list(resumed.sampled)[-8:] == list(full.sampled)[-8:]


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        tiny_enas(temperature=-1.0)
    with pytest.raises(ValueError, match="baseline_decay must be in"):
        tiny_enas(baseline_decay=1.0)
    with pytest.raises(ValueError, match="controller_steps must be an int >= 1"):
        tiny_enas(controller_steps=0)
    with pytest.raises(ValueError, match="layers applies to the DARTS space"):
        tiny_enas(layers=5)
    model = tiny_enas()
    with pytest.raises(TypeError, match="search-mode batches .*search=True"):
        trainer_ = L.Trainer(accelerator="cpu", max_epochs=1, logger=False,
                             enable_progress_bar=False, enable_checkpointing=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        trainer_.fit(model, tiny_data(search=False, val_fraction=0.25))


def test_enas_runs_on_the_mobilenet_space():
    """A path strategy needs no mixed ops: the controller samples OFA's categorical choices."""
    space = MobileNetV3Space.cifar(stages=[{"width": 8, "stride": 1, "se": False, "act": "relu"}],
                                   depths=(1, 2), kernels=(3, 5), expands=(3, 4), stem_width=8,
                                   final_width=16, feature_width=16, num_classes=4,
                                   resolutions=(8,))
    model = tiny_enas(space=space)
    assert [d.label for d in model.controller.decisions][:2] == ["resolution", "stage1.depth"]
    L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
              enable_checkpointing=False, enable_model_summary=False, limit_val_batches=1
              ).fit(model, tiny_data())
    space.validate(model.current_arch())


def test_a_space_without_a_supernet_cannot_be_searched():
    with pytest.raises(NoSupernetError, match="'plain' space has no weight-sharing supernet, "
                                              "so ENAS cannot search it"):
        tiny_enas(space=PlainSpace())
