"""Training cost, the paper's claim: "the additional training cost is very small". Times, in one run and in
alternating rounds, the same networks trained as a plain GAN (D's trunk and real/fake head only: no Q head, no
L_I) and as InfoGAN, then each addition of the shipped recipe in turn and the options a user may add, on
synthetic data:

    python bench/train_speed.py [--device auto|cpu|cuda] [--steps 20] [--rounds 3]

Prints a Markdown table (images/s and each step's time relative to the plain GAN's) and a JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import PRESETS, Config
from training.losses import discriminator_loss, generator_loss
from training.model import sample_latents
from training.train import Networks, autocast_for, build_networks, pick_device, train_step

PAPER = dataclasses.replace(PRESETS["mnist"], translate=0, jitter_shear=0.0, jitter_stroke=0.0, real_info_weight=0.0)
# The shipped recipe: 12 epochs of these, then 3 with the identity term (`make model`).
SHIPPED = dataclasses.replace(PAPER, translate=2, jitter_shear=0.15, jitter_stroke=0.225, real_info_weight=1.0)
LADDER = [  # (row, config): each row adds one thing to the row before
    ("plain GAN (no Q head, no L_I)", None),
    ("InfoGAN, the paper's setup", PAPER),
    ("+ 2-pixel shifts of D's inputs (--translate 2)", dataclasses.replace(PAPER, translate=2)),
    ("+ style jitter (--jitter-shear 0.15 --jitter-stroke 0.225)",
     dataclasses.replace(PAPER, translate=2, jitter_shear=0.15, jitter_stroke=0.225)),
    ("+ real-image information (--real-info-weight 1): the shipped recipe's first 12 epochs", SHIPPED),
    ("+ the identity term (--identity-weight 0.3): its last 3 epochs",
     dataclasses.replace(SHIPPED, identity_weight=0.3)),
    ("+ Q's reading held across views (--consistency-weight 1): an option",
     dataclasses.replace(SHIPPED, consistency_weight=1.0)),
    ("the shipped recipe's first 12 epochs in bf16 (--precision bf16): an option",
     dataclasses.replace(SHIPPED, precision="bf16")),
]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_gan_step(networks: Networks, real: torch.Tensor, rng: torch.Generator, config: Config,
                   autocast: contextlib.AbstractContextManager) -> None:
    """One D update and one G update of a GAN with InfoGAN's networks, Q's head never run."""
    generator, discriminator, opt_g, opt_d = networks

    def d(images: torch.Tensor) -> torch.Tensor:
        return discriminator.d_head(discriminator.trunk(images)).squeeze(1)

    with autocast:
        fake = generator(*sample_latents(config.layout(), len(real), rng, real.device.type))
        loss_d = discriminator_loss(d(real), d(fake.detach()))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    discriminator.requires_grad_(False)
    with autocast:
        loss_g = generator_loss(d(fake))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    discriminator.requires_grad_(True)


def stepper(config: Config | None, device: str, images: torch.Tensor) -> Callable[[int], float]:
    """A function that runs that many training steps (of the config, or of the plain GAN for None) on fresh
    networks and returns the seconds."""
    base = config or PAPER
    networks = build_networks(base, device)
    rng = torch.Generator(device).manual_seed(0)
    autocast = autocast_for(device, base.precision)

    def run(steps: int) -> float:
        synchronize(device)
        started = time.perf_counter()
        for step in range(steps):
            start = (step * base.batch_size) % (len(images) - base.batch_size + 1)
            real = images[start : start + base.batch_size].float() / 127.5 - 1
            if config is None:
                plain_gan_step(networks, real, rng, base, autocast)
            else:
                train_step(config, config.layout(), networks, real, rng, autocast, epoch=0)
        synchronize(device)
        return time.perf_counter() - started

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, each row once per round, each "
                        "round starting one row later (default 5: every row first once)")
    args = parser.parse_args()
    device = pick_device(args.device)
    shape = (PAPER.image_channels, PAPER.image_size, PAPER.image_size)
    images = torch.randint(0, 256, (PAPER.batch_size * 4, *shape), dtype=torch.uint8, device=device)
    timers = [(row, stepper(config, device, images)) for row, config in LADDER]
    for _, timer in timers:
        timer(args.warmup)
    seconds = dict.fromkeys((row for row, _ in timers), 0.0)
    for round_index in range(args.rounds):  # alternating, so a change in the machine's speed falls on every row
        for row, timer in timers[round_index % len(timers):] + timers[: round_index % len(timers)]:  # and rotating
            seconds[row] += timer(args.steps)
    images_seen = args.rounds * args.steps * PAPER.batch_size
    plain = seconds[LADDER[0][0]]
    print(f"| {device}: {torch.cuda.get_device_name() if device == 'cuda' else platform.processor() or 'cpu'}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__} | images/s | step time / plain GAN's |")
    print("|---|---|---|")
    for row, spent in seconds.items():
        print(f"| {row} | {images_seen / spent:.1f} | {spent / plain:.3f} |")
    print(json.dumps({"device": device, "batch_size": PAPER.batch_size, "steps": args.steps, "rounds": args.rounds,
                      "images_per_s": {row: round(images_seen / spent, 1) for row, spent in seconds.items()}}))


if __name__ == "__main__":
    main()
