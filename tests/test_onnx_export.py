"""ONNX / TorchScript export of discovered architectures, and `lightning-nas export --format`.

ONNX Runtime's logits equal PyTorch's within 1e-4 for DARTS_V2 (CIFAR, 36 channels, 20
cells), an NB201 cell network and an OFA subnet; the CLI exports the networks of checkpoints
written by real (tiny) `Trainer.fit` runs.
"""

from __future__ import annotations

import sys

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from ofa_helpers import tiny_data, tiny_space

from lightning_nas.checkpoint_networks import SubnetRequiredError, middle_subnet
from lightning_nas.cli import main, run
from lightning_nas.data import SyntheticDataModule
from lightning_nas.hardware.onnx_export import (
    ExportMismatchError,
    check_onnx,
    export_onnx,
    export_torchscript,
    logits_of,
    ort_session,
    run_session,
)
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.fixed import FixedArchitecture
from lightning_nas.strategies.ofa import OnceForAll, Phase

pytest.importorskip("onnxruntime")

BEST_NB201 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
              "nor_conv_3x3~1|nor_conv_3x3~2|")


def randomise_bn(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial eval-mode batch norm: random running means, variances and affines."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.track_running_stats:
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            if m.affine:
                m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return net.eval()


def images(batch: int, channels: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


# --- the three architectures of the issue ---------------------------------------------------
def test_darts_v2_cifar_onnx_equals_pytorch(tmp_path):
    space = DartsSpace(channels=36, layers=20, auxiliary=True)  # the paper's CIFAR network
    torch.manual_seed(0)
    net = randomise_bn(space.build(space.presets["DARTS_V2"]))
    x = images(2, 3, 32)
    path = export_onnx(net, x, tmp_path / "darts_v2.onnx")
    assert check_onnx(net, path, x, atol=1e-4) <= 1e-4
    # dynamic batch axis: another batch size runs and agrees too
    x5 = images(5, 3, 32, seed=2)
    got = run_session(ort_session(path), x5)
    assert got.shape == (5, 10)
    torch.testing.assert_close(got, logits_of(net, x5), atol=1e-4, rtol=0)
    assert not net.training  # the mode the caller left it in


def test_nb201_cell_network_onnx_equals_pytorch(tmp_path):
    space = NB201Space()
    torch.manual_seed(0)
    net = randomise_bn(space.build(space.parse(BEST_NB201)))
    x = images(2, 3, 32)
    path = export_onnx(net, x, tmp_path / "nb201.onnx")
    assert check_onnx(net, path, x) <= 1e-4


def test_ofa_subnet_onnx_equals_pytorch_and_the_supernet(tmp_path):
    space = tiny_space()
    torch.manual_seed(0)
    supernet = space.supernet(num_classes=4)
    randomise_bn(supernet)
    arch = middle_subnet(space)
    subnet = supernet.extract(arch).eval()
    x = images(2, 3, int(arch["resolution"]))
    path = export_onnx(subnet, x, tmp_path / "ofa.onnx")
    assert check_onnx(subnet, path, x) <= 1e-4
    supernet.set_active(arch)
    with torch.no_grad():
        torch.testing.assert_close(run_session(ort_session(path, threads=2), x), supernet(x),
                                   atol=1e-4, rtol=0)


# --- module behaviour ------------------------------------------------------------------------
def test_tuple_outputs_export_the_logits_and_modes_are_restored(tmp_path):
    space = DartsSpace(channels=4, layers=3, auxiliary=True)
    net = space.build(space.presets["DARTS_V2"])  # training mode: returns (logits, aux)
    x = images(2, 3, 32)
    path = export_onnx(net, x, tmp_path / "d.onnx")
    assert net.training and all(m.training for m in net.modules())
    session = ort_session(path)
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert run_session(session, x).shape == (2, 10)


def test_a_mismatch_is_an_error_naming_both_outputs(tmp_path):
    space = NB201Space(channels=4, cells_per_stage=1)
    arch = space.parse(BEST_NB201)
    torch.manual_seed(0)
    exported, other = space.build(arch).eval(), space.build(arch).eval()
    x = images(2, 3, 8)
    path = export_onnx(exported, x, tmp_path / "n.onnx")
    with pytest.raises(ExportMismatchError, match=r"max \|difference\| of the logits = .* > "
                                                  r"tolerance 0.0001 \(largest \|logit\|: "
                                                  r"PyTorch .*, ONNX Runtime "):
        check_onnx(other, path, x)


def test_torchscript_round_trip(tmp_path):
    space = DartsSpace(channels=8, layers=5, auxiliary=True)
    torch.manual_seed(0)
    net = randomise_bn(space.build(space.presets["DARTS_V2"]))
    x = images(2, 3, 32)
    path = export_torchscript(net, x, tmp_path / "d.pt")
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded(images(3, 3, 32, seed=5)),
                               logits_of(net, images(3, 3, 32, seed=5)), atol=1e-5, rtol=0)
    ofa = tiny_space().supernet(num_classes=4).extract(tiny_space().smallest()).eval()
    export_torchscript(ofa, images(2, 3, 6), tmp_path / "o.pt")


def test_missing_onnx_runtime_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    net = NB201Space(channels=4, cells_per_stage=1).build(NB201Space().parse(BEST_NB201))
    with pytest.raises(ImportError, match=r"pip install 'lightning-nas\[export\]'"):
        export_onnx(net, images(1, 3, 8), tmp_path / "n.onnx")
    with pytest.raises(ImportError, match=r"lightning-nas\[export\]"):
        run(["export", "--ckpt", str(tmp_path / "whatever.ckpt"), "--format", "onnx"])


# --- the command on checkpoints of real runs -------------------------------------------------
def _fit(tmp_path, model, data, **kwargs) -> None:
    options = dict(accelerator="cpu", devices=1, default_root_dir=tmp_path, logger=False,
                   enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0, max_epochs=1, limit_train_batches=2,
                   limit_val_batches=1,
                   callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    options.update(kwargs)
    L.Trainer(**options).fit(model, data)


def test_cli_exports_a_trained_fixed_architecture(tmp_path, capsys):
    space = DartsSpace(channels=4, layers=3, auxiliary=False)
    model = FixedArchitecture(arch="DARTS_V2", space=space, num_classes=4, in_channels=1)
    _fit(tmp_path, model, SyntheticDataModule(num_classes=4, in_channels=1, image_size=12,
                                              train_size=32, test_size=8, batch_size=8))
    ckpt = tmp_path / "last.ckpt"
    path = run(["export", "--ckpt", str(ckpt), "--format", "onnx"])
    out = capsys.readouterr().out
    assert path == tmp_path / "last.onnx" and path.is_file() and "trained weights" in out
    assert "ONNX Runtime vs PyTorch: max |difference|" in out
    x = images(3, 1, 12)  # the recorded data shape: 1 channel, 12x12
    model.eval()
    torch.testing.assert_close(run_session(ort_session(path), x), model(x), atol=1e-4, rtol=0)
    main(["export", "--ckpt", str(ckpt), "--format", "torchscript",
          "--out", str(tmp_path / "ts" / "net.pt")])
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "ts" / "net.pt"))(x), model(x),
                               atol=1e-5, rtol=0)
    main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--input-shape", "1,16,16",
          "--out", str(tmp_path / "big.onnx")])
    assert run_session(ort_session(tmp_path / "big.onnx"), images(1, 1, 16)).shape == (1, 4)


@pytest.fixture(scope="module")
def ofa_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ofa")
    model = OnceForAll(num_classes=4, in_channels=3, space=tiny_space(),
                       phases=[Phase("full", 1, 0.05, resolutions=[6, 8])],
                       bn_calibration_batches=1, channels_last=False, seed=0)
    _fit(folder, model, tiny_data())
    return folder / "last.ckpt", model


def test_cli_exports_an_ofa_subnet_with_inherited_weights(ofa_checkpoint, tmp_path, capsys):
    ckpt, model = ofa_checkpoint
    space = model.space
    main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--subnet", "smallest",
          "--out", str(tmp_path / "small.onnx")])
    assert "inherited" in capsys.readouterr().out
    arch = space.smallest()
    supernet = model.supernet.eval()
    supernet.set_active(arch)
    x = images(2, 3, int(arch["resolution"]))  # the subnet's own resolution
    with torch.no_grad():
        torch.testing.assert_close(run_session(ort_session(tmp_path / "small.onnx"), x),
                                   supernet(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("fmt", ["json", "onnx", "torchscript"])
def test_ofa_checkpoint_without_subnet_lists_the_choices(ofa_checkpoint, fmt, tmp_path, capsys):
    ckpt, model = ofa_checkpoint
    with pytest.raises(SubnetRequiredError) as err:
        run(["export", "--ckpt", str(ckpt), "--format", fmt, "--out", str(tmp_path / "x")])
    message = str(err.value)
    assert "--subnet largest" in message and "--subnet smallest" in message
    example = message.rsplit("--subnet '", 1)[1].rstrip("'")
    assert model.space.parse(example) == middle_subnet(model.space)  # a valid string
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):  # the command prints it as one error line
        main(["export", "--ckpt", str(ckpt), "--format", fmt])
    assert "--subnet smallest" in capsys.readouterr().err


def test_cli_exports_a_one_shot_search_result(tmp_path, capsys):
    from lightning_nas.strategies.darts import DartsSearch

    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=32,
                               test_size=8, batch_size=8, search=True, seed=0)
    nb201 = DartsSearch(num_classes=4, in_channels=3, seed=1,
                        space=NB201Space(channels=4, cells_per_stage=1, num_classes=4))
    _fit(tmp_path / "nb201", nb201, data, callbacks=[ModelCheckpoint(
        dirpath=tmp_path / "nb201", save_last=True)])
    main(["export", "--ckpt", str(tmp_path / "nb201" / "last.ckpt"), "--format", "onnx"])
    out = capsys.readouterr().out
    assert "inherited from the search's supernet" in out and "input (B, 3, 8, 8)" in out
    darts = DartsSearch(num_classes=4, in_channels=3, channels=4, layers=3, seed=0,
                        checkpoint_cells=0, channels_last=False,
                        space=DartsSpace(channels=4, layers=3))
    _fit(tmp_path / "darts", darts, data, callbacks=[ModelCheckpoint(
        dirpath=tmp_path / "darts", save_last=True)])
    main(["export", "--ckpt", str(tmp_path / "darts" / "last.ckpt"), "--format", "onnx"])
    assert "UNTRAINED weights" in capsys.readouterr().out
    assert (tmp_path / "darts" / "last.onnx").is_file()
