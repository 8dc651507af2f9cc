"""DDP on CPU (gloo, 2 processes, Lightning's ``ddp`` strategy under one ``torchrun`` launch of
``tests/ddp_cases.py``, which runs every case; see its docstring for the data layout).

- ENAS, SPOS, DARTS (first and second order) on NAS-Bench-201 and OFA (elastic width, a
  teacher in train mode, dropout 0.5): every rank samples the same path at every step, and
  each optimiser step's averaged gradient equals the single-process step's on the two ranks'
  batches together (batch-norm statistics over both ranks' images: GlobalBatchNorm2d; OFA's
  dropout masks by the image's place in the global batch: GlobalBatchDropout), not merely
  equal between ranks; per-rank batch norm is the control that shows the test can fail.
- DARTS: identical alphas on both ranks, run files from rank 0 only.
- OFA through two phases on the synthetic data module: the same subnets and weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_cases import EQUIVALENCE, run

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> Path:
    """Every case of ``ddp_cases.py`` on 2 processes, once for this module."""
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(TESTS / "ddp_cases.py"), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "done").is_file()
    return out


def ranks_of(ddp_runs: Path, case: str) -> list[dict]:
    return [json.loads((ddp_runs / case / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("case", ["spos", "enas", "darts", "darts2", "ofa"])
def test_two_rank_step_equals_the_single_process_step_on_both_batches(ddp_runs, tmp_path,
                                                                      case):
    kind, sync, epochs = EQUIVALENCE[case]
    ranks = ranks_of(ddp_runs, case)
    (single,) = run(kind, tmp_path / "one", devices=1, sync=sync, epochs=epochs)
    assert ranks[0]["sampled"] == ranks[1]["sampled"] == single["sampled"]  # same paths
    # SPOS/ENAS: 2 weight steps (+ ENAS 1 controller step); DARTS: 2 x (alphas + weights);
    # OFA: 2 epochs x 2 steps
    expected = {"spos": 2, "enas": 3, "darts": 4, "darts2": 4, "ofa": 4}[case]
    assert len(ranks[0]["grads"]) == len(single["grads"]) == expected
    for g0, g1, g in zip(ranks[0]["grads"], ranks[1]["grads"], single["grads"]):
        assert g0 == g1  # bit-identical on the ranks (one all-reduce)
        torch.testing.assert_close(torch.tensor(g0), torch.tensor(g), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", ["spos-per-rank-bn", "ofa-per-rank-bn"])
def test_per_rank_batchnorm_would_not_be_the_single_process_step(ddp_runs, tmp_path, case):
    """The control: with each rank normalising its own half (sync_batchnorm=False; OFA's
    Horovod training) the ranks still agree, but their gradients differ from the
    single-process ones by far more than the tolerance above (the test above can fail)."""
    kind, sync, epochs = EQUIVALENCE[case]
    ranks = ranks_of(ddp_runs, case)
    (single,) = run(kind, tmp_path / "one", devices=1, sync=sync, epochs=epochs)
    assert ranks[0]["grads"][0] == ranks[1]["grads"][0]
    first = torch.tensor(ranks[0]["grads"][0]), torch.tensor(single["grads"][0])
    assert not torch.allclose(*first, rtol=1e-2, atol=1e-4)


def test_darts_alphas_identical_on_both_ranks_and_only_rank0_writes(ddp_runs):
    out = ddp_runs / "darts-run-files"
    result = torch.load(out / "gathered.pt")
    init = torch.load(out / "init.pt")
    alphas = result["alphas"]
    assert alphas.shape[0] == 2
    # the ranks saw different data ...
    assert not torch.equal(result["labels"][0], result["labels"][1])
    # ... yet their alphas and weights are bit-identical, and they did move
    assert torch.equal(alphas[0], alphas[1])
    assert torch.equal(result["classifier"][0], result["classifier"][1])
    assert (alphas[0] - init).abs().max() > 1e-4
    # only rank 0 wrote the run files: one history line per epoch, not two
    history = (out / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["epoch"] for h in history] == [0, 1]
    assert (out / "arch.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "gathered.pt",
                                                     "history.jsonl", "init.pt"]


def test_ofa_every_rank_trains_the_same_subnets_and_weights(ddp_runs):
    r0, r1 = ranks_of(ddp_runs, "ofa-phases")
    assert r0["labels"] != r1["labels"]  # the ranks saw different data
    assert len(r0["sampled"]) == 3 * 4  # 64 images / 2 ranks / batch 8 = 4 steps per epoch
    assert r0["sampled"] == r1["sampled"]  # ... but trained the same subnets at every step
    assert len({s for step in r0["sampled"][4:] for s in step}) > 4  # and they vary
    assert r0["weights"] == r1["weights"] and r0["weight_sum"] == r1["weight_sum"]


def test_global_batch_dropout_gives_each_image_its_row_of_the_single_process_mask():
    """Rank r of W keeps rows r, r + W, ... of the global mask (DistributedSampler's layout),
    so two ranks' outputs interleaved are the single process's output on the 2B images."""
    from torch import nn

    from lightning_nas.strategies.global_dropout import global_batch_masks, globalise_dropout

    layer = nn.Dropout(0.5)
    assert globalise_dropout(layer) == 1
    x = torch.randn(6, 5) + 3.0  # the single process's batch; rank r holds x[r::2]
    with global_batch_masks([layer], 7, rank=0, world_size=1, device=x.device):
        single = layer(x)
    outputs = []
    for rank in (0, 1):
        with global_batch_masks([layer], 7, rank=rank, world_size=2, device=x.device):
            outputs.append(layer(x[rank::2]))
    assert torch.equal(torch.stack(outputs, 1).reshape(6, 5), single)
    assert 0 < int((single == 0).sum()) < 30  # some units dropped, not all
    torch.manual_seed(0)
    plain = layer(x)  # outside the context: nn.Dropout's own random stream
    assert not torch.equal(plain, single)
    layer.eval()
    with global_batch_masks([layer], 7, rank=0, world_size=1, device=x.device):
        assert torch.equal(layer(x), x)
