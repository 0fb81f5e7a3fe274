"""The training loop. Read top to bottom: the networks, one step (D and Q, then G), a run's epochs.

    python -m training --preset mnist --data-dir data/mnist --out runs/mnist     (training/cli.py)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from infogan.effects import EFFECTS_HEADING, effects_table, reference_scale
from infogan.files import atomic_write
from infogan.latent import LatentLayout
from training.augment import jitter_style, scaled, second_view, translate
from training.average import average_copy, average_decay, update_average
from training.checkpoint import CHECKPOINT_NAME, StartingPoint, save_checkpoint
from training.config import Config
from training.data import DataError, Dataset, fingerprint, hold_out
from training.disentangle import code_effects, code_identity, digit_classifier
from training.evaluation import alarms, code_metrics, sample_grids
from training.losses import (
    categorical_cross_entropy,
    discriminator_loss,
    generator_loss,
    information_loss,
    reading_change,
    real_information,
)
from training.model import Discriminator, Generator, init_weights, sample_latents

log = logging.getLogger("training")
LOSSES = ("loss_d", "loss_g", "ce", "nll", "pair_ce", "info_real", "identity_ce", "consistency")  # what train_step returns
SUMS = len(LOSSES) + 1  # what a run sums over an epoch: the losses, then the step count


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


def resolved_precision(device: str, precision: str) -> str:
    """bf16 or fp32: the config's `precision` on this device."""
    return ("bf16" if device == "cuda" else "fp32") if precision == "auto" else precision


def autocast_for(device: str, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast (no loss scaling needed) or full precision."""
    if resolved_precision(device, precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16)


def native_bf16(device: str) -> bool:
    """Whether the device computes bf16 in hardware (else bf16 autocast is slower than fp32)."""
    return device == "cuda" or torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device is available (use --device cpu or auto)")
    return name


# ---------------------------------------------------------------------------------------------- one step


class Fakes(NamedTuple):
    """One step's generated images and what they were made from."""

    noise: torch.Tensor
    categorical: torch.Tensor
    continuous: torch.Tensor
    images: torch.Tensor  # as D sees them (shifted when the run translates)
    unshifted: torch.Tensor
    jittered: torch.Tensor | None  # restyled, for Q's reading of the categorical codes
    pair: tuple[torch.Tensor, torch.Tensor] | None  # InfoGAN-CR's partners and the code each pair shares


def train_step(config: Config, layout: LatentLayout, networks: Networks, real: torch.Tensor, rng: torch.Generator,
               autocast: contextlib.AbstractContextManager, epoch: int) -> torch.Tensor:
    """One D/Q update and one G update on a batch of real images in [-1, 1], in the run's `epoch` (counted from
    0): InfoGAN-CR's regulariser and the identity term are on from their start epochs.

    Returns the detached LOSSES without a host sync (the last four are 0 unless their terms are on).
    """
    contrastive = networks.discriminator.pair_classifier is not None and epoch >= config.cr_start_epoch
    identity = config.identity_weight > 0 and epoch >= config.identity_start_epoch
    noise, categorical, continuous = sample_latents(layout, len(real), rng, real.device.type)
    with autocast:
        real_view = second_view(real, config.translate, config.jitter_shear, config.jitter_stroke, config.view_mirror,
                                rng) if config.consistency_weight > 0 else None
        fake = networks.generator(noise, categorical, continuous)
        pair = contrastive_pair(layout, networks.generator, continuous, rng) if contrastive else None
        unshifted = fake
        if config.translate:  # the same shifts serve D's step and G's step
            real, fake = translate(real, config.translate, rng), translate(fake, config.translate, rng)
        jitter = config.jitter_shear > 0 or config.jitter_stroke > 0
        jittered = jitter_style(fake, config.jitter_shear, config.jitter_stroke, rng) if jitter else None
    fakes = Fakes(noise, categorical, continuous, fake, unshifted, jittered, pair)
    loss_d, ce, nll, pair_ce, info_real, consistency = discriminator_step(config, layout, networks, real, real_view,
                                                                          fakes, autocast)
    loss_g, identity_ce = generator_step(config, layout, networks, fakes, rng, autocast, identity)
    return torch.stack([loss.detach().float() for loss in (loss_d, loss_g, ce, nll, pair_ce, info_real, identity_ce,
                                                           consistency)])


def discriminator_step(config: Config, layout: LatentLayout, networks: Networks, real: torch.Tensor,
                       real_view: torch.Tensor | None, fakes: Fakes,
                       autocast: contextlib.AbstractContextManager) -> tuple[torch.Tensor, ...]:
    """D and Q's update: L_I on detached fakes trains the shared trunk and Q's head. Returns D's loss, the
    categorical cross-entropy, the continuous NLL, the pair cross-entropy, the information of real readings and
    the change of real readings between two views."""
    discriminator = networks.discriminator
    with autocast:
        d_real, real_cat_logits = discriminator(real)[:2]
        d_fake, cat_logits, mean, log_sigma = discriminator(fakes.images.detach())
        if fakes.jittered is not None:  # the categorical codes are read from the restyled fakes
            cat_logits = discriminator(fakes.jittered.detach())[1]
        loss_d = discriminator_loss(d_real, d_fake)
        ce, nll = information_loss(layout, cat_logits, mean, log_sigma, fakes.categorical, fakes.continuous)
        loss = loss_d + config.lambda_cat * ce + config.lambda_cont * nll
        pair_ce = loss_d.new_zeros(())
        if fakes.pair is not None:  # H learns to name the shared code on detached pairs
            second, shared = fakes.pair
            pair_ce = F.cross_entropy(discriminator.pair_classifier(fakes.unshifted.detach(), second.detach()), shared)
            loss = loss + config.cr_weight * pair_ce
        info_real = loss_d.new_zeros(())
        if config.real_info_weight > 0:
            info_real = real_information(layout, real_cat_logits)
            loss = loss - config.real_info_weight * info_real
        consistency = loss_d.new_zeros(())
        if real_view is not None:
            consistency = reading_change(layout, real_cat_logits, discriminator(real_view)[1])
            loss = loss + config.consistency_weight * consistency
    networks.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    networks.opt_d.step()
    return loss_d, ce, nll, pair_ce, info_real, consistency


def generator_step(config: Config, layout: LatentLayout, networks: Networks, fakes: Fakes, rng: torch.Generator,
                   autocast: contextlib.AbstractContextManager, identity: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """G's update: fool D and make the codes recoverable, D's weights held fixed; `identity` adds the identity
    term. Returns G's adversarial loss and the identity cross-entropy."""
    discriminator = networks.discriminator
    discriminator.requires_grad_(False)
    with autocast:
        d_fake, cat_logits, mean, log_sigma = discriminator(fakes.images)
        if fakes.jittered is not None:
            cat_logits = discriminator(fakes.jittered)[1]
        ce, nll = information_loss(layout, cat_logits, mean, log_sigma, fakes.categorical, fakes.continuous)
        loss_g = generator_loss(d_fake)
        loss = loss_g + config.lambda_cat * ce + config.lambda_cont * nll
        if fakes.pair is not None:  # G makes the shared code easy to name
            second, shared = fakes.pair
            loss = loss + config.cr_weight * F.cross_entropy(discriminator.pair_classifier(fakes.unshifted, second),
                                                             shared)
        identity_ce = loss_g.new_zeros(())
        if identity:
            identity_ce = identity_loss(config, networks, fakes.noise, fakes.categorical, rng)
            loss = loss + config.identity_weight * identity_ce
    networks.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    networks.opt_g.step()
    discriminator.requires_grad_(True)
    return loss_g, identity_ce


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


def identity_loss(config: Config, networks: Networks, noise: torch.Tensor, categorical: torch.Tensor,
                  rng: torch.Generator) -> torch.Tensor:
    """Q's categorical cross-entropy on G's images of a quarter of the batch's latents, their continuous codes
    redrawn from [-identity_range, identity_range]: low when the digit survives codes past the prior."""
    count = max(1, len(noise) // 4)
    layout = networks.generator.layout
    wide = (torch.rand(count, len(layout.continuous), generator=rng, device=noise.device) * 2 - 1) * config.identity_range
    cat_logits = networks.discriminator(networks.generator(noise[:count], categorical[:count], wide))[1]
    return categorical_cross_entropy(layout, cat_logits, categorical[:count])


# ---------------------------------------------------------------------------------------------- a run


class Run:
    """A run's state, from its start or its checkpoint, and its epochs. `measured` are the networks it measures
    each epoch and exports: the weight average where the run keeps one, else the trained ones."""

    def __init__(self, config: Config, dataset: Dataset, out_dir: Path, device: str, command: str):
        self.config, self.out_dir, self.device = config, out_dir, device
        self.data_sha256 = fingerprint(dataset)
        self.dataset, self.validation = hold_out(dataset, config.validation)
        torch.manual_seed(config.seed)
        self.layout = config.layout()
        self.networks = build_networks(config, device)
        generator, discriminator = self.networks.generator, self.networks.discriminator
        self.averaged = config.ema_decay > 0
        self.measured = (average_copy(generator), average_copy(discriminator)) if self.averaged else (generator,
                                                                                                      discriminator)
        self.rng = torch.Generator(device).manual_seed(config.seed)
        self.images = torch.from_numpy(self.dataset.images).to(device)  # resident on the device: no loader, no copies
        self.validation_images = None if self.validation is None else torch.from_numpy(self.validation.images).to(device)
        self.steps_per_epoch = len(self.images) // config.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"{self.dataset.name}: {len(self.images)} images, fewer than one batch of {config.batch_size}")
        self.total_steps = self.steps_per_epoch * config.epochs
        self.step, self.elapsed, self.sums = 0, 0.0, torch.zeros(SUMS, device=device)
        self.history: list[dict] = []
        self.commands = [command]  # how this run was made, for the model card

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def resume(self, start: StartingPoint) -> None:
        """Continues from a checkpoint: this run's own, or another run's (a branch)."""
        state = start.state
        if state.get("data_sha256", self.data_sha256) != self.data_sha256:  # older checkpoints did not record it
            raise DataError(f"{start.path}: trained on other images than the {self.dataset.name} images given "
                            f"(--data-dir; SHA-256 {self.data_sha256[:12]}..., the checkpoint's "
                            f"{state['data_sha256'][:12]}...); continue it on the images it began on")
        generator, discriminator, opt_g, opt_d = self.networks
        for module, name in ((generator, "generator"), (discriminator, "discriminator"), (opt_g, "opt_g"),
                             (opt_d, "opt_d")):
            module.load_state_dict(state[name])
        if self.averaged:
            self.measured[0].load_state_dict(state["generator_average"])
            self.measured[1].load_state_dict(state["discriminator_average"])
        self.rng.set_state(state["rng"].cpu())  # generator states are CPU byte tensors, CUDA generators too
        self.step, self.elapsed, sums = state["step"], state["elapsed"], state["sums"].to(self.device)
        if len(sums) < SUMS:  # a checkpoint from before the later loss terms: their sums are 0
            sums = torch.cat([sums[:-1], sums.new_zeros(SUMS - len(sums)), sums[-1:]])
        self.sums = sums
        self.layout = state["layout"]  # with the label map of the last finished epoch
        self.history = [m for m in state["history"] if m["epoch"] <= self.step // self.steps_per_epoch]
        self.commands = state.get("commands", []) + self.commands
        log.info("resumed from %s at step %d of %d", start.path, self.step, self.total_steps)

    def checkpoint(self) -> None:
        generator, discriminator, opt_g, opt_d = self.networks
        averages = {"generator_average": self.measured[0].state_dict(),
                    "discriminator_average": self.measured[1].state_dict()} if self.averaged else {}
        save_checkpoint(self.checkpoint_path, {
            "config": dataclasses.asdict(self.config), "layout": self.layout.to_dict(), "step": self.step,
            "elapsed": self.elapsed, "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": self.rng.get_state(), "sums": self.sums,
            "history": self.history, "dataset": self.dataset.name, "data_sha256": self.data_sha256,
            "commands": self.commands, **averages,
        })

    def run_epoch(self, bar: tqdm, autocast: contextlib.AbstractContextManager, started: float) -> None:
        """The current epoch's remaining steps, checkpointing every checkpoint_every steps."""
        config = self.config
        epoch, position = divmod(self.step, self.steps_per_epoch)
        # The epoch's order depends only on (seed, epoch), so a resumed run picks up the same batches.
        order_rng = torch.Generator(self.device).manual_seed(config.seed * 7919 + epoch)
        order = torch.randperm(len(self.images), generator=order_rng, device=self.device)
        for batch_index in range(position, self.steps_per_epoch):
            batch = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size]
            losses = train_step(config, self.layout, self.networks, scaled(self.images[batch]), self.rng, autocast,
                                epoch)
            if self.averaged:
                decay = average_decay(config.ema_decay, self.step)
                update_average(self.measured[0], self.networks.generator, decay)
                update_average(self.measured[1], self.networks.discriminator, decay)
            self.sums += torch.cat([losses, torch.ones(1, device=self.device)])
            self.step += 1
            bar.update()
            if self.step % config.log_every == 0 or batch_index == self.steps_per_epoch - 1:
                means = dict(zip(LOSSES, (self.sums[:-1] / self.sums[-1]).tolist()))
                bar.set_postfix(epoch=epoch + 1, D=f"{means['loss_d']:.3f}", G=f"{means['loss_g']:.3f}",
                                L_I=f"{self.layout.categorical_entropy - means['ce']:.3f}",
                                acc=f"{(self.history[-1] if self.history else {}).get('accuracy', float('nan')):.3f}")
            # The epoch's last step is checkpointed after its metrics: resuming must not skip them.
            if self.step % config.checkpoint_every == 0 and batch_index < self.steps_per_epoch - 1:
                self.elapsed = time.perf_counter() - started
                self.checkpoint()

    def epoch_metrics(self, scale: dict[str, float], classifier: object) -> tuple[dict, list[str] | None]:
        """The finished epoch's losses and measurements (metrics.jsonl's line), and the label map read."""
        means = dict(zip(LOSSES, (self.sums[:-1] / self.sums[-1]).tolist()))
        self.sums.zero_()
        bound = self.layout.categorical_entropy
        generator, discriminator = self.measured
        real_metrics, labels = code_metrics(discriminator, self.dataset, self.images)
        if self.validation is not None:  # every choice between runs reads these; the label map is matched anew
            held_out, _ = code_metrics(discriminator, self.validation, self.validation_images)
            real_metrics.update({f"val_{name}": value for name, value in held_out.items() if name in ("accuracy", "nmi")})
        metrics = {
            "epoch": self.step // self.steps_per_epoch, "step": self.step, "loss_d": means["loss_d"],
            "loss_g": means["loss_g"], "info_cat_nats": bound - means["ce"], "info_cat_bound_nats": bound,
            "cont_nll": means["nll"], **real_metrics, "elapsed_s": round(self.elapsed, 2), "device": self.device,
        }
        if discriminator.pair_classifier is not None:
            metrics["pair_ce"] = means["pair_ce"]
        if self.config.real_info_weight > 0:
            metrics["info_real_nats"] = means["info_real"]
        if self.config.identity_weight > 0:
            metrics["identity_ce"] = means["identity_ce"]
        if self.config.consistency_weight > 0:
            metrics["reading_change_nats"] = means["consistency"]
        if self.layout.continuous:
            metrics["code_effects"] = code_effects(generator, self.layout, scale, self.device, seed=self.config.seed)
        if classifier is not None:
            metrics["identity"] = code_identity(generator, self.layout, classifier, self.device, seed=self.config.seed)
        metrics["alarms"] = alarms(self.layout, metrics["epoch"], means["loss_d"], metrics, bound - means["ce"])
        return metrics, labels

    def finish_epoch(self, bar: tqdm, scale: dict[str, float], classifier: object) -> dict:
        """Measures the epoch, writes its sample grids, metrics line and checkpoint; returns its metrics."""
        metrics, labels = self.epoch_metrics(scale, classifier)
        for alarm in metrics["alarms"]:
            bar.write(f"WARNING epoch {metrics['epoch']}: {alarm}", file=sys.stderr)  # stdout: the final JSON only
            log.warning("epoch %d: %s", metrics["epoch"], alarm)
        self.history.append(metrics)
        log.info("epoch %d %s", metrics["epoch"], json.dumps({k: v for k, v in metrics.items() if k != "alarms"}))
        for name, png in sample_grids(self.measured[0], self.device, self.config.seed).items():
            (self.out_dir / "samples" / f"epoch_{metrics['epoch']:03d}_{name}.png").write_bytes(png)
        if labels:
            self.layout = self.layout.with_labels(self.layout.categorical[0].name, labels)
        self.checkpoint()
        lines = "".join(json.dumps(m) + "\n" for m in self.history).encode()
        atomic_write(self.out_dir / "metrics.jsonl", lambda out: out.write(lines))
        return metrics


def train(config: Config, dataset: Dataset, out_dir: Path, device: str, start_from: StartingPoint | None = None,
          command: str = "") -> dict:
    """Runs training from the start or from the checkpoint `start_from`; returns the last epoch's metrics.
    Checkpoints land in out_dir."""
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    run = Run(config, dataset, out_dir, device, command)
    if start_from is not None:
        run.resume(start_from)
    autocast = autocast_for(device, config.precision)
    # The units of the continuous codes' measured effects (a fixed sample of the real images: only when needed).
    scale = reference_scale(run.dataset.images) if run.layout.continuous else {}
    classifier = digit_classifier(config.dataset, run.layout)  # reads G's digits along the sweeps (an instrument)
    bar = tqdm(total=run.total_steps, initial=run.step, unit="step", dynamic_ncols=True, file=sys.stderr)
    started = time.perf_counter() - run.elapsed
    metrics: dict = run.history[-1] if run.history else {}
    while run.step < run.total_steps:
        run.run_epoch(bar, autocast, started)
        run.elapsed = time.perf_counter() - started
        metrics = run.finish_epoch(bar, scale, classifier)
    bar.close()
    if metrics.get("code_effects"):
        print(f"{EFFECTS_HEADING}\n{effects_table(metrics['code_effects'])}", file=sys.stderr)
    if run.layout.categorical and run.layout.categorical[0].labels:
        (out_dir / "label_map.json").write_text(json.dumps(run.layout.categorical[0].labels, indent=1) + "\n")
    log.removeHandler(handler)
    handler.close()
    return metrics
