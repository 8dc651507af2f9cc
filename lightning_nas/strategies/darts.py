"""DARTS: differentiable architecture search as a LightningModule (Liu et al., ICLR 2019).

Bilevel optimisation with manual optimisation: every step first updates the architecture
parameters alpha on a batch of the architecture half of the training data, then the
supernet weights w on a batch of the weight half (Algorithm 1 of the paper).

* ``order=1``: grad_alpha L_val(w, alpha).
* ``order=2``: the unrolled gradient (Eq. 6-8)
  grad_alpha L_val(w', alpha) - xi * grad2_{alpha,w} L_train(w, alpha) . grad_w' L_val(w', alpha)
  with w' = w - xi * (momentum * v + grad_w L_train(w, alpha) + wd * w) (one step of the
  weight optimiser) and the Hessian-vector product by central finite differences
  (Eq. 8, epsilon = 0.01 / ||grad_w' L_val||).

Gradients are computed with ``torch.autograd.grad`` and averaged across ranks with one
all-reduce each, so alphas stay bit-identical on every DDP rank. Under ``--trainer.precision
16-mixed`` the losses are scaled by the precision plugin's GradScaler before differentiation
(``common.scaled_grad``) and its optimiser step unscales them and skips steps that overflowed;
``bf16-mixed`` runs the forward passes under autocast and needs no scaling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.callbacks.export import default_export
from lightning_nas.hardware.cell_latency import (
    CellLatencyTable,
    LatencyLoss,
    table_for_training,
)
from lightning_nas.spaces.base import Arch, SearchSpace
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.supernet import WeightedSupernet, supernet_of
from lightning_nas.strategies.common import (
    ScoredArch,
    logged_value,
    checkpoint_record,
    overflow_skips_step,
    prepare_step,
    scaled_grad,
    cosine_schedule,
    path_gradients,
    assign_gradients,
    average_gradients,
    raise_if_not_finite,
    set_path_gradients,
    set_rng_state,
    supernet_meta,
    supernet_options,
)
from lightning_nas.strategies.sync_bn import globalise_batchnorm

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def paper_weight_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD lr 0.025, momentum 0.9, weight decay 3e-4 (DARTS Sec. 3.1.1)."""
    return torch.optim.SGD(params, lr=0.025, momentum=0.9, weight_decay=3e-4)


def paper_arch_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3 (DARTS Sec. 3.1.1)."""
    return torch.optim.Adam(params, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)


class DartsSearch(L.LightningModule):
    """DARTS search over any cell space with a weighted supernet
    (:class:`~lightning_nas.spaces.supernet.WeightedSupernet`): the DARTS cell space
    (:class:`~lightning_nas.spaces.darts.DartsSpace`, one alpha matrix per normal and
    reduction cell) or NAS-Bench-201 (:class:`~lightning_nas.spaces.nb201.NB201Space`, one
    (6, 5) matrix shared by all cells; the genotype is the strongest op per edge, 'none'
    included, as the benchmark's DARTS).

    Expects search-mode batches ``{"weights": (x, y), "arch": (x, y)}`` (a data module with
    ``search=True``) for training and ``(x, y)`` for validation.

    Args:
        num_classes: classes of the dataset (linked from the data module by the CLI).
        in_channels: image channels (linked from the data module by the CLI).
        space: the cell space (default the DARTS space; its ``steps`` sets the nodes per
            cell). NB201's supernet takes its channels and cells per stage from the space.
        channels: initial channels of the supernet (None: the space's supernet default, 16
            for both the DARTS paper's search and NAS-Bench-201).
        layers: cells in the DARTS supernet (None: 8, the paper's search); NB201 sets its
            depth with the space's ``cells_per_stage``.
        order: 1 for first-order DARTS, 2 for the unrolled second-order gradient.
        weight_optimizer: factory for the weight optimiser; SGD as in the paper by default.
        arch_optimizer: factory for the alpha optimiser; Adam as in the paper by default.
        lr_min: final learning rate of the cosine schedule over ``trainer.max_epochs``.
        grad_clip: max global norm of the weight gradient (5 in the paper); 0 disables.
        warmup_epochs: epochs that train only the weights before alphas start moving.
        unrolled_lr: xi of Eq. 7; ``None`` uses the weight optimiser's current lr, as the
            paper does.
        hessian_epsilon: the finite-difference step is ``hessian_epsilon / ||grad_w' L_val||``
            (0.01 in the paper). Activations with kinks (ReLU, max-pool) make the estimate
            depend on it; the test checks the formula exactly with a tiny step in float64.
        hessian_difference: second order: ``"central"`` (Eq. 8 of the paper, two shifted
            passes at w +- eps * v) or ``"forward"``: ``(grad_alpha L_train(w + eps * v) -
            grad_alpha L_train(w)) / eps``, whose second point comes free with the training
            pass of the virtual step, so a step runs one pass fewer (about 1.6 first-order
            steps instead of 2) for an O(eps) instead of O(eps^2) error of the
            Hessian-vector product.
        reuse_train_gradient: second order: the weight step reuses the training-batch
            gradient that the virtual step w' = w - xi * grad_w L_train(w, alpha) computed,
            i.e. the gradient at the alphas before this step's update (one Adam step away,
            lr 3e-4), which saves one of five forward-backward passes and makes a
            second-order step cost two first-order ones. False recomputes it at the updated
            alphas, as Algorithm 1 of the paper writes it.
        loss: the training criterion; cross-entropy by default.
        checkpoint_cells: DARTS space: the first N supernet cells recompute their
            activations in backward (None: layers // 3 + 1, the cells up to the first
            reduction, which hold most of the activation memory; 0: none);
            trades time for memory.
        channels_last: DARTS space: NHWC activations (faster depthwise convs on CPU).
        sync_batchnorm: under DDP, normalise with the statistics of all ranks' batches
            (:class:`~lightning_nas.strategies.sync_bn.GlobalBatchNorm2d`), so a step equals
            the single-process step on the ranks' batches together.
        partial_channels: PC-DARTS's K: the mixed ops see 1/K of the channels (1: DARTS;
            :class:`~lightning_nas.strategies.pc_darts.PCDarts` adds edge normalisation).
        stem: DARTS space: ``"cifar"`` (one 3x3 conv) or ``"imagenet"`` (PC-DARTS's ImageNet
            search stem: three stride-2 3x3 convs, so 224-pixel inputs reach the cells at 28).
        latency: a latency term in the architecture loss
            (:class:`~lightning_nas.hardware.cell_latency.LatencyLoss`: a per-op table of the
            space's network on the target device, the target and the weight); the expected
            latency of the current distribution joins the validation loss (first order), and
            the derived architecture's table and measured latency are logged each epoch.
        seed: seeds the alphas and supernet initialisation (the strategy owns its RNG).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        space: SearchSpace | None = None,
        channels: int | None = None,
        layers: int | None = None,
        order: int = 1,
        weight_optimizer: OptimizerFactory = paper_weight_optimizer,
        arch_optimizer: OptimizerFactory = paper_arch_optimizer,
        lr_min: float = 0.001,
        grad_clip: float = 5.0,
        warmup_epochs: int = 0,
        unrolled_lr: float | None = None,
        hessian_epsilon: float = 0.01,
        hessian_difference: str = "central",
        reuse_train_gradient: bool = True,
        loss: nn.Module | None = None,
        checkpoint_cells: int | None = None,
        channels_last: bool = True,
        sync_batchnorm: bool = True,
        partial_channels: int = 1,
        stem: str = "cifar",
        latency: LatencyLoss | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (first-order) or 2 (second-order), got {order}")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("channels", channels)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if layers is not None and layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells and a normal cell), "
                             f"got {layers}")
        if grad_clip < 0 or warmup_epochs < 0 or lr_min < 0:
            raise ValueError("grad_clip, warmup_epochs and lr_min must be >= 0")
        if hessian_epsilon <= 0:
            raise ValueError(f"hessian_epsilon must be positive, got {hessian_epsilon}")
        if hessian_difference not in ("central", "forward"):
            raise ValueError(f"hessian_difference must be 'central' or 'forward', got "
                             f"{hessian_difference!r}")
        if unrolled_lr is not None and unrolled_lr <= 0:
            raise ValueError(f"unrolled_lr must be positive or None, got {unrolled_lr}")
        if latency is not None and order != 1:
            raise ValueError("the latency term needs first-order DARTS (order: 1)")
        self.save_hyperparameters(ignore=["space", "loss", "weight_optimizer", "arch_optimizer",
                                          "latency"])
        self.latency = latency
        self.latency_table: CellLatencyTable | None = None  # loaded in setup (data shape)
        self.automatic_optimization = False
        self.space = space or DartsSpace()
        self.order = order
        self.weight_optimizer_factory = weight_optimizer
        self.arch_optimizer_factory = arch_optimizer
        self.criterion = loss or nn.CrossEntropyLoss()
        # second order: (loss, logits, weight gradients) of this step's training batch
        self._train_pass: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]] | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet_options = supernet_options(
                self.space, num_classes=num_classes, in_channels=in_channels,
                channels=channels, layers=layers, checkpoint_cells=checkpoint_cells,
                channels_last=channels_last, partial_channels=partial_channels, stem=stem)
            self.supernet: WeightedSupernet = supernet_of(
                self.space, weighted=True, strategy="DARTS", **self.supernet_options)
            # one (num_edges, num_ops) matrix per cell type, N(0, 1e-3) as in the DARTS code
            self.alpha = nn.ParameterDict({
                cell: nn.Parameter(1e-3 * torch.randn(shape))
                for cell, shape in self.supernet.alpha_shapes().items()})
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    # ---------------------------------------------------------------------------------------
    @property
    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters, one (num_edges, num_ops) matrix per cell type."""
        return list(self.alpha.values())

    def weights(self) -> list[nn.Parameter]:
        return [p for p in self.supernet.parameters() if p.requires_grad]

    def mixing_weights(self) -> dict[str, torch.Tensor]:
        """Softmaxed alphas per cell type (the continuous relaxation, DARTS Eq. 2)."""
        return {cell: a.softmax(-1) for cell, a in self.alpha.items()}

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """Factors of the edges' outputs (None: DARTS; PC-DARTS normalises betas)."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of the supernet under the current alphas."""
        return self.supernet.forward_weighted(x, self.mixing_weights())

    def expected_latency(self) -> torch.Tensor:
        """ms per batch of the table's network under the current distribution."""
        return self.latency_table.expected(self.mixing_weights(), self.edge_weights())

    def current_arch(self) -> Arch:
        """The discrete architecture of the current alphas (DARTS: top-2 edges per node)."""
        return self.supernet.derive(self.mixing_weights())

    def scored_architectures(self) -> list[ScoredArch]:
        """The derived architecture with the supernet's validation accuracy (callbacks:
        latency profiling, Pareto front)."""
        return [ScoredArch("derived", self.current_arch(), logged_value(self, "val/acc"))]

    def arch_summary(self) -> dict[str, Any]:
        """Softmaxed alphas per cell as nested lists (num_edges x num_ops) for the history."""
        return {"primitives": list(self.supernet.op_names),
                "alphas": {cell: w.tolist() for cell, w in self.mixing_weights().items()}}

    # ---------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.hparams.sync_batchnorm and self.trainer.world_size > 1:
            globalise_batchnorm(self.supernet)
        if self.latency_table is None:
            self.latency_table = table_for_training(self.latency, self.space, self.trainer)

    def configure_optimizers(self):
        w_opt = self.weight_optimizer_factory(self.weights())
        a_opt = self.arch_optimizer_factory(self.alphas)
        schedule = cosine_schedule(self, w_opt, self.hparams.lr_min)
        return [w_opt, a_opt], [schedule]

    def configure_callbacks(self):
        return default_export(self.trainer)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(x)
        return self.criterion(logits, y), logits

    def _grad(self, loss: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Gradients under the trainer's precision (loss-scaled under 16-mixed, unscaled)."""
        return scaled_grad(self._trainer, loss, inputs)

    def _where(self) -> dict[str, int]:
        return {"epoch": self.current_epoch, "step": self.global_step}

    def _arch_gradients(self, xw, yw, xa, ya, w_opt) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Gradient of the architecture objective w.r.t. the alphas, and the val loss."""
        if self.order == 1:
            with self._weights_frozen():
                loss, _ = self._loss(xa, ya)
                if self.latency_table is not None:
                    expected = self.expected_latency()
                    loss = self.latency.combine(loss, expected)
                    self.log("latency/expected_ms", expected.detach(), on_step=False,
                             on_epoch=True)
                return list(self._grad(loss, self.alphas)), loss.detach()
        return self._unrolled_gradients(xw, yw, xa, ya, w_opt)

    @contextmanager
    def _weights_frozen(self) -> Iterator[None]:
        """The supernet weights with ``requires_grad`` off, for a pass that needs only the
        alpha gradients: autograd then computes no weight gradient at all (a custom
        Function such as DepthwiseConv2d cannot tell which of its inputs a call to
        ``autograd.grad`` asks for) and keeps no graph for them."""
        weights = self.weights()
        for w in weights:
            w.requires_grad_(False)
        try:
            yield
        finally:
            for w in weights:
                w.requires_grad_(True)

    def _unrolled_gradients(self, xw, yw, xa, ya, w_opt) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Second-order DARTS (Eq. 7-8) with the weights swapped in place, as in the paper.

        The weights are temporarily overwritten with w', w + eps*v and w - eps*v and restored
        afterwards (in-place keeps activation checkpointing correct, unlike functional calls).
        """
        weights = self.weights()
        group = w_opt.param_groups[0]
        xi = self.hparams.unrolled_lr or group["lr"]
        momentum = group.get("momentum", 0.0)
        decay = group.get("weight_decay", 0.0)
        forward = self.hparams.get("hessian_difference", "central") == "forward"
        loss_train, logits_train = self._loss(xw, yw)
        # under DDP every quantity that steers the virtual step or the finite difference is
        # the all-ranks average (the single-process value on all ranks' batches), so the
        # step equals the single-process step: the training gradient here, the unrolled
        # validation gradient below; the finite-difference gradients are averaged with the
        # architecture gradient by the caller (they are linear in the per-rank losses)
        if forward:  # grad_alpha L_train(w): the finite difference's base point, from this pass
            grads = list(self._grad(loss_train, [*weights, *self.alphas]))
            g_train, g_base = grads[:len(weights)], grads[len(weights):]
            g_train = average_gradients(self._trainer, g_train)
        else:
            g_train = average_gradients(self._trainer, list(self._grad(loss_train, weights)))
        if self.hparams.reuse_train_gradient:
            self._train_pass = (loss_train.detach(), logits_train.detach(), list(g_train))
        original = [w.detach().clone() for w in weights]
        try:
            with torch.no_grad():
                for w, g in zip(weights, g_train):
                    buf = w_opt.state.get(w, {}).get("momentum_buffer")
                    step = g + decay * w
                    if buf is not None and momentum:
                        step = step + momentum * buf
                    w.sub_(xi * step)  # w' = w - xi * (m * v + g + wd * w)
            loss_val, _ = self._loss(xa, ya)
            grads = average_gradients(self._trainer,
                                      list(self._grad(loss_val, [*self.alphas, *weights])))
            n_alpha = len(self.alphas)
            g_alpha, g_unrolled = grads[:n_alpha], grads[n_alpha:]
            eps = self.hparams.hessian_epsilon / torch.cat([g.reshape(-1) for g in g_unrolled]).norm()
            finite_diff = []
            for sign in ((1.0,) if forward else (1.0, -1.0)):
                with torch.no_grad():
                    for w, w0, v in zip(weights, original, g_unrolled):
                        w.copy_(w0 + sign * eps * v)
                with self._weights_frozen():
                    loss_shifted, _ = self._loss(xw, yw)
                    finite_diff.append(self._grad(loss_shifted, self.alphas))
        finally:
            with torch.no_grad():
                for w, w0 in zip(weights, original):
                    w.copy_(w0)
        if forward:
            hessian_vector = [(gp - g0) / eps for gp, g0 in zip(finite_diff[0], g_base)]
        else:
            hessian_vector = [(gp - gm) / (2 * eps) for gp, gm in zip(*finite_diff)]
        return [ga - xi * hv for ga, hv in zip(g_alpha, hessian_vector)], loss_val.detach()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not isinstance(batch, dict) or set(batch) != {"weights", "arch"}:
            raise TypeError(
                "DartsSearch needs paired batches {'weights': (x, y), 'arch': (x, y)}: give the "
                "data module search=True (e.g. --data.init_args.search true)"
            )
        w_opt, a_opt = self.optimizers()
        (xw, yw), (xa, ya) = batch["weights"], batch["arch"]

        if self.current_epoch >= self.hparams.warmup_epochs:
            a_opt.zero_grad()
            grads, arch_loss = self._arch_gradients(xw, yw, xa, ya, w_opt.optimizer)
            grads = average_gradients(self.trainer, grads)
            if not overflow_skips_step(self.trainer):
                raise_if_not_finite("architecture gradient",
                                    torch.cat([g.reshape(-1) for g in grads]), **self._where(),
                                    advice="lower the architecture learning rate "
                                    "(model.arch_optimizer) or the weight learning rate")
            assign_gradients(self.alphas, grads)
            prepare_step(self.trainer, self.alphas)
            a_opt.step()
            self.log("arch/val_loss", arch_loss, on_step=False, on_epoch=True, sync_dist=True)

        weights = self.weights()
        w_opt.zero_grad()
        # second order with reuse_train_gradient has computed this batch's gradients
        loss, logits, grads = self._train_pass or (*self._loss(xw, yw), None)
        self._train_pass = None
        raise_if_not_finite("training loss", loss.detach(), **self._where(),
                            advice="lower the weight learning rate (model.weight_optimizer) or "
                            "keep gradient clipping on (model.grad_clip)")
        # ops that did not run (GDAS samples one per edge) keep grad=None: no update for them
        grads = (path_gradients(self.trainer, loss, weights) if grads is None
                 else average_gradients(self.trainer, grads))
        used = [g for g in grads if g is not None]
        if not overflow_skips_step(self.trainer):
            raise_if_not_finite("weight gradient", torch.cat([g.reshape(-1) for g in used]),
                                **self._where(), advice="lower the weight learning rate")
        set_path_gradients(weights, grads)
        if self.hparams.grad_clip > 0:
            nn.utils.clip_grad_norm_([w for w in weights if w.grad is not None],
                                     self.hparams.grad_clip)
        prepare_step(self.trainer, weights)
        w_opt.step()
        self.train_acc(logits.detach(), yw)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        schedule = self.lr_schedulers()
        self.log("lr", schedule.get_last_lr()[0], sync_dist=False)
        schedule.step()
        if self.latency_table is not None:
            self._log_latency()
        # The full softmaxed alphas (2 x edges x ops scalars) go straight to the loggers, not
        # into callback_metrics: that dict travels back through a pipe under ddp_spawn.
        alphas = {}
        for cell, alpha in self.alpha.items():
            probs = alpha.detach().softmax(-1)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
            self.log(f"alpha/{cell}_entropy", entropy)  # nats, mean over edges
            for e, row in enumerate(probs.tolist()):
                for k, name in enumerate(self.supernet.op_names):
                    alphas[f"alpha/{cell}/edge{e}/{name}"] = row[k]
        alphas["epoch"] = self.current_epoch  # as Lightning adds to its own rows (resume)
        for logger in self.loggers:
            logger.log_metrics(alphas, step=self.global_step)

    def _log_latency(self) -> None:
        """The derived architecture's latency: table prediction and a measurement of its
        network with the table's settings (ms per batch)."""
        from lightning_nas.hardware.latency import measure_latency

        table, arch = self.latency_table, self.current_arch()
        meta = table.metadata
        measured = measure_latency(self.space.build(arch), table.input_shape,
                                   device=str(meta.get("device", "cpu")),
                                   batch_size=int(meta.get("batch_size", 1)), warmup=5,
                                   repeats=20, num_threads=meta.get("num_threads"))
        self.log("latency/table_ms", table.predict(arch))
        self.log("latency/measured_ms", measured.median_ms)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        loss, logits = self._loss(x, y)
        self.val_acc(logits, y)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        loss, logits = self._loss(x, y)
        self.test_acc(logits, y)
        self.log("test/loss", loss, sync_dist=True)
        self.log("test/acc", self.test_acc)

    # ---------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightning_nas"] = checkpoint_record(
            self, self.current_arch(),
            supernet_spec=supernet_meta(self.space, self.supernet_options))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lightning_nas", {})
        if "rng" in state:
            set_rng_state(state["rng"])
        rank_zero_info(f"resuming DARTS search from epoch {checkpoint.get('epoch')}")
