import json
import re
import shutil
import subprocess

from tests.conftest import PYTHON, ROOT

HELDOUT = ROOT / "bench" / "data" / "mnist-heldout"


def lowest(model_dir, *reader: str) -> tuple[str, float, str]:
    result = subprocess.run([PYTHON, "bench/digit_draws.py", str(model_dir), "--draws", "40", *reader],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    label, share, other, other_share = re.search(r"lowest (\d) ([\d.]+) \(else (\d) ([\d.]+)\)", result.stdout).groups()
    assert float(share) + float(other_share) <= 1
    return label, float(share), other


def test_each_digit_of_the_shipped_model_is_drawn_by_its_own_value_and_a_swap_is_caught(tmp_path):
    assert lowest(ROOT / "models" / "mnist")[1] >= 0.9  # read by the digit classifier
    assert lowest(ROOT / "models" / "mnist", "--data-dir", str(HELDOUT))[1] >= 0.5  # by the 3 nearest of 1,000 digits
    # The same generator with the labels of two values exchanged: each of them now draws the other's digit.
    swapped = tmp_path / "swapped"
    shutil.copytree(ROOT / "models" / "mnist", swapped)
    card = json.loads((swapped / "model.json").read_text())
    labels = card["latent"]["codes"][0]["labels"]
    zero, one = labels.index("0"), labels.index("1")
    labels[zero], labels[one] = "1", "0"
    (swapped / "model.json").write_text(json.dumps(card))
    label, share, other = lowest(swapped)
    assert label in ("0", "1") and share < 0.1 and {label, other} == {"0", "1"}
