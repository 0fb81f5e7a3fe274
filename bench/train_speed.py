"""Training throughput of a preset: images/s over timed steps after a warm-up, on synthetic data.

    python bench/train_speed.py [--preset mnist] [--device auto|cpu|cuda] [--steps 50] [--epoch-images 60000]
    python bench/train_speed.py --jitter-shear 0.3 --jitter-stroke 0.45   # the cost of the style jitter

With --epoch-images it also times one full epoch of that many images (data resident on the device). With
--jitter-shear/--jitter-stroke it times the preset with that jitter and without any (the `mnist` preset's
default has one) in the same run, alternating rounds, and prints both and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.model import PRESETS, Config
from training.train import autocast_for, build_networks, pick_device, train_step


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mnist", choices=sorted(PRESETS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--epoch-images", type=int, default=0, help="also time one epoch of this many images")
    parser.add_argument("--jitter-shear", type=float, default=0.0, help="compare with this style jitter (training's flag)")
    parser.add_argument("--jitter-stroke", type=float, default=0.0, help="compare with this style jitter (training's flag)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the comparison (default 3)")
    args = parser.parse_args()
    device = pick_device(args.device)
    config = PRESETS[args.preset]
    shape = (config.image_channels, config.image_size, config.image_size)
    images = torch.randint(0, 256, (max(args.epoch_images, config.batch_size * 4), *shape), dtype=torch.uint8,
                           device=device)
    result = {
        "preset": args.preset, "device": device, "batch_size": config.batch_size,
        "hardware": torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    compare = bool(args.jitter_shear or args.jitter_stroke)
    # The comparison's baseline is the preset without any jitter, whatever the preset's own default.
    plain = dataclasses.replace(config, jitter_shear=0.0, jitter_stroke=0.0) if compare else config
    timers = {"images_per_s": stepper(plain, device, images)}
    if compare:
        jittered = dataclasses.replace(config, jitter_shear=args.jitter_shear, jitter_stroke=args.jitter_stroke)
        timers["jitter_images_per_s"] = stepper(jittered, device, images)
    rounds = args.rounds if compare else 1
    for timer in timers.values():
        timer(args.warmup)
    seconds = dict.fromkeys(timers, 0.0)
    for _ in range(rounds):  # alternating, so a change in the machine's speed falls on both sides alike
        for key, timer in timers.items():
            seconds[key] += timer(args.steps)
    speeds = {key: round(rounds * args.steps * config.batch_size / s, 1) for key, s in seconds.items()}
    result["images_per_s"] = speeds["images_per_s"]
    if compare:
        result.update({"jitter": [args.jitter_shear, args.jitter_stroke],
                       "jitter_images_per_s": speeds["jitter_images_per_s"],
                       "step_time_ratio": round(speeds["images_per_s"] / speeds["jitter_images_per_s"], 3)})
    if args.epoch_images:
        result["epoch_images"] = args.epoch_images
        result["epoch_seconds"] = round(timers["images_per_s"](args.epoch_images // config.batch_size), 2)
    print(json.dumps(result))


def stepper(config: Config, device: str, images: torch.Tensor) -> Callable[[int], float]:
    """A function that runs that many training steps of the config on fresh networks and returns the seconds."""
    layout = config.layout()
    networks = build_networks(config, device)
    rng = torch.Generator(device).manual_seed(0)
    autocast = autocast_for(device)

    def run(steps: int) -> float:
        synchronize(device)
        started = time.perf_counter()
        for step in range(steps):
            start = (step * config.batch_size) % (len(images) - config.batch_size + 1)
            train_step(config, layout, networks, images[start : start + config.batch_size].float() / 127.5 - 1, rng,
                       autocast, contrastive=networks.discriminator.pair_classifier is not None)
        synchronize(device)
        return time.perf_counter() - started

    return run


if __name__ == "__main__":
    main()
