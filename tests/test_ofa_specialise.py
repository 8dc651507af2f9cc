"""Once-for-All specialisation: the supernet evaluator (inherited accuracy of recalibrated
subnets) and the multi-budget search CLI (one search per latency budget, the joint Pareto
front, budgets.json, exported subnets, one offline W&B run)."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from ofa_helpers import TINY_STAGES, tiny_space

from lightning_nas.data import SyntheticDataModule
from lightning_nas.hardware.latency_lut import LatencyTable, enumerate_layers
from lightning_nas.hardware.metrics import count_flops
from lightning_nas.search import read_journal
from lightning_nas.search.cli import main_search
from lightning_nas.search.supernet_evaluator import SupernetEvaluator
from lightning_nas.spaces.base import Arch, ArchError
from lightning_nas.spaces.mobilenet_supernet import recalibrate_bn, resize_to
from lightning_nas.strategies.fixed import FixedArchitecture
from lightning_nas.strategies.ofa import OnceForAll, Phase, load_supernet

DATA = {"num_classes": 4, "in_channels": 3, "image_size": 8, "train_size": 64,
        "test_size": 16, "batch_size": 16, "val_fraction": 0.25, "seed": 0, "hflip": True,
        "crop_padding": 2}
SPACE_ARGS = {"stages": TINY_STAGES, "depths": [1, 2], "kernels": [3, 5, 7],
              "expands": [3, 4, 6], "resolutions": [6, 8], "stem_width": 8, "final_width": 32,
              "feature_width": 32, "num_classes": 4, "in_channels": 3, "stem_stride": 1}
EVAL = {"calibration_images": 24, "batch_size": 16}


def tiny_data(**kwargs) -> SyntheticDataModule:
    return SyntheticDataModule(**{**DATA, **kwargs})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny supernet trained in seconds: the full network, then every dimension elastic."""
    root = tmp_path_factory.mktemp("ofa")
    model = OnceForAll(num_classes=4, in_channels=3, space=tiny_space(), channels_last=False,
                       bn_calibration_batches=2, seed=0,
                       phases=[Phase("full", 1, 0.05, resolutions=[6, 8]),
                               Phase("elastic", 1, 0.02, kernels=[3, 5, 7], depths=[1, 2],
                                     expands=[3, 4, 6], resolutions=[6, 8],
                                     subnets_per_step=2, sandwich=True)])
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, default_root_dir=root,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=1,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=root,
                                                                       save_last=True)])
    trainer.fit(model, tiny_data())
    return root / "last.ckpt"


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    """A deterministic latency table of the tiny space: every entry proportional to the
    layer's FLOPs (1 ms per 10k FLOPs), so budgets and predictions are exact in the test."""
    space = tiny_space()
    entries = {key: count_flops(spec.build().eval(), spec.input_shape).flops / 1e4
               for key, spec in enumerate_layers(space).items()}
    table = LatencyTable(space, entries, metadata={
        "device": "cpu", "hardware": "test table (FLOP-proportional)", "batch_size": 1,
        "num_threads": 1})
    return table.save(tmp_path_factory.mktemp("lut") / "tiny.json")


def _evaluator(ckpt: Path, **kwargs) -> SupernetEvaluator:
    data = kwargs.pop("data", None) or tiny_data()
    return SupernetEvaluator(str(ckpt), data, **{**EVAL, **kwargs})


# --- the evaluator ------------------------------------------------------------------------------
def test_inherited_accuracy_equals_evaluating_the_recalibrated_subnet_by_hand(ckpt):
    ev = _evaluator(ckpt)
    space = tiny_space()
    arch = space.sample(random.Random(3))
    out = ev(arch)
    assert set(out) == {"accuracy", "loss"} and 0.0 <= out["accuracy"] <= 100.0

    # by hand: the same calibration images (training split, un-augmented, normalised)
    data = tiny_data()
    data.setup("fit")
    dataset = data.train_dataloader().dataset
    idx = ev.calibration_indices
    assert len(idx) == 24 and len(set(idx.tolist())) == 24
    assert set(idx.tolist()) <= set(data.split_indices()["train"].tolist())
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - mean) / std

    x_cal, _ = dataset.__getitems__(idx.tolist())
    batches = [normalise(x_cal[i:i + 16]) for i in range(0, len(x_cal), 16)]
    for mine, theirs in zip(ev.calibration_batches(), batches):
        torch.testing.assert_close(mine, theirs)
    _, supernet = load_supernet(ckpt)
    net = supernet.extract(arch)
    r = int(arch["resolution"])
    recalibrate_bn(net, [resize_to(b, r) for b in batches])
    net.eval()
    x_val, y_val = dataset.__getitems__(data.split_indices()["val"].tolist())
    with torch.no_grad():
        logits = net(resize_to(normalise(x_val), r))
    assert out["accuracy"] == pytest.approx(100.0 * float((logits.argmax(1) == y_val).float()
                                                          .mean()))
    assert out["loss"] == pytest.approx(float(F.cross_entropy(logits, y_val)), rel=1e-5)


def test_results_are_cached_per_network_and_the_evaluator_pickles(ckpt):
    ev = _evaluator(ckpt, max_eval_images=10)
    space = tiny_space()
    arch = space.smallest()  # depth 1 everywhere: block 2 of each stage is inactive
    first = ev(arch)
    assert ev.evaluations == 1 and len(ev.eval_images()[1]) == 10
    same_network = arch.replace(**{"stage1.block2.kernel": 7, "stage2.block2.expand": 6})
    assert ev(arch) == first and ev(same_network) == first
    assert ev.evaluations == 1  # no work for either
    clone = pickle.loads(pickle.dumps(ev))
    assert clone._loaded is None and clone._eval is None  # neither supernet nor images travel
    assert clone(arch) == first and clone.evaluations == 1  # the results travel
    assert clone(space.largest()) == ev(space.largest())  # reloaded lazily, same numbers
    assert clone.evaluations == 2 and ev.evaluations == 2


def test_an_arch_outside_the_supernet_is_an_arch_error(ckpt):
    ev = _evaluator(ckpt)
    with pytest.raises(ArchError, match=r"not a subnet of the supernet in .*kernel.*: 9 is "
                                        r"not a choice"):
        ev(tiny_space(kernels=(3, 5, 7, 9)).largest())
    with pytest.raises(ArchError, match=r"resolution: 10 is not a choice"):
        ev(tiny_space(resolutions=(6, 8, 10)).largest())
    assert ev.evaluations == 0


def test_a_search_space_other_than_the_checkpoints_is_a_clear_error(ckpt):
    ev = _evaluator(ckpt, space=tiny_space(expands=(3, 6)))
    with pytest.raises(ValueError, match=r"search space is not the space the supernet in .* was "
                                         r"trained on \(expands: search \[3, 6\], checkpoint "
                                         r"\[3, 4, 6\]\)"):
        ev.prepare()
    with pytest.raises(ValueError, match="num_classes=3 but the supernet"):
        _evaluator(ckpt, data=tiny_data(num_classes=3)).prepare()
    with pytest.raises(ValueError, match="val_fraction=0"):
        _evaluator(ckpt, data=tiny_data(val_fraction=0.0))
    with pytest.raises(FileNotFoundError, match="train a supernet first"):
        _evaluator(ckpt.with_name("missing.ckpt"))


def test_validating_on_images_the_supernet_trained_on_warns(ckpt):
    with pytest.warns(UserWarning, match="another held-out part .* optimistic"):
        _evaluator(ckpt, data=tiny_data(val_fraction=0.5)).prepare()


def test_choices_the_checkpoint_never_trained_are_flagged(tmp_path):
    model = OnceForAll(num_classes=4, in_channels=3, space=tiny_space(), channels_last=False,
                       seed=0, phases=[Phase("full", 1, 0.05),
                                       Phase("kernel", 1, 0.02, kernels=[3, 5, 7])])
    L.Trainer(accelerator="cpu", devices=1, max_epochs=1, default_root_dir=tmp_path,
              logger=False, enable_progress_bar=False, enable_model_summary=False,
              num_sanity_val_steps=0, limit_val_batches=1,
              callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)]
              ).fit(model, tiny_data())
    ev = _evaluator(tmp_path / "last.ckpt")
    ev(tiny_space().largest())  # the full network: trained
    with pytest.warns(UserWarning, match=r"kernel 3 was not active in any training phase"):
        ev(tiny_space().largest().replace(**{"stage1.block1.kernel": 3}))


# --- the multi-budget search CLI ----------------------------------------------------------------
def _config(tmp_path: Path, ckpt: Path, table: Path, budgets: list[float], **extra) -> Path:
    cfg = {
        "space": {"class_path": "lightning_nas.spaces.mobilenet.MobileNetV3Space",
                  "init_args": SPACE_ARGS},
        "sampler": {"class_path": "lightning_nas.search.samplers.RegularizedEvolution",
                    "init_args": {"population_size": 3, "sample_size": 2, "seed": 0}},
        "evaluator": {"class_path": "lightning_nas.search.supernet_evaluator.SupernetEvaluator",
                      "init_args": {"checkpoint": str(ckpt), **EVAL, "data": {
                          "class_path": "lightning_nas.data.SyntheticDataModule",
                          "init_args": DATA}}},
        "metric_hooks": [{"class_path": "lightning_nas.hardware.LatencyTableHook",
                          "init_args": {"path": str(table)}}],
        "budgets": budgets,
        "pareto": {"every_n_trials": 0},
        "wandb": {"enabled": True, "project": "lightning-nas-test", "mode": "offline"},
        "run_dir": str(tmp_path / "run"),
        "budget_trials": 4,
        "max_rejections": 5000,
        "progress": False,
        **extra,
    }
    path = tmp_path / "specialise.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _range(table: Path) -> tuple[LatencyTable, float, float]:
    t = LatencyTable.load(table)
    space = tiny_space()
    return t, t.predict(space.smallest(6)), t.predict(space.largest(8))


def test_search_cli_specialises_for_three_budgets(tmp_path, ckpt, table_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    table, low, high = _range(table_path)
    budgets = [round(low + f * (high - low), 3) for f in (0.15, 0.45, 0.8)]
    config = _config(tmp_path, ckpt, table_path, budgets)
    summary = main_search(["--config", str(config)])
    run = tmp_path / "run"
    assert summary["fastest_subnet"]["latency_ms"] == pytest.approx(low)

    for name in ("pareto.json", "pareto.png", "budgets.json", "summary.json", "config.yaml"):
        assert (run / name).is_file(), name
    pareto = json.loads((run / "pareto.json").read_text())
    assert pareto["objectives"] == {"accuracy": "max", "latency_ms": "min"}
    assert pareto["x_limits"] == {f"{b:g} ms": b for b in budgets}  # drawn in pareto.png
    assert "Unable to serialize" not in (run / "config.yaml").read_text()
    # every evaluated network of the three searches, once
    ok = [r for b in budgets for r in read_journal(run / f"budget_{b:g}ms")
          if r["status"] == "ok"]
    space = tiny_space()
    networks = {space.to_string(space.canonical(Arch.from_dict(r["arch_json"]))) for r in ok}
    assert pareto["n_candidates"] == len(networks)

    report = json.loads((run / "budgets.json").read_text())
    assert [e["budget_ms"] for e in report["budgets"]] == budgets
    assert "test table" in report["latency_source"]
    for entry in report["budgets"]:
        b = entry["budget_ms"]
        journal = read_journal(run / f"budget_{b:g}ms")
        assert sum(r["status"] != "rejected" for r in journal) == 4
        # every evaluated candidate of this budget's search met it
        assert all(r["metrics"]["latency_ms"] <= b for r in journal if r["status"] == "ok")
        arch = space.parse(entry["arch"])
        assert entry["latency_ms"] <= b
        assert entry["latency_ms"] == pytest.approx(table.predict(arch))
        # the best of everything evaluated (in any search) under this budget
        fits = [r for r in ok if r["metrics"]["latency_ms"] <= b]
        assert entry["accuracy"] == max(r["metrics"]["accuracy"] for r in fits)
        # the exported subnet fine-tunes from the same weights and gives the same outputs
        paths = entry["subnet"]
        assert Path(paths["weights"]).parent == run / "subnets" / f"{b:g}ms"
        saved = json.loads(Path(paths["arch"]).read_text())
        assert saved["metrics"]["accuracy"] == entry["accuracy"]
        fixed = FixedArchitecture(arch=paths["arch"], space=space, num_classes=4,
                                  in_channels=3, init_from=paths["weights"]).eval()
        reference = _evaluator(ckpt).subnet(arch)
        x = torch.randn(5, 3, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(fixed(x), reference(resize_to(x, int(arch["resolution"]))))
    accuracies = [e["accuracy"] for e in report["budgets"]]
    assert accuracies == sorted(accuracies)  # a looser budget never does worse

    wandb_info = json.loads((run / "wandb_run.json").read_text())
    assert wandb_info["mode"] == "offline"
    tables = sorted((run / "wandb").glob("offline-run-*/files/media/table/budgets/best_*.json"))
    assert tables and len(json.loads(tables[0].read_text())["data"]) == 3
    assert sorted((run / "wandb").glob("offline-run-*/files/media/table/pareto/candidates_*"))

    # --resume continues every budget's journal: nothing new to do, the same result
    again = main_search(["--config", str(config), "--resume", "true"])
    assert [e["arch"] for e in again["budgets"]] == [e["arch"] for e in report["budgets"]]
    assert json.loads((run / "wandb_run.json").read_text())["id"] == wandb_info["id"]
    with pytest.raises(FileExistsError, match="--resume true"):
        main_search(["--config", str(config)])


def test_an_impossible_budget_fails_before_any_evaluation(tmp_path, ckpt, table_path,
                                                          monkeypatch):
    calls = []
    monkeypatch.setattr(SupernetEvaluator, "_evaluate", lambda self, arch: calls.append(arch))
    _, low, high = _range(table_path)
    config = _config(tmp_path, ckpt, table_path, [round(low / 2, 3), high])
    with pytest.raises(ValueError) as info:
        main_search(["--config", str(config)])
    message = str(info.value)
    assert f"latency budget(s) {round(low / 2, 3):g} ms cannot be met" in message
    assert f"takes {low:.4g} ms" in message and str(table_path) in message
    assert "test table (FLOP-proportional)" in message
    assert calls == []
    assert not list(tmp_path.rglob("candidates.jsonl"))
    # and a search space the supernet was not trained on stops the CLI before searching
    other = _config(tmp_path, ckpt, table_path, [high],
                    space={"class_path": "lightning_nas.spaces.mobilenet.MobileNetV3Space",
                           "init_args": {**SPACE_ARGS, "expands": [3, 6]}})
    with pytest.raises(ValueError, match="not the space the supernet"):
        main_search(["--config", str(other)])
    assert calls == [] and not list(tmp_path.rglob("candidates.jsonl"))


def test_the_cifar10_specialisation_config_parses():
    from lightning_nas.search.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    path = root / "configs" / "search" / "ofa_cifar10_specialise.yaml"
    text = path.read_text()
    assert text.startswith("#") and "lightning-nas search --config" in text
    cfg = build_parser().parse_args(["--config", str(path)])
    assert len(cfg.budgets) == 3 and cfg.budgets == sorted(cfg.budgets)
    assert cfg.space.class_path.endswith("MobileNetV3CifarSpace")
    evaluator = cfg.evaluator.init_args
    assert cfg.evaluator.class_path.endswith("SupernetEvaluator")
    assert evaluator.checkpoint == "runs/ofa-cifar10-subset/checkpoints/last.ckpt"
    assert evaluator.data.init_args.root == "../shared/data/cifar10/cifar10_jpg.zip"
    assert evaluator.data.init_args.val_fraction > 0 and evaluator.split == "val"
    assert cfg.metric_hooks[0].class_path.endswith("LatencyTableHook")
    assert cfg.run_dir == "runs/search/ofa-cifar10" and cfg.wandb.mode == "offline"


def test_the_cifar10_predictor_specialisation_config_parses():
    from lightning_nas.search.cli import build_parser
    from lightning_nas.search.predictor_evaluator import PredictorEvaluator

    root = Path(__file__).resolve().parents[1]
    path = root / "configs" / "search" / "ofa_cifar10_specialise_predictor.yaml"
    cfg = build_parser().parse_args(["--config", str(path)])
    plain = build_parser().parse_args(
        ["--config", str(root / "configs" / "search" / "ofa_cifar10_specialise.yaml")])
    # the same supernet, data and latency table as the measured-fitness config
    assert cfg.evaluator.init_args.evaluator == plain.evaluator
    assert cfg.metric_hooks == plain.metric_hooks and cfg.budgets == plain.budgets
    assert cfg.evaluator.class_path == f"{PredictorEvaluator.__module__}.PredictorEvaluator"
    assert cfg.evaluator.init_args.train_archs == 200 and cfg.budget_trials == 1000


def test_search_cli_with_an_accuracy_predictor_verifies_the_chosen_subnets(
        tmp_path, ckpt, table_path, monkeypatch):
    """OFA's predictor fitness: the search queries a predictor trained on 12 inherited
    accuracies; budgets.json gives each chosen subnet's real inherited accuracy too."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    _, low, high = _range(table_path)
    budgets = [round(low + f * (high - low), 3) for f in (0.3, 0.9)]
    inner = {"class_path": "lightning_nas.search.supernet_evaluator.SupernetEvaluator",
             "init_args": {"checkpoint": str(ckpt), **EVAL, "data": {
                 "class_path": "lightning_nas.data.SyntheticDataModule", "init_args": DATA}}}
    data_file = tmp_path / "inherited.jsonl"
    config = _config(tmp_path, ckpt, table_path, budgets, budget_trials=20, evaluator={
        "class_path": "lightning_nas.search.predictor_evaluator.PredictorEvaluator",
        "init_args": {"evaluator": inner, "train_archs": 12, "holdout_fraction": 0.5,
                      "data_file": str(data_file), "progress": False}})
    summary = main_search(["--config", str(config)])
    assert len(data_file.read_text().splitlines()) == 12
    assert summary["predictor"]["networks"] == 12
    assert summary["predictor"]["holdout"]["holdout"] == 6
    run = tmp_path / "run"
    reference = _evaluator(ckpt)
    space = tiny_space()
    report = json.loads((run / "budgets.json").read_text())
    for entry in report["budgets"]:
        arch = space.parse(entry["arch"])
        assert entry["latency_ms"] <= entry["budget_ms"]
        assert "accuracy_std" in entry["metrics"]  # the fitness was predicted
        assert entry["verified"] == reference(arch)  # and the real inherited numbers
        saved = json.loads(Path(entry["subnet"]["arch"]).read_text())
        assert saved["metrics"] == reference(arch)  # exported with the real numbers
    tables = sorted((run / "wandb").glob("offline-run-*/files/media/table/budgets/best_*.json"))
    table = json.loads(tables[-1].read_text())
    column = table["columns"].index("verified_accuracy")
    assert [row[column] for row in table["data"]] == \
        [e["verified"]["accuracy"] for e in report["budgets"]]
    per_budget = json.loads((run / f"budget_{budgets[0]:g}ms" / "pareto.json").read_text())
    assert per_budget["x_limits"] == {f"{budgets[0]:g} ms": budgets[0]}


def test_the_fingerprint_changes_with_the_checkpoint_and_settings(ckpt, tmp_path):
    import os
    import shutil

    first = _evaluator(ckpt).fingerprint()
    assert first == _evaluator(ckpt).fingerprint()
    assert first != _evaluator(ckpt, calibration_images=16).fingerprint()
    assert first != _evaluator(ckpt, data=tiny_data(seed=1)).fingerprint()
    copy = shutil.copy2(ckpt, tmp_path / "last.ckpt")
    before = _evaluator(copy).fingerprint()
    assert before != first  # another file
    os.utime(copy, ns=(10**18, 10**18))  # rewritten in place (a retrained supernet)
    assert _evaluator(copy).fingerprint() != before
