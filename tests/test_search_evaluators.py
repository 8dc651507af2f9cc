"""Tabular evaluator and the `search` command line (configs/search/*.yaml)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import pickle
from pathlib import Path

import pytest

from lightning_nas.search import TabularEvaluator, read_journal, without_timing
from lightning_nas.search.cli import main_search
from lightning_nas.spaces.base import ArchError
from lightning_nas.spaces.darts import PRESETS as DARTS_PRESETS
from lightning_nas.spaces.nb201 import OPS, NB201Space, arch_from_ops

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "search").glob("nb201_*.yaml"))
SPACE = NB201Space()
COLUMNS = ["index", "arch_str", "cifar10valid_val_200ep", "cifar10_test_200ep",
           "cifar100_test_200ep", "imagenet16_test_200ep"]


def _shared() -> Path:
    env = os.environ.get("LIGHTNING_NAS_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


TABLE = _shared() / "nb201" / "nb201_accuracy.csv"


def _write(path: Path, columns: list[str], archs) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for k, arch in enumerate(archs):
            conv = sum(op.startswith("nor_conv") for op in arch.values())
            values = {"index": k, "arch_str": SPACE.to_string(arch),
                      "cifar10valid_val_200ep": 80 + conv + k % 7 / 10,
                      "cifar10_test_200ep": 81 + conv, "cifar100_test_200ep": 60 + conv,
                      "imagenet16_test_200ep": 30 + conv, "train_s": 100 + conv}
            writer.writerow([values[c] for c in columns])
    return path


@pytest.fixture(scope="module")
def full_table(tmp_path_factory) -> Path:
    """A synthetic table over all 15,625 cells (so tests don't need the shared data)."""
    archs = (arch_from_ops(ops) for ops in itertools.product(OPS, repeat=6))
    return _write(tmp_path_factory.mktemp("nb201") / "table.csv", COLUMNS, archs)


def test_lookup_and_report(full_table):
    ev = TabularEvaluator(full_table)
    assert len(ev) == 15625 and ev.primary_metric == "cifar10valid_val_200ep"
    arch = arch_from_ops(["nor_conv_3x3"] * 6)
    out = ev(arch)
    assert out["cifar10_test_200ep"] == 87.0 and out["imagenet16_test_200ep"] == 36.0
    assert out["simulated_seconds"] == 1.0
    assert set(out) == {"cifar10valid_val_200ep", "cifar10_test_200ep", "cifar100_test_200ep",
                        "imagenet16_test_200ep", "simulated_seconds"}
    clone = pickle.loads(pickle.dumps(ev))
    assert clone._table is None  # the table does not travel with the pickle
    assert clone(arch) == out


def test_time_column(tmp_path):
    path = _write(tmp_path / "t.csv", COLUMNS + ["train_s"],
                  [arch_from_ops(["nor_conv_1x1"] * 6)])
    ev = TabularEvaluator(path, time_column="train_s", report=())
    assert ev(arch_from_ops(["nor_conv_1x1"] * 6)) == {"cifar10valid_val_200ep": 86.0,
                                                       "simulated_seconds": 106.0}


def test_missing_file_columns_and_archs(tmp_path):
    with pytest.raises(FileNotFoundError, match="LIGHTNING_NAS_SHARED_DATA"):
        TabularEvaluator(tmp_path / "nope.csv")
    partial = _write(tmp_path / "p.csv", ["arch_str", "cifar10valid_val_200ep"],
                     [arch_from_ops(["none"] * 6)])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['cifar10_test_200ep', "
                                         r"'cifar100_test_200ep', 'imagenet16_test_200ep'\]"):
        TabularEvaluator(partial)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['arch'\]"):
        TabularEvaluator(partial, report=(), key_column="arch")
    ev = TabularEvaluator(partial, report=())
    with pytest.raises(ArchError, match=r"not in the table .*1 rows"):
        ev(arch_from_ops(["skip_connect"] * 6))
    with pytest.raises(ArchError, match="'darts' space"):
        ev(DARTS_PRESETS["DARTS_V2"])


@pytest.mark.skipif(not TABLE.is_file(), reason="NB201 table not in ../shared/data")
def test_real_table_known_values():
    ev = TabularEvaluator()
    best = SPACE.from_index(6111)
    assert ev(best)["cifar10_test_200ep"] == pytest.approx(94.37, abs=0.005)
    values = [row["cifar10_test_200ep"] for row in ev.table.values()]
    assert len(values) == 15625
    assert sum(values) / len(values) == pytest.approx(87.06, abs=0.01)


# --- CLI --------------------------------------------------------------------------------------
def test_the_glob_finds_every_tabular_search_config():
    names = {p.name for p in CONFIGS}
    assert {"nb201_random.yaml", "nb201_evolution.yaml", "nb201_bo.yaml",
            "nb201_reinforce.yaml", "nb201_local_search.yaml", "nb201_npenas.yaml",
            "nb201_local_search_zc_warmup.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_search_config_runs(config, full_table, tmp_path, capsys):
    head = config.read_text().splitlines()[:3]
    assert all(line.startswith("#") for line in head)
    if "ScoreTable" in config.read_text() and not (_shared() / "nb201" /
                                                   "zero_cost_scores.csv").is_file():
        pytest.skip("needs ../shared/data/nb201/zero_cost_scores.csv")
    assert "lightning-nas search --config" in config.read_text()
    summary = main_search(["--config", str(config), "--evaluator.init_args.path",
                           str(full_table), "--run_dir", str(tmp_path), "--budget_trials", "6",
                           "--progress", "false"])
    assert summary["counts"] == {"ok": 6, "failed": 0, "rejected": 0}
    assert len(read_journal(tmp_path)) == 6
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "arch.json").is_file()
    assert "best (trial" in capsys.readouterr().out


def test_cli_resume_seed_and_workers(full_table, tmp_path):
    config = ROOT / "configs" / "search" / "nb201_evolution.yaml"
    common = ["--config", str(config), "--evaluator.init_args.path", str(full_table),
              "--progress", "false", "--seed", "4"]
    main_search(common + ["--run_dir", str(tmp_path / "a"), "--budget_trials", "14"])
    main_search(common + ["--run_dir", str(tmp_path / "b"), "--budget_trials", "6"])
    main_search(common + ["--run_dir", str(tmp_path / "b"), "--budget_trials", "14",
                          "--resume", "true"])
    assert without_timing(read_journal(tmp_path / "a")) == \
        without_timing(read_journal(tmp_path / "b"))
    summary = main_search(common + ["--run_dir", str(tmp_path / "c"), "--budget_trials", "6",
                                    "--workers", "2", "--executor", "thread"])
    assert summary["counts"]["ok"] == 6
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["run_dir"] == \
        str(tmp_path / "c")


def test_cli_errors(full_table, tmp_path):
    config = ROOT / "configs" / "search" / "nb201_random.yaml"
    with pytest.raises(SystemExit):
        main_search(["--config", str(config), "--evaluator.init_args.path", str(full_table),
                     "--run_dir", str(tmp_path), "--budget_trials", "null"])
    with pytest.raises(SystemExit):
        main_search(["--config", str(config), "--sampler.init_args.population_size", "3",
                     "--run_dir", str(tmp_path)])


def test_latency_limits_are_drawn_only_on_a_latency_axis():
    from lightning_nas.search.cli import _latency_limits

    latency = {"accuracy": "max", "latency_ms": "min"}
    assert _latency_limits(latency, [4.0, 7.5]) == {"4 ms": 4.0, "7.5 ms": 7.5}
    assert _latency_limits(latency, [None]) is None  # no max_latency_ms constraint
    assert _latency_limits({"accuracy": "max", "params": "min"}, [4.0]) is None
    assert _latency_limits(None, [4.0]) is None


def test_the_evaluator_protocol_has_a_default_for_every_optional_part():
    """What the search CLI calls on any evaluator, without probing for attributes."""
    from lightning_nas.search import Evaluator
    from lightning_nas.spaces.darts import DartsSpace
    from lightning_nas.spaces.nb201 import NB201Space

    class Plain(Evaluator):
        primary_metric = "acc"

        def __call__(self, arch):
            return {"acc": 1.0}

    ev = Plain()
    assert ev.space is None and ev.input_shape is None and ev.fit_report is None
    assert ev.prepare() is ev
    space = NB201Space(channels=4, cells_per_stage=1)
    ev.bind(space)
    assert ev.space is space
    arch = space.sample(__import__("random").Random(0))
    assert type(ev.network(arch)) is type(space.build(arch))
    assert ev.verify(arch) is None and ev.export(arch, "out") is None
    with pytest.raises(ValueError, match="looks up 'nb201' architectures but the space is "
                                         "'darts'"):
        ev.bind(DartsSpace())
    with pytest.raises(ValueError, match="has no space to build"):
        Plain().network(arch)


def test_zero_cost_warmup_config_resumes_to_the_same_search(full_table, tmp_path):
    """configs/search/nb201_local_search_zc_warmup.yaml: the warm start's queue and the local
    search behind it are in the loop's snapshot, so 6 trials + resume = 14 in one go."""
    if not (_shared() / "nb201" / "zero_cost_scores.csv").is_file():
        pytest.skip("needs ../shared/data/nb201/zero_cost_scores.csv")
    config = ROOT / "configs" / "search" / "nb201_local_search_zc_warmup.yaml"
    common = ["--config", str(config), "--evaluator.init_args.path", str(full_table),
              "--progress", "false", "--zero_cost_warmup.pool_size", "50"]
    main_search(common + ["--run_dir", str(tmp_path / "a"), "--budget_trials", "14"])
    main_search(common + ["--run_dir", str(tmp_path / "b"), "--budget_trials", "6"])
    main_search(common + ["--run_dir", str(tmp_path / "b"), "--budget_trials", "14",
                          "--resume", "true"])
    journal = read_journal(tmp_path / "a")
    assert without_timing(journal) == without_timing(read_journal(tmp_path / "b"))
    from lightning_nas.search.zero_cost_evaluator import ScoreTable

    table = ScoreTable(SPACE, proxies=["nwot"])
    assert all(not math.isnan(table(SPACE.parse(r["arch"]))["nwot"]) for r in journal[:10])
