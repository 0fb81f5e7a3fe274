"""What a run measures each epoch: Q's reading of real images (accuracy, NMI, the label map), the paper's sample
grids, and the alarms a failing run raises."""

from __future__ import annotations

import numpy as np
import torch

from infogan.images import png_bytes, tile, to_uint8
from infogan.latent import LatentLayout
from training.augment import scaled
from training.data import Dataset
from training.metrics import hungarian_map, nmi
from training.model import Discriminator, Generator, sample_latents


@torch.no_grad()
def predict_codes(discriminator: Discriminator, images: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """Q's most probable value of every categorical code on real uint8 images: (N, n_cat)."""
    was_training = discriminator.training
    discriminator.eval()
    sizes = [code.size for code in discriminator.layout.categorical]
    values = []
    for start in range(0, len(images), batch):
        logits = discriminator(scaled(images[start : start + batch]))[1]
        values.append(torch.stack([part.argmax(1) for part in logits.split(sizes, dim=1)], 1).cpu())
    discriminator.train(was_training)
    return torch.cat(values).numpy()


def code_metrics(discriminator: Discriminator, dataset: Dataset, images: torch.Tensor) -> tuple[dict, list[str] | None]:
    """How c1 reads real images: its unused values and, when the data is labelled, accuracy, NMI and the
    label map (the class of each value, matched one-to-one with the Hungarian method)."""
    layout = discriminator.layout
    if not layout.categorical:
        return {}, None
    predicted = predict_codes(discriminator, images)[:, 0]
    size = layout.categorical[0].size
    metrics: dict = {"unused_values": [int(v) for v in np.flatnonzero(np.bincount(predicted, minlength=size) == 0)]}
    if dataset.labels is None:
        return metrics, None
    names = dataset.class_names
    mapping = hungarian_map(predicted, dataset.labels, size, len(names))
    metrics["accuracy"] = float(np.mean(mapping[predicted] == dataset.labels))  # unsupervised accuracy
    metrics["nmi"] = nmi(predicted, dataset.labels, size, len(names))
    return metrics, [names[m] if m >= 0 else f"value {v}" for v, m in enumerate(mapping)]


@torch.no_grad()
def sample_grids(generator: Generator, device: str, seed: int) -> dict[str, bytes]:
    """The paper's figure layout, one PNG per continuous code: rows are values of c1, columns sweep the
    continuous code from -2 to 2; the noise and the other codes stay fixed across the grid."""
    layout = generator.layout
    if not layout.categorical:
        return {}
    rows, columns = layout.categorical[0].size, 10
    noise, categorical, continuous = sample_latents(layout, 1, torch.Generator(device).manual_seed(seed), device)
    grids = {}
    was_training = generator.training
    generator.eval()
    for j, code in enumerate(layout.continuous):
        cats = categorical.repeat(rows * columns, 1)
        cats[:, 0] = torch.arange(rows, device=device).repeat_interleave(columns)
        conts = continuous.repeat(rows * columns, 1)
        conts[:, j] = torch.linspace(-2, 2, columns, device=device).repeat(rows)
        images = generator(noise.repeat(rows * columns, 1), cats, conts).float().cpu().numpy()
        grids[code.name] = png_bytes(tile(to_uint8(images), columns))
    generator.train(was_training)
    return grids


def alarms(layout: LatentLayout, epoch: int, loss_d: float, metrics: dict, info_cat: float) -> list[str]:
    """Symptoms of a failing InfoGAN run, in words a user can act on."""
    found = []
    if loss_d < 0.01:
        found.append(f"D's loss collapsed to {loss_d:.4f}: D wins outright and G gets no gradient")
    bound = layout.categorical_entropy
    if bound and epoch >= 2 and info_cat < 0.5 * bound:
        found.append(f"L_I = {info_cat:.3f} nats stays far below H(c) = {bound:.3f}: the codes are being ignored")
    if metrics.get("unused_values"):
        found.append(f"categorical values {metrics['unused_values']} of c1 are never predicted on real data")
    return found
