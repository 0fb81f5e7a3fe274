"""The loss functions and networks, with a regression test for each bug known in public InfoGAN ports."""

import math

import torch
from torch import nn

from infogan.effects import factors
from tests.conftest import ROOT
from training.augment import jitter_style, mirror, second_view, translate
from training.config import PRESETS
from training.data import load_idx_dataset
from training.losses import discriminator_loss, generator_loss, information_loss, reading_change, real_information
from training.model import Discriminator, Generator, init_weights, sample_latents

CONFIG = PRESETS["tiny"]
LAYOUT = CONFIG.layout()


def networks():
    torch.manual_seed(0)
    generator, discriminator = Generator(CONFIG), Discriminator(CONFIG)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    return generator, discriminator


def latents(batch=16):
    return sample_latents(LAYOUT, batch, torch.Generator().manual_seed(1), "cpu")


def test_info_loss_reaches_generator_q_head_and_shared_trunk():
    """Port bug: Q's gradient never reaches the shared trunk (or G)."""
    generator, discriminator = networks()
    noise, categorical, continuous = latents()
    _, logits, mean, log_sigma = discriminator(generator(noise, categorical, continuous))
    cross_entropy, nll = information_loss(LAYOUT, logits, mean, log_sigma, categorical, continuous)
    (cross_entropy + nll).backward()
    for name, module in [("trunk", discriminator.trunk), ("q_head", discriminator.q_head), ("generator", generator)]:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert all(p.grad is None for p in discriminator.d_head.parameters())  # L_I does not train D's real/fake head


def test_cross_entropy_takes_raw_logits_softmax_applied_once():
    """Port bug: softmax applied before a cross-entropy that applies it again (caps confidence at ~1/K)."""
    categorical = torch.arange(10).unsqueeze(1)
    confident = torch.full((10, 10), -20.0)
    confident[torch.arange(10), torch.arange(10)] = 20.0
    none = torch.zeros(10, 0)
    cross_entropy, _ = information_loss(LAYOUT, confident, none, none, categorical, none)
    assert float(cross_entropy) < 1e-6  # double softmax would give ~log(10) - 1 + ... > 1.4
    uniform, _ = information_loss(LAYOUT, torch.zeros(10, 10), none, none, categorical, none)
    assert math.isclose(float(uniform), math.log(10), rel_tol=1e-6)


def test_gaussian_nll_matches_the_formula_with_fixed_and_learned_sigma():
    categorical = torch.zeros(1, 1, dtype=torch.long)
    continuous, mean = torch.tensor([[0.5, -0.5]]), torch.tensor([[0.0, 0.0]])
    _, fixed = information_loss(LAYOUT, torch.zeros(1, 10), mean, torch.zeros(1, 2), categorical, continuous)
    assert math.isclose(float(fixed), 2 * (0.5 * math.log(2 * math.pi) + 0.125), rel_tol=1e-6)
    log_sigma = torch.full((1, 2), math.log(0.5))
    _, learned = information_loss(LAYOUT, torch.zeros(1, 10), mean, log_sigma, categorical, continuous)
    assert math.isclose(float(learned), 2 * (math.log(0.5) + 0.5 * math.log(2 * math.pi) + 0.5), rel_tol=1e-6)


def test_batchnorm_eps_is_pytorch_default():
    """Port bug: BatchNorm2d(C, 0.8) passes 0.8 as eps, not momentum."""
    for preset in ("mnist", "svhn"):
        for network in (Generator(PRESETS[preset]), Discriminator(PRESETS[preset])):
            norms = [m for m in network.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
            assert norms and all(m.eps == 1e-5 for m in norms)


def test_real_fake_logit_has_its_own_head():
    """Port bug: the real/fake logit is one column of the same linear layer as the codes."""
    _, discriminator = networks()
    discriminator.eval()
    images = torch.randn(4, 1, 28, 28)
    d_before, logits_before, _, _ = discriminator(images)
    with torch.no_grad():
        discriminator.q_head[-1].weight.add_(1.0)  # change every code output
    d_after, logits_after, _, _ = discriminator(images)
    assert torch.equal(d_before, d_after)
    assert not torch.allclose(logits_before, logits_after)
    assert discriminator.d_head.out_features == 1


def test_generator_loss_is_non_saturating():
    """With D confidently rejecting fakes, log(1 - D) saturates; the non-saturating loss keeps a gradient."""
    d_fake = torch.full((8,), -10.0, requires_grad=True)
    generator_loss(d_fake).backward()
    assert d_fake.grad.abs().mean() > 0.1
    assert math.isclose(float(discriminator_loss(torch.full((4,), 20.0), torch.full((4,), -20.0))), 0.0, abs_tol=1e-6)


def test_one_hot_encoding_of_codes():
    generator, _ = networks()
    noise, categorical, continuous = latents(4)
    latent = generator.latent(noise, categorical, continuous)
    assert latent.shape == (4, LAYOUT.input_dim)
    one_hot = latent[:, LAYOUT.noise_dim : LAYOUT.noise_dim + 10]
    assert torch.equal(one_hot.argmax(1), categorical[:, 0]) and torch.equal(one_hot.sum(1), torch.ones(4))
    assert torch.equal(latent[:, -2:], continuous)


def test_translate_shifts_each_image_whole_and_fills_with_background():
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    shifted = translate(images, 2, torch.Generator().manual_seed(0))
    padded = nn.functional.pad(images, [2] * 4, value=-1.0)
    seen_shifts = set()
    for original, out in zip(padded, shifted):
        matches = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(original[:, dy : dy + 28, dx : dx + 28], out)]
        assert len(matches) == 1  # exactly one shift within +-2 reproduces the output
        seen_shifts.add(matches[0])
    assert len(seen_shifts) > 10  # shifts are drawn per image, not one for the batch


def test_translate_passes_gradient_to_the_generator():
    images = torch.zeros(4, 1, 28, 28, requires_grad=True)
    translate(images, 3, torch.Generator().manual_seed(1)).sum().backward()
    assert images.grad.sum() > 0 and images.grad.max() == 1


def test_jitter_style_shears_and_thickens_each_image_by_its_own_measured_amount():
    heldout = load_idx_dataset(ROOT / "bench" / "data" / "mnist-heldout", "mnist")  # real digits the repo ships
    digits = torch.from_numpy(heldout.images[:64]).float() / 127.5 - 1
    before = factors(((digits + 1) / 2).numpy())
    sheared = factors(((jitter_style(digits, 0.3, 0.0, torch.Generator().manual_seed(0)) + 1) / 2).numpy())
    slant_change = sheared["slant"] - before["slant"]
    assert abs(slant_change).max() <= 0.35 and slant_change.std() > 0.1  # up to +-0.3 each, drawn per image
    assert slant_change.min() < -0.15 and slant_change.max() > 0.15

    thickened = jitter_style(digits, 0.0, 1.0, torch.Generator().manual_seed(0))
    stroke_change = factors(((thickened + 1) / 2).numpy())["thickness"] - before["thickness"]
    assert stroke_change.min() < -0.3 and stroke_change.max() > 0.3  # thinner and bolder strokes
    assert thickened.min() >= -1 and thickened.max() <= 1

    unchanged = jitter_style(digits, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(unchanged, digits, atol=1e-5)  # the background stays -1, nothing moves


def test_jitter_style_passes_gradient_to_the_generator():
    images = torch.zeros(4, 1, 28, 28, requires_grad=True)
    jitter_style(images, 0.3, 0.45, torch.Generator().manual_seed(1)).sum().backward()
    assert images.grad.abs().sum() > 0


def test_information_of_real_readings_rewards_confident_and_balanced_readings():
    confident = torch.full((20, 10), -30.0)
    confident[torch.arange(20), torch.arange(20) % 10] = 30.0
    assert math.isclose(float(real_information(LAYOUT, confident)), math.log(10), rel_tol=1e-5)  # the bound H(c)
    unsure = torch.zeros(20, 10)
    assert abs(float(real_information(LAYOUT, unsure))) < 1e-6  # every reading uniform: no information
    one_value = torch.full((20, 10), -30.0)
    one_value[:, 3] = 30.0
    assert abs(float(real_information(LAYOUT, one_value))) < 1e-5  # confident but all the same value: none either


def test_information_of_real_readings_trains_q_and_the_trunk_not_g_or_d_head():
    generator, discriminator = networks()
    heldout = load_idx_dataset(ROOT / "bench" / "data" / "mnist-heldout", "mnist")
    real = torch.from_numpy(heldout.images[:32]).float() / 127.5 - 1
    (-real_information(LAYOUT, discriminator(real)[1])).backward()
    for name, module in [("trunk", discriminator.trunk), ("q_head", discriminator.q_head)]:
        assert sum(float(p.grad.abs().sum()) for p in module.parameters()) > 0, name
    assert all(p.grad is None for p in discriminator.d_head.parameters())
    assert all(p.grad is None for p in generator.parameters())


def test_mirror_flips_about_half_of_the_images_left_to_right():
    images = torch.randn(200, 1, 28, 28)
    mirrored = mirror(images, torch.Generator().manual_seed(0))
    flipped = [torch.equal(m, i.flip(2)) for m, i in zip(mirrored, images)]
    kept = [torch.equal(m, i) for m, i in zip(mirrored, images)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image either mirrored or untouched
    assert 70 < sum(flipped) < 130


def test_second_view_without_changes_is_the_image_and_with_them_differs():
    images = torch.randn(8, 1, 28, 28)
    assert torch.equal(second_view(images, 0, 0.0, 0.0, False, torch.Generator().manual_seed(0)), images)
    assert not torch.equal(second_view(images, 2, 0.0, 0.0, False, torch.Generator().manual_seed(0)), images)


def test_reading_change_is_zero_for_equal_readings_and_trains_only_the_view():
    readings = torch.randn(16, 10)
    assert abs(float(reading_change(LAYOUT, readings, readings.clone()))) < 1e-6
    target = readings.clone().requires_grad_(True)
    view = torch.randn(16, 10, requires_grad=True)
    change = reading_change(LAYOUT, target, view)
    assert float(change.detach()) > 0
    change.backward()
    assert target.grad is None and view.grad.abs().sum() > 0  # the image's reading is the fixed target
