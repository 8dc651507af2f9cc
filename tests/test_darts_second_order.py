"""The unrolled (second-order) DARTS gradient against exact autograd on a tiny network."""

import torch
from torch.func import functional_call

from lightning_nas.strategies.darts import DartsSearch


def _tiny_search(xi: float) -> DartsSearch:
    # A finite-difference step far below the paper's 0.01 keeps every ReLU / max-pool on the
    # same side of its kink, so in float64 the estimate must match autograd to ~1e-6.
    model = DartsSearch(num_classes=3, in_channels=3, channels=2, layers=3, order=2,
                        unrolled_lr=xi, hessian_epsilon=1e-7, checkpoint_cells=0, channels_last=False, seed=1)
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


def test_unrolled_gradient_matches_exact_autograd():
    xi = 0.5
    model = _tiny_search(xi)
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
