"""Morpho-MNIST's measurements (infogan/morpho.py) on shapes whose answers are known."""

import numpy as np
import pytest

from infogan.morpho import FACTORS, measure, measure_all
from tests.test_disentangle import bar


@pytest.mark.parametrize("width", [2, 3, 5])
def test_a_bar_measures_its_width_length_and_area(width):
    found = measure(bar(width, 0.0))
    assert found.thickness == pytest.approx(width, abs=0.5)
    # The bounding parallelogram holds 98% of the upscaled image's mass, whose bicubic blur widens the bar a little.
    assert width < found.width < width + 1.5
    assert found.height == pytest.approx(20, abs=0.8)  # rows 4..23
    assert found.area == pytest.approx(20 * width, rel=0.08)
    assert 20 < found.length < 27  # the axis runs the bar's length, and forks towards the corners at each end


@pytest.mark.parametrize("shear", [-0.4, 0.0, 0.25])
def test_slant_is_the_angle_of_the_shear_positive_leaning_right(shear):
    # bar() moves the centre `shear` columns per row down the image: a positive shear leans left at the top.
    assert measure(bar(2, shear)).slant == pytest.approx(np.arctan(-shear), abs=0.03)


def test_a_blank_image_measures_nothing_and_a_stack_is_measured_image_by_image():
    assert all(np.isnan(value) for value in measure(np.zeros((28, 28))))
    stack = measure_all(np.stack([bar(2, 0.0), bar(4, 0.0)]))
    assert set(stack) == set(FACTORS) and stack["thickness"][1] > stack["thickness"][0] + 1.5


def test_the_medial_axis_is_scikit_images_pixel_for_pixel():
    from skimage.morphology import medial_axis as reference

    from infogan.morpho import medial_axis, upscaled
    from tests.conftest import ROOT
    from training.data import load_idx_dataset

    digits = load_idx_dataset(ROOT / "bench" / "data" / "mnist-heldout", "mnist").images[:40, 0]
    for digit in [*digits, bar(3, 0.2) * 255]:
        hires = upscaled(digit)
        binary = hires >= (hires.min() + hires.max()) / 2
        expected_axis, expected_distance = reference(binary, return_distance=True, rng=0)
        axis, distance = medial_axis(binary)
        assert np.array_equal(axis, expected_axis) and np.allclose(distance, expected_distance)
