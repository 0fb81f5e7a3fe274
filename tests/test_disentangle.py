import numpy as np
import pytest
import torch

from infogan.effects import effects_table, factors, separated
from infogan.latent import LatentLayout
from training.disentangle import code_effects


def bar(width: int, shear: float, size: int = 28) -> np.ndarray:
    """A white bar on black, rows 4..23, `width` pixels wide, its centre moving `shear` columns per row."""
    image = np.zeros((size, size))
    for row in range(4, 24):
        centre = 14 + shear * (row - 13.5)
        left = round(centre - width / 2)
        image[row, left : left + width] = 1.0
    return image


def test_factors_measure_a_stack_of_images_and_count_blank_ones_as_zero():
    images = np.stack([bar(2, 0.0), bar(5, 0.3), np.zeros((28, 28))])[:, None]
    found = factors(images)
    assert found["thickness"][1] > found["thickness"][0] + 2 and found["slant"][1] < found["slant"][0] - 0.2
    assert found["slant"][2] == found["thickness"][2] == 0.0


class BarGenerator(torch.nn.Module):
    """A stand-in generator whose first continuous code sets the bar's width and the second its shear."""

    def forward(self, noise, categorical, continuous):
        images = [bar(round(3 + 2 * float(c[0])), 0.3 * float(c[1])) * 2 - 1 for c in continuous.numpy()]
        return torch.tensor(np.stack(images)[:, None], dtype=torch.float32)


def test_each_code_is_credited_with_the_factor_it_moves():
    layout = LatentLayout.build(4, [10], 2)
    effects = code_effects(BarGenerator(), layout, {"slant": 0.1, "thickness": 0.5}, draws=5)
    assert effects["c2"]["factor"] == "thickness" and effects["c2"]["share"] > 0.95
    assert effects["c3"]["factor"] == "slant" and effects["c3"]["share"] > 0.95
    assert effects["c3"]["slant"] == pytest.approx(2 * np.arctan(0.3) / 0.1, rel=0.15)  # across the prior, in SDs
    assert separated(effects)
    assert "| c2 |" in effects_table(effects)


def test_two_codes_on_one_factor_are_not_separated():
    one = {"slant": 0.1, "thickness": 2.0, "share": 0.95, "factor": "thickness"}
    assert not separated({"c2": one, "c3": one})
    assert not separated({"c2": one, "c3": {"slant": 1.0, "thickness": 0.6, "share": 0.62, "factor": "slant"}})
