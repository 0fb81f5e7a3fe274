"""The across-seed table of docs/RESULTS-9k.md: finished runs exported, aligned and measured through the API.

    python bench/seeds.py runs/jitter-seed1 runs/jitter-seed2 runs/jitter-seed3 --data-dir ../shared/data/mnist-9k

For each training run directory, as a user of the shipped model would get it:
1. `python -m export RUN --out RUN/model-raw --precision fp16` (the codes as trained);
2. `python -m export.align RUN/model-raw --out RUN/model --data-dir DATA` (its output in RUN/align.log; a
   refusal, where no map separates the factors, is a result like any other);
3. `bench/heldout.py`'s measurement of both models through `python -m service` on the held-out digits:
   /encode accuracy and each continuous code's effects (RUN/heldout.json).
A step whose output is newer than its input is not redone, so the table can be printed again as runs finish.
Prints one row per run and the medians the issue's across-seed goal is about: held-out accuracy, and each
run's lower share (of its aligned codes, or of its raw ones where the aligner refused).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from heldout import ROOT, lower_share, measure

from infogan.effects import reference_scale
from training.data import Dataset, load_dataset


def stale(output: Path, source: Path) -> bool:
    return not output.exists() or output.stat().st_mtime < source.stat().st_mtime


def step(command: list[str], log: Path) -> int:
    """Runs one step of the pipeline, its output in `log`; returns its exit code."""
    with open(log, "w") as out:
        code = subprocess.run([sys.executable, *command], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    print(f"{' '.join(command[:2])} {command[2]}: exit {code} ({log})", file=sys.stderr, flush=True)
    return code


def evaluate(run: Path, data_dir: Path, heldout: tuple[Dataset, dict[str, float]], draws: int) -> dict:
    """Exports, aligns and measures one run (each step only where its output is out of date)."""
    raw, aligned, results = run / "model-raw", run / "model", run / "heldout.json"
    checkpoint = run / "checkpoint.pt"
    if stale(raw / "model.json", checkpoint) and step(
            ["-m", "export", str(run), "--out", str(raw), "--precision", "fp16"], run / "export.log"):
        raise SystemExit(f"error: {run}: export failed, see {run / 'export.log'}")
    if stale(run / "align.log", raw / "model.json"):
        aligned_code = step(["-m", "export.align", str(raw), "--out", str(aligned), "--data-dir", str(data_dir)],
                            run / "align.log")
        if aligned_code and (aligned / "model.json").exists():  # a refusal leaves no aligned model behind
            (aligned / "model.json").unlink()
    models = [raw] + ([aligned] if not stale(aligned / "model.json", raw / "model.json") else [])
    if stale(results, run / "align.log"):
        dataset, scale = heldout
        results.write_text(json.dumps([measure(model, dataset, scale, draws) for model in models], indent=2) + "\n")
    measured = {Path(result["model"]).name: result for result in json.loads(results.read_text())}
    config = json.loads((raw / "model.json").read_text())["training"]["config"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    refusal = next((line for line in (run / "align.log").read_text().splitlines() if line.startswith("error:")), None)
    return {"run": run.name, "seed": config["seed"], "training_accuracy": json.loads(lines[-1]).get("accuracy"),
            "raw": measured["model-raw"], "aligned": measured.get("model"),
            "refusal": None if "model" in measured else refusal}


def shares(result: dict) -> str:
    return ", ".join(f"{name} {e['share']:.2f} ({e['factor'] or 'none'})" for name, e in result["codes"].items())


def table(rows: list[dict]) -> str:
    lines = ["| run | seed | training digits | held-out | raw codes: share (factor) | aligned codes | lower share |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        train = f"{row['training_accuracy']:.2%}" if row["training_accuracy"] is not None else "-"
        aligned = shares(row["aligned"]) if row["aligned"] else "refused"
        lower = lower_share(row["aligned"] or row["raw"])
        lines.append(f"| {row['run']} | {row['seed']} | {train} | {row['raw']['accuracy']:.2%} | {shares(row['raw'])} "
                     f"| {aligned} | {lower:.2f}{'' if row['aligned'] else ' (raw)'} |")
    held_out = statistics.median(row["raw"]["accuracy"] for row in rows)
    lower = statistics.median(lower_share(row["aligned"] or row["raw"]) for row in rows)
    named = sum(row["aligned"] is not None for row in rows)
    lines.append(f"\nOver {len(rows)} runs: median held-out accuracy {held_out:.2%}, median lower share {lower:.2f} "
                 f"(aligned where the aligner named both codes: {named} of {len(rows)}; raw where it refused).")
    lines += [f"- {row['run']}: {row['refusal']}" for row in rows if row["refusal"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished training run directories (python -m training --out)")
    parser.add_argument("--data-dir", type=Path, required=True, help="the training digits, which export.align measures against")
    parser.add_argument("--heldout-dir", type=Path, default=ROOT / "bench" / "data" / "mnist-heldout",
                        help="labelled digits no run trained on (default: bench/data/mnist-heldout, outside mnist-9k)")
    parser.add_argument("--draws", type=int, default=150, help="traversal rows per continuous code (default 150)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "label_map.json").exists():  # written when a run finishes
            raise SystemExit(f"error: {run}: not a finished run (no label_map.json)")
    dataset = load_dataset("mnist", args.heldout_dir, 1, 28)
    heldout = (dataset, reference_scale(dataset.images))
    rows = [evaluate(run, args.data_dir, heldout, args.draws) for run in args.runs]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
