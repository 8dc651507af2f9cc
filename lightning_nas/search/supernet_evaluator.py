"""Evaluate an architecture by its inherited weights in a trained one-shot supernet.

Once-for-All specialisation (Cai et al., "Once-for-All: Train One Network and Specialize it
for Efficient Deployment", ICLR 2020, Sec. 3.3) and SPOS's evolutionary search (Guo et al.,
ECCV 2020, Sec. 3.3) search the subnets of one trained supernet: every candidate takes the
supernet's weights along its path (:meth:`~lightning_nas.spaces.supernet.Supernet.subnet`:
the extracted standalone network for Once-for-All and NAS-Bench-201, the path inside a copy
of the supernet for DARTS cells), its batch-norm statistics are re-estimated on a few
training images (a subnet inherits weights, not statistics: OFA's
``set_running_statistics``, SPOS's BN recalibration), and its accuracy on held-out images is
the fitness. No candidate is trained, so an evaluation costs seconds on a CPU::

    evaluator = SupernetEvaluator("runs/ofa-cifar10-subset/checkpoints/last.ckpt",
                                  ImageFolderDataModule(root=..., val_fraction=0.2))
    evaluator(arch)          # {"accuracy": 71.4, "loss": 0.83}
    evaluator.export(arch, "runs/subnet")   # arch.json + subnet.ckpt for fine-tuning

The checkpoint may come from any one-shot strategy of ``lightning-nas fit``
(:class:`~lightning_nas.strategies.spos.SPOS`, :class:`~lightning_nas.strategies.enas.ENAS`,
:class:`~lightning_nas.strategies.darts.DartsSearch`, :class:`~lightning_nas.strategies.ofa.
OnceForAll`): each records how to rebuild its supernet.

**Images.** The data module's loaders yield uint8 images that its
``on_after_batch_transfer`` normalises; the evaluator applies the same transform without
augmentation (``transform_batch(batch, train=False)`` of the image data modules, else the
module's ``on_after_batch_transfer`` without a trainer) and then resizes the normalised
images to the candidate's resolution (bilinear), as
:class:`~lightning_nas.strategies.ofa.OnceForAll` does in training and validation.

* calibration: ``calibration_images`` training images (the data module's training split: the
  part not held out for validation), a fixed subset drawn with ``seed``, in that seeded
  order (so every batch mixes classes), identical for every candidate;
* evaluation: the whole validation split (``split="val"``: the images the data module holds
  out with ``val_fraction > 0``) or the test split (``split="test"``), or a seeded subset
  of ``max_eval_images`` of it.

**Held-out images.** The inherited accuracy is only a validation accuracy when the supernet
never trained on the validation images. Train the supernet with the same data module
(``val_fraction`` and ``seed`` included) as the evaluator uses, so both hold out the same
images. When the checkpoint's data module (Lightning stores its arguments) trained on the
whole training split of what looks like the same data while the evaluator validates on
a part of it, a warning says so.

**Units.** ``accuracy`` is top-1 in percent (0..100) like the other evaluators, ``loss`` the
mean cross-entropy per image (nats).

**Process pools.** The evaluator pickles without the supernet and the loaded images; a worker
process loads the checkpoint once (cached per process by path, size and modification time)
and its data on first use.
"""

from __future__ import annotations

import json
import math
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from lightning_nas.search.evaluators import (
    Evaluator,
    check_classification_data,
    data_input_shape,
)
from lightning_nas.spaces.base import Arch, ArchError, SearchSpace

__all__ = ["SupernetEvaluator"]

#: Data-module arguments that only change how batches are loaded, never the numbers.
_LOADING = {"batch_size", "eval_batch_size", "num_workers", "pin_memory"}
#: Data-module arguments that do not change which images it holds (loading, augmentation,
#: normalisation) or that decide the train/validation split (compared separately).
_NOT_SOURCE = _LOADING | {"augment", "crop_padding", "hflip", "cutout", "mean", "std",
                          "max_per_class_test", "val_fraction", "seed", "search",
                          "_class_path", "_instantiator"}
_DIMENSIONS = (("kernels", "kernel"), ("expands", "expand"), ("depths", "depth"),
               ("resolutions", "resolution"))

# one loaded supernet per (checkpoint identity, device) and process
_SUPERNETS: dict[tuple, dict[str, Any]] = {}
_SUPERNETS_LOCK = threading.Lock()


def _load_checkpoint(path: Path, device: str) -> dict[str, Any]:
    """Space, supernet (eval, on ``device``) and metadata of a one-shot strategy's
    checkpoint, loaded once per process."""
    from lightning_nas.strategies.common import load_supernet

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(device))
    with _SUPERNETS_LOCK:
        if key in _SUPERNETS:
            return _SUPERNETS[key]
    space, supernet, checkpoint = load_supernet(path)
    meta = checkpoint.get("lightning_nas", {})
    loaded = {"space": space, "supernet": supernet.to(device).eval(),
              "strategy": meta.get("strategy"),
              "phases": meta.get("phases") or [], "phase": meta.get("phase"),
              "data_hparams": dict(checkpoint.get("datamodule_hyper_parameters") or {})}
    del checkpoint
    with _SUPERNETS_LOCK:
        _SUPERNETS[key] = loaded
    return loaded


def _supernet_sizes(net: nn.Module) -> tuple[int, int]:
    """``(num_classes, in_channels)`` of a supernet (its classifier and first convolution)."""
    if hasattr(net, "num_classes") and hasattr(net, "in_channels"):
        return int(net.num_classes), int(net.in_channels)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    return int(linears[-1].out_features), int(convs[0].in_channels)


class _AtResolution(nn.Module):
    """A standalone subnet that resizes its input to the subnet's resolution first (what
    the evaluator and :class:`~lightning_nas.strategies.fixed.FixedArchitecture` do), so a
    cost hook that feeds the data's image size measures the subnet at its own resolution."""

    def __init__(self, net: nn.Module, resolution: int):
        super().__init__()
        self.net = net
        self.resolution = int(resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from lightning_nas.spaces.mobilenet_supernet import resize_to

        return self.net(resize_to(x, self.resolution))


class SupernetEvaluator(Evaluator):
    """Inherited accuracy of a path of a trained one-shot supernet (module docstring).

    Args:
        checkpoint: a checkpoint of a one-shot strategy (e.g.
            ``runs/ofa-cifar10-subset/checkpoints/last.ckpt`` of ``lightning-nas fit`` with
            OnceForAll, or ``runs/spos-nb201-digits/checkpoints/last.ckpt`` with SPOS).
        data: the data module (``class_path``/``init_args`` in YAML), ``search=False``; its
            training split gives the calibration images, its validation (``val_fraction >
            0``) or test split the evaluation images. Its classes and channels must be the
            supernet's.
        space: the search's space; it must equal the space the supernet was trained on
            (same class and ``space.config()``). ``None``: the search CLI links in the
            search's space, and standalone the checkpoint's space is used.
        calibration_images: training images used to re-estimate every subnet's batch-norm
            statistics (a seeded subset, the same for every candidate).
        max_eval_images: evaluate on a seeded subset of this many images of ``split``;
            ``None`` = all of it.
        split: ``"val"`` (held-out training images; needs ``val_fraction > 0``) or
            ``"test"`` (never search on the split you report).
        batch_size: images per forward pass, for calibration and evaluation (batch norm is
            recalibrated as the average of the per-batch statistics, as in OFA, so it
            changes the numbers slightly; 64 was the fastest on one CPU thread).
        device: where the supernet and the subnets run (``"cpu"``, ``"cuda"``,
            ``"cuda:N"``).
        num_threads: torch intra-op threads during an evaluation (``None`` keeps the
            setting).
        channels_last: run the subnets on NHWC activations (about 2x faster depthwise
            convolutions on CPU; the numbers agree with NCHW up to float rounding).
        seed: seed of the calibration subset and of the evaluation subset.
        cache: remember results per network (``space.canonical(arch)``: archs that differ
            only in inactive blocks share one entry).

    Attributes:
        evaluations: subnets actually evaluated by this instance (cache hits not counted).
    """

    primary_metric = "accuracy"

    def __init__(self, checkpoint: str, data: L.LightningDataModule, *,
                 space: SearchSpace | None = None, calibration_images: int = 512,
                 max_eval_images: int | None = None, split: str = "val", batch_size: int = 64,
                 device: str = "cpu", num_threads: int | None = None,
                 channels_last: bool = True, seed: int = 0, cache: bool = True):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(
                f"supernet checkpoint {str(path)!r} does not exist; train a supernet first, "
                "e.g. `lightning-nas fit --config configs/ofa/cifar10_subset.yaml` or "
                "configs/spos/nb201_digits.yaml (writes <run>/checkpoints/last.ckpt)")
        for name, value, minimum in (("calibration_images", calibration_images, 1),
                                     ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if max_eval_images is not None and (isinstance(max_eval_images, bool) or
                                            not isinstance(max_eval_images, int) or
                                            max_eval_images < 1):
            raise ValueError(f"max_eval_images must be None or an int >= 1, got "
                             f"{max_eval_images!r}")
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
        check_classification_data(data, "SupernetEvaluator")
        if split == "val" and getattr(data, "val_fraction", None) == 0:
            raise ValueError(
                f"{type(data).__name__} has val_fraction=0, so its validation split would be "
                "the test split; give it val_fraction > 0 (the fraction the supernet was not "
                "trained on, e.g. 0.2) or choose split='test' explicitly")
        self.checkpoint = path
        self.data = data
        self.space = space
        self.calibration_images = calibration_images
        self.max_eval_images = max_eval_images
        self.split = split
        self.batch_size = batch_size
        self.device = str(device)
        self.num_threads = num_threads
        self.channels_last = bool(channels_last)
        self.seed = int(seed)
        self.cache = bool(cache)
        self.evaluations = 0
        self._results: dict[Arch, dict[str, float]] = {}
        self._loaded: dict[str, Any] | None = None
        self._calibration: list[torch.Tensor] | None = None
        self._calibration_indices: torch.Tensor | None = None
        self._eval: tuple[torch.Tensor, torch.Tensor] | None = None
        self._warned: set[str] = set()
        self._lock = threading.RLock()

    # -- pickling: leave the supernet and the images behind ---------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # the data module pickles without its loaded arrays (ImageDataModule.__getstate__)
        state = self.__dict__.copy()
        state.update(_loaded=None, _calibration=None, _calibration_indices=None,
                     _eval=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- the supernet ------------------------------------------------------------------------
    def prepare(self) -> SupernetEvaluator:
        """Load the supernet now (else on the first call) and check that the search space is
        the one it was trained on and the data has its classes and channels.

        The search CLI calls it before searching, so a wrong space fails before any work.

        Raises:
            ValueError: the space or the data do not fit the checkpoint.
            RuntimeError: the file is not an OnceForAll checkpoint.
        """
        self._supernet()
        return self

    def _supernet(self) -> dict[str, Any]:
        if self._loaded is not None:
            return self._loaded
        loaded = _load_checkpoint(self.checkpoint, self.device)
        trained = loaded["space"]
        if self.space is None:
            self.space = trained
        else:
            self._check_space(trained)
        net = loaded["supernet"]
        sizes = _supernet_sizes(net)
        for attr, have in (("num_classes", sizes[0]), ("in_channels", sizes[1])):
            want = int(getattr(self.data, attr))
            if want != have:
                raise ValueError(f"the data module {type(self.data).__name__} has {attr}="
                                 f"{want} but the supernet in {self.checkpoint} has {have}; "
                                 "evaluate it on the data it was trained for")
        self._loaded = loaded
        self._check_held_out(loaded["data_hparams"])
        return loaded

    def _check_space(self, trained: SearchSpace) -> None:
        """The search space must be the space the supernet was trained on."""
        where = f"the supernet in {self.checkpoint}"
        if self.space.name != trained.name:
            raise ValueError(f"the search space is {self.space.name!r} but {where} was trained "
                             f"on the {trained.name!r} space; search it with a "
                             f"{type(trained).__name__}")
        config = getattr(self.space, "config", None)
        ours = config() if callable(config) else {}
        theirs = trained.config() if callable(getattr(trained, "config", None)) else {}
        # the space's network defaults (classes, channels) are not part of the supernet's
        # choices; constraints may differ between training and search
        ignore = {"num_classes", "in_channels", "constraints", "dropout"}
        diffs = [f"{k}: search {ours.get(k)!r}, checkpoint {theirs.get(k)!r}"
                 for k in sorted(set(ours) | set(theirs))
                 if k not in ignore and ours.get(k) != theirs.get(k)]
        if diffs:
            raise ValueError(
                f"the search space is not the space {where} was trained on "
                f"({'; '.join(diffs)}). Configure the search's space like the checkpoint's "
                "model.space (same class and init_args), or search another supernet")

    def _check_held_out(self, trained: Mapping[str, Any]) -> None:
        """Warn when the validation images were (apparently) among the supernet's training
        images: same data source, but the supernet trained on the whole training split or
        held out a different part of it."""
        ours = dict(getattr(self.data, "hparams", None) or {})
        if self.split != "val" or not trained or not ours:
            return
        cls = str(trained.get("_class_path", "")).rsplit(".", 1)[-1]
        if cls and cls != type(self.data).__name__:
            return
        shared = (set(trained) & set(ours)) - _NOT_SOURCE
        if any(trained[k] != ours[k] for k in shared):
            return  # another data source: nothing to say
        t_frac, t_seed = trained.get("val_fraction", 0.0), trained.get("seed")
        if t_frac and t_frac == ours.get("val_fraction") and t_seed == ours.get("seed"):
            return  # the same held-out images
        how = ("the whole training split (val_fraction 0)" if not t_frac else
               f"another held-out part (val_fraction {t_frac}, seed {t_seed})")
        warnings.warn(
            f"the supernet in {self.checkpoint} was trained on {how} of what looks like the "
            f"same data, so some validation images of this evaluator (val_fraction "
            f"{ours.get('val_fraction')}, seed {ours.get('seed')}) were training images: the "
            "inherited accuracies are optimistic. Train the supernet with the evaluator's "
            "val_fraction and seed, or evaluate on split='test'", stacklevel=3)

    def _subnet_space(self) -> SearchSpace:
        self._supernet()
        return self.space  # type: ignore[return-value]

    def _check_arch(self, arch: Arch) -> Arch:
        space = self._subnet_space()
        if isinstance(arch, Arch) and arch.space != space.name:
            raise ArchError(f"the architecture belongs to the {arch.space!r} space, but the "
                            f"supernet in {self.checkpoint} searches {space.name!r} "
                            "architectures; give one of its space (e.g. an arch.json of a "
                            f"{space.name!r} search)")
        try:
            return space.validate(arch)
        except ArchError as err:
            try:
                text = space.to_string(arch)
            except Exception:  # noqa: BLE001 - the arch may not even have the labels
                text = str(dict(arch)) if isinstance(arch, Arch) else repr(arch)
            raise ArchError(f"{text} is not a subnet of the supernet in {self.checkpoint}: "
                            f"{err}") from None

    def _warn_untrained(self, arch: Arch) -> None:
        """Warn (once per choice) about choices no phase trained up to the checkpoint."""
        loaded = self._loaded or {}
        phases, current = loaded.get("phases") or [], loaded.get("phase")
        if not phases:
            return
        done = phases[: (int(current) + 1) if current is not None else len(phases)]
        space = self.space
        for plural, singular in _DIMENSIONS:
            options = tuple(getattr(space, plural, ()))
            if not options:
                continue
            trained = set()
            for p in done:
                trained.update(p.get(plural) or (options[-1],))
            if singular == "resolution":
                used = {int(arch["resolution"])}
            elif singular == "depth":
                used = {int(arch[f"stage{i}.depth"]) for i in range(1, len(space.stages) + 1)}
            else:
                used = {int(arch[f"stage{i}.block{j}.{singular}"])
                        for i, j in space.active_blocks(arch)}
            for value in sorted(used - trained):
                tag = f"{singular}={value}"
                if tag in self._warned:
                    continue
                self._warned.add(tag)
                warnings.warn(
                    f"{singular} {value} was not active in any training phase of the supernet "
                    f"in {self.checkpoint} up to its last saved phase (phase {current}; trained "
                    f"{plural}: {sorted(trained)}): subnets using it inherit untrained weights",
                    stacklevel=3)

    # -- images ------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """One sample's shape ``(C, H, W)`` of the data, when the data module tells it."""
        return data_input_shape(self.data)

    def _transform(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The data module's evaluation transform (normalisation, no augmentation) on
        ``self.device``: (B, C, H, W) uint8 -> float32."""
        batch = (x.to(self.device), y.to(self.device))
        transform = getattr(self.data, "transform_batch", None)
        if callable(transform):
            x, y = transform(batch, train=False)
        else:
            x, y = self.data.on_after_batch_transfer(batch, 0)
        return x.float(), y.long()

    def _ensure_data(self) -> None:
        if self._calibration is not None and self._eval is not None:
            return
        data = self.data
        if "trainer" in vars(data):
            data.trainer = None  # no trainer: the transform never augments
        data.prepare_data()
        data.setup("fit")
        # calibration: a seeded subset of the training split, in seeded (class-mixed) order
        loader = data.train_dataloader()
        if isinstance(loader, Mapping):
            raise TypeError("the data module's training loader is a dict (search mode); give "
                            "it search=False")
        dataset = loader.dataset
        indices = getattr(loader.sampler, "indices", None)
        indices = (torch.as_tensor(indices, dtype=torch.long) if indices is not None
                   else torch.arange(len(dataset)))
        g = torch.Generator().manual_seed(self.seed)
        chosen = indices[torch.randperm(len(indices), generator=g)[:self.calibration_images]]
        self._calibration_indices = chosen
        batches = []
        for start in range(0, len(chosen), self.batch_size):
            x, y = self._gather(dataset, chosen[start:start + self.batch_size].tolist())
            batches.append(self._transform(x, y)[0])
        # evaluation: the whole split in loader order, or a seeded subset
        eval_loader = data.val_dataloader() if self.split == "val" else data.test_dataloader()
        xs, ys = [], []
        for batch in eval_loader:
            x, y = batch[0], batch[1]
            xs.append(x)
            ys.append(y)
        if not xs:
            raise ValueError(f"the {self.split} split of {type(data).__name__} is empty")
        x_all, y_all = torch.cat(xs), torch.cat(ys)
        if self.max_eval_images is not None and self.max_eval_images < len(y_all):
            g = torch.Generator().manual_seed(self.seed + 1)
            keep = torch.randperm(len(y_all), generator=g)[:self.max_eval_images].sort().values
            x_all, y_all = x_all[keep], y_all[keep]
        self._calibration, self._eval = batches, (x_all, y_all)

    @staticmethod
    def _gather(dataset: Any, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        getitems = getattr(dataset, "__getitems__", None)
        batch = getitems(indices) if callable(getitems) else [dataset[i] for i in indices]
        if isinstance(batch, tuple) and len(batch) == 2 and torch.is_tensor(batch[0]):
            return batch
        x, y = default_collate(list(batch))[:2]
        return x, y

    def calibration_batches(self) -> list[torch.Tensor]:
        """The normalised calibration images, (B, C, H, W) float32 batches at the data's
        resolution on ``device`` (the same for every candidate)."""
        self._ensure_data()
        return list(self._calibration or [])

    @property
    def calibration_indices(self) -> torch.Tensor:
        """Indices into the training dataset of the calibration images, in batch order."""
        self._ensure_data()
        return self._calibration_indices.clone()  # type: ignore[union-attr]

    def eval_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation images as loaded (uint8 (N, C, H, W), un-normalised) and labels."""
        self._ensure_data()
        x, y = self._eval  # type: ignore[misc]
        return x.clone(), y.clone()

    # -- subnets -----------------------------------------------------------------------------
    def network(self, arch: Arch) -> nn.Module:
        """The standalone network of ``arch`` for cost hooks (fresh weights, the data's
        classes and channels), resizing its input to the arch's resolution. Needs no
        checkpoint."""
        space = self.space
        if space is None:
            space = self._subnet_space()
        space.validate(arch)
        net = space.build(arch, num_classes=int(self.data.num_classes),
                          in_channels=int(self.data.in_channels))
        if "resolution" not in arch:
            return net.eval()
        return _AtResolution(net, int(arch["resolution"])).eval()

    @torch.no_grad()
    def subnet(self, arch: Arch) -> nn.Module:
        """The standalone subnet of ``arch`` with the supernet's weights and batch-norm
        statistics recalibrated on the calibration images, in eval mode on ``device``.

        Raises:
            ArchError: ``arch`` is not a subnet of the supernet.
        """
        from lightning_nas.spaces.mobilenet_supernet import recalibrate_bn

        arch = self._check_arch(arch)
        self._warn_untrained(arch)
        self._ensure_data()
        net = self._supernet()["supernet"].subnet(arch)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        recalibrate_bn(net, [self._layout(self._resize(b, arch))
                             for b in self._calibration or []])
        return net.eval()

    @staticmethod
    def _resize(x: torch.Tensor, arch: Arch) -> torch.Tensor:
        """Inputs at the arch's resolution when it has one (elastic-resolution spaces)."""
        from lightning_nas.spaces.mobilenet_supernet import resize_to

        return resize_to(x, int(arch["resolution"])) if "resolution" in arch else x

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def _evaluate(self, arch: Arch) -> dict[str, float]:
        net = self.subnet(arch)
        x_all, y_all = self._eval  # type: ignore[misc]
        correct, loss_sum = 0, 0.0
        for start in range(0, len(y_all), self.batch_size):
            x, y = self._transform(x_all[start:start + self.batch_size],
                                   y_all[start:start + self.batch_size])
            logits = net(self._layout(self._resize(x, arch)))
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        n = len(y_all)
        loss = loss_sum / n
        if not math.isfinite(loss):
            raise FloatingPointError(f"the subnet's loss is {loss}; is the checkpoint sound?")
        return {"accuracy": 100.0 * correct / n, "loss": loss}

    def __call__(self, arch: Arch) -> dict[str, float]:
        """Inherited top-1 ``accuracy`` (%) and mean cross-entropy ``loss`` of ``arch``'s
        extracted, recalibrated subnet on the evaluation images (cached per network).

        Raises:
            ArchError: ``arch`` is not a subnet of the supernet (e.g. a kernel it lacks).
            ValueError: the search space is not the checkpoint's.
        """
        arch = self._check_arch(arch)
        key = self.space.canonical(arch) if hasattr(self.space, "canonical") else arch
        with self._lock:
            if self.cache and key in self._results:
                return dict(self._results[key])
            old_threads = torch.get_num_threads()
            try:
                if self.num_threads is not None:
                    torch.set_num_threads(self.num_threads)
                out = self._evaluate(arch)
            finally:
                if self.num_threads is not None:
                    torch.set_num_threads(old_threads)
            self.evaluations += 1
            if self.cache:
                self._results[key] = out
        return dict(out)

    def export(self, arch: Arch, out_dir: str | Path) -> dict[str, Path]:
        """Write ``arch``'s recalibrated subnet as ``out_dir/arch.json`` + ``subnet.ckpt``
        (:func:`~lightning_nas.strategies.ofa.save_subnet`; load it with
        ``FixedArchitecture(arch=<arch.json>, space=..., init_from=<subnet.ckpt>)``).

        ``arch.json`` also records the inherited metrics and where they come from.

        Returns:
            ``{"arch": path, "weights": path}``.
        """
        from lightning_nas.spaces.supernet import PathNetwork
        from lightning_nas.strategies.ofa import save_subnet

        metrics = self(arch)
        net = self.subnet(arch).cpu().to(memory_format=torch.contiguous_format)
        facts = {"metrics": metrics, "supernet": str(self.checkpoint), "split": self.split,
                 "calibration_images": len(self.calibration_indices)}
        if isinstance(net, PathNetwork):  # a path inside the supernet: no standalone weights
            space = self._subnet_space()
            path = arch.save(Path(out_dir) / "arch.json", string=space.to_string(arch),
                             weights=None, **facts)
            return {"arch": path}
        return save_subnet(net, self.space, out_dir, **facts)

    def fingerprint(self) -> str:
        """What decides the numbers: the checkpoint file (absolute path, bytes, modification
        time in ns), the data module's class and arguments and the calibration/evaluation
        settings, as compact JSON."""
        stat = self.checkpoint.stat()
        data = {"class": type(self.data).__name__,
                **{k: v for k, v in dict(getattr(self.data, "hparams", {})).items()
                   if k not in _LOADING}}
        return json.dumps({"checkpoint": str(self.checkpoint.resolve()), "bytes": stat.st_size,
                           "mtime_ns": stat.st_mtime_ns, "data": data, "split": self.split,
                           "calibration_images": self.calibration_images,
                           "max_eval_images": self.max_eval_images, "batch_size": self.batch_size,
                           "seed": self.seed}, sort_keys=True, separators=(",", ":"),
                          default=str)

    def __repr__(self) -> str:
        return (f"SupernetEvaluator({str(self.checkpoint)!r}, {type(self.data).__name__}, "
                f"split={self.split!r}, calibration_images={self.calibration_images})")
