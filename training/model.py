"""InfoGAN networks (Chen et al., 2016, appendix C) and the torch sampler of their latent prior.

G maps [z, one-hot categorical codes, continuous codes] to an image in [-1, 1].
D and Q share a convolutional trunk; D's real/fake logit and Q's code posterior are separate heads,
so a code never shares a column with the real/fake logit.
"""

from __future__ import annotations

import torch
from torch import nn

from infogan.latent import LatentLayout
from infogan.prior import draw_parts
from training.config import Config

LEAK = 0.1  # the paper's leaky-ReLU slope


class TorchDraws:
    """The prior's random numbers from a torch Generator, on the run's device (infogan/prior.py's Draws)."""

    def __init__(self, generator: torch.Generator, device: str):
        self.generator, self.device = generator, device

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor:
        # scalar ops in place: no host-to-device copy per step
        return torch.rand(shape, generator=self.generator, device=self.device).mul_(high - low).add_(low)

    def integers(self, high: int, count: int) -> torch.Tensor:
        return torch.randint(high, (count,), generator=self.generator, device=self.device)


def sample_latents(
    layout: LatentLayout, batch: int, generator: torch.Generator, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z, categorical values (B, n_cat) and trained continuous values (B, n_cont), from the layout's prior
    (infogan/prior.py's draw_parts) with torch's random numbers."""
    noise, categorical, continuous = draw_parts(layout, batch, TorchDraws(generator, device))
    long_columns = torch.stack(categorical, 1) if categorical else torch.zeros(batch, 0, dtype=torch.long, device=device)
    float_columns = torch.stack(continuous, 1) if continuous else torch.zeros(batch, 0, device=device)
    return noise, long_columns, float_columns


class Generator(nn.Module):
    """28x28: FC fc_dim - FC 7x7x2w - deconv w - deconv C.  32x32: FC 2x2x448 - deconv 256-128-64-C."""

    def __init__(self, config: Config):
        super().__init__()
        self.layout = config.layout()
        channels, w = config.image_channels, config.width
        if config.image_size == 28:
            self.start_shape = (2 * w, 7, 7)
            self.fc = nn.Sequential(
                nn.Linear(self.layout.input_dim, config.fc_dim), nn.BatchNorm1d(config.fc_dim), nn.ReLU(),
                nn.Linear(config.fc_dim, 2 * w * 7 * 7), nn.BatchNorm1d(2 * w * 7 * 7), nn.ReLU(),
            )
            self.deconv = nn.Sequential(
                nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
                nn.ConvTranspose2d(w, channels, 4, 2, 1), nn.Tanh(),
            )
        elif config.image_size == 32:
            self.start_shape = (7 * w, 2, 2)
            self.fc = nn.Sequential(nn.Linear(self.layout.input_dim, 7 * w * 4), nn.BatchNorm1d(7 * w * 4), nn.ReLU())
            self.deconv = nn.Sequential(
                nn.ConvTranspose2d(7 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.ReLU(),
                nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(w, channels, 4, 2, 1), nn.Tanh(),
            )
        else:
            raise ValueError(f"image_size must be 28 or 32, got {config.image_size}")

    def latent(self, noise: torch.Tensor, categorical: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        """[z, one-hot(c_cat) ..., c_cont]: categorical is (B, n_cat) int64, continuous (B, n_cont)."""
        one_hots = [
            (categorical[:, i, None] == torch.arange(code.size, device=noise.device)).to(noise.dtype)
            for i, code in enumerate(self.layout.categorical)
        ]
        return torch.cat([noise, *one_hots, continuous], dim=1)

    def forward(self, noise: torch.Tensor, categorical: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(self.latent(noise, categorical, continuous))
        return self.deconv(hidden.view(-1, *self.start_shape))


class Discriminator(nn.Module):
    """Shared trunk with two heads: D's real/fake logit and Q's posterior over the codes.

    28x28 trunk: conv w - conv 2w - FC fc_dim.  32x32 trunk: conv w - conv 2w - conv 4w.
    Q head: FC q_dim - FC (categorical logits, continuous means[, log sigmas]).
    No BatchNorm on the first layer (DCGAN practice, as in the paper); eps stays at PyTorch's 1e-5.
    """

    def __init__(self, config: Config):
        super().__init__()
        self.layout = config.layout()
        self.learn_sigma = config.learn_sigma
        self.trunk, trunk_dim = conv_trunk(config, config.image_channels)
        self.d_head = nn.Linear(trunk_dim, 1)
        n_cat = sum(code.size for code in self.layout.categorical)
        n_cont = len(self.layout.continuous)
        self.q_head = nn.Sequential(
            nn.Linear(trunk_dim, config.q_dim), nn.BatchNorm1d(config.q_dim), nn.LeakyReLU(LEAK),
            nn.Linear(config.q_dim, n_cat + n_cont * (2 if config.learn_sigma else 1)),
        )
        self.n_cat, self.n_cont = n_cat, n_cont
        # InfoGAN-CR's contrastive classifier H: its own trunk over an image pair stacked on the channel axis.
        # It lives here so D's optimiser, checkpoints and requires_grad switches cover it with D's own weights.
        self.pair_classifier = PairClassifier(config) if config.cr_weight > 0 else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real/fake logit (B,), categorical logits (B, n_cat), continuous means and log sigmas (B, n_cont)."""
        features = self.trunk(images)
        q = self.q_head(features)
        cat_logits, mean = q[:, : self.n_cat], q[:, self.n_cat : self.n_cat + self.n_cont]
        log_sigma = q[:, self.n_cat + self.n_cont :] if self.learn_sigma else torch.zeros_like(mean)
        return self.d_head(features).squeeze(1), cat_logits, mean, log_sigma


def conv_trunk(config: Config, in_channels: int) -> tuple[nn.Sequential, int]:
    """D's convolutional trunk and its output width. No BatchNorm on the first layer (DCGAN practice)."""
    w = config.width
    layers: list[nn.Module] = [nn.Conv2d(in_channels, w, 4, 2, 1), nn.LeakyReLU(LEAK)]
    layers += [nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(LEAK), nn.Flatten()]
    if config.image_size == 28:
        layers += [nn.Linear(2 * w * 7 * 7, config.fc_dim), nn.BatchNorm1d(config.fc_dim), nn.LeakyReLU(LEAK)]
        return nn.Sequential(*layers), config.fc_dim
    layers[-1:] = [nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(LEAK), nn.Flatten()]
    return nn.Sequential(*layers), 4 * w * 4 * 4


class PairClassifier(nn.Module):
    """InfoGAN-CR's H (Lin et al., 2020): shown two images that share the value of one continuous code and
    nothing else, it names the shared code. G is trained to make that easy, which rewards codes that each
    move a factor of their own: two codes that both move the same mix of factors are hard to tell apart."""

    def __init__(self, config: Config):
        super().__init__()
        self.trunk, trunk_dim = conv_trunk(config, 2 * config.image_channels)
        self.head = nn.Linear(trunk_dim, config.continuous)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_cont) of which continuous code the pair shares."""
        return self.head(self.trunk(torch.cat([first, second], dim=1)))


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) weights, BatchNorm scale N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
