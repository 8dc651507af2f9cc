"""The ``lightning-nas`` command.

* ``lightning-nas fit|validate|test --config ...``: LightningCLI in subclass mode, so the
  YAML picks the strategy (``model.class_path``) and the data module (``data.class_path``).
  ``data.num_classes`` / ``data.in_channels`` are linked into the model.
  ``--trainer.limit_{train,val,test,predict}_batches 1`` means one batch: Lightning annotates
  them ``Union[float, int, None]``, so the parser would read ``1`` as ``1.0`` (100% of the
  batches, Lightning's documented 1-vs-1.0 trap); here a whole number is an int and only a
  number with a decimal point is a fraction (:data:`WHOLE_NUMBER_FIRST`).
* ``lightning-nas export --ckpt run/checkpoints/last.ckpt [--out arch.json]``: the
  architecture stored in a checkpoint, as JSON; ``--format onnx|torchscript`` writes its
  network instead (``checkpoint_networks``; a Once-for-All checkpoint needs ``--subnet``);
  ``--allow-import MODULE_PREFIX`` (repeatable) lets a checkpoint whose space or ops name a
  user's ``class_path`` import those modules (refused by default).
* ``lightning-nas search --config configs/search/...``: multi-trial search (ask/tell loop).
* ``lightning-nas report RUN_DIR [--out PATH]``: one self-contained HTML page of a run
  (:mod:`lightning_nas.run_report`).
* ``lightning-nas scale ARCH --phi PHI``: compound scaling of a preset or a discovered
  architecture (:func:`lightning_nas.spaces.scaling.main_scale`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional, Union

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from lightning_nas.checkpoint_networks import (
    OFA_STRATEGY,
    SubnetRequiredError,
    network_from_checkpoint,
    parse_input_shape,
    subnet_choices_message,
)
from lightning_nas.checkpoints import CheckpointError, checkpoint_strategy, load_checkpoint
from lightning_nas.run_folder import keep_csv_rows
from lightning_nas.spaces.base import Arch


#: Trainer arguments where a whole number is a count and a decimal a fraction: parsed int
#: first (Lightning's annotation lists float first, which turns ``1`` into ``1.0`` = 100%).
WHOLE_NUMBER_FIRST = tuple(f"trainer.limit_{stage}_batches"
                           for stage in ("train", "val", "test", "predict"))

#: Set to 1 (or pass ``--debug`` first) to see the full traceback of an error.
DEBUG_ENV = "LIGHTNING_NAS_DEBUG"
#: Exit status after Ctrl-C (128 + SIGINT), as shells use.
EXIT_INTERRUPTED = 130


#: Lines of jsonargparse's union-validation reports that say nothing about the mistake.
_PARSER_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes: [",
                 "Errors:", "Given value type:", "- Expected a <class 'NoneType'>")


def condense_parser_message(message: str) -> str:
    """jsonargparse's report of a bad option without the union bookkeeping (subtypes, value
    types, the NoneType alternative, dumps of the given namespace), keeping which key is
    wrong and why."""
    kept = []
    for line in message.splitlines():
        text = line.strip()
        if text.startswith(_PARSER_NOISE):
            continue
        if text.startswith("Given value:") and ("NestedArg(" in text or "Namespace(" in text
                                                 or len(text) > 120):
            continue
        kept.append(line)
    return "\n".join(kept)


class NASArgumentParser(LightningArgumentParser):
    """LightningCLI's parser whose error messages are condensed
    (:func:`condense_parser_message`)."""

    def error(self, message: str, ex: Exception | None = None):
        return super().error(condense_parser_message(message), ex)


class RunConfigCallback(SaveConfigCallback):
    """Lightning's config saver that never replaces a run's original ``config.yaml``.

    A resumed ``fit`` (``resumed`` is set by the CLI) or a ``test``/``validate`` in an
    existing run folder writes ``config.<resume|test|validate>.yaml`` beside it instead
    (the latest such command's)."""

    resumed = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        folder = trainer.log_dir  # a collective under DDP: every rank asks
        if (stage != "fit" or self.resumed) and folder and \
                (Path(folder) / self.config_filename).is_file():
            self.config_filename = f"config.{'resume' if stage == 'fit' else stage}.yaml"
        super().setup(trainer, pl_module, stage)


class NASCLI(LightningCLI):
    """LightningCLI with the links every strategy shares, and the checks of a resume."""

    def add_arguments_to_parser(self, parser) -> None:
        for action in parser._actions:  # the trainer's arguments are in by now
            if action.dest in WHOLE_NUMBER_FIRST and hasattr(action, "_typehint"):
                action._typehint = Optional[Union[int, float]]
        parser.link_arguments("data.num_classes", "model.init_args.num_classes",
                              apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.init_args.in_channels",
                              apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` before Lightning reads the model's settings from it: a
        readable, weights-only lightning-nas checkpoint of the configured strategy."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        self.resume_info = None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            checkpoint = load_checkpoint(ckpt_path)
            saved = checkpoint_strategy(checkpoint)
            configured = self.config[subcommand].model.class_path
            if saved is None:
                raise CheckpointError(f"{ckpt_path} was not written by a lightning-nas strategy "
                                      "(no strategy recorded in it); --ckpt_path takes a "
                                      "checkpoint of `lightning-nas fit`")
            if saved != configured:
                hint = (" (a subnet.ckpt initialises a FixedArchitecture through "
                        "--model.init_args.init_from)" if saved.endswith("save_subnet") else "")
                raise CheckpointError(
                    f"{ckpt_path} is a checkpoint of {saved}, but the config trains "
                    f"{configured}; give the config the run was started with (its "
                    f"config.yaml), or a checkpoint of this strategy{hint}")
            self.resume_info = {"epoch": int(checkpoint.get("epoch", 0)),
                                "global_step": int(checkpoint.get("global_step", 0))}
            del checkpoint
        super()._parse_ckpt_path()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments[subcommand] and \
                kwargs.get("weights_only") is None:
            kwargs["weights_only"] = True  # never unpickle code from a checkpoint
        return kwargs

    def before_fit(self) -> None:
        if getattr(self, "resume_info", None):  # keep the rows of the epochs the checkpoint has
            keep_csv_rows(self.trainer.loggers, up_to_epoch=self.resume_info["epoch"])
            for callback in self.trainer.callbacks:
                if isinstance(callback, RunConfigCallback):
                    callback.resumed = True

    def _before_evaluation(self, subcommand: str) -> None:
        config = self.config[subcommand]
        if not config.get("ckpt_path") and not getattr(self.model, "hparams", {}).get(
                "init_from"):
            raise ValueError(
                f"`lightning-nas {subcommand}` without --ckpt_path (or --model.init_args."
                f"init_from) would {subcommand} an untrained network and report chance-level "
                "numbers; give the checkpoint of a trained run, e.g. --ckpt_path "
                "runs/<run>/checkpoints/last.ckpt")
        keep_csv_rows(self.trainer.loggers)  # the training run's metrics.csv stays

    def before_test(self) -> None:
        self._before_evaluation("test")

    def before_validate(self) -> None:
        self._before_evaluation("validate")


def run_lightning_cli(args: list[str] | None = None, run: bool = True) -> NASCLI:
    """LightningCLI over ``args`` (default ``sys.argv[1:]``); ``run=False`` only parses and
    instantiates (no subcommand).

    ``args`` are passed as the process's own command line (``sys.argv``) while the CLI runs:
    Lightning's DDP launcher starts the other ranks with ``sys.argv``, and LightningCLI warns
    when both differ."""
    os.environ.setdefault("WANDB_MODE", "offline")  # never needs an account unless asked
    saved_argv = sys.argv
    if args is not None:
        sys.argv = [sys.argv[0] if sys.argv else "lightning-nas", *args]
    try:
        return NASCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_class=NASArgumentParser,
            save_config_callback=RunConfigCallback,
            save_config_kwargs={"overwrite": True},
            run=run,
            auto_configure_optimizers=False,
        )
    except Exception as err:
        cause = unwrap_config_error(err)
        if cause is err:
            raise
        raise cause from None  # the constructor's error, not jsonargparse's wrapper
    finally:
        sys.argv = saved_argv


EXPORT_FORMATS = ("json", "onnx", "torchscript")


def export(argv: list[str]) -> Path:
    """``lightning-nas export``: the architecture of a checkpoint as arch.json (default), or
    its network as ONNX / TorchScript (checked against PyTorch after writing)."""
    parser = argparse.ArgumentParser(
        prog="lightning-nas export",
        description="checkpoint -> arch.json, or its network as ONNX / TorchScript. Networks: "
        "a FixedArchitecture checkpoint gives its trained network; a Once-for-All checkpoint "
        "needs --subnet (the subnet with the supernet's weights); a one-shot search checkpoint "
        "(DARTS, PC-DARTS, GDAS, ENAS, SPOS) gives the derived architecture's standalone "
        "network, with the supernet's weights where the space extracts a standalone subnet "
        "(NAS-Bench-201, MobileNetV3) and UNTRAINED otherwise (DARTS cells: train it with "
        "FixedArchitecture first)")
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by lightning-nas fit")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="json",
                        help="json: the architecture (arch.json); onnx: the network as ONNX "
                        "(opset 17, dynamic batch; ONNX Runtime's output is checked against "
                        "PyTorch's within 1e-4; needs lightning-nas[export]); torchscript: a "
                        "traced network (.pt, checked within 1e-5)")
    parser.add_argument("--out", default=None,
                        help="output path (default beside the checkpoint: <stem>.arch.json, so "
                        "the run's own arch.json is never overwritten, <stem>.onnx or "
                        "<stem>.pt); for json with --subnet a folder")
    parser.add_argument("--subnet", default=None,
                        help="Once-for-All checkpoints (required for them): the subnet, as "
                        "'largest', 'smallest' or a string r..|d..|k..|e..; with json it is "
                        "extracted with its inherited weights as arch.json + subnet.ckpt for "
                        "FixedArchitecture (init_from); batch-norm statistics are the "
                        "supernet's, so fine-tune or recalibrate before reporting accuracy")
    parser.add_argument("--input-shape", default=None, metavar="C,H,W",
                        help="input shape of one image for onnx/torchscript (default: from the "
                        "checkpoint: the data it was trained on, or the subnet's resolution)")
    parser.add_argument("--allow-import", action="append", default=[], metavar="MODULE_PREFIX",
                        help="trust the modules named MODULE_PREFIX or MODULE_PREFIX.* (repeat "
                        "for several): a checkpoint whose space or ops come from a user's "
                        "class_path (e.g. an op registered in YAML) may import them to rebuild "
                        "the network. Without it only lightning-nas's own modules are imported "
                        "(a file never imports code by itself)")
    opts = parser.parse_args(argv)
    from lightning_nas.spaces.registry import allowed_imports

    with allowed_imports(opts.allow_import):
        return _export(opts)


def _export(opts: argparse.Namespace) -> Path:
    if opts.format != "json":
        return export_network(opts.ckpt, opts.format, opts.out, subnet=opts.subnet,
                              input_shape=opts.input_shape)
    if opts.subnet is not None:
        return export_subnet(opts.ckpt, opts.subnet, opts.out)
    checkpoint = load_checkpoint(opts.ckpt)
    info = checkpoint.get("lightning_nas")
    if not info or "arch" not in info:
        raise CheckpointError(f"{opts.ckpt} was not written by a lightning-nas strategy (no "
                         "architecture inside); export works on checkpoints of `lightning-nas fit`")
    if checkpoint_strategy(checkpoint) == OFA_STRATEGY:  # its "arch" is only the largest net
        from lightning_nas.spaces.mobilenet import MobileNetV3Space

        raise SubnetRequiredError(subnet_choices_message(
            opts.ckpt, MobileNetV3Space(**info["space"])))
    arch = Arch.from_dict(info["arch"])
    out = Path(opts.out) if opts.out else Path(opts.ckpt).with_suffix(".arch.json")
    arch.save(out, string=info.get("string"), epoch=checkpoint.get("epoch"),
              strategy=info.get("strategy"))
    print(info.get("string") or arch.to_json())
    print(f"wrote {out}")
    return out


def export_network(ckpt: str, fmt: str, out: str | None, *, subnet: str | None = None,
                   input_shape: str | None = None) -> Path:
    """Write the network of checkpoint ``ckpt`` as ``fmt`` (``onnx`` or ``torchscript``) to
    ``out`` (default ``<stem>.onnx`` / ``<stem>.pt`` beside it) and check the file's outputs
    against PyTorch's on a seeded random batch of 2."""
    import torch

    from lightning_nas.hardware import onnx_export

    if fmt == "onnx":
        onnx_export.require_onnx()  # before any work
    shape = parse_input_shape(input_shape) if input_shape else None
    target = network_from_checkpoint(ckpt, subnet=subnet, input_shape=shape)
    if target.input_shape is None:
        raise ValueError(f"{ckpt} does not say which input size its network takes (no data "
                         "shape recorded); give it with --input-shape C,H,W, e.g. 3,32,32")
    example = torch.randn(2, *target.input_shape, generator=torch.Generator().manual_seed(0))
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    path = Path(out) if out else Path(ckpt).with_suffix(suffix)
    print(target.space.to_string(target.arch))
    print(f"network: {target.note}; input (B, {', '.join(map(str, target.input_shape))})")
    if fmt == "onnx":
        onnx_export.export_onnx(target.net, example, path)
        diff = onnx_export.check_onnx(target.net, path, example, atol=1e-4)
        print(f"wrote {path} (ONNX opset {onnx_export.OPSET}, dynamic batch)")
        print(f"ONNX Runtime vs PyTorch: max |difference| of the logits {diff:.3g} "
              "(tolerance 1e-4)")
    else:
        onnx_export.export_torchscript(target.net, example, path)
        print(f"wrote {path} (TorchScript, traced; outputs equal PyTorch's within "
              f"{onnx_export.TORCHSCRIPT_ATOL:g})")
    return path


def export_subnet(ckpt: str, subnet: str, out: str | None) -> Path:
    """Extract one subnet of a Once-for-All checkpoint to ``out`` (arch.json + subnet.ckpt)."""
    from lightning_nas.strategies.ofa import load_supernet, save_subnet

    space, supernet = load_supernet(ckpt)
    if subnet in ("largest", "smallest"):
        arch = getattr(space, subnet)()
    else:
        arch = space.parse(subnet)  # ArchError names the field that is outside the supernet
    folder = Path(out) if out else Path(ckpt).with_name(Path(ckpt).stem + "-subnet")
    paths = save_subnet(supernet.extract(arch), space, folder, source=str(ckpt))
    print(space.to_string(arch))
    print(f"wrote {paths['arch']} and {paths['weights']}")
    return folder


def run(argv: list[str]) -> Any:
    """Dispatch ``argv`` to ``export``, ``search``, ``report``, ``scale`` or LightningCLI; errors
    propagate."""
    if argv and argv[0] == "export":
        return export(argv[1:])
    if argv and argv[0] == "report":
        from lightning_nas.run_report import main_report

        return main_report(argv[1:])
    if argv and argv[0] == "search":
        from lightning_nas.search.cli import main_search

        return main_search(argv[1:])
    if argv and argv[0] == "scale":
        from lightning_nas.spaces.scaling import main_scale

        return main_scale(argv[1:])
    return run_lightning_cli(argv)


def unwrap_config_error(err: BaseException) -> BaseException:
    """The error that matters: jsonargparse wraps an error raised in a constructor (a
    strategy's ``ValueError``) in a union-validation error with a dump of the whole
    namespace; this returns the constructor's own error."""
    while err.__cause__ is not None and (
            str(err).startswith(("Does not validate against any of the Union subtypes",
                                 "Problem with given class_path"))
            or type(err).__module__.startswith("jsonargparse")):
        err = err.__cause__
    return err


def user_error_message(err: BaseException) -> str:
    """One line (or a few) that say what is wrong, without traceback or namespace dump."""
    err = unwrap_config_error(err)
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]  # str(KeyError) adds quotes around the message
    return text


def main(argv: list[str] | None = None) -> None:
    """The ``lightning-nas`` command: a failure prints its message alone and exits 1
    (``LIGHTNING_NAS_DEBUG=1`` or a leading ``--debug`` shows the traceback instead);
    Ctrl-C exits 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if argv[:1] == ["--debug"]:
        argv, debug = argv[1:], True
    try:
        run(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("lightning-nas: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as err:  # noqa: BLE001 - the command's boundary: one clear line
        if debug:
            raise
        print(f"lightning-nas: error: {user_error_message(err)}", file=sys.stderr)
        print(f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
