"""PC-DARTS and GDAS: PC-DARTS with K=1 and no edge normalisation is DARTS, partial channels
and edge weights as the paper, GDAS runs one op per edge with a gradient for every alpha, the
temperature schedule survives a resume, clear errors."""

from __future__ import annotations

from collections import Counter

import lightning as L
import pytest
import torch
from fault_helpers import StopAfterEpoch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_nas.data import SyntheticDataModule
from lightning_nas.spaces.darts import DartsSpace, channel_shuffle
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.darts import DartsSearch
from lightning_nas.strategies.gdas import GDAS
from lightning_nas.strategies.pc_darts import PCDarts

SPACES = {
    "darts": lambda: dict(space=DartsSpace(), channels=4, layers=3, checkpoint_cells=0,
                          channels_last=False),
    "nb201": lambda: dict(space=NB201Space(channels=4, cells_per_stage=1, num_classes=4)),
}


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("space", list(SPACES))
def test_pc_darts_with_k1_and_no_edge_normalisation_is_darts(space):
    darts = DartsSearch(num_classes=4, in_channels=3, seed=3, **SPACES[space]())
    pc = PCDarts(num_classes=4, in_channels=3, seed=3, partial_channels=1,
                 edge_normalization=False, **SPACES[space]())
    x, y = batch()
    out_d, out_p = darts(x), pc(x)
    assert torch.equal(out_d, out_p)
    params_d = [*darts.alphas, *darts.weights()]
    params_p = [*pc.alphas, *pc.weights()]
    assert len(params_d) == len(params_p)
    grads_d = torch.autograd.grad(darts.criterion(out_d, y), params_d)
    grads_p = torch.autograd.grad(pc.criterion(out_p, y), params_p)
    for a, b in zip(grads_d, grads_p):
        assert torch.equal(a, b)
    assert darts.current_arch() == pc.current_arch()


@pytest.mark.parametrize("space", list(SPACES))
def test_partial_channels_and_edge_normalisation(space):
    k4 = PCDarts(num_classes=4, in_channels=3, seed=0, partial_channels=4, **SPACES[space]())
    k1 = DartsSearch(num_classes=4, in_channels=3, seed=0, **SPACES[space]())
    op_params = lambda m: sum(p.numel() for n, p in m.supernet.named_parameters()  # noqa: E731
                              if ".edges." in n)
    assert op_params(k4) < op_params(k1) / 3  # the mixed ops see 1/4 of the channels
    x, _ = batch()
    assert k4(x).shape == (8, 4)
    edges = k4.edge_weights()
    for cell, groups in k4.groups.items():
        for rows in groups:  # softmax over each node's incoming edges
            torch.testing.assert_close(edges[cell][rows].sum(), torch.tensor(1.0))
    assert len(k4.alphas) == 2 * len(k4.alpha)  # the architecture optimiser takes the betas


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_channel_shuffle_interleaves_the_groups_and_keeps_the_memory_format(memory_format):
    x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).reshape(2, 8, 3, 3)
    out = channel_shuffle(x.contiguous(memory_format=memory_format), 4)
    # output channel i * 4 + g is input channel g * 2 + i (groups of 8 / 4 = 2 channels)
    assert [int(out[0, c, 0, 0]) // 9 for c in range(8)] == [0, 2, 4, 6, 1, 3, 5, 7]
    assert out.is_contiguous(memory_format=memory_format)


def test_edge_weights_decide_the_edges_of_the_genotype():
    pc = PCDarts(num_classes=4, in_channels=3, seed=0, partial_channels=2, **SPACES["darts"]())
    with torch.no_grad():
        for a in pc.alpha.values():
            a.zero_()
            a[:, 4] = 1.0  # sep_conv_3x3 strongest everywhere: alphas cannot rank the edges
        pc.beta["normal"].zero_()
        pc.beta["normal"][[0, 1, 2, 4, 5, 8, 9, 13]] = 5.0  # edge rows of one input per node
    chosen = [j for _, j in pc.current_arch()["normal"]]
    # node 2: inputs 0, 1; node 3: rows 2..4 -> inputs 0 and 2; node 4: rows 5..8 -> 0 and 3;
    # node 5: rows 9..13 -> 0 and 4
    assert chosen == [0, 1, 0, 2, 0, 3, 0, 4]


@pytest.mark.parametrize("space", list(SPACES))
def test_gdas_runs_one_op_per_edge_and_every_alpha_gets_a_gradient(space):
    model = GDAS(num_classes=4, in_channels=3, seed=0, **SPACES[space]()).train()
    ran: dict[str, set] = {}  # edge -> the ops any of whose layers ran
    for edge_name, edge in model.supernet.named_modules():
        if type(edge).__name__ in ("MixedOp", "NB201MixedOp"):
            for op in edge.ops:
                module = edge.ops[op] if isinstance(op, str) else op
                # every layer (DARTS' MixedOp runs an op's layers without its container)
                for layer in module.modules():
                    layer.register_forward_hook(
                        lambda m, i, o, key=edge_name, op=id(module):
                        ran.setdefault(key, set()).add(op))
    # DARTS cells compute a sampled pool once per state, shared by its edges
    shared_runs = []
    for name, m in model.supernet.named_modules():
        if name.endswith(".pools"):
            for pool, _ in m.values():  # (pool layer, its BN)
                pool.register_forward_hook(lambda *_: shared_runs.append(1))
    x, y = batch()
    loss = model.criterion(model(x), y)
    calls = Counter({edge: len(ops) for edge, ops in ran.items()})
    assert calls and max(calls.values()) == 1  # never more than one op on an edge
    edges = sum(1 for _, m in model.supernet.named_modules()
                if type(m).__name__ in ("MixedOp", "NB201MixedOp"))
    # the rest sampled 'none' (nothing to run) or a pool that another edge's state shares
    assert len(calls) + len(shared_runs) <= edges
    assert edges - len(calls) - len(shared_runs) <= edges // 2
    grads = torch.autograd.grad(loss, model.alphas)
    assert all(bool((g != 0).all()) for g in grads)  # every alpha of every edge


class RecordTau(Callback):
    def __init__(self):
        self.taus = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.taus.append(pl_module.tau)


def tiny_gdas(**kw):
    options = dict(num_classes=4, in_channels=3, seed=0, tau_max=10.0, tau_min=0.1,
                   **SPACES["nb201"]())
    return GDAS(**{**options, **kw})


def fit(model, root, epochs, extra=(), ckpt=None):
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=32,
                               test_size=8, batch_size=16, search=True, seed=0)
    L.Trainer(max_epochs=epochs, default_root_dir=root, logger=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=1,
              callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True),
                         *extra]).fit(model, data, ckpt_path=ckpt)


def test_gdas_temperature_schedule_and_resume(tmp_path):
    record = RecordTau()
    full = tiny_gdas()
    fit(full, tmp_path / "full", 5, [record])
    assert record.taus == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])
    part = tiny_gdas()
    fit(part, tmp_path / "part", 5, [StopAfterEpoch(1)])
    resumed, again = tiny_gdas(), RecordTau()
    fit(resumed, tmp_path / "part", 5, [again], ckpt=tmp_path / "part/checkpoints/last.ckpt")
    assert again.taus == pytest.approx([5.05, 2.575, 0.1])  # the schedule continues
    assert torch.equal(resumed.alpha["cell"], full.alpha["cell"])  # and the Gumbel draws
    for (name, p), q in zip(resumed.supernet.named_parameters(), full.supernet.parameters()):
        assert torch.equal(p, q), name


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="must fall from tau_max to tau_min"):
        tiny_gdas(tau_max=0.1, tau_min=10.0)
    with pytest.raises(ValueError, match="GDAS is first order"):
        tiny_gdas(order=2)
    with pytest.raises(ValueError, match="partial_channels K=3 must divide the edge's 4"):
        PCDarts(num_classes=4, in_channels=3, partial_channels=3, **SPACES["nb201"]())
