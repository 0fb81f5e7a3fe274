"""Self-labelling, after training (SCAN's last step, Van Gansbeke et al., 2020): Q is trained on its own
confident readings of real images, each seen as a fresh view, while it keeps reading G's codes from G's samples.
No label is used and G is not touched: only the encoder changes.

    python -m training.selflabel RUN_DIR --data-dir DIR     # writes RUN_DIR/self-labelled.pt (docs/RESULTS.md)

Export it with `python -m export RUN_DIR --checkpoint RUN_DIR/self-labelled.pt --out ...`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from infogan.latent import LatentLayout
from training.augment import jitter_style, scaled, second_view, translate
from training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, load_networks, save_checkpoint
from training.data import DataError, hold_out, load_dataset
from training.losses import information_loss
from training.model import Discriminator, Generator, sample_latents

OUTPUT_NAME = "self-labelled.pt"


@dataclass
class SelfLabelling:
    """The stage's settings (docs/RESULTS.md, "Self-labelling": fixed before it was first measured)."""

    threshold: float = 0.99  # an image is a target when Q's top probability for every categorical code reaches this
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int = 128  # real images per step; as many of G's samples beside them
    seed: int = 0


@torch.no_grad()
def confident_readings(discriminator: Discriminator, images: torch.Tensor, threshold: float,
                       batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, values): the images whose every categorical code Q reads with at least `threshold` probability,
    and those readings (rows, n_cat), from the network in inference mode."""
    discriminator.eval()
    readings, sure = [], []
    for start in range(0, len(images), batch):
        logits = discriminator(scaled(images[start : start + batch]))[1]
        parts = [logits[:, columns].softmax(1) for _, columns in discriminator.layout.categorical_columns()]
        readings.append(torch.stack([part.argmax(1) for part in parts], 1))
        sure.append(torch.stack([part.max(1).values >= threshold for part in parts], 1).all(1))
    rows = torch.cat(sure).nonzero().squeeze(1)
    return rows, torch.cat(readings)[rows]


def self_label(generator: Generator, discriminator: Discriminator, config, images: torch.Tensor,
               settings: SelfLabelling, device: str) -> tuple[Discriminator, dict]:
    """A copy of `discriminator` trained on its confident readings of `images` (uint8, the run's training part)
    and on G's samples with L_I, as in training; and what the stage did."""
    layout: LatentLayout = discriminator.layout
    student = copy.deepcopy(discriminator).to(device)
    rows, targets = confident_readings(student, images, settings.threshold)
    if len(rows) < settings.batch_size:
        raise DataError(f"only {len(rows)} images are read with probability >= {settings.threshold}: fewer than one "
                        f"batch of {settings.batch_size}")
    generator = generator.to(device).eval().requires_grad_(False)
    optimiser = torch.optim.Adam(student.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    rng = torch.Generator(device).manual_seed(settings.seed)
    steps_per_epoch = len(rows) // settings.batch_size
    student.train()
    sums = torch.zeros(3, device=device)
    with tqdm(total=steps_per_epoch * settings.epochs, unit="step", file=sys.stderr) as bar:
        for _ in range(settings.epochs):
            order = torch.randperm(len(rows), generator=rng, device=device)
            for step in range(steps_per_epoch):
                picked = order[step * settings.batch_size : (step + 1) * settings.batch_size]
                views = second_view(scaled(images[rows[picked]]), config.translate, config.jitter_shear,
                                    config.jitter_stroke, config.view_mirror, rng)
                real_logits = student(views)[1]
                real_ce = sum(F.cross_entropy(real_logits[:, columns], targets[picked, i])
                              for i, (_, columns) in enumerate(layout.categorical_columns()))
                fake_ce, fake_nll = fake_information(generator, student, config, settings.batch_size, rng, device)
                loss = real_ce + config.lambda_cat * fake_ce + config.lambda_cont * fake_nll
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                sums += torch.stack([real_ce.detach(), fake_ce.detach(), fake_nll.detach()])
                bar.update()
    means = (sums / (steps_per_epoch * settings.epochs)).tolist()
    report = {"settings": asdict(settings), "targets": len(rows), "images": len(images),
              "real_ce": means[0], "fake_ce": means[1], "fake_nll": means[2]}
    return student.eval(), report


def fake_information(generator: Generator, discriminator: Discriminator, config, batch: int, rng: torch.Generator,
                     device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """L_I's two parts on fresh samples of the frozen G, seen as D/Q's step sees them in training."""
    layout = generator.layout
    noise, categorical, continuous = sample_latents(layout, batch, rng, device)
    with torch.no_grad():
        fake = generator(noise, categorical, continuous)
        if config.translate:
            fake = translate(fake, config.translate, rng)
        jittered = (jitter_style(fake, config.jitter_shear, config.jitter_stroke, rng)
                    if config.jitter_shear > 0 or config.jitter_stroke > 0 else None)
    _, cat_logits, mean, log_sigma = discriminator(fake)
    if jittered is not None:  # the categorical codes are read from the restyled fakes, as in training
        cat_logits = discriminator(jittered)[1]
    return information_loss(layout, cat_logits, mean, log_sigma, categorical, continuous)


def run(run_dir: Path, data_dir: Path, settings: SelfLabelling, checkpoint: Path | None = None,
        device: str = "cpu") -> dict:
    """Self-labels a run's exported networks and writes them, with the rest of its state, to RUN_DIR/self-labelled.pt."""
    source = checkpoint or run_dir / CHECKPOINT_NAME
    state = load_checkpoint(source)
    config = state["config"]
    generator, discriminator = load_networks(state)
    generator.layout = discriminator.layout = state["layout"]
    dataset, _ = hold_out(load_dataset(config.dataset, data_dir, config.image_channels, config.image_size),
                          config.validation)
    trained, report = self_label(generator, discriminator, config, torch.from_numpy(dataset.images).to(device),
                                 settings, device)
    key = "discriminator_average" if "discriminator_average" in state else "discriminator"
    state[key] = trained.cpu().state_dict()
    state["config"], state["layout"] = asdict(config), state["layout"].to_dict()
    state["self_labelling"] = {**report, "from": str(source)}
    state["commands"] = state.get("commands", []) + [f"python -m training.selflabel {run_dir} --data-dir {data_dir}"]
    save_checkpoint(run_dir / OUTPUT_NAME, state)
    return state["self_labelling"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.selflabel", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="training run directory (holds checkpoint.pt)")
    parser.add_argument("--data-dir", type=Path, required=True, help="the images the run trained on")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to start from (default: RUN_DIR/checkpoint.pt)")
    args = parser.parse_args(argv)
    try:
        report = run(args.run_dir, args.data_dir, SelfLabelling(), args.checkpoint)
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
