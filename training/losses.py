"""InfoGAN's losses: D's and G's adversarial losses, the information terms L_I of the codes, and the
information of Q's readings of real images and their change between two views of an image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from infogan.latent import LatentLayout


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


def reading_change(layout: LatentLayout, cat_logits: torch.Tensor, view_logits: torch.Tensor) -> torch.Tensor:
    """KL from Q's categorical reading of each image to its reading of a second view of the image, summed over
    the categorical codes, averaged over the batch. The first reading is the target and passes no gradient
    (IMSAT's self-augmented training): the view is pulled to the image's reading, not both to each other."""
    change = cat_logits.new_zeros((), dtype=torch.float32)
    for _, columns in layout.categorical_columns():
        target = F.log_softmax(cat_logits[:, columns].detach().float(), dim=1)
        view = F.log_softmax(view_logits[:, columns].float(), dim=1)
        change = change + F.kl_div(view, target, reduction="batchmean", log_target=True)
    return change


def discriminator_loss(d_real: torch.Tensor, d_fake_detached: torch.Tensor) -> torch.Tensor:
    """D's loss: real -> 1, fake -> 0, on logits."""
    return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
        d_fake_detached, torch.zeros_like(d_fake_detached)
    )


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: G maximises log D(G(z)) rather than minimising log(1 - D(G(z)))."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
