"""Evaluates a checkpoint: how well Q's categorical code matches the labels of real images, L_I, and how far
each continuous code moves a digit's slant and stroke thickness (infogan/effects.py, with Morpho-MNIST's measures).

    python -m training.evaluate RUN_DIR --data-dir DIR [--checkpoint PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from infogan.effects import EFFECTS_HEADING, effects_table, reference_scale
from training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, load_networks
from training.data import DataError, load_dataset
from training.disentangle import code_effects, code_identity, digit_classifier
from training.evaluation import code_metrics
from training.losses import information_loss
from training.model import sample_latents


@torch.no_grad()
def evaluate(run_dir: Path, data_dir: Path, checkpoint: Path | None = None, samples: int = 10_000) -> dict:
    state = load_checkpoint(checkpoint or run_dir / CHECKPOINT_NAME)
    config, layout = state["config"], state["layout"]
    generator, discriminator = load_networks(state)
    dataset = load_dataset(config.dataset, data_dir, config.image_channels, config.image_size)
    images = torch.from_numpy(dataset.images)
    # L_I on fresh samples: H(c) - cross-entropy of Q's posterior, in nats (its upper bound is H(c)).
    noise, categorical, continuous = sample_latents(layout, samples, torch.Generator().manual_seed(0), "cpu")
    _, logits, mean, log_sigma = discriminator(generator(noise, categorical, continuous))
    cross_entropy, nll = information_loss(layout, logits, mean, log_sigma, categorical, continuous)
    bound = layout.categorical_entropy
    real_metrics, labels = code_metrics(discriminator, dataset, images)
    effects = code_effects(generator, layout, reference_scale(dataset.images)) if layout.continuous else {}
    classifier = digit_classifier(config.dataset, layout)
    identity = code_identity(generator, layout, classifier) if classifier else None
    return {
        "checkpoint": str(checkpoint or run_dir / CHECKPOINT_NAME), "step": state["step"], "dataset": dataset.name,
        "images": len(images), "info_cat_nats": bound - float(cross_entropy), "info_cat_bound_nats": bound,
        "cont_nll": float(nll), **real_metrics, "label_map": labels, "code_effects": effects,
        "identity": identity,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="training run directory")
    parser.add_argument("--data-dir", type=Path, required=True, help="dataset to evaluate on (labels needed for accuracy)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (default: RUN_DIR/checkpoint.pt)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.run_dir, args.data_dir, args.checkpoint)
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        effects = result.pop("code_effects")
        for key, value in result.items():
            print(f"{key:20} {value:.4f}" if isinstance(value, float) else f"{key:20} {value}")
        if effects:
            print(f"\n{EFFECTS_HEADING}\n{effects_table(effects)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
