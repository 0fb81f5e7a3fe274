"""A supervised digit classifier: an evaluation instrument, never used in training or alignment.

    python -m training.classifier --data-dir data/mnist --out bench/data/digit-classifier.onnx

It reads a generated image the way a person would name its digit, so that a sweep of a continuous code can be
checked for keeping the digit (infogan/identity.py). A small convolutional network (two 5x5 convolutions, 32
and 64 channels, max-pooling, a 256-unit layer), trained on the 60,000 official training digits with random
shifts of up to 2 pixels, 4 epochs of Adam; its accuracy on the official t10k set goes into the ONNX file's
metadata. The InfoGAN being evaluated never sees it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from training.augment import scaled, translate
from training.data import DataError, load_idx_dataset

INPUT, OUTPUT = "images", "logits"  # images (B, 1, 28, 28) in [-1, 1], as G draws them


def network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10),
    )


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    predicted = torch.cat([model(scaled(torch.from_numpy(images[i : i + 1000]))).argmax(1)
                           for i in range(0, len(images), 1000)])
    return float((predicted.numpy() == labels).mean())


def train(data_dir: Path, epochs: int, seed: int) -> tuple[nn.Module, float]:
    training, test = load_idx_dataset(data_dir, "mnist"), load_idx_dataset(data_dir, "mnist", "t10k")
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    model = network()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.from_numpy(training.images), torch.from_numpy(training.labels)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=rng)
        for start in range(0, len(images), 128):
            batch = order[start : start + 128]
            loss = F.cross_entropy(model(translate(scaled(images[batch]), 2, rng)), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        print(f"epoch {epoch + 1}: t10k accuracy {accuracy(model, test.images, test.labels):.4f}", file=sys.stderr)
    return model, accuracy(model, test.images, test.labels)


def export(model: nn.Module, out: Path, metadata: dict) -> None:
    model.eval()
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(out), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False)
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, {"infogan.instrument": json.dumps(metadata)})
    onnx.save(proto, str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.classifier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the official MNIST files (make data)")
    parser.add_argument("--out", type=Path, required=True, help="where the ONNX file goes")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        model, test_accuracy = train(args.data_dir, args.epochs, args.seed)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metadata = {"purpose": "evaluation instrument: reads the digit of generated images; never used in training or "
                           "alignment", "trained_on": "the 60,000 official MNIST training digits",
                "t10k_accuracy": round(test_accuracy, 4), "epochs": args.epochs, "seed": args.seed,
                "command": "python -m training.classifier " + " ".join(argv if argv is not None else sys.argv[1:])}
    export(model, args.out, metadata)
    print(json.dumps(metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
