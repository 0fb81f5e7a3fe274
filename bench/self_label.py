"""The direct look at self-labelling (docs/RESULTS.md, "Self-labelling"): for each run, Q's validation accuracy
and its reading of G's codes before and after the stage, in PyTorch. Writes nothing but its report.

    python bench/self_label.py runs/mnist-bf16-seed1 ... --data-dir data/mnist
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_networks  # noqa: E402
from training.data import hold_out, load_dataset  # noqa: E402
from training.evaluation import code_metrics, predict_codes  # noqa: E402
from training.model import Discriminator, Generator, sample_latents  # noqa: E402
from training.selflabel import SelfLabelling, self_label  # noqa: E402

SAMPLES = 10_000


@torch.no_grad()
def reads_codes(generator: Generator, discriminator: Discriminator) -> float:
    """The share of G's samples whose categorical codes Q reads back as G was given them."""
    noise, categorical, continuous = sample_latents(generator.layout, SAMPLES, torch.Generator().manual_seed(1), "cpu")
    images = torch.cat([generator(*part) for part in zip(noise.split(1000), categorical.split(1000),
                                                          continuous.split(1000))])
    uint8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return float((torch.from_numpy(predict_codes(discriminator, uint8)) == categorical).all(1).float().mean())


def look(run_dir: Path, data_dir: Path) -> dict:
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)
    config = state["config"]
    generator, discriminator = load_networks(state)
    generator.layout = discriminator.layout = state["layout"]
    training_part, validation = hold_out(load_dataset(config.dataset, data_dir, config.image_channels,
                                                      config.image_size), config.validation)
    validation_images = torch.from_numpy(validation.images)
    before = code_metrics(discriminator, validation, validation_images)[0]["accuracy"]
    reads_before = reads_codes(generator, discriminator)
    started = time.perf_counter()
    trained, report = self_label(generator, discriminator, config, torch.from_numpy(training_part.images),
                                 SelfLabelling(), "cpu")
    seconds = time.perf_counter() - started
    after = code_metrics(trained, validation, validation_images)[0]["accuracy"]
    return {"run": run_dir.name, "val_before": before, "val_after": after, "gain_points": 100 * (after - before),
            "reads_g_before": reads_before, "reads_g_after": reads_codes(generator, trained),
            "targets": report["targets"], "images": report["images"], "seconds": round(seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    for run_dir in args.runs:
        print(json.dumps(look(run_dir, args.data_dir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
