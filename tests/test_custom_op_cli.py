"""A user's op registered in YAML only (a ``class_path`` to a module written here, no code in
the package) is searched by DARTS on digits through `lightning-nas fit`, ends up in the
genotype and arch.json, and the found cell trains with configs/train/digits.yaml; the
attention configs run a few steps (configs/darts/digits_attention.yaml; the NB201 attention
config on a miniature CIFAR-10 zip in the shared zip's layout)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_nas.cli import main
from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.registry import unregister_op
from lightning_nas.strategies.common import load_supernet

ROOT = Path(__file__).resolve().parents[1]
USER_MODULE = '''
from torch import nn


class BlurConv(nn.Sequential):
    """A user's op: k x k average blur (strided in reduction cells), then a 1x1 conv + BN."""

    def __init__(self, c_in, c_out, stride, kernel=3):
        super().__init__(nn.AvgPool2d(kernel, stride, kernel // 2, count_include_pad=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
'''
USER_OP = {"name": "user_blur", "class_path": "user_blur_ops.BlurConv",
           "init_args": {"kernel": 3}}


def fit_args(config: Path | str, run: Path, val_fraction: str) -> list[str]:
    """One epoch of 2 steps and one validation batch: ``val_fraction`` of the batches, since
    ``--trainer.limit_val_batches 1`` parses as 1.0 (all batches; jsonargparse reads the
    Trainer's ``int | float`` as a float, and Lightning a float 1.0 as 100%; 2.0 is 2)."""
    return ["fit", "--config", str(config), "--trainer.default_root_dir", str(run),
            "--trainer.logger.init_args.save_dir", str(run), "--trainer.enable_progress_bar",
            "false", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", val_fraction]


@pytest.fixture
def user_op_module(tmp_path, monkeypatch):
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "user_blur_ops.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))  # the user's PYTHONPATH
    yield folder
    unregister_op("user_blur")
    sys.modules.pop("user_blur_ops", None)


def test_an_op_registered_in_yaml_is_searched_sampled_derived_and_trained(tmp_path,
                                                                           user_op_module):
    ops = ["none", "skip_connect", USER_OP]
    extra = tmp_path / "user_op.yaml"  # the user's whole change: a YAML naming the op
    extra.write_text(yaml.safe_dump({"model": {"init_args": {
        "space": {"class_path": "lightning_nas.spaces.darts.DartsSpace",
                  "init_args": {"ops": ops}},
        "channels": 4, "layers": 3}}}))
    run = tmp_path / "search"
    main([*fit_args(ROOT / "configs/darts/digits.yaml", run, "0.03"), "--config", str(extra),
          "--data.init_args.batch_size", "16"])

    # derived into the genotype and arch.json (seeded: the same cell every run)
    arch = Arch.load(run / "arch.json")
    derived = [op for cell in ("normal", "reduce") for op, _ in arch[cell]]
    assert "user_blur" in derived and set(derived) <= {"skip_connect", "user_blur"}
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["primitives"] == ["none", "skip_connect", "user_blur"]
    assert "user_blur" in history[-1]["string"]

    # the checkpoint rebuilds the same space; the op is sampled and its weights were trained
    space, supernet, _ = load_supernet(run / "checkpoints" / "last.ckpt")
    assert space.ops == ("none", "skip_connect", "user_blur")
    rng = random.Random(0)
    assert any("user_blur" in space.to_string(space.sample(rng)) for _ in range(3))
    user_ops = [m for m in supernet.modules() if type(m).__name__ == "BlurConv"]
    assert len(user_ops) == 3 * 14  # one per edge of each of the 3 cells
    torch.manual_seed(0)  # DartsSearch's seed: the initial weights
    fresh = space.supernet(num_classes=10, in_channels=1, channels=4, layers=3,
                           channels_last=False, checkpoint_cells=0)
    initial = [m for m in fresh.modules() if type(m).__name__ == "BlurConv"]
    assert [m[1].weight.shape for m in initial] == [m[1].weight.shape for m in user_ops]
    assert all(not torch.equal(a[1].weight, b[1].weight) for a, b in zip(user_ops, initial))

    # the found cell trains with the training config (its space lists the op the same way)
    train = tmp_path / "train"
    main([*fit_args(ROOT / "configs/train/digits.yaml", train, "0.34"),
          "--model.init_args.arch",
          str(run / "arch.json"), "--model.init_args.space.init_args.channels", "4",
          "--model.init_args.space.init_args.layers", "3",
          "--model.init_args.space.init_args.ops", json.dumps(ops)])
    assert "train/loss" in (train / "metrics.csv").read_text().splitlines()[0]


def test_darts_attention_config_runs_a_few_steps(tmp_path):
    run = tmp_path / "run"
    main([*fit_args(ROOT / "configs/darts/digits_attention.yaml", run, "0.02"),
          "--model.init_args.channels", "4", "--model.init_args.layers", "3",
          "--data.init_args.batch_size", "8"])
    arch = Arch.load(run / "arch.json")
    history = json.loads((run / "history.jsonl").read_text().splitlines()[-1])
    assert history["primitives"][-3:] == ["self_attention", "local_attention_3x3",
                                          "squeeze_excite"]
    space, _, _ = load_supernet(run / "checkpoints" / "last.ckpt")
    assert space.validate(arch) == arch and space.in_search_space(arch)


def test_nb201_attention_config_runs_on_a_miniature_cifar10_zip(tmp_path):
    """The CIFAR-10 subset config on a zip in cifar10_jpg.zip's layout (train|test/<class>/)."""
    from test_data_folder import _write_zip, make_tree

    files, _ = make_tree(n_train=4, n_test=1, size=20)
    archive = _write_zip(tmp_path / "mini_cifar.zip", files)
    run = tmp_path / "run"
    main([*fit_args(ROOT / "configs/darts/nb201_attention_cifar10_subset.yaml", run, "0.5"),
          "--data.init_args.root", str(archive), "--data.init_args.batch_size", "4",
          "--model.init_args.space.init_args.channels", "4",
          "--model.init_args.space.init_args.cells_per_stage", "1"])
    arch = Arch.load(run / "arch.json")
    assert arch.space == "nb201"
    space, supernet, _ = load_supernet(run / "checkpoints" / "last.ckpt")
    assert "self_attention" in space.ops and "local_attention_3x3" in space.ops
    assert space.validate(arch) == arch and supernet.alpha_shapes() == {"cell": (6, 7)}


def test_export_imports_a_users_op_module_only_when_named_with_allow_import(
        tmp_path, user_op_module, capsys):
    """A one-shot checkpoint whose space lists an op registered from YAML (a user's
    class_path): `lightning-nas export` of its network refuses to import the module (the
    message names --allow-import) and imports nothing; `--allow-import user_blur_ops`
    rebuilds and exports it; the trust ends with the command."""
    from lightning_nas.cli import run
    from lightning_nas.spaces.declarative import DeclarativeSpace
    from lightning_nas.spaces.registry import import_allowed
    from lightning_nas.strategies.common import supernet_meta

    space = DeclarativeSpace(name="user_op_space", stem_channels=4, in_channels=1,
                             num_classes=3, stages=[{"name": "s1", "width": 4,
                                                     "ops": ["skip_connect", USER_OP]}])
    supernet = space.supernet()
    arch = space.parse("s1:d1:w4:user_blur")
    options = {"num_classes": 3, "in_channels": 1}
    ckpt = tmp_path / "spos.ckpt"
    torch.save({"state_dict": {f"supernet.{k}": v for k, v in supernet.state_dict().items()},
                "lightning_nas": {"arch": arch.to_dict(), "input_shape": [1, 8, 8],
                                  "strategy": "lightning_nas.strategies.spos.SPOS",
                                  "supernet_spec": supernet_meta(space, options)}}, ckpt)
    unregister_op("user_blur")  # a fresh process: the user's module is not imported
    sys.modules.pop("user_blur_ops")

    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(ckpt), "--format", "torchscript"])
    err = capsys.readouterr().err
    assert "user_blur_ops.BlurConv" in err and "--allow-import user_blur_ops" in err
    assert "user_blur_ops" not in sys.modules  # refused before importing anything
    with pytest.raises(ValueError, match="--allow-import takes a module name"):
        run(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--allow-import",
             "user ops"])

    out = run(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--allow-import",
               "user_blur_ops", "--out", str(tmp_path / "net.pt")])
    assert out == tmp_path / "net.pt" and out.is_file() and "user_blur_ops" in sys.modules
    assert not import_allowed("another_module")  # the trust ended with the command
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(torch.jit.load(str(out))(x),
                               supernet.subnet(arch).eval()(x))
