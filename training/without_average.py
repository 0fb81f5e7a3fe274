"""A finished run trained with --ema-decay, as it would have ended without it: its last trained weights in place of
their moving average, with the label map, accuracy and code effects measured again on them.

    python -m training.without_average RUN_DIR --out OUT_DIR --data-dir DIR

The average is only watched: a run with it trains exactly the weights the same run without it trains (a test
checks this). So OUT_DIR holds what `python -m training` without --ema-decay would have written at the end (the
earlier epochs' metrics, measured on the average, are kept as they were); export it like any run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from infogan.effects import reference_scale
from training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, load_networks, save_checkpoint
from training.data import DataError, load_dataset
from training.disentangle import code_effects
from training.evaluation import alarms, code_metrics

AVERAGES = ("generator_average", "discriminator_average")


@torch.no_grad()
def without_average(run_dir: Path, out_dir: Path, data_dir: Path, command: str) -> dict:
    """Writes OUT_DIR's checkpoint, label_map.json and metrics.jsonl; returns the last epoch's metrics."""
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)
    if not all(name in state for name in AVERAGES):
        raise CheckpointError(f"{run_dir}: the run keeps no weight average (it was trained without --ema-decay)")
    if not state["history"] or state["history"][-1]["step"] != state["step"]:
        raise CheckpointError(f"{run_dir}: its checkpoint is not at the end of an epoch (step {state['step']}); "
                              "finish or resume the run first")
    for name in AVERAGES:
        del state[name]
    config = dataclasses.replace(state["config"], ema_decay=0.0)
    generator, discriminator = load_networks(state)  # the last trained weights, now that no average is there
    dataset = load_dataset(config.dataset, data_dir, config.image_channels, config.image_size)
    real_metrics, labels = code_metrics(discriminator, dataset, torch.from_numpy(dataset.images))
    last = {**state["history"][-1], **real_metrics}
    layout = state["layout"]
    if layout.continuous:
        last["code_effects"] = code_effects(generator, layout, reference_scale(dataset.images), seed=config.seed)
    last["alarms"] = alarms(layout, last["epoch"], last["loss_d"], last, last["info_cat_nats"])
    if labels:
        layout = layout.with_labels(layout.categorical[0].name, labels)
    history = [*state["history"][:-1], last]
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_dir / CHECKPOINT_NAME, {
        **{key: value for key, value in state.items() if key != "format"},
        "config": dataclasses.asdict(config), "layout": layout.to_dict(), "history": history,
        "commands": [*state["commands"], command],
    })
    if labels:
        (out_dir / "label_map.json").write_text(json.dumps(labels, indent=1) + "\n")
    (out_dir / "metrics.jsonl").write_text("".join(json.dumps(metrics) + "\n" for metrics in history))
    return last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.without_average", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run directory trained with --ema-decay")
    parser.add_argument("--out", type=Path, required=True, help="the new run directory (must not be RUN itself)")
    parser.add_argument("--data-dir", type=Path, required=True, help="the run's training images, to measure again on")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.out.resolve() == args.run.resolve():
        print(f"error: --out {args.out}: that is the run itself; write the copy elsewhere", file=sys.stderr)
        return 2
    try:
        metrics = without_average(args.run, args.out, args.data_dir, " ".join([parser.prog, *argv]))
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: metrics[key] for key in ("epoch", "step", "accuracy", "nmi") if key in metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
