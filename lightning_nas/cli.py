"""The ``lightning-nas`` command.

* ``lightning-nas fit|validate|test --config ...``: LightningCLI in subclass mode, so the
  YAML picks the strategy (``model.class_path``) and the data module (``data.class_path``).
  ``data.num_classes`` / ``data.in_channels`` are linked into the model.
* ``lightning-nas export --ckpt run/checkpoints/last.ckpt [--out arch.json]``: the
  architecture stored in a checkpoint, as JSON.
* ``lightning-nas search --config configs/search/...``: multi-trial search (ask/tell loop).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI

from lightning_nas.spaces.base import Arch


class NASCLI(LightningCLI):
    """LightningCLI with the links every strategy shares."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes",
                              apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.init_args.in_channels",
                              apply_on="instantiate")


def run_lightning_cli(args: list[str] | None = None, run: bool = True) -> NASCLI:
    """LightningCLI over ``args``; ``run=False`` only parses and instantiates (no subcommand)."""
    os.environ.setdefault("WANDB_MODE", "offline")  # never needs an account unless asked
    return NASCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def export(argv: list[str]) -> Path:
    """``lightning-nas export``: write the architecture a checkpoint holds as arch.json."""
    from lightning_nas.strategies.fixed import load_checkpoint

    parser = argparse.ArgumentParser(prog="lightning-nas export",
                                     description="checkpoint -> arch.json")
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by lightning-nas fit")
    parser.add_argument("--out", default=None,
                        help="output JSON path (default: <checkpoint>.arch.json beside it, so the "
                        "run's own arch.json is never overwritten); with --subnet a folder")
    parser.add_argument("--subnet", default=None,
                        help="Once-for-All checkpoints: extract this subnet (string form "
                        "r..|d..|k..|e.., or 'largest'/'smallest') with its inherited weights as "
                        "arch.json + subnet.ckpt for FixedArchitecture (init_from); batch-norm "
                        "statistics are the supernet's, so fine-tune or recalibrate before "
                        "reporting accuracy")
    opts = parser.parse_args(argv)
    if opts.subnet is not None:
        return export_subnet(opts.ckpt, opts.subnet, opts.out)
    checkpoint = load_checkpoint(opts.ckpt)
    info = checkpoint.get("lightning_nas")
    if not info or "arch" not in info:
        raise SystemExit(f"{opts.ckpt} was not written by a lightning-nas strategy (no "
                         "architecture inside); export works on checkpoints of `lightning-nas fit`")
    arch = Arch.from_dict(info["arch"])
    out = Path(opts.out) if opts.out else Path(opts.ckpt).with_suffix(".arch.json")
    arch.save(out, string=info.get("string"), epoch=checkpoint.get("epoch"),
              strategy=info.get("strategy"))
    print(info.get("string") or arch.to_json())
    print(f"wrote {out}")
    return out


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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        export(argv[1:])
    elif argv and argv[0] == "search":
        from lightning_nas.search.cli import main_search

        main_search(argv[1:])
    else:
        run_lightning_cli(argv)


if __name__ == "__main__":
    main()
