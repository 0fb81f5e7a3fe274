import numpy as np
import pytest

from training.metrics import hungarian_map, nmi


def test_a_relabelled_perfect_code_scores_one():
    labels = np.repeat(np.arange(10), 30)
    permutation = np.random.default_rng(0).permutation(10)
    predicted = permutation[labels]  # value permutation[k] always means class k
    mapping = hungarian_map(predicted, labels, 10, 10)
    assert np.array_equal(mapping[permutation], np.arange(10))
    assert np.mean(mapping[predicted] == labels) == 1.0
    assert nmi(predicted, labels, 10, 10) == pytest.approx(1.0)


def test_a_merged_class_costs_its_share_and_leaves_a_value_unmatched():
    labels = np.repeat(np.arange(4), 25)
    predicted = np.minimum(labels, 2)  # classes 2 and 3 share value 2; value 3 is never used
    mapping = hungarian_map(predicted, labels, 4, 4)
    assert np.mean(mapping[predicted] == labels) == 0.75
    assert 0.5 < nmi(predicted, labels, 4, 4) < 1.0


def test_an_independent_code_has_no_information():
    rng = np.random.default_rng(1)
    labels, predicted = rng.integers(0, 10, 20000), rng.integers(0, 10, 20000)
    assert nmi(predicted, labels, 10, 10) < 0.01
    assert np.mean(hungarian_map(predicted, labels, 10, 10)[predicted] == labels) < 0.13
