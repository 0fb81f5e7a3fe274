"""Identity along a sweep (infogan/identity.py) and its instrument, the digit classifier."""

import numpy as np
import pytest

from infogan.identity import CLASSIFIER, DigitClassifier, identity_kept, kept_share, lowest, supported_range
from infogan.latent import LatentLayout
from tests.conftest import ROOT
from training.data import load_idx_dataset


def test_kept_share_counts_frames_that_keep_the_middle_frames_digit():
    digits = np.array([[3, 3, 3, 3, 5], [7, 7, 7, 1, 1]])  # middles: 3 and 7
    assert kept_share(digits) == pytest.approx((3 + 2) / 8)


def test_a_code_that_changes_the_digit_past_one_keeps_it_only_over_the_prior():
    layout = LatentLayout.build(4, [10], 2)

    def generate(noise, categorical, continuous):  # "images" that carry their codes
        return continuous[:, :, None, None].repeat(14, axis=2).repeat(28, axis=3)[:, :1]

    def classify(images):  # the first code turns a 1 into a 7 beyond 1.2; the second never changes it
        return np.where(images[:, 0, 0, 0] > 1.2, 7, 1)

    kept = identity_kept(generate, layout, classify, draws=5)
    assert kept["c2"]["[-1, 1]"] == 1.0 and kept["c2"]["[-2, 2]"] == pytest.approx(6 / 8)  # 1.5 and 2 change it
    assert lowest(kept) == {"[-1, 1]": 1.0, "[-2, 2]": pytest.approx(6 / 8)}
    assert supported_range(kept) == [-1.0, 1.0]
    assert supported_range({"c2": {"[-1, 1]": 0.99, "[-2, 2]": 0.93}}) == [-2.0, 2.0]
    assert supported_range({"c2": {"[-1, 1]": 0.9, "[-2, 2]": 0.8}}) == [-1.0, 1.0]  # the prior, always


def test_the_shipped_classifier_reads_real_digits():
    classifier = DigitClassifier(CLASSIFIER)
    real = load_idx_dataset(ROOT / "bench" / "data" / "mnist-heldout", "mnist")  # official training digits it saw
    digits = classifier(real.images.astype(np.float32) / 127.5 - 1)
    assert (digits == real.labels).mean() > 0.98  # its accuracy on the unseen t10k set is in its metadata
    assert classifier.metadata["t10k_accuracy"] > 0.98 and "never used in training" in classifier.metadata["purpose"]
