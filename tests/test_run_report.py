"""`lightning-nas report RUN_DIR`: the HTML page of a run, on a synthetic run folder, on a
real (tiny) quickstart run, and rendered by a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from lightning_nas.cli import main, run
from lightning_nas.run_report import NotARunError, build_report, write_report

ROOT = Path(__file__).resolve().parents[1]
HEADINGS = ("Summary", "Architecture", "Metrics over epochs", "Alphas", "Pareto front",
            "Latency", "Search trials", "History", "Config")
EVIL = "<script>alert(1)</script>"
BROWSER_TIMEOUT_S = 60


def tiny_png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A 12x8 PNG of two colours."""
    image = Image.new("RGB", (12, 8), colour)
    image.paste((20, 20, 220), (0, 0, 6, 8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def synthetic_run(folder: Path) -> Path:
    """A run folder with every file a report reads, a malformed line in each line format
    and an architecture string holding a script tag."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(
        "model:\n  class_path: lightning_nas.strategies.darts.DartsSearch\n"
        "  init_args: {channels: 8, note: '<b>bold</b> & co'}\n"
        "data:\n  class_path: lightning_nas.data.DigitsDataModule\n"
        "trainer:\n  max_epochs: 3\n")
    rows = ["epoch,step,train/loss,train/loss_epoch,val/loss,val/acc,lr,alpha/normal/e0/op1,"
            "alpha/normal_entropy"]
    for epoch in range(3):
        for step in range(2):
            s = epoch * 2 + step
            rows.append(f"{epoch},{s},{2.3 - 0.1 * s},,,,0.025,,")
        rows.append(f"{epoch},{epoch * 2 + 1},,{2.2 - 0.3 * epoch},{2.1 - 0.2 * epoch},"
                    f"{0.3 + 0.2 * epoch},,0.1,1.9")
    rows.append("3,7,2.0")  # a row cut off by a kill
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
    primitives = ["none", "skip_connect", "sep_conv_3x3"]
    history = []
    for epoch in range(3):
        alphas = {cell: [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
                  for cell in ("normal", "reduce")}
        history.append(json.dumps({"epoch": epoch, "val/acc": 0.3 + 0.2 * epoch,
                                   "string": f"arch-{epoch}{EVIL if epoch == 2 else ''}",
                                   "primitives": primitives, "alphas": alphas}))
    history.append('{"epoch": 3, "val/acc": 0.9, "stri')  # cut off mid-write
    (folder / "history.jsonl").write_text("\n".join(history) + "\n")
    (folder / "arch.json").write_text(json.dumps({"space": "DartsSpace",
                                                  "string": f"best{EVIL}", "epoch": 2}))
    (folder / "cell_normal.png").write_bytes(tiny_png())
    (folder / "cell_reduce.png").write_bytes(b"not a png")  # skipped with a note
    (folder / "latency.json").write_text(json.dumps({"target": "cpu <x86>", "records": [
        {"epoch": e, "arch": f"arch-{e}", "median_ms": 1.5 + e, "q1_ms": 1.4, "q3_ms": 1.7,
         "runs": 20, "batch_size": 1, "input_shape": [1, 1, 8, 8], "params": 12000,
         "flops": 340000, "target": "cpu"} for e in range(2)]}))
    (folder / "pareto.png").write_bytes(tiny_png((30, 160, 30)))
    (folder / "pareto.json").write_text(json.dumps({
        "objectives": {"accuracy": "max", "latency_ms": "min"}, "hypervolume": 0.42,
        "n_candidates": 5, "front": [
            {"arch": "front-a", "accuracy": 0.9, "latency_ms": 3.0, "params": 1e5, "index": 0},
            {"arch": f"front-b{EVIL}", "accuracy": 0.8, "latency_ms": 1.0, "index": 3}],
        "references": [{"name": "MobileNetV3-Small", "resolution": 8, "latency_ms": 2.5,
                        "latency_source": "hook", "params": 1_528_106,
                        "published_top1": 67.4}]}))
    return folder


@pytest.fixture
def synthetic(tmp_path) -> Path:
    return synthetic_run(tmp_path / "run")


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"',
                                                      page)]


# --- (a) a synthetic run folder -------------------------------------------------------
def test_every_section_appears_with_its_data(synthetic):
    page, report = build_report(synthetic)
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    assert "lightning_nas.strategies.darts.DartsSearch" in page
    assert "lightning_nas.data.DigitsDataModule" in page
    assert "3 recorded of 3 configured" in page
    assert "best val/acc</th><td>0.7 (epoch 2)" in page
    assert "front-a" in page and "hypervolume 0.42" in page  # Pareto table
    assert "1 reference network(s), not in the front" in page and "MobileNetV3-Small" in page
    assert "<th>latency_source</th>" in page and "<th>macs</th>" not in page
    assert "median_ms" in page and "cpu &lt;x86&gt;" in page  # latency table
    assert "arch-0" in page and "arch-1" in page  # history table
    assert "not recorded in this run" in page  # no search journal: the trials section says so
    # cell_normal.png, metrics chart, alphas heatmap, pareto.png: all decodable PNGs
    pngs = embedded_pngs(page)
    assert len(pngs) == report.images == 4
    for data in pngs:
        Image.open(io.BytesIO(data)).verify()
    assert page.count("<img") == report.images


def test_text_from_the_files_is_escaped(synthetic):
    page, _ = build_report(synthetic)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page


def test_the_page_refers_to_nothing_outside_itself(synthetic):
    page, _ = build_report(synthetic)
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in refs), refs
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page


def test_malformed_lines_are_skipped_with_a_note(synthetic):
    page, report = build_report(synthetic)
    notes = " | ".join(report.notes)
    assert "history.jsonl: line 4 is not valid JSON" in notes
    assert "metrics.csv: line 11 has 3 cells" in notes
    assert "cell_reduce.png: not a PNG" in notes
    assert "<h2>Skipped while reading</h2>" in page
    assert "arch-2" in page  # the good records around them are kept


def test_per_step_columns_are_averaged_and_alpha_columns_left_out(synthetic):
    from lightning_nas.run_report import _read_metrics, epoch_metrics, Report

    header, rows = _read_metrics(synthetic / "metrics.csv", Report(synthetic))
    series = epoch_metrics(header, rows)
    assert "train/loss (step mean)" in series and "lr (step mean)" in series
    assert series["val/acc"] == pytest.approx({0: 0.3, 1: 0.5, 2: 0.7})
    assert "alpha/normal_entropy" in series
    assert not any(k.startswith("alpha/normal/") for k in series)


def test_a_partial_run_still_reports(tmp_path):
    folder = tmp_path / "killed"
    folder.mkdir()
    (folder / "history.jsonl").write_text('{"epoch": 0, "val/acc": 0.5, "string": "a"}\n{"ep')
    (folder / "metrics.csv").write_text("epoch,step,val/acc\n0,3,0.5\n")
    (folder / "pareto.json").write_text("{not json")
    (folder / "latency.json").write_text('{"records": 5}')
    (folder / "config.yaml").write_text("model: [unclosed\n")
    out = write_report(folder)
    page = out.read_text()
    assert out == folder / "report.html"
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    for note in ("pareto.json: not valid JSON", "latency.json: has no list of records",
                 "config.yaml: not valid YAML", "history.jsonl: line 2"):
        assert note in page
    assert "model: [unclosed" in page  # the config is still shown, as text


def test_values_of_the_wrong_type_never_break_the_report(synthetic):
    (synthetic / "latency.json").write_text(json.dumps({"target": ["x"], "records": [
        "text", {"epoch": "one", "median_ms": None, "input_shape": {"a": 1}}]}))
    (synthetic / "pareto.json").write_text(json.dumps({"objectives": [1, 2], "front": [
        {"arch": None, "accuracy": "high"}, 3]}))
    history = [{"epoch": "x", "alphas": {"normal": [[0.5, 0.5], [1.0]], "reduce": "no"}},
               {"epoch": None, "string": {"nested": True}, "alphas": {"normal": [[1, 0]]}}]
    (synthetic / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (synthetic / "arch.json").write_text("[1, 2, 3]")
    (synthetic / "candidates.jsonl").write_text(json.dumps(
        {"trial": "a", "status": "ok", "metrics": [1], "objective": "NaN"}) + "\n")
    (synthetic / "config.yaml").write_text("- just\n- a list\n")
    page, report = build_report(synthetic)
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<img") == report.images
    notes = " | ".join(report.notes)
    assert "arch.json: not a JSON object" in notes and "config.yaml: not a mapping" in notes


def test_a_search_journal_fills_the_trials_section(tmp_path):
    folder = tmp_path / "search"
    folder.mkdir()
    records = [{"trial": i, "status": "ok" if i != 2 else "failed", "arch": f"|op~{i}|",
                "metrics": {"accuracy": 0.5 + 0.1 * i}, "objective": 0.5 + 0.1 * i}
               for i in range(4)]
    (folder / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page, report = build_report(folder)
    assert "4 (3 ok)" in page and "|op~3|" in page
    assert report.images == 1  # the objective over trials


def test_a_search_with_latency_budgets_reads_every_budget_journal(tmp_path):
    folder = tmp_path / "budgets"
    for name, accuracy in (("budget_4ms", 0.6), ("budget_8ms", 0.8)):
        (folder / name).mkdir(parents=True)
        (folder / name / "candidates.jsonl").write_text(json.dumps(
            {"trial": 0, "status": "ok", "arch": f"arch-{name}", "objective": accuracy}) + "\n")
    page, _ = build_report(folder)
    assert "2 (2 ok)" in page and "arch-budget_4ms" in page and "arch-budget_8ms" in page
    with pytest.raises(NotARunError):  # a folder of other runs is not a run
        build_report(tmp_path)


def test_not_a_run_folder_names_what_it_looked_for(tmp_path, capsys):
    with pytest.raises(NotARunError, match="no run folder at"):
        write_report(tmp_path / "missing")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "is not a run folder" in err and "metrics.csv" in err and "history.jsonl" in err
    assert "Traceback" not in err


def test_cli_out_option(synthetic, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "r.html"
    assert run(["report", str(synthetic), "--out", str(out)]) == out
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")


# --- (b) a real quickstart run ---------------------------------------------------------
@pytest.fixture(scope="module")
def quickstart_report(tmp_path_factory) -> Path:
    """A tiny quickstart DARTS run through the real CLI, then `lightning-nas report`."""
    folder = tmp_path_factory.mktemp("quickstart")
    main(["fit", "--config", str(ROOT / "configs/quickstart.yaml"),
          "--trainer.default_root_dir", str(folder), "--trainer.logger.init_args.save_dir",
          str(folder), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
          "--model.init_args.channels", "4", "--model.init_args.layers", "3",
          "--model.init_args.warmup_epochs", "0"])
    main(["report", str(folder)])
    return folder / "report.html"


def test_report_of_a_real_quickstart_run(quickstart_report):
    page = quickstart_report.read_text()
    _, report = build_report(quickstart_report.parent)
    assert report.notes == []  # a complete run: nothing skipped
    assert "DartsSearch" in page and "DigitsDataModule" in page
    assert "Genotype(normal=" in page  # arch.json's string
    assert "val/acc" in page
    for heading in ("Summary", "Architecture", "Metrics over epochs", "Alphas", "History",
                    "Config"):
        section = page.split(f"<h2>{heading}</h2>", 1)[1].split("</section>", 1)[0]
        assert "not recorded in this run" not in section, heading
    # the run wrote no pictures: both cells are drawn from arch.json
    assert page.count("(drawn from arch.json)") == 2
    # 2 cells, metrics chart, alphas heatmap
    assert page.count("<img") == report.images >= 4


# --- (c) rendered by a real headless Chromium ------------------------------------------
def find_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_browser(browser: str, page: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` with its log on stderr (``--v=0``: console messages of
    the page included)."""
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={page.parent / 'chromium-profile'}", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)


# Chromium logs much of its own on stderr in a container (no D-Bus, no GPU, no sandbox, ...).
# Those lines are about the browser process, not the page, so the check does not try to
# list them; it keeps only lines that come from the page: console messages (logged as
# `INFO:CONSOLE:<line>] "<message>", source: file://...` with --enable-logging --v=0, or
# `CONSOLE(<line>)` in older builds), uncaught exceptions, and resources the page failed to
# load (an external URL that cannot be reached offline). The report has no script, so any
# console line is unexpected. test_page_errors_are_seen_in_chromium_log checks that this
# filter does see a page's errors with the installed Chromium.
PAGE_ERROR = re.compile(r":CONSOLE[:(]|Uncaught|Failed to load resource|net::ERR_|"
                        r"Not allowed to load local resource")


def page_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if PAGE_ERROR.search(line)]


def require_browser() -> str:
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium found (chromium, chromium-browser, google-chrome); .ci/run "
                    "installs it with apt-get install chromium")
    return browser


@pytest.mark.timeout(2 * BROWSER_TIMEOUT_S)
def test_page_errors_are_seen_in_chromium_log(tmp_path):
    """The negative control of the console check: a page that logs an error and throws."""
    browser = require_browser()
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><h2>x</h2><script>console.error("bad thing");'
                    'throw new Error("boom");</script></body></html>')
    errors = page_errors(run_browser(browser, page, "--dump-dom").stderr)
    assert any("bad thing" in line for line in errors), errors
    assert any("Uncaught" in line and "boom" in line for line in errors), errors


@pytest.mark.timeout(4 * BROWSER_TIMEOUT_S + 600)  # 2 browser runs + the tiny training run
def test_quickstart_report_renders_in_headless_chromium(quickstart_report, tmp_path):
    browser = require_browser()
    page = tmp_path / "report.html"
    shutil.copy(quickstart_report, page)
    shot = tmp_path / "shot.png"
    rendered = run_browser(browser, page, f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.is_file(), f"no screenshot (exit {rendered.returncode}):\n{rendered.stderr[-3000:]}"
    with Image.open(shot) as image:
        image.verify()
    with Image.open(shot) as image:
        assert image.width == 1280
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is (nearly) blank"

    dumped = run_browser(browser, page, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    dom = dumped.stdout
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in dom, heading
    _, report = build_report(quickstart_report.parent)
    assert dom.count("<img") == report.images >= 2
    errors = page_errors(rendered.stderr) + page_errors(dumped.stderr)
    assert errors == [], "\n".join(errors)
