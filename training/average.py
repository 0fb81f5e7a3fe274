"""The weight average a run measures and exports (when Config.ema_decay is set): a frozen copy of a network
whose weights follow the trained ones as their exponential moving average."""

from __future__ import annotations

import copy

import torch
from torch import nn


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
