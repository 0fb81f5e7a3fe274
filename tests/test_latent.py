import pytest

from infogan.latent import Code, LatentLayout
from training.config import PRESETS


def test_presets_follow_the_paper():
    mnist = PRESETS["mnist"].layout()
    assert mnist.noise_dim == 62
    assert [(c.name, c.kind, c.size) for c in mnist.codes] == [
        ("c1", "categorical", 10), ("c2", "continuous", 1), ("c3", "continuous", 1)]
    svhn = PRESETS["svhn"].layout()
    assert (svhn.noise_dim, len(svhn.categorical), len(svhn.continuous)) == (124, 4, 4)
    celeba = PRESETS["celeba"].layout()
    assert (celeba.noise_dim, len(celeba.categorical), len(celeba.continuous)) == (128, 10, 0)
    assert mnist.input_dim == 62 + 10 + 2


def test_layout_round_trips_through_json_with_labels():
    layout = LatentLayout.build(16, [10, 3], 2, "uniform").with_labels("c1", [str(i) for i in range(10)])
    again = LatentLayout.from_json(layout.to_json())
    assert again == layout
    assert again.code("c1").labels[7] == "7"
    assert again.code(2).name == "c2" and again.code("4").name == "c4"


@pytest.mark.parametrize("make, message", [
    (lambda: Code("c1", "categorical", size=1), "size >= 2"),
    (lambda: Code("c1", "continuous", low=1, high=1), "low < high"),
    (lambda: Code("c1", "categorical", size=3, labels=["a"]), "1 labels for 3 values"),
    (lambda: LatentLayout(0, ()), "noise_dim"),
    (lambda: LatentLayout(4, (Code("c1", "continuous"), Code("c2", "categorical", 3))), "before continuous"),
    (lambda: LatentLayout(4, (Code("c1", "continuous"), Code("c1", "continuous"))), "unique"),
    (lambda: LatentLayout.from_dict({"codes": []}), "not a latent layout"),
    (lambda: LatentLayout.build(62, [10], continuous=-1), "continuous must be >= 0, got -1"),
])
def test_invalid_layouts_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_code_names_the_known_ones():
    with pytest.raises(KeyError, match="c1, c2, c3"):
        PRESETS["mnist"].layout().code("c9")


def test_categorical_columns_follow_each_other_in_code_order():
    layout = LatentLayout.build(16, [10, 3], 2)
    assert [(code.name, columns) for code, columns in layout.categorical_columns()] == [
        ("c1", slice(0, 10)), ("c2", slice(10, 13))]
