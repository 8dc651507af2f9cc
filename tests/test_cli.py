"""The `lightning-nas` command end to end on tiny settings: search, export, train, errors."""

import json
from pathlib import Path

import pytest
import torch

from lightning_nas.cli import main, run, run_lightning_cli
from lightning_nas.data import shared_data_dir
from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.mobilenet import MobileNetV3Space

ROOT = Path(__file__).resolve().parents[1]


def run_overrides(run: Path) -> list[str]:
    return ["--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir",
            str(run), "--trainer.enable_progress_bar", "false"]


def tiny_search_args(run: Path) -> list[str]:
    return ["fit", "--config", str(ROOT / "configs/quickstart.yaml"), *run_overrides(run),
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--model.init_args.channels", "4",
            "--model.init_args.layers", "3", "--model.init_args.warmup_epochs", "0",
            "--model.init_args.checkpoint_cells", "0"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("quickstart")
    main(tiny_search_args(run))
    return run


def test_quickstart_search_writes_the_run_folder(searched, capsys):
    for name in ("arch.json", "history.jsonl", "metrics.csv", "config.yaml",
                 "checkpoints/last.ckpt"):
        assert (searched / name).exists(), name
    arch = Arch.load(searched / "arch.json")
    DartsSpace().validate(arch)
    payload = json.loads((searched / "arch.json").read_text())
    assert payload["string"].startswith("Genotype(normal=[(")


def test_export_writes_the_checkpoint_architecture(searched, tmp_path, capsys):
    out = tmp_path / "exported.json"
    main(["export", "--ckpt", str(searched / "checkpoints/last.ckpt"), "--out", str(out)])
    assert "Genotype(normal=" in capsys.readouterr().out
    last = json.loads((searched / "history.jsonl").read_text().splitlines()[-1])
    assert Arch.load(out) == Arch.from_dict(last)


def test_train_the_found_architecture_then_test_it(searched, tmp_path):
    run = tmp_path / "train"
    args = ["--config", str(ROOT / "configs/train/digits.yaml"), *run_overrides(run),
            "--model.arch", str(searched / "arch.json"), "--trainer.max_epochs", "3",
            "--model.init_args.space.init_args.channels", "8",
            "--model.init_args.space.init_args.layers", "3"]
    main(["fit", *args])
    cli = run_lightning_cli(["test", *args, "--ckpt_path", str(run / "checkpoints/last.ckpt")])
    accuracy = float(cli.trainer.callback_metrics["test/acc"])
    assert accuracy > 0.5  # 10 classes: chance is 0.1
    assert cli.model.arch == Arch.load(searched / "arch.json")


def test_preset_names_work_as_arch(tmp_path):
    cli = run_lightning_cli(["--config", str(ROOT / "configs/train/digits.yaml"),
                             *run_overrides(tmp_path), "--model.arch", "PC_DARTS"],
                            run=False)
    assert cli.model.arch == DartsSpace.presets["PC_DARTS"]


def test_config_typo_names_the_bad_key(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([*tiny_search_args(tmp_path), "--model.init_args.chanels", "4"])
    err = capsys.readouterr().err
    assert "chanels" in err


def test_unknown_preset_or_malformed_arch_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="presets: .*DARTS_V2"):
        run_lightning_cli(["--config", str(ROOT / "configs/train/digits.yaml"),
                           *run_overrides(tmp_path), "--model.arch", "DARTS_V9"], run=False)


def test_missing_cifar_archive_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz.*download"):
        run(["fit", "--config", str(ROOT / "configs/darts/cifar10.yaml"), *run_overrides(tmp_path),
              "--data.init_args.root", str(tmp_path / "nowhere")])


def test_export_of_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RuntimeError, match="cannot read checkpoint .*truncated or not a torch"):
        run(["export", "--ckpt", str(bad)])


def test_fine_tune_on_another_class_count_keeps_the_body(searched, tmp_path):
    from lightning_nas.strategies.fixed import FixedArchitecture

    space = DartsSpace(channels=8, layers=3, auxiliary=False)
    source = FixedArchitecture(arch=str(searched / "arch.json"), space=space, num_classes=10,
                               in_channels=1, seed=1)
    ckpt = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict()}, ckpt)
    tuned = FixedArchitecture(arch=str(searched / "arch.json"), space=space, num_classes=4,
                              in_channels=1, init_from=str(ckpt), seed=2)
    assert tuned.net.classifier.out_features == 4
    torch.testing.assert_close(tuned.net.cells[0].pre1[1].weight, source.net.cells[0].pre1[1].weight)
    assert not torch.equal(tuned.net.stem[0].weight, FixedArchitecture(
        arch=str(searched / "arch.json"), space=space, num_classes=4, in_channels=1,
        seed=2).net.stem[0].weight)


@pytest.mark.parametrize("config", sorted(p.relative_to(ROOT).as_posix()
                                          for p in (ROOT / "configs").rglob("*.yaml")
                                          if "search/" not in p.as_posix()))
def test_every_fit_config_parses_and_instantiates(config, tmp_path):
    text = (ROOT / config).read_text()
    if "shared/data" in text and not shared_data_dir().is_dir():
        pytest.skip("needs ../shared/data")
    lines = text.splitlines()
    assert lines[0].startswith("# ") and "lightning-nas" in text.split("\n\n")[0] or \
        any("lightning-nas" in line for line in lines[:12]), "header must say how to run it"
    extra = []
    if "FixedArchitecture" in text:
        arch = "DARTS_V2"
        if "MobileNetV3CifarSpace" in text:  # an OFA subnet: any arch string of the space
            space = MobileNetV3Space.cifar()
            arch = space.to_string(space.smallest())
        if "MobileBlockSpace" in text:  # the mobile block space: a preset by name
            arch = "MobileNetV3-Small"
        extra = ["--model.arch", arch]
    if "StreamingImageDataModule" in text:  # ImageNet configs: a tiny folder, CPU trainer
        from streaming_helpers import make_image_folder

        root = make_image_folder(tmp_path / "images", classes=2, per_class=2)
        extra = ["--data.init_args.root", str(root), "--trainer.accelerator", "cpu",
                 "--trainer.devices", "1", "--trainer.strategy", "auto"]
    cli = run_lightning_cli(["--config", str(ROOT / config), *run_overrides(tmp_path), *extra],
                            run=False)
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes


def test_export_default_path_leaves_the_runs_arch_json_alone(searched):
    before = (searched / "arch.json").read_text()
    main(["export", "--ckpt", str(searched / "checkpoints/last.ckpt")])
    assert (searched / "checkpoints/last.arch.json").is_file()
    assert (searched / "arch.json").read_text() == before


def test_no_args_warning_and_the_command_line_is_what_ran(tmp_path, recwarn):
    """LightningCLI warned on every fit ("args parameter is intended to run from within
    Python") because both `args` and sys.argv were given; the args now are sys.argv while
    the CLI runs (Lightning's DDP launcher starts the other ranks from sys.argv)."""
    import sys

    before = list(sys.argv)
    args = ["--config", str(ROOT / "configs/train/digits.yaml"), *run_overrides(tmp_path),
            "--model.arch", "DARTS_V2"]
    run_lightning_cli(args, run=False)
    assert not [w for w in recwarn if "args parameter is intended" in str(w.message)]
    assert sys.argv == before


def test_a_strategy_seed_other_than_the_data_seed_runs(tmp_path):
    """Lightning refused to log hyper-parameters when the strategy's and the data module's
    `seed` differed ("Error while merging hparams"): a search with --model.init_args.seed 1
    over the data split of seed 0 failed before its first step."""
    main([*tiny_search_args(tmp_path), "--model.init_args.seed", "1", "--data.init_args.seed",
          "0", "--trainer.max_epochs", "1"])
    assert (tmp_path / "arch.json").is_file()
    assert "seed: 1" in (tmp_path / "hparams.yaml").read_text()


def test_a_whole_number_batch_limit_is_a_count_and_a_decimal_a_fraction(tmp_path, capsys):
    """Lightning's ``Union[float, int]`` annotation would read ``1`` as 1.0 (100%)."""
    yaml_file = tmp_path / "limits.yaml"
    yaml_file.write_text("trainer:\n  limit_train_batches: 3\n  limit_test_batches: 1.0\n")
    cli = run_lightning_cli(["--config", str(ROOT / "configs/darts/digits.yaml"),
                             *run_overrides(tmp_path), "--config", str(yaml_file),
                             "--trainer.limit_val_batches", "1",
                             "--trainer.limit_predict_batches", "0.25"], run=False)
    limits = {k: getattr(cli.trainer, f"limit_{k}_batches")
              for k in ("train", "val", "test", "predict")}
    assert limits == {"train": 3, "val": 1, "test": 1.0, "predict": 0.25}
    assert [type(v) for v in limits.values()] == [int, int, float, float]
    # the subcommand parsers too (`lightning-nas fit ...`)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "configs/darts/digits.yaml"),
              "--trainer.limit_val_batches", "1", "--print_config"])
    assert "limit_val_batches: 1\n" in capsys.readouterr().out
