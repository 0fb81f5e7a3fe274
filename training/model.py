"""InfoGAN networks and presets (Chen et al., 2016, appendix C).

G maps [z, one-hot categorical codes, continuous codes] to an image in [-1, 1].
D and Q share a convolutional trunk; D's real/fake logit and Q's code posterior are separate heads,
so a code never shares a column with the real/fake logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from infogan.latent import LatentLayout
from training.data import VALIDATION_IMAGES

LEAK = 0.1  # the paper's leaky-ReLU slope


@dataclass
class Config:
    """Everything that defines a run. Presets below fill it; CLI flags override single fields."""

    preset: str
    dataset: str  # "mnist", "fashion-mnist" (IDX files) or "folder" (any PNG/JPEG tree)
    image_channels: int
    image_size: int  # 28 (the paper's MNIST network) or 32 (its SVHN/CelebA network)
    noise_dim: int
    categorical: list[int]  # size of each categorical code
    continuous: int  # number of continuous codes, uniform on [-1, 1]
    noise: str = "normal"  # prior of z: "normal" or "uniform"
    width: int = 64  # channels of the first conv layer; the others scale with it
    fc_dim: int = 1024
    q_dim: int = 128
    batch_size: int = 128
    epochs: int = 70
    lr_d: float = 2e-4
    lr_g: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cat: float = 1.0
    lambda_cont: float = 1.0
    learn_sigma: bool = False  # Gaussian NLL with a learned sigma for continuous codes (else sigma = 1)
    # Not in the paper: shift every image D sees (real and fake alike) by up to this many pixels, DiffAugment
    # style (Zhao et al., 2020), so D cannot memorise a small training set. 0 = off.
    translate: int = 0
    # Not in the paper: InfoGAN-CR's contrastive regulariser on the continuous codes (Lin et al., ICML 2020),
    # the weight of its classification loss for D's pair classifier and for G. 0 = off.
    cr_weight: float = 0.0
    # Epochs of plain InfoGAN before that regulariser switches on: from the start it cost the categorical
    # code 10-50 points of accuracy (docs/RESULTS.md), so it may wait until the digits have settled.
    cr_start_epoch: int = 0
    # Not in the paper: Q reads the categorical codes of fakes only after a random change of style, so G cannot
    # tell two values apart by slant or stroke alone and must make them differ in what survives (the digit).
    # A shear of up to +-jitter_shear (0.3 is about one SD of MNIST's slant) and a blend towards a 3x3
    # dilation or erosion of up to +-jitter_stroke (0.45 is about one SD of its thickness). 0 = off.
    jitter_shear: float = 0.0
    jitter_stroke: float = 0.0
    # Not in the paper: the networks a run exports and measures are an exponential moving average of the
    # trained weights (Yazici et al., 2019; as StyleGAN and BigGAN do for G), so a model is not one noisy point
    # of the GAN's oscillation. The decay per step; 0 = off (the last trained weights).
    ema_decay: float = 0.0
    # Not in the paper: Q's digit code is learned on G's images only and read on real ones, a change of domain.
    # This weight adds, to D/Q's step, the mutual information between a real image and Q's reading of it
    # (Krause et al., 2010; Hu et al., 2017): confident readings move Q's boundaries into the gaps between
    # real digits (entropy minimisation on the target domain, as VADA, Shu et al., 2018), balanced ones keep
    # every value in use. 0 = off.
    real_info_weight: float = 0.0
    # Not in the paper: G is asked to keep the digit past the prior. On a quarter of each batch the continuous
    # codes are drawn from [-identity_range, identity_range] (the paper's figures sweep [-2, 2], twice the
    # prior) and G's step adds, with this weight, Q's cross-entropy of the categorical codes on those images;
    # Q itself does not learn from them, so its reading stays the one learned inside the prior. 0 = off.
    identity_weight: float = 0.0
    identity_range: float = 2.0
    # The last `validation` images of the training file are held out: never trained on, they are what the
    # per-epoch accuracy (val_accuracy) and every choice between runs read. 0 = train on every image.
    validation: int = 0
    seed: int = 0
    checkpoint_every: int = 500  # steps
    log_every: int = 25  # steps between progress-bar updates (each one is a host sync on CUDA)

    def layout(self) -> LatentLayout:
        return LatentLayout.build(self.noise_dim, self.categorical, self.continuous, self.noise)


PRESETS: dict[str, Config] = {
    # Paper, appendix C.1: MNIST. noise 62, Cat(10), 2 x Unif(-1, 1); D lr 2e-4, G lr 1e-3; batch 128 and
    # lambda 1 for both kinds of code as in the authors' code. 12 epochs of the official 60,000 less the 5,000
    # validation digits (TensorFlow's classic 55,000 / 5,000 split) = 5,148 updates, close to the authors'
    # 5,000 (50 epochs x 100 updates). Not from the paper: 2-pixel shifts of D's inputs and the style jitter of
    # Q's digit code (docs/PAPER_NOTES.md says why).
    "mnist": Config("mnist", "mnist", 1, 28, noise_dim=62, categorical=[10], continuous=2, epochs=12, translate=2,
                    jitter_shear=0.3, jitter_stroke=0.45, validation=VALIDATION_IMAGES),
    # No paper figure; the same network, codes and shifts as MNIST (the shifts: 72.53% instead of 58.48%).
    "fashion-mnist": Config("fashion-mnist", "fashion-mnist", 1, 28, noise_dim=62, categorical=[10], continuous=2,
                            epochs=10, translate=2, validation=VALIDATION_IMAGES),
    # Paper, appendix C.2: SVHN, 4 x Cat(10) + 4 continuous, noise 124, the 32x32 RGB network.
    "svhn": Config("svhn", "folder", 3, 32, noise_dim=124, categorical=[10] * 4, continuous=4, lr_g=1e-3),
    # Paper, appendix C.3: CelebA, 10 x Cat(10), noise 128, the same 32x32 network.
    "celeba": Config("celeba", "folder", 3, 32, noise_dim=128, categorical=[10] * 10, continuous=0),
    # Not from the paper: the MNIST network at a fraction of the width, for tests and smoke runs.
    "tiny": Config("tiny", "mnist", 1, 28, noise_dim=8, categorical=[10], continuous=2, width=8, fc_dim=32, q_dim=16,
                   batch_size=64, epochs=2),
}


def sample_latents(
    layout: LatentLayout, batch: int, generator: torch.Generator, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z, categorical values (B, n_cat) and continuous values (B, n_cont), each from its prior."""
    if layout.noise == "normal":
        noise = torch.randn(batch, layout.noise_dim, generator=generator, device=device)
    else:
        noise = torch.rand(batch, layout.noise_dim, generator=generator, device=device) * 2 - 1
    categorical = torch.zeros(batch, len(layout.categorical), dtype=torch.long, device=device)
    for i, code in enumerate(layout.categorical):
        categorical[:, i] = torch.randint(code.size, (batch,), generator=generator, device=device)
    continuous = torch.rand(batch, len(layout.continuous), generator=generator, device=device)
    for j, code in enumerate(layout.continuous):  # scalar ops in place: no host-to-device copy per step
        continuous[:, j].mul_(code.high - code.low).add_(code.low)
    return noise, categorical, continuous


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
