"""`python -m training`: the command line. The run's options are the Config fields declared with `option` in
training/config.py; each becomes a flag here with its help and range, defaulting to the preset's value."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from training.checkpoint import CHECKPOINT_NAME, CheckpointError, StartingPoint, epochs_started, load_checkpoint
from training.config import PRESETS, Config, flag_name, flags
from training.data import IDX_DATASETS, DataError, download, load_dataset
from training.train import native_bf16, pick_device, resolved_precision, train

DEFAULT_PRESET = "mnist"


def bounded(kind: type, minimum: float | None, above: bool) -> Callable[[str], int | float]:
    """argparse type: an int or a finite float, at least `minimum` (strictly above it with `above`).
    argparse prefixes its messages with the flag's name."""

    def parse(text: str) -> int | float:
        value = kind(text)
        finite = kind is int or math.isfinite(value)
        if not finite or (minimum is not None and (value < minimum or (above and value == minimum))):
            wanted = ["a finite number"] if kind is float else []
            if minimum is not None:
                wanted.append(f"{'>' if above else '>='} {minimum:g}")
            raise argparse.ArgumentTypeError(f"must be {' '.join(wanted)}, got {text}")
        return value

    parse.__name__ = "integer" if kind is int else "number"  # argparse: "invalid integer value: 'ten'"
    return parse


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def add_option(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
    """One Config field as a flag: --name-with-dashes, None unless given (the preset's value stands)."""
    meta, kind = field.metadata, typing.get_type_hints(Config)[field.name]
    name = flag_name(field.name)
    value = getattr(PRESETS[DEFAULT_PRESET], field.name)
    shown = ",".join(map(str, value)) if isinstance(value, list) else value
    help_text = f"{meta['help']} (default: the preset's; {DEFAULT_PRESET}: {shown})"
    if kind is bool:
        parser.add_argument(name, action="store_true", default=None, help=help_text)
    elif meta["choices"]:
        parser.add_argument(name, choices=meta["choices"], help=help_text)
    elif kind == list[int]:
        parser.add_argument(name, type=sizes, help=help_text)
    else:
        parser.add_argument(name, type=bounded(kind, meta["minimum"], meta["above"]), help=help_text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train InfoGAN. Writes RUN_DIR/checkpoint.pt (atomically, every --checkpoint-every steps and "
        "after every epoch), RUN_DIR/metrics.jsonl (one line per epoch), RUN_DIR/samples/*.png and RUN_DIR/train.log.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help=f"network, latent layout and optimiser settings from the paper (default: {DEFAULT_PRESET}; "
                        "a resumed or branched run keeps its checkpoint's); 'tiny' is a small network for tests")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="directory with the IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) "
                        "or, with --dataset folder, a tree of PNG/JPEG images (sub-folder names become labels)")
    parser.add_argument("--out", type=Path, required=True, help="run directory for checkpoints, metrics and samples")
    parser.add_argument("--download", action="store_true", help="fetch the official IDX files into --data-dir first "
                        "(MD5-verified; files already present and valid are kept)")
    parser.add_argument("--mirror", action="append", help="base URL to download from instead of the official mirrors "
                        "(repeat to try several in order)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto picks CUDA when available, else the CPU")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint (same "
                       "options, optimiser and RNG state; --branch says which options may change)")
    start.add_argument("--branch", type=Path, metavar="FROM_DIR", help="start RUN_DIR from FROM_DIR's last "
                       "checkpoint, FROM_DIR left as it is. With --resume and --branch, only late options may "
                       "change: --epochs, --checkpoint-every, and the identity term's from an epoch not yet "
                       "begun; the run is then exactly the one they would have trained from the start")
    options = parser.add_argument_group("run options (each a field of training/config.py's Config)")
    for field in flags():
        add_option(options, field)
    return parser.parse_args(argv)


def given_options(args: argparse.Namespace, device: str) -> dict:
    """The flags given, `--precision auto` resolved for `device`."""
    given = {field.name: getattr(args, field.name) for field in flags() if getattr(args, field.name) is not None}
    if "precision" in given:
        given["precision"] = resolved_precision(device, given["precision"])
    return given


def on_device(config: Config, device: str) -> Config:
    """`config` with its precision resolved for `device`: a run records the arithmetic it trains in, and a run
    resumed on another kind of device keeps it (or is refused a change) instead of changing it unseen."""
    return dataclasses.replace(config, precision=resolved_precision(device, config.precision))


def config_from_args(args: argparse.Namespace, device: str) -> Config:
    """The preset with the flags given; ValueError naming the flag when options contradict each other."""
    config = dataclasses.replace(on_device(PRESETS[args.preset or DEFAULT_PRESET], device), **given_options(args, device))
    config.check()
    return config


def starting_point(args: argparse.Namespace, device: str) -> tuple[Config, StartingPoint | None]:
    """The run's config and the checkpoint it starts from (None: from the start); errors name the flag or file."""
    if not (args.resume or args.branch):
        return config_from_args(args, device), None
    checkpoint = (args.out if args.resume else args.branch) / CHECKPOINT_NAME
    if args.branch and (args.out / CHECKPOINT_NAME).exists():
        raise CheckpointError(f"{args.out / CHECKPOINT_NAME}: --out already holds a run; continue it with --resume "
                              "or branch into a new directory")
    state = load_checkpoint(checkpoint)
    trained = state["config"]
    if args.preset not in (None, trained.preset):
        raise ValueError(f"--preset {args.preset}: {checkpoint} was trained with preset {trained.preset}, which a "
                         "resumed or branched run keeps; leave --preset out")
    config = on_device(trained, device).continued(given_options(args, device), epochs_started(state))
    finished = state["history"][-1]["epoch"] if state["history"] else 0
    if args.branch and finished >= config.epochs:
        raise ValueError(f"--epochs {config.epochs}: {args.branch} has trained {finished} epochs; a branch needs "
                         "more to train")
    return config, StartingPoint(checkpoint, state)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
        config, checkpoint = starting_point(args, device)
        if args.download:
            if config.dataset not in IDX_DATASETS:
                raise DataError(f"--download: only {', '.join(IDX_DATASETS)} can be downloaded, not {config.dataset}")
            download(config.dataset, args.data_dir, args.mirror)
        dataset = load_dataset(config.dataset, args.data_dir, config.image_channels, config.image_size)
        print(f"training {config.preset} on {dataset.name} ({len(dataset.images) - config.validation} images, "
              f"{config.validation} held out for validation) on {device} in {config.precision} -> {args.out}"
              + (f", from {checkpoint.path}" if checkpoint else ""), file=sys.stderr)
        if config.precision == "bf16" and not native_bf16(device):
            print(f"warning: --precision bf16: this {device} has no native bf16 (AMX or AVX512-BF16); the run will be "
                  "slower than in fp32", file=sys.stderr)
        command = "python -m training " + " ".join(argv if argv is not None else sys.argv[1:])
        metrics = train(config, dataset, args.out, device, start_from=checkpoint, command=command)
    except (DataError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m training --out {args.out} --data-dir {args.data_dir} --resume",
              file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in metrics.items() if k != "alarms"}))
    return 0
