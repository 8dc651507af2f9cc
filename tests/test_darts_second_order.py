"""The unrolled (second-order) DARTS gradient against exact autograd on a tiny network."""

import pytest
import torch
from torch.func import functional_call

from lightning_nas.strategies.darts import DartsSearch


def _tiny_search(xi: float, difference: str = "central") -> DartsSearch:
    # A finite-difference step far below the paper's 0.01 keeps every ReLU / max-pool on the
    # same side of its kink, so in float64 the estimate must match autograd to ~1e-6.
    model = DartsSearch(num_classes=3, in_channels=3, channels=2, layers=3, order=2,
                        unrolled_lr=xi, hessian_epsilon=1e-7, checkpoint_cells=0,
                        channels_last=False, seed=1, hessian_difference=difference)
    model = model.double()
    with torch.no_grad():  # alphas away from uniform so the softmax Jacobian is not degenerate
        for a in model.alphas:
            a.copy_(torch.randn_like(a, generator=torch.Generator().manual_seed(5)))
    return model


def _batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=g)
    return x[:4], y[:4], x[4:], y[4:]


def _exact_unrolled_grad(model, opt, xi, xw, yw, xa, ya):
    """d/d alpha of L_val(w - xi * (m * v + grad_w L_train(w, alpha) + wd * w), alpha)."""
    names = [n for n, p in model.supernet.named_parameters() if p.requires_grad]
    weights = [p for p in model.supernet.parameters() if p.requires_grad]
    group = opt.param_groups[0]
    wn, wr = model.alpha["normal"].softmax(-1), model.alpha["reduce"].softmax(-1)
    loss_train = model.criterion(model.supernet(xw, wn, wr), yw)
    g_train = torch.autograd.grad(loss_train, weights, create_graph=True)
    unrolled = {}
    for name, w, g in zip(names, weights, g_train):
        buf = opt.state[w]["momentum_buffer"]
        unrolled[name] = w - xi * (group["momentum"] * buf + g + group["weight_decay"] * w)
    loss_val = model.criterion(functional_call(model.supernet, unrolled, (xa, wn, wr)), ya)
    return torch.autograd.grad(loss_val, model.alphas)


@pytest.mark.parametrize("difference", ["central", "forward"])
def test_unrolled_gradient_matches_exact_autograd(difference):
    xi = 0.5
    model = _tiny_search(xi, difference)
    xw, yw, xa, ya = _batches()
    opt = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    # one real step so the momentum buffers are non-zero and enter w'
    loss = model.criterion(model(xw), yw)
    loss.backward()
    opt.step()
    opt.zero_grad()

    ours, _ = model._unrolled_gradients(xw, yw, xa, ya, opt)
    exact = _exact_unrolled_grad(model, opt, xi, xw, yw, xa, ya)
    first_order = torch.autograd.grad(model.criterion(model(xa), ya), model.alphas)

    for o, e, f in zip(ours, exact, first_order):
        scale = e.norm()
        assert (o - e).norm() / scale < 1e-5, "finite-difference Hessian term is off"
        # the second-order part is large enough here that dropping it would fail the test
        assert (f - e).norm() / scale > 1e-2


def test_unrolled_gradient_restores_the_weights():
    model = _tiny_search(0.1)
    before = [w.detach().clone() for w in model.weights()]
    opt = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.9)
    model._unrolled_gradients(*_batches(), opt)
    for w, w0 in zip(model.weights(), before):
        assert torch.equal(w, w0)


def _one_training_step(reuse: bool, root, difference: str = "central"):
    """One second-order step through the Trainer: the supernet forwards it ran, the batch,
    the alphas before it and the weight gradients it applied."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from lightning_nas.data import SyntheticDataModule

    model = DartsSearch(num_classes=3, in_channels=3, channels=2, layers=3, order=2,
                        grad_clip=0.0, reuse_train_gradient=reuse, checkpoint_cells=0, seed=1,
                        hessian_difference=difference)
    alphas = {k: a.detach().clone() for k, a in model.alpha.items()}
    forwards, seen = [], {}
    model.supernet.register_forward_hook(lambda m, i, o: forwards.append(1))

    class KeepBatch(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["batch"] = batch
            seen["weights"] = [w.detach().clone() for w in pl_module.weights()]

    data = SyntheticDataModule(num_classes=3, image_size=8, train_size=16, test_size=4,
                               batch_size=4, search=True, seed=0)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, callbacks=[KeepBatch()],
                        default_root_dir=root,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, data)
    return model, forwards, seen, alphas


def test_the_second_order_weight_step_reuses_the_training_gradient(tmp_path):
    """reuse_train_gradient: 4 supernet passes, and the weights move by the gradient at the
    alphas before the update; off: 5 passes, the gradient at the updated alphas."""
    for reuse, passes in ((True, 4), (False, 5)):
        model, forwards, seen, alphas_before = _one_training_step(reuse, tmp_path / str(reuse))
        assert len(forwards) == passes
        xw, yw = seen["batch"]["weights"]
        with torch.no_grad():
            for w, w0 in zip(model.weights(), seen["weights"]):
                w.copy_(w0)
        results = {}
        for which, alphas in (("before", alphas_before),
                              ("after", {k: a.detach() for k, a in model.alpha.items()})):
            logits = model.supernet(xw, alphas["normal"].softmax(-1),
                                    alphas["reduce"].softmax(-1))
            results[which] = torch.autograd.grad(model.criterion(logits, yw), model.weights())
        applied = [w.grad for w in model.weights()]
        expected, other = (("before", "after") if reuse else ("after", "before"))
        for a, e in zip(applied, results[expected]):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-7)
        # the alphas moved enough that the two gradients differ: the test tells them apart
        assert any(not torch.allclose(e, o, rtol=1e-5, atol=1e-7)
                   for e, o in zip(results[expected], results[other]))


def test_the_forward_difference_runs_one_pass_fewer(tmp_path):
    """hessian_difference='forward': the virtual step's training pass also gives the finite
    difference's base point, so a step runs 3 supernet passes (central: 4)."""
    _, forwards, _, _ = _one_training_step(True, tmp_path, difference="forward")
    assert len(forwards) == 3
    with pytest.raises(ValueError, match="hessian_difference must be"):
        DartsSearch(num_classes=3, order=2, hessian_difference="backward")
