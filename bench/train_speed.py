"""Training throughput of a preset: images/s over timed steps after a warm-up, on synthetic data.

    python bench/train_speed.py [--preset mnist] [--device auto|cpu|cuda] [--steps 50] [--epoch-images 60000]

With --epoch-images it also times one full epoch of that many images (data resident on the device).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.model import PRESETS
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
    args = parser.parse_args()
    device = pick_device(args.device)
    config = PRESETS[args.preset]
    layout = config.layout()
    networks = build_networks(config, device)
    rng = torch.Generator(device).manual_seed(0)
    autocast = autocast_for(device)
    shape = (config.image_channels, config.image_size, config.image_size)
    images = torch.randint(0, 256, (max(args.epoch_images, config.batch_size * 4), *shape), dtype=torch.uint8,
                           device=device)

    def run(steps: int) -> float:
        synchronize(device)
        started = time.perf_counter()
        for step in range(steps):
            start = (step * config.batch_size) % (len(images) - config.batch_size + 1)
            train_step(config, layout, networks, images[start : start + config.batch_size].float() / 127.5 - 1, rng,
                       autocast, contrastive=networks.discriminator.pair_classifier is not None)
        synchronize(device)
        return time.perf_counter() - started

    run(args.warmup)
    seconds = run(args.steps)
    result = {
        "preset": args.preset, "device": device, "batch_size": config.batch_size,
        "hardware": torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads",
        "torch": torch.__version__, "images_per_s": round(args.steps * config.batch_size / seconds, 1),
    }
    if args.epoch_images:
        result["epoch_images"] = args.epoch_images
        result["epoch_seconds"] = round(run(args.epoch_images // config.batch_size), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
