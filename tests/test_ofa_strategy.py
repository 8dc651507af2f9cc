"""Once-for-All strategy: phases, sampling, distillation, resume, subnet export."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from ofa_helpers import tiny_data, tiny_space

from lightning_nas.spaces.mobilenet_supernet import resize_to
from lightning_nas.strategies.fixed import FixedArchitecture
from lightning_nas.strategies.ofa import OnceForAll, Phase, load_supernet, save_subnet

PHASES = [
    Phase("full", 1, 0.05, resolutions=[6, 8]),
    Phase("kernel", 1, 0.02, kernels=[3, 5, 7], resolutions=[6, 8]),
    Phase("depth", 2, 0.01, kernels=[3, 5, 7], depths=[1, 2], resolutions=[6, 8],
          subnets_per_step=2),
    Phase("expand", 2, 0.01, kernels=[3, 5, 7], depths=[1, 2], expands=[3, 4, 6],
          resolutions=[6, 8], subnets_per_step=3, sandwich=True),
]


def _model(**kwargs) -> OnceForAll:
    options = dict(num_classes=4, in_channels=3, space=tiny_space(), phases=PHASES,
                   bn_calibration_batches=2, channels_last=False, seed=0)
    options.update(kwargs)
    return OnceForAll(**options)


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", devices=1, default_root_dir=tmp_path, logger=False,
                   enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, num_sanity_val_steps=0)
    options.update(kwargs)
    return L.Trainer(**options)


# --- configuration ----------------------------------------------------------------------------
def test_phases_resolve_to_active_choices_and_defaults():
    model = _model()
    assert model.total_epochs == 6
    full, kernel, _depth, _expand = model.phases
    assert full.choices == {"kernels": (7,), "depths": (2,), "expands": (6,),
                            "resolutions": (6, 8)}
    assert kernel.choices["kernels"] == (3, 5, 7) and kernel.choices["depths"] == (2,)
    assert [r.start_epoch for r in model.phases] == [0, 1, 2, 4]
    assert [r.kd_ratio for r in model.phases] == [0.0, 1.0, 1.0, 1.0]
    assert [r.sort_channels for r in model.phases] == [False, False, False, True]
    assert model.phase_at(3).phase.name == "depth" and model.phase_at(99).phase.name == "expand"


def test_phase_with_a_choice_outside_the_space_is_a_clear_error():
    with pytest.raises(ValueError, match=r"phase 1 \('kernel'\) activates kernels \[9\], which "
                                         r"the space does not have: its kernels are \[3, 5, 7\]"):
        _model(phases=[PHASES[0], Phase("kernel", 1, 0.1, kernels=[3, 9])])
    with pytest.raises(ValueError, match="depths"):
        _model(phases=[Phase("full", 1, 0.1, depths=[4])])
    with pytest.raises(ValueError, match="sandwich"):
        _model(phases=[Phase("full", 1, 0.1, sandwich=True)])
    with pytest.raises(ValueError, match="first phase cannot distil"):
        _model(phases=[Phase("full", 1, 0.1, kd_ratio=1.0)])
    with pytest.raises(ValueError, match="phases is empty"):
        _model(phases=[])
    with pytest.raises(ValueError, match="eval_subnets"):
        _model(eval_subnets={"x": "r8|d9"})


def test_phases_from_yaml_style_dicts():
    model = _model(phases=[{"name": "full", "epochs": 2, "lr": 0.1},
                           {"name": "kernel", "epochs": 1, "lr": 0.05, "kernels": [3, 7]}])
    assert model.phases[1].choices["kernels"] == (3, 7) and model.total_epochs == 3


def test_sampling_is_a_function_of_seed_and_step_and_respects_the_phase():
    model = _model()
    space = model.space
    expand = model.phases[3]
    a = model.sample_subnets(expand, 17)
    assert a == model.sample_subnets(expand, 17)
    assert a != model.sample_subnets(expand, 18)
    assert a[0] == model._subnet(expand.choices, max) and a[1] == model._subnet(expand.choices, min)
    depth = model.phases[2]
    seen_depths, seen_kernels = set(), set()
    for step in range(50):
        for arch in model.sample_subnets(depth, step):
            assert all(arch[f"stage{i}.block{j}.expand"] == 6 for i, j in space.block_keys)
            seen_depths.update(arch[f"stage{i}.depth"] for i in (1, 2))
            seen_kernels.add(arch["stage1.block1.kernel"])
    assert seen_depths == {1, 2} and seen_kernels == {3, 5, 7}


def test_learning_rate_schedule_per_phase():
    model = _model(phases=[Phase("full", 2, 0.1), Phase("k", 4, 0.01, kernels=[3, 7],
                                                       warmup_epochs=1)], lr_min=0.0)
    full, k = model.phases
    assert model.learning_rate(full, 0, 0, 10) == pytest.approx(0.1)
    assert model.learning_rate(full, 1, 0, 10) == pytest.approx(0.05)  # half-way: cos(pi/2)
    assert model.learning_rate(k, 2, 0, 10) == pytest.approx(0.001)  # warm-up step 1 of 10
    assert model.learning_rate(k, 3, 0, 10) == pytest.approx(0.01)  # warm-up done
    assert model.learning_rate(k, 5, 9, 10) < 0.0002


# --- training ---------------------------------------------------------------------------------
def test_progressive_shrinking_trains_sorts_and_distils(tmp_path):
    model = _model()
    sizes = set()  # elastic resolution: the supernet sees the 8x8 images resized to 6x6 too
    model.supernet.stem.register_forward_pre_hook(lambda m, args: sizes.add(args[0].shape[-1]))
    trainer = _trainer(tmp_path, max_epochs=6, limit_val_batches=1)
    trainer.fit(model, tiny_data())
    assert sizes == {6, 8}
    # one list of subnets per step; the phase decides how many and which
    steps_per_epoch = 6
    counts = [len(s) for s in model.sampled]
    assert counts == [1] * 12 + [2] * 12 + [3] * 12
    assert all(s.startswith("r") for step in model.sampled for s in step)
    assert bool(model.teacher_ready)
    metrics = trainer.callback_metrics
    for name in ("largest", "middle", "smallest"):
        assert 0.0 <= float(metrics[f"val/acc_{name}"]) <= 1.0
    assert float(metrics["phase"]) == 3.0
    assert len(model.sampled) == 6 * steps_per_epoch


def test_kd_teacher_is_the_full_network_at_the_end_of_the_first_phase(tmp_path):
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    model = _model(phases=PHASES[:2])
    _trainer(tmp_path, max_epochs=1, enable_checkpointing=True, callbacks=[ckpt_cb]).fit(
        model, tiny_data())
    assert not bool(model.teacher_ready)
    space, supernet = load_supernet(tmp_path / "last.ckpt")
    snapshot = supernet.extract(space.largest()).state_dict()
    resumed = _model(phases=PHASES[:2])
    _trainer(tmp_path, max_epochs=2).fit(resumed, tiny_data(), ckpt_path=str(tmp_path / "last.ckpt"))
    teacher = resumed.teacher.state_dict()
    weights = [k for k in snapshot if not k.endswith(("running_mean", "running_var",
                                                     "num_batches_tracked"))]
    assert len(weights) > 20
    for key in weights:
        torch.testing.assert_close(teacher[key], snapshot[key], rtol=0, atol=0, msg=key)
    assert bool(resumed.teacher_ready)
    # ... and the student moved on from it
    assert not torch.equal(resumed.supernet.classifier.weight, teacher["classifier.weight"])


def test_max_epochs_beyond_the_phases_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="phases cover 6 epochs"):
        _trainer(tmp_path, max_epochs=7).fit(_model(), tiny_data())


def test_resume_mid_phase_continues_the_same_schedule(tmp_path):
    """Stop after epoch 2 (inside the 2-epoch depth phase), resume: same subnets, same weights."""
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True,
                                                  save_top_k=-1, every_n_epochs=1)
    full = _model()
    _trainer(tmp_path / "a", max_epochs=5, limit_val_batches=1).fit(full, tiny_data())

    first = _model()
    _trainer(tmp_path / "b", max_epochs=3, limit_val_batches=1, enable_checkpointing=True,
             callbacks=[ckpt_cb]).fit(first, tiny_data())
    resumed = _model()
    _trainer(tmp_path / "b", max_epochs=5, limit_val_batches=1).fit(
        resumed, tiny_data(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert list(first.sampled) + list(resumed.sampled) == list(full.sampled)
    for (name, a), b in zip(full.supernet.state_dict().items(),
                            resumed.supernet.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


def test_resume_with_another_space_is_refused(tmp_path):
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _trainer(tmp_path, max_epochs=1, enable_checkpointing=True, callbacks=[ckpt_cb],
             limit_val_batches=1).fit(_model(), tiny_data())
    other = _model(space=tiny_space(expands=(3, 6)),
                   phases=[Phase("full", 2, 0.1, resolutions=[6, 8])])
    with pytest.raises(ValueError, match="another space"):
        _trainer(tmp_path, max_epochs=2).fit(other, tiny_data(), ckpt_path=str(tmp_path / "last.ckpt"))


def test_non_finite_loss_names_the_phase(tmp_path):
    model = _model(phases=[Phase("full", 1, 1e30)])
    with pytest.raises(FloatingPointError, match="phase 'full'"):
        _trainer(tmp_path, max_epochs=1).fit(model, tiny_data())


# --- extraction, export, fine-tuning ------------------------------------------------------------
def test_checkpoint_to_subnet_to_fine_tuning(tmp_path):
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    model = _model()
    _trainer(tmp_path, max_epochs=6, enable_checkpointing=True, callbacks=[ckpt_cb],
             limit_val_batches=1).fit(model, tiny_data())
    space, supernet = load_supernet(tmp_path / "last.ckpt")
    assert space.config() == model.space.config()
    arch = model.reference_subnet("middle")
    x = torch.randn(3, 3, 8, 8)
    supernet.set_active(arch)
    subnet = supernet.extract(arch).eval()
    torch.testing.assert_close(subnet(x), supernet(x))
    paths = save_subnet(subnet, space, tmp_path / "subnet")
    fixed = FixedArchitecture(arch=str(paths["arch"]), space=space, num_classes=4,
                              in_channels=3, init_from=str(paths["weights"]))
    fixed.eval()
    assert arch["resolution"] == 6  # the fixed module resizes 8x8 inputs to the arch's 6x6
    torch.testing.assert_close(fixed(x), subnet(resize_to(x, 6)))
    _trainer(tmp_path / "ft", max_epochs=1).fit(fixed, tiny_data())
    with pytest.raises(RuntimeError, match="not a Once-for-All checkpoint"):
        load_supernet(paths["weights"])


def test_cli_export_subnet_from_an_ofa_checkpoint(tmp_path, capsys):
    from lightning_nas.cli import main, run
    from lightning_nas.spaces.base import ArchError

    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    model = _model(phases=PHASES[:1])
    _trainer(tmp_path, max_epochs=1, enable_checkpointing=True, callbacks=[ckpt_cb]).fit(
        model, tiny_data())
    arch = model.space.smallest()
    text = model.space.to_string(arch)
    main(["export", "--ckpt", str(tmp_path / "last.ckpt"), "--subnet", text,
          "--out", str(tmp_path / "sub")])
    assert text in capsys.readouterr().out
    fixed = FixedArchitecture(arch=str(tmp_path / "sub" / "arch.json"), space=model.space,
                              num_classes=4, init_from=str(tmp_path / "sub" / "subnet.ckpt"))
    supernet = model.supernet.eval()
    supernet.set_active(arch)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(fixed.eval()(x), supernet(x))
    with pytest.raises(ArchError, match="kernel"):
        run(["export", "--ckpt", str(tmp_path / "last.ckpt"), "--subnet",
              text.replace("|k3,", "|k9,")])
