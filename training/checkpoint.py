"""Checkpoints: written atomically, read back with errors that name the file."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

import torch

from infogan.files import atomic_write
from infogan.latent import LatentLayout
from training.config import Config
from training.model import Discriminator, Generator

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or does not fit the networks it describes."""


class StartingPoint(NamedTuple):
    """The checkpoint a run continues (its own, or another run's for a branch), read once."""

    path: Path
    state: dict


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda out: torch.save({"format": FORMAT_VERSION, **state}, out))


def load_checkpoint(path: Path, device: str = "cpu") -> dict:
    """The checkpoint's state, with `config` as a Config and `layout` as a LatentLayout."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # torch raises many types for a corrupt file; all mean the same here
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not an infogan-serve checkpoint of format {FORMAT_VERSION}")
    try:
        known = {f.name for f in fields(Config)}
        state["config"] = Config(**{k: v for k, v in state["config"].items() if k in known})
        state["layout"] = LatentLayout.from_dict(state["layout"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: incompatible checkpoint ({error})") from None
    return state


def epochs_started(state: dict) -> int:
    """How many epochs a loaded checkpoint has begun: its finished ones, and the one in progress if any."""
    finished = state["history"][-1] if state["history"] else {"epoch": 0, "step": 0}
    return finished["epoch"] + (state["step"] > finished["step"])


def load_networks(state: dict, device: str = "cpu") -> tuple[Generator, Discriminator]:
    """Rebuilds the G and D a run exports from a loaded checkpoint (their weight averages where the run keeps
    them), in inference mode."""
    config = state["config"]
    generator, discriminator = Generator(config).to(device), Discriminator(config).to(device)
    try:
        generator.load_state_dict(state.get("generator_average", state["generator"]))
        discriminator.load_state_dict(state.get("discriminator_average", state["discriminator"]))
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"incompatible checkpoint: weights do not fit the {config.preset} network ({error})") from None
    return generator.eval(), discriminator.eval()
