"""What defines a training run: the Config dataclass, each option declared once (its default, its command-line
help and its range, from which `training/cli.py` builds the flags), the rules between options, and the presets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from infogan.latent import LatentLayout
from training.data import IDX_DATASETS, VALIDATION_IMAGES


def option(default: Any, help: str, minimum: float | None = None, above: bool = False,
           choices: tuple[str, ...] | None = None) -> Any:
    """A Config field that is also a flag of `python -m training`: --name-with-dashes, with this help; numbers
    at least `minimum` (strictly above it with `above`)."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "above": above, "choices": choices})


@dataclass
class Config:
    """Everything that defines a run. Presets below fill it; flags override single fields."""

    preset: str
    dataset: str = option("mnist", "the preset's dataset kind: IDX files or, with folder, a tree of PNG/JPEG "
                          "images", choices=(*IDX_DATASETS, "folder"))
    image_channels: int = 1
    image_size: int = 28  # 28 (the paper's MNIST network) or 32 (its SVHN/CelebA network)
    noise_dim: int = option(62, "size of the noise vector z", minimum=1)
    categorical: list[int] = option((10,), "sizes of the categorical codes, comma-separated, e.g. 10 or 10,10,10 "
                                    "('' for none)")
    continuous: int = option(2, "number of continuous codes (uniform on [-1, 1])", minimum=0)
    noise: str = option("normal", "prior of z", choices=("normal", "uniform"))
    width: int = 64  # channels of the first conv layer; the others scale with it
    fc_dim: int = 1024
    q_dim: int = 128
    batch_size: int = option(128, "images per step", minimum=1)
    epochs: int = option(70, "passes over the training images", minimum=1)
    lr_d: float = option(2e-4, "Adam learning rate of D and Q", minimum=0, above=True)
    lr_g: float = option(1e-3, "Adam learning rate of G", minimum=0, above=True)
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cat: float = 1.0
    lambda_cont: float = option(1.0, "weight of the continuous codes' L_I (1 as the authors' code; 0 drops it)",
                                minimum=0)
    learn_sigma: bool = option(False, "learn Q's sigma for the continuous codes (else fixed at 1)")
    # Not in the paper: shift every image D sees (real and fake alike) by up to this many pixels, DiffAugment
    # style (Zhao et al., 2020), so D cannot memorise a small training set.
    translate: int = option(0, "shift every image D sees by up to this many pixels (DiffAugment; not in the "
                            "paper; 0 = off)", minimum=0)
    # Not in the paper: InfoGAN-CR's contrastive regulariser on the continuous codes (Lin et al., ICML 2020),
    # the weight of its classification loss for D's pair classifier and for G.
    cr_weight: float = option(0.0, "weight of InfoGAN-CR's contrastive regulariser on the continuous codes (Lin "
                              "et al., 2020; not in the paper; 0 = off)", minimum=0)
    # It may wait until the digits have settled: from the start it cost the categorical code accuracy
    # (docs/RESULTS-9k.md).
    cr_start_epoch: int = option(0, "epochs of plain InfoGAN before the contrastive regulariser switches on",
                                 minimum=0)
    # Not in the paper: Q reads the categorical codes of fakes only after a random change of style, so G cannot
    # tell two values apart by slant or stroke alone and must make them differ in what survives (the digit).
    jitter_shear: float = option(0.0, "Q reads the categorical codes of fakes after a random shear of up to this "
                                 "much (0.3 is about one SD of MNIST's slant; not in the paper; 0 = off)", minimum=0)
    jitter_stroke: float = option(0.0, "... and a stroke blend towards a 3x3 dilation or erosion of up to this "
                                  "much (0.45 is about one SD of MNIST's thickness; at most 1; 0 = off)", minimum=0)
    # Not in the paper: the networks a run exports and measures are an exponential moving average of the
    # trained weights (Yazici et al., 2019; as StyleGAN and BigGAN do for G), so a model is not one noisy point
    # of the GAN's oscillation.
    ema_decay: float = option(0.0, "measure and export a moving average of the weights with this decay per "
                              "step, e.g. 0.999 (not in the paper; 0 = the last weights)", minimum=0)
    # Not in the paper: Q's digit code is learned on G's images only and read on real ones, a change of domain.
    # This adds, to D/Q's step, the mutual information between a real image and Q's reading of it (Krause et
    # al., 2010; Hu et al., 2017): confident readings move Q's boundaries into the gaps between real digits
    # (entropy minimisation on the target domain, as VADA, Shu et al., 2018), balanced ones keep every value in
    # use.
    real_info_weight: float = option(0.0, "add the information between real images and Q's reading of their "
                                     "categorical codes to Q's objective, with this weight (0 = off)", minimum=0)
    # Not in the paper: Q's reading of a real image should not change under a change that keeps the image's
    # class (IMSAT's self-augmented training, Hu et al., 2017): Q learns the categorical codes on G's images
    # only, and this asks its reading of real ones to be stable where the class is.
    consistency_weight: float = option(0.0, "add to Q's objective the KL from its categorical reading of each real "
                                       "image to its reading of a second view of it (a fresh shift by --translate, "
                                       "the style jitter of --jitter-*, a mirror image with --view-mirror), with "
                                       "this weight (0 = off)", minimum=0)
    view_mirror: bool = option(False, "... the second view is a mirror image half of the time (for classes that "
                               "look the same mirrored, as garments do; digits do not)")
    # Not in the paper: G is asked to keep the digit past the prior. On a quarter of each batch the continuous
    # codes are drawn from [-identity_range, identity_range] (the paper's figures sweep [-2, 2], twice the
    # prior) and G's step adds Q's cross-entropy of the categorical codes on those images; Q itself does not
    # learn from them, so its reading stays the one learned inside the prior.
    identity_weight: float = option(0.0, "add to G's step Q's categorical cross-entropy on images whose "
                                    "continuous codes are drawn past the prior, with this weight (0 = off)", minimum=0)
    identity_range: float = option(2.0, "... drawn from [-R, R] (2 is the range of the paper's figures)", minimum=1)
    # It may wait until the digits have settled: from the start it cost the categorical code accuracy
    # (docs/RESULTS.md, round 2).
    identity_start_epoch: int = option(0, "epochs before the identity term switches on", minimum=0)
    # The last `validation` images of the training file are held out: never trained on, they are what the
    # per-epoch accuracy (val_accuracy) and every choice between runs read.
    validation: int = option(0, "hold out the last N images of the training file: never trained on, read for "
                             "val_accuracy every epoch (0 = train on every image)", minimum=0)
    seed: int = option(0, "seed for weights, latents and data order", minimum=0)
    # bf16 autocast is faster on GPUs and on CPUs with native bf16 (AMX, AVX512-BF16; docs/PERFORMANCE.md says
    # how much); the CPU keeps fp32 unless asked, as the shipped recipe's results were measured in it.
    precision: str = option("auto", "the training step's arithmetic: bf16 (autocast: products and convolutions in "
                            "bfloat16), fp32, or auto: bf16 on CUDA, fp32 on the CPU (the run records which and, "
                            "resumed, keeps it)",
                            choices=("auto", "bf16", "fp32"))
    checkpoint_every: int = option(500, "steps between checkpoints", minimum=1)
    log_every: int = 25  # steps between progress-bar updates (each one is a host sync on CUDA)

    def __post_init__(self) -> None:
        self.categorical = list(self.categorical)

    def layout(self) -> LatentLayout:
        return LatentLayout.build(self.noise_dim, self.categorical, self.continuous, self.noise)

    def check(self) -> None:
        """The rules between options; ValueError naming the flag. The latent layout is checked too."""
        delayed = [("--cr-start-epoch", self.cr_start_epoch, "--cr-weight", self.cr_weight),
                   ("--identity-start-epoch", self.identity_start_epoch, "--identity-weight", self.identity_weight)]
        real_readings = [("--real-info-weight", self.real_info_weight), ("--consistency-weight", self.consistency_weight)]
        rules = [  # (broken, what the user is told)
            # H names which of the continuous codes a pair shares
            (self.cr_weight > 0 and self.continuous < 2,
             f"--cr-weight {self.cr_weight:g}: needs at least 2 continuous codes, the run has {self.continuous}"),
            *[(start and not (weight > 0 and start < self.epochs),
               f"{start_flag} {start}: needs {weight_flag} above 0 and fewer than the run's {self.epochs} epochs "
               "(else the term never switches on)") for start_flag, start, weight_flag, weight in delayed],
            # beyond a full dilation the blend overshoots the pixel range
            (self.jitter_stroke > 1,
             f"--jitter-stroke {self.jitter_stroke:g}: must be at most 1 (a full 3x3 dilation or erosion)"),
            ((self.jitter_shear or self.jitter_stroke) and not self.categorical,
             "--jitter-shear/--jitter-stroke: only the categorical codes are read from restyled fakes, and the "
             "run has none"),
            *[(weight and not self.categorical,
               f"{flag}: the term reads the categorical codes of real images, and the run has none")
              for flag, weight in real_readings],
            (self.consistency_weight and not (self.translate or self.jitter_shear or self.jitter_stroke
                                              or self.view_mirror),
             "--consistency-weight: the second view would be the image itself; it needs --translate, "
             "--jitter-shear/--jitter-stroke or --view-mirror"),
            (self.view_mirror and not self.consistency_weight,
             "--view-mirror: mirror images are only the second view of --consistency-weight, which is 0"),
            (self.identity_weight and not (self.categorical and self.continuous),
             "--identity-weight: the term reads the categorical codes of images with continuous codes past the "
             "prior, and the run lacks one of the two"),
            # a decay of 1 never leaves the initial weights
            (self.ema_decay >= 1, f"--ema-decay {self.ema_decay:g}: must be below 1 (e.g. 0.999)"),
            # shifts of half the image leave D mostly background
            (self.translate >= self.image_size // 2,
             f"--translate {self.translate}: must be under half the {self.image_size}-pixel image (at most "
             f"{self.image_size // 2 - 1}; the mnist preset uses 2)"),
        ]
        for broken, message in rules:
            if broken:
                raise ValueError(message)
        self.layout()

    def continued(self, changes: dict[str, Any], epochs_started: int) -> Config:
        """This run's config with `changes`, for training on from a checkpoint `epochs_started` epochs in (its
        epoch in progress counted); ValueError naming the flag unless the result is exactly the run the changed
        options would have trained from the start."""
        changed = {name: value for name, value in changes.items() if value != getattr(self, name)}
        continued = dataclasses.replace(self, **changed)
        for name, value in changed.items():
            if name not in LATE_OPTIONS:
                raise ValueError(f"{flag_name(name)} {value}: the checkpoint's {epochs_started} epochs were "
                                 f"trained with {getattr(self, name)}; only --epochs, --checkpoint-every and the "
                                 "identity term's options may change")
        if any(name.startswith("identity_") for name in changed):
            if self.identity_weight > 0 and self.identity_start_epoch < epochs_started:
                raise ValueError(f"--identity-*: the checkpoint's run has trained with the identity term since "
                                 f"epoch {self.identity_start_epoch + 1}; its options can no longer change")
            if continued.identity_weight > 0 and continued.identity_start_epoch < epochs_started:
                raise ValueError(f"--identity-start-epoch {continued.identity_start_epoch}: the checkpoint has "
                                 f"begun {epochs_started} epochs without the term; it can start at "
                                 f"--identity-start-epoch {epochs_started} or later")
        continued.check()
        return continued


# The options that act only from their start epoch (or not on training at all): changing them where a run stands
# gives exactly the run they would have trained from the start.
LATE_OPTIONS = ("epochs", "checkpoint_every", "identity_weight", "identity_range", "identity_start_epoch")


def flags() -> list[dataclasses.Field]:
    """The Config fields that are flags of `python -m training`."""
    return [f for f in dataclasses.fields(Config) if "help" in f.metadata]


def flag_name(field_name: str) -> str:
    """A Config field's flag: --name-with-dashes."""
    return "--" + field_name.replace("_", "-")


PRESETS: dict[str, Config] = {
    # Paper, appendix C.1: MNIST. noise 62, Cat(10), 2 x Unif(-1, 1); D lr 2e-4, G lr 1e-3; batch 128 and
    # lambda 1 for both kinds of code as in the authors' code. 12 epochs of the official 60,000 less the 5,000
    # validation digits (TensorFlow's classic 55,000 / 5,000 split) = 5,148 updates, close to the authors'
    # 5,000 (50 epochs x 100 updates). Not from the paper: 2-pixel shifts of D's inputs and the style jitter of
    # Q's digit code (docs/PAPER_NOTES.md says why).
    "mnist": Config("mnist", "mnist", 1, 28, noise_dim=62, categorical=[10], continuous=2, epochs=12, translate=2,
                    jitter_shear=0.3, jitter_stroke=0.45, validation=VALIDATION_IMAGES),
    # No paper figure; the same network, codes and shifts as MNIST (docs/RESULTS.md: the shifts matter here).
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
