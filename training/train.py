"""Trains InfoGAN. Read top to bottom: sampling, losses, evaluation, the loop, the CLI.

    python -m training --preset mnist --data-dir ../shared/data/mnist-9k --out runs/mnist
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from infogan.effects import EFFECTS_HEADING, effects_table, reference_scale
from infogan.files import atomic_write
from infogan.images import png_bytes, tile, to_uint8
from infogan.latent import LatentLayout
from training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from training.data import IDX_DATASETS, DataError, Dataset, download, hold_out, load_dataset
from training.disentangle import code_effects, code_identity, digit_classifier
from training.metrics import hungarian_map, nmi
from training.model import PRESETS, Config, Discriminator, Generator, init_weights, sample_latents

log = logging.getLogger("training")
SUMS = 8  # what a run sums over an epoch: the seven losses train_step returns, then the step count

# ---------------------------------------------------------------------------------------------- sampling


def scaled(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], the range of G's tanh output."""
    return pixels.float() / 127.5 - 1


def translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by its own random (dy, dx) in [-max_shift, max_shift], background (-1) filling in.

    Differentiable, so G's gradient flows through it; one gather, no Python loop over the batch.
    """
    batch, _, height, width = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, batch, 1, 1), generator=generator, device=images.device)
    padded = F.pad(images, [max_shift] * 4, value=-1.0)
    rows = torch.arange(height, device=images.device).view(1, height, 1) + max_shift + shifts[0]
    columns = torch.arange(width, device=images.device).view(1, 1, width) + max_shift + shifts[1]
    index = torch.arange(batch, device=images.device).view(batch, 1, 1)
    return padded.permute(0, 2, 3, 1)[index, rows, columns].permute(0, 3, 1, 2)


def jitter_style(images: torch.Tensor, max_shear: float, max_stroke: float, generator: torch.Generator) -> torch.Tensor:
    """Each image sheared by its own random amount in [-max_shear, max_shear] (horizontal shift per row, about
    the centre) and its strokes thickened or thinned: a blend of up to max_stroke towards a 3x3 dilation
    (positive) or erosion (negative). Differentiable; the background (-1) fills in."""
    batch = len(images)
    shear, stroke = (torch.rand(2, batch, generator=generator, device=images.device) * 2 - 1) * torch.tensor(
        [[max_shear], [max_stroke]], device=images.device)
    stroke = stroke.view(batch, 1, 1, 1)
    dilated, eroded = F.max_pool2d(images, 3, 1, 1), -F.max_pool2d(-images, 3, 1, 1)
    images = images + stroke.clamp(min=0) * (dilated - images) + (-stroke).clamp(min=0) * (eroded - images)
    theta = torch.zeros(batch, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 1] = shear
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, align_corners=False) - 1  # zero padding of images + 1 is background


# ---------------------------------------------------------------------------------------------- losses


def information_loss(
    layout: LatentLayout,
    cat_logits: torch.Tensor,
    mean: torch.Tensor,
    log_sigma: torch.Tensor,
    categorical: torch.Tensor,
    continuous: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-L_I split by kind: summed cross-entropy of the categorical codes and Gaussian NLL of the continuous ones.

    Cross-entropy takes Q's raw logits (softmax is applied once, inside it). H(c) - cross-entropy is the
    variational lower bound on I(c; G(z, c)) for a categorical code.
    """
    gaussian = log_sigma + 0.5 * ((continuous - mean) * torch.exp(-log_sigma)) ** 2 + 0.5 * math.log(2 * math.pi)
    return categorical_cross_entropy(layout, cat_logits, categorical), gaussian.sum(1).mean()


def categorical_cross_entropy(layout: LatentLayout, cat_logits: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
    """Q's cross-entropy of every categorical code, summed over the codes."""
    cross_entropy = cat_logits.new_zeros(())
    for i, (_, columns) in enumerate(layout.categorical_columns()):
        cross_entropy = cross_entropy + F.cross_entropy(cat_logits[:, columns], categorical[:, i])
    return cross_entropy


def identity_loss(config: Config, networks: Networks, noise: torch.Tensor, categorical: torch.Tensor,
                  rng: torch.Generator) -> torch.Tensor:
    """Q's categorical cross-entropy on G's images of a quarter of the batch's latents, their continuous codes
    redrawn from [-identity_range, identity_range]: low when the digit survives codes past the prior."""
    count = max(1, len(noise) // 4)
    layout = networks.generator.layout
    wide = (torch.rand(count, len(layout.continuous), generator=rng, device=noise.device) * 2 - 1) * config.identity_range
    cat_logits = networks.discriminator(networks.generator(noise[:count], categorical[:count], wide))[1]
    return categorical_cross_entropy(layout, cat_logits, categorical[:count])


def real_information(layout: LatentLayout, cat_logits: torch.Tensor) -> torch.Tensor:
    """Mutual information between a batch of images and Q's categorical readings of them, summed over the
    categorical codes: H(mean reading) - mean H(reading), in nats, at most H(c) per code."""
    information = cat_logits.new_zeros(())
    for _, columns in layout.categorical_columns():
        log_p = F.log_softmax(cat_logits[:, columns].float(), dim=1)
        p = log_p.exp()
        conditional = -(p * log_p).sum(1).mean()
        mean_p = p.mean(0)
        marginal = -(mean_p * torch.log(mean_p.clamp_min(1e-12))).sum()
        information = information + marginal - conditional
    return information


def gan_losses(d_real: torch.Tensor, d_fake_detached: torch.Tensor) -> torch.Tensor:
    """D's loss: real -> 1, fake -> 0, on logits."""
    return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
        d_fake_detached, torch.zeros_like(d_fake_detached)
    )


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: G maximises log D(G(z)) rather than minimising log(1 - D(G(z)))."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


# ---------------------------------------------------------------------------------------------- evaluation


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


# ---------------------------------------------------------------------------------------------- training


class Networks(NamedTuple):
    generator: Generator
    discriminator: Discriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def build_networks(config: Config, device: str) -> Networks:
    """G and D (with Q's head) at their initial weights, and their Adam optimisers."""
    generator, discriminator = Generator(config).to(device), Discriminator(config).to(device)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    # D's optimiser holds the shared trunk, D's head and Q's head: L_I trains all three (and G, below).
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    return Networks(generator, discriminator, opt_g, opt_d)


def average_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of `module` whose weights will follow the trained ones as their moving average."""
    return copy.deepcopy(module).requires_grad_(False)


def average_decay(decay: float, step: int) -> float:
    """The decay ramps up over the first steps (as TensorFlow's ExponentialMovingAverage does with
    num_updates), so that in a short run too the average forgets the random initial weights."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: nn.Module, live: nn.Module, decay: float) -> None:
    """average = decay * average + (1 - decay) * live, weight by weight. BatchNorm's statistics are copied:
    they already are running averages, of the live weights' activations."""
    for mean, weight in zip(average.parameters(), live.parameters()):
        mean.lerp_(weight, 1 - decay)
    for kept, buffer in zip(average.buffers(), live.buffers()):
        kept.copy_(buffer)


def autocast_for(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed), full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def train_step(config: Config, layout: LatentLayout, networks: Networks, real: torch.Tensor, rng: torch.Generator,
               autocast: contextlib.AbstractContextManager, contrastive: bool) -> torch.Tensor:
    """One D/Q update and one G update on a batch of real images in [-1, 1]; `contrastive` adds InfoGAN-CR's
    regulariser (the run has its pair classifier and the epoch has reached cr_start_epoch).

    Returns the detached losses [D, G, categorical cross-entropy, continuous NLL, pair cross-entropy, information
    of Q's readings of real images, identity cross-entropy] without a host sync (the last three are 0 unless
    their terms are on).
    """
    generator, discriminator, opt_g, opt_d = networks
    jitter = config.jitter_shear > 0 or config.jitter_stroke > 0
    noise, categorical, continuous = sample_latents(layout, len(real), rng, real.device.type)
    with autocast:
        fake = generator(noise, categorical, continuous)
        pair = contrastive_pair(layout, generator, continuous, rng) if contrastive else None
        unshifted = fake
        if config.translate:  # the same shifts serve D's step and G's step
            real, fake = translate(real, config.translate, rng), translate(fake, config.translate, rng)
        jittered = jitter_style(fake, config.jitter_shear, config.jitter_stroke, rng) if jitter else None
        # D and Q step: L_I on detached fakes trains the shared trunk and Q's head.
        d_real, real_cat_logits = discriminator(real)[:2]
        d_fake, cat_logits, mean, log_sigma = discriminator(fake.detach())
        if jittered is not None:  # the categorical codes are read from the restyled fakes
            cat_logits = discriminator(jittered.detach())[1]
        loss_d = gan_losses(d_real, d_fake)
        ce, nll = information_loss(layout, cat_logits, mean, log_sigma, categorical, continuous)
        loss_dq = loss_d + config.lambda_cat * ce + config.lambda_cont * nll
        pair_ce = loss_d.new_zeros(())
        if pair is not None:  # H learns to name the shared code on detached pairs
            second, shared = pair
            pair_ce = F.cross_entropy(discriminator.pair_classifier(unshifted.detach(), second.detach()), shared)
            loss_dq = loss_dq + config.cr_weight * pair_ce
        info_real = loss_d.new_zeros(())
        if config.real_info_weight > 0:
            info_real = real_information(layout, real_cat_logits)
            loss_dq = loss_dq - config.real_info_weight * info_real
    opt_d.zero_grad(set_to_none=True)
    loss_dq.backward()
    opt_d.step()
    # G step: fool D and make the codes recoverable; D's weights are held fixed.
    discriminator.requires_grad_(False)
    with autocast:
        d_fake, cat_logits, mean, log_sigma = discriminator(fake)
        if jittered is not None:
            cat_logits = discriminator(jittered)[1]
        ce_g, nll_g = information_loss(layout, cat_logits, mean, log_sigma, categorical, continuous)
        loss_g = generator_loss(d_fake)
        loss_total_g = loss_g + config.lambda_cat * ce_g + config.lambda_cont * nll_g
        if pair is not None:  # G makes the shared code easy to name
            second, shared = pair
            loss_total_g = loss_total_g + config.cr_weight * F.cross_entropy(
                discriminator.pair_classifier(unshifted, second), shared)
        identity_ce = loss_g.new_zeros(())
        if config.identity_weight > 0:
            identity_ce = identity_loss(config, networks, noise, categorical, rng)
            loss_total_g = loss_total_g + config.identity_weight * identity_ce
    opt_g.zero_grad(set_to_none=True)
    loss_total_g.backward()
    opt_g.step()
    discriminator.requires_grad_(True)
    return torch.stack([loss.detach().float() for loss in (loss_d, loss_g, ce, nll, pair_ce, info_real, identity_ce)])


def contrastive_pair(layout: LatentLayout, generator: Generator, continuous: torch.Tensor,
                     rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoGAN-CR's partner images: for image i, a fresh draw of every latent except continuous code k_i,
    which keeps image i's value. Returns the partners and k (B,), the code each pair shares."""
    batch, device = len(continuous), continuous.device
    noise, categorical, partner = sample_latents(layout, batch, rng, device.type)
    shared = torch.randint(len(layout.continuous), (batch,), generator=rng, device=device)
    rows = torch.arange(batch, device=device)
    partner[rows, shared] = continuous[rows, shared]
    return generator(noise, categorical, partner), shared


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


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device is available (use --device cpu or auto)")
    return name


def train(config: Config, dataset: Dataset, out_dir: Path, device: str, resume: bool = False, command: str = "") -> dict:
    """Runs (or resumes) training; returns the last epoch's metrics. Checkpoints land in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples").mkdir(exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    metrics_path = out_dir / "metrics.jsonl"
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    dataset, validation = hold_out(dataset, config.validation)
    torch.manual_seed(config.seed)
    layout = config.layout()
    networks = build_networks(config, device)
    generator, discriminator, opt_g, opt_d = networks
    # The networks the run measures each epoch and exports: the weight average where the run keeps one.
    averaged = (average_copy(generator), average_copy(discriminator)) if config.ema_decay else None
    measured_g, measured_d = averaged or (generator, discriminator)
    rng = torch.Generator(device).manual_seed(config.seed)
    images = torch.from_numpy(dataset.images).to(device)  # resident on the device: no loader, no copies
    validation_images = None if validation is None else torch.from_numpy(validation.images).to(device)
    steps_per_epoch = len(images) // config.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{dataset.name}: {len(images)} images, fewer than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs
    step, elapsed, sums = 0, 0.0, torch.zeros(SUMS, device=device)
    history: list[dict] = []
    commands = [command]  # how this run was made, for the model card

    if resume:
        state = load_checkpoint(checkpoint_path, device)
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if averaged:
            measured_g.load_state_dict(state["generator_average"])
            measured_d.load_state_dict(state["discriminator_average"])
        rng.set_state(state["rng"].cpu())  # generator states are CPU byte tensors, CUDA generators too
        step, elapsed, sums = state["step"], state["elapsed"], state["sums"].to(device)
        if len(sums) < SUMS:  # a checkpoint from before the pair loss or the real-image term: their sums are 0
            sums = torch.cat([sums[:-1], sums.new_zeros(SUMS - len(sums)), sums[-1:]])
        layout = state["layout"]  # with the label map of the last finished epoch
        history = [m for m in state["history"] if m["epoch"] <= step // steps_per_epoch]
        commands = state.get("commands", []) + commands
        log.info("resumed from %s at step %d of %d", checkpoint_path, step, total_steps)

    def checkpoint() -> None:
        save_checkpoint(checkpoint_path, {
            "config": dataclasses.asdict(config), "layout": layout.to_dict(), "step": step, "elapsed": elapsed,
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": rng.get_state(), "sums": sums,
            "history": history, "dataset": dataset.name, "commands": commands,
            **({"generator_average": measured_g.state_dict(), "discriminator_average": measured_d.state_dict()}
               if averaged else {}),
        })

    autocast = autocast_for(device)
    # The units of the continuous codes' measured effects (a fixed sample of the real images: only when needed).
    scale = reference_scale(dataset.images) if layout.continuous else {}
    classifier = digit_classifier(config.dataset, layout)  # reads G's digits along the sweeps (an instrument only)
    bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr)
    started = time.perf_counter() - elapsed
    metrics: dict = history[-1] if history else {}
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        # The epoch's order depends only on (seed, epoch), so a resumed run picks up the same batches.
        order = torch.randperm(len(images), generator=torch.Generator(device).manual_seed(config.seed * 7919 + epoch),
                               device=device)
        contrastive = networks.discriminator.pair_classifier is not None and epoch >= config.cr_start_epoch
        for batch_index in range(position, steps_per_epoch):
            batch = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size]
            real = scaled(images[batch])
            losses = train_step(config, layout, networks, real, rng, autocast, contrastive)
            if averaged:
                decay = average_decay(config.ema_decay, step)
                update_average(measured_g, generator, decay)
                update_average(measured_d, discriminator, decay)

            sums += torch.cat([losses, torch.ones(1, device=device)])
            step += 1
            bar.update()
            if step % config.log_every == 0 or batch_index == steps_per_epoch - 1:
                loss_d_avg, loss_g_avg, ce_avg, nll_avg, *_ = (sums[:-1] / sums[-1]).tolist()
                info_cat = layout.categorical_entropy - ce_avg
                bar.set_postfix(epoch=epoch + 1, D=f"{loss_d_avg:.3f}", G=f"{loss_g_avg:.3f}", L_I=f"{info_cat:.3f}",
                                acc=f"{metrics.get('accuracy', float('nan')):.3f}")
            # The epoch's last step is checkpointed below, after its metrics: resuming must not skip them.
            if step % config.checkpoint_every == 0 and batch_index < steps_per_epoch - 1:
                elapsed = time.perf_counter() - started
                checkpoint()

        # End of epoch: metrics on real data, sample grids, alarms, checkpoint.
        loss_d_avg, loss_g_avg, ce_avg, nll_avg, pair_ce_avg, info_real_avg, identity_ce_avg = (sums[:-1] / sums[-1]).tolist()
        sums.zero_()
        bound = layout.categorical_entropy
        elapsed = time.perf_counter() - started
        real_metrics, labels = code_metrics(measured_d, dataset, images)
        if validation is not None:  # every choice between runs reads these; the label map is matched on them anew
            held_out, _ = code_metrics(measured_d, validation, validation_images)
            real_metrics.update({f"val_{name}": value for name, value in held_out.items() if name in ("accuracy", "nmi")})
        metrics = {
            "epoch": epoch + 1, "step": step, "loss_d": loss_d_avg, "loss_g": loss_g_avg,
            "info_cat_nats": bound - ce_avg, "info_cat_bound_nats": bound, "cont_nll": nll_avg,
            **real_metrics, "elapsed_s": round(elapsed, 2), "device": device,
        }
        if discriminator.pair_classifier:
            metrics["pair_ce"] = pair_ce_avg
        if config.real_info_weight > 0:
            metrics["info_real_nats"] = info_real_avg
        if config.identity_weight > 0:
            metrics["identity_ce"] = identity_ce_avg
        if layout.continuous:
            metrics["code_effects"] = code_effects(measured_g, layout, scale, device, seed=config.seed)
        if classifier is not None:
            metrics["identity"] = code_identity(measured_g, layout, classifier, device, seed=config.seed)
        metrics["alarms"] = alarms(layout, epoch + 1, loss_d_avg, metrics, bound - ce_avg)
        for alarm in metrics["alarms"]:
            bar.write(f"WARNING epoch {epoch + 1}: {alarm}", file=sys.stderr)  # stdout holds only the final JSON
            log.warning("epoch %d: %s", epoch + 1, alarm)
        history.append(metrics)
        log.info("epoch %d %s", epoch + 1, json.dumps({k: v for k, v in metrics.items() if k != "alarms"}))
        for name, png in sample_grids(measured_g, device, config.seed).items():
            (out_dir / "samples" / f"epoch_{epoch + 1:03d}_{name}.png").write_bytes(png)
        if labels:
            layout = layout.with_labels(layout.categorical[0].name, labels)
        checkpoint()
        atomic_write(metrics_path, lambda out: out.write("".join(json.dumps(m) + "\n" for m in history).encode()))
    bar.close()
    if metrics.get("code_effects"):
        print(f"{EFFECTS_HEADING}\n{effects_table(metrics['code_effects'])}", file=sys.stderr)
    if layout.categorical and layout.categorical[0].labels:
        (out_dir / "label_map.json").write_text(json.dumps(layout.categorical[0].labels, indent=1) + "\n")
    log.removeHandler(handler)
    handler.close()
    return metrics


# ---------------------------------------------------------------------------------------------- CLI


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= minimum. argparse prefixes its messages with the flag's name."""

    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return integer


def finite(minimum: float, inclusive: bool = True) -> Callable[[str], float]:
    """argparse type: a finite number >= minimum (> minimum when not inclusive)."""

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} {minimum:g}, got {text}")
        return value

    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train InfoGAN. Writes RUN_DIR/checkpoint.pt (atomically, every --checkpoint-every steps and "
        "after every epoch), RUN_DIR/metrics.jsonl (one line per epoch), RUN_DIR/samples/*.png and RUN_DIR/train.log.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="mnist",
                        help="network, latent layout and optimiser settings from the paper (default: mnist); "
                        "'tiny' is a small network for tests")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="directory with the IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) "
                        "or, with --dataset folder, a tree of PNG/JPEG images (sub-folder names become labels)")
    parser.add_argument("--out", type=Path, required=True, help="run directory for checkpoints, metrics and samples")
    parser.add_argument("--dataset", choices=[*IDX_DATASETS, "folder"], help="override the preset's dataset kind")
    parser.add_argument("--download", action="store_true", help="fetch the official IDX files into --data-dir first "
                        "(MD5-verified; files already present and valid are kept)")
    parser.add_argument("--mirror", action="append", help="base URL to download from instead of the official mirrors "
                        "(repeat to try several in order)")
    parser.add_argument("--epochs", type=at_least(1), help="passes over the data (default: the preset's)")
    parser.add_argument("--seed", type=at_least(0), help="seed for weights, latents and data order (default 0)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto picks CUDA when available (bf16 autocast there), else the CPU")
    parser.add_argument("--batch-size", type=at_least(1), help="images per step (default: the preset's, 128 for mnist)")
    parser.add_argument("--noise-dim", type=at_least(1), help="size of the noise vector z")
    parser.add_argument("--noise", choices=["normal", "uniform"], help="prior of z")
    parser.add_argument("--categorical", type=lambda s: [int(x) for x in s.split(",") if x],
                        help="sizes of the categorical codes, comma-separated, e.g. 10 or 10,10,10 ('' for none)")
    parser.add_argument("--continuous", type=at_least(0), help="number of continuous codes (uniform on [-1, 1])")
    parser.add_argument("--lambda-cont", type=finite(0),
                        help="weight of the continuous codes' L_I (default 1, as the authors' code; 0 drops it)")
    parser.add_argument("--learn-sigma", action="store_true", help="learn Q's sigma for continuous codes (default: fixed 1)")
    parser.add_argument("--translate", type=at_least(0), help="shift every image D sees by up to this many pixels "
                        "(DiffAugment; not in the paper; default: the preset's, 2 for mnist and fashion-mnist, else 0 = off)")
    parser.add_argument("--cr-weight", type=finite(0), help="weight of InfoGAN-CR's contrastive regulariser on the "
                        "continuous codes (Lin et al., 2020; not in the paper; default: the preset's, 0 = off)")
    parser.add_argument("--cr-start-epoch", type=at_least(0), help="epochs of plain InfoGAN before the contrastive "
                        "regulariser switches on (default 0: from the start)")
    parser.add_argument("--jitter-shear", type=finite(0), help="Q reads the categorical codes of fakes after a "
                        "random shear of up to this much (0.3 is about one SD of MNIST's slant; not in the paper; "
                        "default: the preset's, 0 = off)")
    parser.add_argument("--jitter-stroke", type=finite(0), help="... and a stroke blend towards a 3x3 dilation or "
                        "erosion of up to this much (0.45 is about one SD of MNIST's thickness; at most 1; default 0 = off)")
    parser.add_argument("--ema-decay", type=finite(0), help="measure and export a moving average of the weights "
                        "with this decay per step, e.g. 0.999 (not in the paper; default: the preset's, 0 = the last "
                        "weights)")
    parser.add_argument("--real-info-weight", type=finite(0), help="add the information between real images and "
                        "Q's reading of their categorical codes to Q's objective, with this weight (default 0: off)")
    parser.add_argument("--identity-weight", type=finite(0), help="add to G's step Q's categorical cross-entropy on "
                        "images whose continuous codes are drawn past the prior, with this weight (default 0: off)")
    parser.add_argument("--identity-range", type=finite(1), help="... drawn from [-R, R] (default 2, the range of "
                        "the paper's figures)")
    parser.add_argument("--validation", type=at_least(0), help="hold out the last N images of the training file: "
                        "never trained on, read for val_accuracy every epoch (default: the preset's, 5000 for mnist and "
                        "fashion-mnist, else 0)")
    parser.add_argument("--lr-d", type=finite(0, inclusive=False), help="Adam learning rate of D and Q (default 2e-4)")
    parser.add_argument("--lr-g", type=finite(0, inclusive=False), help="Adam learning rate of G (default 1e-3)")
    parser.add_argument("--checkpoint-every", type=at_least(1), help="steps between checkpoints (default 500)")
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint "
                        "(same optimiser and RNG state; --epochs may extend the run)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {
        "dataset": args.dataset, "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
        "noise_dim": args.noise_dim, "noise": args.noise, "categorical": args.categorical,
        "continuous": args.continuous, "lambda_cont": args.lambda_cont, "learn_sigma": args.learn_sigma or None,
        "translate": args.translate, "cr_weight": args.cr_weight, "cr_start_epoch": args.cr_start_epoch,
        "jitter_shear": args.jitter_shear, "jitter_stroke": args.jitter_stroke, "ema_decay": args.ema_decay,
        "real_info_weight": args.real_info_weight,
        "identity_weight": args.identity_weight, "identity_range": args.identity_range, "validation": args.validation,
        "lr_d": args.lr_d, "lr_g": args.lr_g, "checkpoint_every": args.checkpoint_every,
    }
    config = dataclasses.replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    if config.cr_weight > 0 and config.continuous < 2:  # H names which of the continuous codes a pair shares
        raise ValueError(f"--cr-weight {config.cr_weight:g}: needs at least 2 continuous codes, the run has {config.continuous}")
    if config.cr_start_epoch and not (config.cr_weight > 0 and config.cr_start_epoch < config.epochs):
        raise ValueError(f"--cr-start-epoch {config.cr_start_epoch}: needs --cr-weight above 0 and fewer than the "
                         f"run's {config.epochs} epochs (else the regulariser never switches on)")
    if config.jitter_stroke > 1:  # beyond a full dilation the blend overshoots the pixel range
        raise ValueError(f"--jitter-stroke {config.jitter_stroke:g}: must be at most 1 (a full 3x3 dilation or erosion)")
    if (config.jitter_shear or config.jitter_stroke) and not config.categorical:
        raise ValueError("--jitter-shear/--jitter-stroke: only the categorical codes are read from restyled fakes, "
                         "and the run has none")
    if config.real_info_weight and not config.categorical:
        raise ValueError("--real-info-weight: the term reads the categorical codes of real images, and the run has none")
    if config.identity_weight and not (config.categorical and config.continuous):
        raise ValueError("--identity-weight: the term reads the categorical codes of images with continuous codes "
                         "past the prior, and the run lacks one of the two")
    if config.ema_decay >= 1:  # a decay of 1 never leaves the initial weights
        raise ValueError(f"--ema-decay {config.ema_decay:g}: must be below 1 (e.g. 0.999)")
    if config.translate >= config.image_size // 2:  # shifts of half the image leave D mostly background
        raise ValueError(f"--translate {config.translate}: must be under half the {config.image_size}-pixel image "
                         f"(at most {config.image_size // 2 - 1}; the mnist preset uses 2)")
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.resume:
            state = load_checkpoint(args.out / CHECKPOINT_NAME)
            config = dataclasses.replace(state["config"], epochs=args.epochs or state["config"].epochs)
        else:
            config = config_from_args(args)
            config.layout()  # validates the latent layout before any work
        if args.download:
            if config.dataset not in IDX_DATASETS:
                raise DataError(f"--download: only {', '.join(IDX_DATASETS)} can be downloaded, not {config.dataset}")
            download(config.dataset, args.data_dir, args.mirror)
        dataset = load_dataset(config.dataset, args.data_dir, config.image_channels, config.image_size)
        device = pick_device(args.device)
        print(f"training {config.preset} on {dataset.name} ({len(dataset.images) - config.validation} images, "
              f"{config.validation} held out for validation) on {device} -> {args.out}", file=sys.stderr)
        command = "python -m training " + " ".join(argv if argv is not None else sys.argv[1:])
        metrics = train(config, dataset, args.out, device, resume=args.resume, command=command)
    except (DataError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m training --out {args.out} --data-dir {args.data_dir} --resume",
              file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in metrics.items() if k != "alarms"}))
    return 0
