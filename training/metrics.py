"""How well a categorical code matches true labels: the Hungarian match of values to classes, and NMI."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def contingency(predicted: np.ndarray, labels: np.ndarray, n_values: int, n_classes: int) -> np.ndarray:
    table = np.zeros((n_values, n_classes), dtype=np.int64)
    np.add.at(table, (predicted, labels), 1)
    return table


def hungarian_map(predicted: np.ndarray, labels: np.ndarray, n_values: int, n_classes: int) -> np.ndarray:
    """The one-to-one map code value -> class that maximises agreement (Hungarian method).

    Returns an array of length n_values; values left without a class (n_values > n_classes) get -1.
    """
    table = contingency(predicted, labels, n_values, n_classes)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(n_values, -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def nmi(predicted: np.ndarray, labels: np.ndarray, n_values: int, n_classes: int) -> float:
    """Normalised mutual information I(pred; label) / sqrt(H(pred) H(label)), in [0, 1]."""
    joint = contingency(predicted, labels, n_values, n_classes) / len(labels)
    p_pred, p_label = joint.sum(1), joint.sum(0)
    nonzero = joint > 0
    mutual = float(np.sum(joint[nonzero] * np.log(joint[nonzero] / np.outer(p_pred, p_label)[nonzero])))

    def entropy(p: np.ndarray) -> float:
        return float(-np.sum(p[p > 0] * np.log(p[p > 0])))

    denominator = np.sqrt(entropy(p_pred) * entropy(p_label))
    return mutual / denominator if denominator > 0 else 0.0
