"""Bad inputs and faults through the `lightning-nas` command: every one exits with a clear
message (no traceback, no namespace dump) and the exit status a shell expects.

Each case is ``(name, argv, exit code, pattern the message must match)``; the message is
what the command prints to stderr. ``python tests/test_bad_inputs.py`` prints the table
(command, exit code, message) that the issue asks for.

Exit codes: 1 for an error the command reports itself, 2 for a command line the argument
parser rejects (jsonargparse / argparse), 130 for Ctrl-C.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_nas.cli import main
from lightning_nas.spaces.nb201 import NUM_ARCHS, arch_from_index, arch_ops

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs/quickstart.yaml")
TRAIN = str(ROOT / "configs/train/digits.yaml")
NB201_RANDOM = str(ROOT / "configs/search/nb201_random.yaml")
NB201_REA = str(ROOT / "configs/search/nb201_evolution.yaml")
TABLE_COLUMNS = ("cifar10valid_val_200ep", "cifar10_test_200ep", "cifar100_test_200ep",
                 "imagenet16_test_200ep")


class Marker:
    """A pickled object whose unpickling would create a file (``os.system``)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@dataclass
class Context:
    """Files the cases point at (built once per module)."""

    tmp: Path

    def p(self, name: str) -> str:
        return str(self.tmp / name)


def _fake_nb201_table(path: Path) -> None:
    """All 15,625 NB201 cells with made-up accuracies (the number of 3x3 convs), so the
    search cases run without ../shared/data."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "arch_str", *TABLE_COLUMNS])
        from lightning_nas.spaces.nb201 import NB201Space

        space = NB201Space()
        for i in range(NUM_ARCHS):
            arch = arch_from_index(i)
            score = 80.0 + sum(op == "nor_conv_3x3" for op in arch_ops(arch)) + (i % 7) / 10
            writer.writerow([i, space.to_string(arch), *([score] * len(TABLE_COLUMNS))])


def run_args(run: str) -> list[str]:
    return ["--trainer.default_root_dir", run, "--trainer.logger.init_args.save_dir", run,
            "--trainer.enable_progress_bar", "false"]


def tiny_fit(run: str) -> list[str]:
    return ["fit", "--config", QUICKSTART, *run_args(run), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--model.init_args.channels", "4", "--model.init_args.layers", "3",
            "--model.init_args.warmup_epochs", "0"]


def tiny_train(run: str, *extra: str) -> list[str]:
    return ["--config", TRAIN, *run_args(run), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--model.init_args.space.init_args.channels", "4",
            "--model.init_args.space.init_args.layers", "3", *extra]


def nb201_search(ctx: Context, run: str, *extra: str, config: str = NB201_RANDOM) -> list[str]:
    return ["search", "--config", config, "--evaluator.init_args.path", ctx.p("table.csv"),
            "--run_dir", run, "--budget_trials", "6", "--progress", "false", *extra]


def build_context(tmp: Path) -> Context:
    ctx = Context(tmp)
    main(tiny_fit(ctx.p("darts")))  # a real DARTS checkpoint
    _fake_nb201_table(tmp / "table.csv")
    main(nb201_search(ctx, ctx.p("search")))  # a real search journal
    main(nb201_search(ctx, ctx.p("search_corrupt")))
    (tmp / "search_corrupt" / "search_state.pt").write_bytes(b"PK\x03\x04 cut off")
    main(nb201_search(ctx, ctx.p("search_crafted")))
    torch.save({"version": 1, "x": Marker(tmp / "PWNED")},
               tmp / "search_crafted" / "search_state.pt")
    main(nb201_search(ctx, ctx.p("search_badline")))
    journal = tmp / "search_badline" / "candidates.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")

    torch.save({"state_dict": {}, "lightning_nas": {
        "strategy": "lightning_nas.strategies.darts.DartsSearch"}, "epoch": Marker(
            tmp / "PWNED")}, tmp / "crafted.ckpt")
    (tmp / "corrupt.ckpt").write_bytes(b"PK\x03\x04 truncated")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp / "plain.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp / "not_lightning.ckpt")
    (tmp / "nb201_arch.json").write_text(json.dumps({"space": "nb201", "arch": dict(
        arch_from_index(0))}))
    (tmp / "broken_arch.json").write_text('{"space": "darts", "arch": ')
    (tmp / "notes.txt").write_text("not a zip and not a folder\n")
    for split in ("train", "test"):
        for cls in ("a", "b"):
            folder = tmp / "images" / split / cls
            folder.mkdir(parents=True)
            for k in range(4):
                Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(folder / f"{k}.png")
    (tmp / "images" / "train" / "b" / "9.jpg").write_text("this is a text file\n")
    np.savez(tmp / "mnist_wrong.npz", images=np.zeros((2, 28, 28), np.uint8))
    return ctx


@dataclass
class Case:
    name: str
    argv: Callable[[Context], list[str]]
    code: int
    pattern: str


G = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], " \
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])"
ENV_TABLE = '{"path": "%s"}'

CASES: list[Case] = [
    # --- configs and arguments (the parser says what is wrong) ---------------------------
    Case("config key typo", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.chanels", "4"],
         2, r"Option 'chanels' is not accepted"),
    Case("config file missing", lambda c: ["fit", "--config", c.p("nope.yaml")], 2,
         r"nope\.yaml"),
    Case("unknown strategy class", lambda c: [*tiny_fit(c.p("r")), "--model.class_path",
                                              "lightning_nas.strategies.nope.Search"], 2,
         r"lightning_nas\.strategies\.nope"),
    Case("value of the wrong type", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.layers",
                                               "five"], 2, r"layers.*Expected a <class 'int'>"),
    Case("search: sampler option typo", lambda c: nb201_search(c, c.p("s9"),
                                                               "--sampler.init_args.sed", "3"),
         2, r"Option 'sed' is not accepted"),
    Case("unknown subcommand", lambda c: ["fitt", "--config", QUICKSTART], 2,
         r"invalid choice|fitt"),
    # --- strategy settings (constructors say what to change) -----------------------------
    Case("DARTS order 3", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.order", "3"], 1,
         r"order must be 1 \(first-order\) or 2"),
    Case("DARTS 2 cells", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.layers", "2"], 1,
         r"layers must be >= 3"),
    Case("negative channels", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.channels",
                                         "-4"], 1, r"channels must be positive"),
    Case("hessian epsilon 0", lambda c: [*tiny_fit(c.p("r")),
                                         "--model.init_args.hessian_epsilon", "0"], 1,
         r"hessian_epsilon must be positive"),
    Case("drop-path 1.5", lambda c: ["fit", *tiny_train(c.p("r"), "--model.arch", "DARTS_V2",
                                                        "--model.init_args.drop_path_prob",
                                                        "1.5")], 1,
         r"drop_path_prob must be in \[0, 1\)"),
    # --- architectures --------------------------------------------------------------------
    Case("unknown preset", lambda c: ["fit", *tiny_train(c.p("r"), "--model.arch", "DARTS_V9")],
         1, r"presets: .*DARTS_V2"),
    Case("malformed genotype", lambda c: ["fit", *tiny_train(c.p("r"), "--model.arch",
                                                             "Genotype(normal=[(")], 1,
         r"(?i)genotype"),
    Case("unknown op in genotype", lambda c: ["fit", *tiny_train(c.p("r"), "--model.arch",
                                                                 G.replace("sep_conv_3x3', 1",
                                                                           "conv_9x9', 1"))],
         1, r"unknown operation 'conv_9x9'"),
    # --- op sets of cell spaces ---------------------------------------------------------------
    Case("unknown op in the space's ops", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.space",
                                                     "lightning_nas.spaces.darts.DartsSpace",
                                                     "--model.init_args.space.init_args.ops",
                                                     '["none", "skip_connect", "attn_9"]'], 1,
         r"ops\[2\]: unknown operation 'attn_9'; registered operations: .*self_attention"),
    Case("op set with one real op", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.space",
                                               "lightning_nas.spaces.darts.DartsSpace",
                                               "--model.init_args.space.init_args.ops",
                                               '["none", "skip_connect"]'], 1,
         r"at least 2 operation\(s\) other than 'none'"),
    Case("attention heads not dividing channels", lambda c: [
        *tiny_fit(c.p("r")), "--model.init_args.space", "lightning_nas.spaces.darts.DartsSpace",
        "--model.init_args.space.init_args.ops",
        '["skip_connect", {"name": "attn_h3", "class_path": '
        '"lightning_nas.spaces.attention.SelfAttentionOp", "init_args": {"heads": 3}}]'], 1,
         r"heads=3 must divide the op's 4 output channels \(set init_args.heads"),
    Case("op class without (C_in, C_out, stride)", lambda c: [
        *tiny_fit(c.p("r")), "--model.init_args.space", "lightning_nas.spaces.darts.DartsSpace",
        "--model.init_args.space.init_args.ops",
        '["skip_connect", {"name": "relu_op", "class_path": "torch.nn.ReLU"}]'], 1,
         r"ops\[1\]: op 'relu_op': the builder must take \(C_in, C_out, stride\)"),
    Case("arch.json of another space", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", c.p("nb201_arch.json"))], 1,
         r"belongs to the 'nb201' space, not 'darts'"),
    Case("arch.json missing", lambda c: ["fit", *tiny_train(c.p("r"), "--model.arch",
                                                            c.p("missing_arch.json"))], 1,
         r"missing_arch\.json' does not exist"),
    Case("arch.json truncated", lambda c: ["fit", *tiny_train(c.p("r"), "--model.arch",
                                                              c.p("broken_arch.json"))], 1,
         r"broken_arch\.json: architecture JSON does not parse"),
    # --- data -----------------------------------------------------------------------------
    Case("CIFAR archive missing", lambda c: ["fit", "--config",
                                             str(ROOT / "configs/darts/cifar10.yaml"),
                                             *run_args(c.p("r")), "--data.init_args.root",
                                             c.p("nowhere")], 1,
         r"cifar-10-python\.tar\.gz.*download"),
    Case("image folder missing", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--data", "lightning_nas.data.ImageFolderDataModule",
        "--data.root", c.p("no_images"))], 1, r"no_images does not exist"),
    Case("image root is a text file", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--data", "lightning_nas.data.ImageFolderDataModule",
        "--data.root", c.p("notes.txt"))], 1, r"notes\.txt is a file but not a zip"),
    Case("non-image .jpg in the folder", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--data", "lightning_nas.data.ImageFolderDataModule",
        "--data.root", c.p("images"), "--data.val_fraction", "0.25")], 1,
         r"9\.jpg.*skip_unreadable"),
    Case("MNIST npz without its arrays", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--data", "lightning_nas.data.MNISTDataModule",
        "--data.npz", c.p("mnist_wrong.npz"))], 1, r"mnist_wrong\.npz"),
    Case("DARTS without search batches", lambda c: [*tiny_fit(c.p("r")),
                                                    "--data.init_args.search", "false"], 1,
         r"needs paired batches .*search=True"),
    Case("NaN loss", lambda c: [*tiny_fit(c.p("r")), "--model.init_args.weight_optimizer",
                                "torch.optim.SGD", "--model.init_args.weight_optimizer.lr",
                                "1e30", "--model.init_args.grad_clip", "0"], 1,
         r"non-finite .* at epoch 0, step \d+: lower the"),
    # --- checkpoints ----------------------------------------------------------------------
    Case("--ckpt_path missing", lambda c: [*tiny_fit(c.p("r")), "--ckpt_path",
                                           c.p("missing.ckpt")], 1,
         r"missing\.ckpt' does not exist"),
    Case("--ckpt_path corrupt", lambda c: [*tiny_fit(c.p("r")), "--ckpt_path",
                                           c.p("corrupt.ckpt")], 1,
         r"cannot read checkpoint .*corrupt\.ckpt.*truncated or not a torch"),
    Case("--ckpt_path crafted pickle", lambda c: [*tiny_fit(c.p("r")), "--ckpt_path",
                                                  c.p("crafted.ckpt")], 1,
         r"refusing to load checkpoint .*crafted\.ckpt.*posix\.system.*nothing in the file "
         r"was run"),
    Case("--ckpt_path of another strategy", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--ckpt_path",
        c.p("darts/checkpoints/last.ckpt"))], 1,
         r"checkpoint of lightning_nas\.strategies\.darts\.DartsSearch, but the config trains "
         r"lightning_nas\.strategies\.fixed\.FixedArchitecture"),
    Case("--ckpt_path not from lightning-nas", lambda c: [*tiny_fit(c.p("r")), "--ckpt_path",
                                                          c.p("plain.ckpt")], 1,
         r"not written by a lightning-nas strategy"),
    Case("test without a checkpoint", lambda c: ["test", *tiny_train(c.p("r"), "--model.arch",
                                                                     "DARTS_V2")], 1,
         r"untrained network .*--ckpt_path"),
    Case("validate without a checkpoint", lambda c: ["validate", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2")], 1, r"validate an untrained network"),
    Case("init_from crafted pickle", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--model.init_args.init_from",
        c.p("crafted.ckpt"))], 1, r"refusing to load checkpoint .*crafted\.ckpt"),
    Case("init_from of another network", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--model.init_args.init_from",
        c.p("plain.ckpt"))], 1, r"holds no fixed-architecture network weights"),
    Case("init_from missing", lambda c: ["fit", *tiny_train(
        c.p("r"), "--model.arch", "DARTS_V2", "--model.init_args.init_from",
        c.p("missing.ckpt"))], 1, r"missing\.ckpt' does not exist"),
    # --- export ---------------------------------------------------------------------------
    Case("export: no --ckpt", lambda c: ["export"], 2, r"--ckpt"),
    Case("export: missing file", lambda c: ["export", "--ckpt", c.p("missing.ckpt")], 1,
         r"missing\.ckpt' does not exist"),
    Case("export: corrupt file", lambda c: ["export", "--ckpt", c.p("corrupt.ckpt")], 1,
         r"cannot read checkpoint"),
    Case("export: crafted pickle", lambda c: ["export", "--ckpt", c.p("crafted.ckpt")], 1,
         r"refusing to load checkpoint"),
    Case("export: not a Lightning checkpoint", lambda c: ["export", "--ckpt",
                                                          c.p("not_lightning.ckpt")], 1,
         r"is not a Lightning checkpoint \(no 'state_dict'\)"),
    Case("export: no architecture inside", lambda c: ["export", "--ckpt", c.p("plain.ckpt")], 1,
         r"was not written by a lightning-nas strategy"),
    Case("export --subnet of a DARTS checkpoint", lambda c: [
        "export", "--ckpt", c.p("darts/checkpoints/last.ckpt"), "--subnet", "largest"], 1,
         r"is not a Once-for-All checkpoint"),
    Case("export --subnet crafted pickle", lambda c: ["export", "--ckpt", c.p("crafted.ckpt"),
                                                      "--subnet", "largest"], 1,
         r"refusing to load checkpoint"),
    # --- search ---------------------------------------------------------------------------
    Case("search: no budget", lambda c: ["search", "--config", NB201_RANDOM,
                                         "--budget_trials", "null"], 2, r"give a budget"),
    Case("search: table missing", lambda c: nb201_search(c, c.p("s1"),
                                                         "--evaluator.init_args.path",
                                                         c.p("no_table.csv")), 1,
         r"tabular benchmark .*no_table\.csv' does not exist"),
    Case("search: unknown table column", lambda c: nb201_search(
        c, c.p("s2"), "--evaluator.init_args.metric", "cifar10_val_12ep"), 1,
         r"missing column\(s\) \['cifar10_val_12ep'\]"),
    Case("search: run folder taken", lambda c: nb201_search(c, c.p("search")), 1,
         r"already holds a search journal; pass --resume true"),
    Case("search: resumed with another seed", lambda c: nb201_search(
        c, c.p("search"), "--resume", "true", "--sampler.init_args.seed", "7"), 1,
         r"sampler\.init_args\.seed was 0 when it started, now 7"),
    Case("search: resumed with another metric", lambda c: nb201_search(
        c, c.p("search"), "--resume", "true", "--evaluator.init_args.metric",
        "cifar100_test_200ep"), 1, r"evaluator\.init_args\.metric was 'cifar10valid_val_200ep'"),
    Case("search: resumed with another sampler", lambda c: nb201_search(
        c, c.p("search"), "--resume", "true", config=NB201_REA), 1, r"sampler\.class_path was "),
    Case("search: corrupt state", lambda c: nb201_search(c, c.p("search_corrupt"), "--resume",
                                                         "true"), 1,
         r"cannot read search state .*search_state\.pt.*truncated or not a torch checkpoint\. "
         r"The search can be replayed from its journal .*6 records\): delete"),
    Case("search: crafted state", lambda c: nb201_search(c, c.p("search_crafted"), "--resume",
                                                         "true"), 1,
         r"refusing to load search state .*replayed from its journal"),
    Case("search: journal line broken", lambda c: nb201_search(c, c.p("search_badline"),
                                                               "--resume", "true"), 1,
         r"candidates\.jsonl: line 2 is not valid JSON"),
    Case("search: population of 0", lambda c: nb201_search(
        c, c.p("s3"), config=NB201_REA) + ["--sampler.init_args.population_size", "0"], 1,
         r"population_size"),
    Case("search: MnasNet without a target", lambda c: nb201_search(
        c, c.p("s4"), "--objective", "mnasnet_soft"), 2, r"mnasnet\.target_ms"),
    Case("search: latency limit without a hook", lambda c: nb201_search(
        c, c.p("s5"), "--constraints.max_latency_ms", "1"), 2, r"need the metrics of a metric hook"),
    Case("search: negative budget", lambda c: nb201_search(c, c.p("s6"), "--budgets", "[-1]"),
         2, r"budgets must be a non-empty list of latency budgets > 0 ms"),
    Case("search: supernet checkpoint crafted", lambda c: [
        "search", "--space", "lightning_nas.spaces.mobilenet.MobileNetV3CifarSpace",
        "--sampler", "lightning_nas.search.samplers.RandomSampler",
        "--evaluator", "lightning_nas.search.supernet_evaluator.SupernetEvaluator",
        "--evaluator.checkpoint", c.p("crafted.ckpt"),
        "--evaluator.data", "lightning_nas.data.SyntheticDataModule",
        "--evaluator.data.val_fraction", "0.2", "--run_dir", c.p("s7"),
        "--budget_trials", "1"], 1, r"refusing to load checkpoint .*crafted\.ckpt"),
    Case("search: Ctrl-C", lambda c: nb201_search(
        c, c.p("s8"), "--evaluator", "fault_helpers.InterruptingEvaluator",
        "--evaluator.interrupt_at", "4"), 130,
         r"interrupted: 3 trial record\(s\) are saved in .*s8.*\n  lightning-nas search .*"
         r"--resume true"),
]


def run_case(ctx: Context, case: Case, capsys=None) -> tuple[int, str]:
    """Exit code and stderr of the command (stdout is not the error channel)."""
    try:
        main(case.argv(ctx))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    if capsys is not None:
        err = capsys.readouterr().err
    else:
        err = ""
    return code, err


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Context:
    return build_context(tmp_path_factory.mktemp("bad_inputs"))


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_error(ctx, case, capsys, monkeypatch):
    monkeypatch.delenv("LIGHTNING_NAS_DEBUG", raising=False)
    capsys.readouterr()
    code, err = run_case(ctx, case, capsys)
    assert code == case.code, err[-3000:]
    assert re.search(case.pattern, err, re.S), err[-3000:]
    assert "Traceback" not in err and "Namespace(" not in err, err[-3000:]
    assert "Subtypes: [" not in err and "NestedArg(" not in err, err[-3000:]  # condensed
    if code == 1:  # our own reports: the message and the debug hint, nothing else
        lines = [line for line in err.splitlines() if line.startswith("lightning-nas: error:")]
        assert len(lines) == 1 and "LIGHTNING_NAS_DEBUG=1" in err
    assert not (ctx.tmp / "PWNED").exists()  # no crafted pickle ever ran


def test_debug_switch_shows_the_traceback(ctx, monkeypatch):
    monkeypatch.setenv("LIGHTNING_NAS_DEBUG", "1")
    with pytest.raises(ValueError, match="order must be 1"):
        main([*tiny_fit(ctx.p("dbg")), "--model.init_args.order", "3"])


def _table() -> None:  # pragma: no cover - `python tests/test_bad_inputs.py`
    import contextlib
    import io
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ctx = build_context(Path(tmp))
        print("| # | input or fault | command | exit | message |\n|---|---|---|---|---|")
        for n, case in enumerate(CASES, start=1):
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                try:
                    main(case.argv(ctx))
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
            lines = [ln.strip() for ln in err.getvalue().splitlines() if ln.strip()]
            start = next((i for i, ln in enumerate(lines) if ln.startswith(
                ("error:", "lightning-nas: error:", "lightning-nas export: error:",
                 "interrupted:"))), max(0, len(lines) - 1))
            message = " ".join(ln for ln in lines[start:]
                               if not ln.startswith("(set LIGHTNING_NAS_DEBUG"))
            command = " ".join(case.argv(ctx)).replace(tmp, "$TMP").replace(str(ROOT) + "/", "")
            if len(command) > 110:  # the start and the part that is wrong, at the end
                command = command[:40] + " ... " + command[-65:]
            print(f"| {n} | {case.name} | `{command}` | {code} | "
                  f"{message.replace(tmp, '$TMP').replace('|', '/')[:320]} |")


if __name__ == "__main__":  # pragma: no cover
    _table()
