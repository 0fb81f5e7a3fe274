import subprocess

from PIL import Image

from tests.conftest import PYTHON, ROOT


def test_figures_draw_every_code_of_every_shipped_model(tmp_path):
    """bench/figures.py: one traversal grid per code of each model in models/, the default model's unprefixed."""
    result = subprocess.run([PYTHON, "bench/figures.py", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    sizes = {path.name: Image.open(path).size for path in tmp_path.glob("*.png")}
    # 10 rows of 28-pixel images with 2-pixel gaps; columns: the 10 categories, or 9 values of a continuous code
    assert sizes == {"traverse_c1.png": (302, 302), "traverse_slant.png": (272, 302),
                     "traverse_thickness.png": (272, 302), "fashion-mnist_traverse_c1.png": (302, 302),
                     "fashion-mnist_traverse_c2.png": (272, 302), "fashion-mnist_traverse_c3.png": (272, 302)}
