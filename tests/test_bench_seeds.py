import json
import shutil
import subprocess

from tests.conftest import PYTHON, ROOT


def seeds(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "bench/seeds.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_across_seed_table_exports_aligns_and_measures_each_run_once(trained_run, digits_dir, tmp_path):
    run = tmp_path / "tiny-seed0"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("model*", "*.log", "heldout.json"))
    common = [str(run), "--data-dir", str(digits_dir), "--heldout-dir", str(digits_dir), "--draws", "3",
              "--json", str(tmp_path / "rows.json")]
    first = seeds(*common)
    assert first.returncode == 0, first.stderr
    assert "export" in first.stderr and "export.align" in first.stderr
    (row,) = json.loads((tmp_path / "rows.json").read_text())
    assert row["run"] == "tiny-seed0" and row["seed"] == 0
    assert (run / "model-raw" / "model.json").exists() and 0 <= row["raw"]["accuracy"] <= 1
    assert set(row["raw"]["codes"]) == {"c2", "c3"}
    # Two epochs of the tiny network move neither factor: the aligner refuses, and the table says why.
    assert row["aligned"] is None and row["refusal"].startswith("error: ")
    assert not (run / "model" / "model.json").exists()
    assert f"| tiny-seed0 | 0 | {row['training_accuracy']:.2%} | {row['raw']['accuracy']:.2%} |" in first.stdout
    assert "Over 1 runs: median held-out accuracy" in first.stdout and f"- tiny-seed0: {row['refusal']}" in first.stdout

    again = seeds(*common)  # everything is up to date: nothing is exported, aligned or measured again
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "exit" not in again.stderr

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    refused = seeds(str(unfinished), "--data-dir", str(digits_dir))
    assert refused.returncode == 1 and f"error: {unfinished}: not a finished run" in refused.stderr
