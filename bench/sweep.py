"""Trains recipe variants over several seeds in parallel, then tables what each run's codes do.

    python bench/sweep.py --data-dir ../shared/data/mnist-9k --out runs/sweep --seeds 1,2,3 \\
        --variant base= --variant cr1="--cr-weight 1" --parallel 4

Each variant is NAME=FLAGS, the flags added to `python -m training --preset mnist`. Runs already finished in
--out are summarised without retraining. The table reads each run's last line of metrics.jsonl: accuracy of
the categorical code on the (labelled) training data and the continuous codes' measured effects.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infogan.effects import separated


def last_metrics(run: Path) -> dict | None:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else None


def train(run: Path, flags: list[str], seed: int, data_dir: Path, epochs: int | None, threads: int) -> float:
    """One training run in a subprocess (its output in RUN/stdout.log); returns its wall time."""
    run.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "training", "--preset", "mnist", "--data-dir", str(data_dir), "--out", str(run),
               "--seed", str(seed), *flags, *(["--epochs", str(epochs)] if epochs else [])]
    started = time.perf_counter()
    with open(run / "stdout.log", "w") as log:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                              cwd=Path(__file__).resolve().parent.parent).returncode
    wall = time.perf_counter() - started
    print(f"{run.name}: exit {code} after {wall:.0f} s", file=sys.stderr, flush=True)
    return wall


def summarise(runs: dict[str, list[tuple[int, Path]]]) -> tuple[str, dict]:
    """The Markdown tables (every run, then each variant's medians) and the medians as data."""
    lines = ["| variant | seed | epochs | accuracy | c2 slant / thickness (share, factor) | c3 slant / thickness (share, factor) "
             "| one factor per code |", "|---|---|---|---|---|---|---|"]
    medians = ["", "| variant | runs | median accuracy | median lower share | runs with one factor per code (>= 0.8) |",
               "|---|---|---|---|---|"]
    summary: dict[str, dict] = {}
    for variant, seeded in runs.items():
        accuracies, lower_shares, good = [], [], 0
        for seed, run in seeded:
            metrics = last_metrics(run)
            if metrics is None:
                lines.append(f"| {variant} | {seed} | - | no metrics | | | |")
                continue
            effects = metrics.get("code_effects", {})
            cells = [f"{e['slant']:.2f} / {e['thickness']:.2f} ({e['share']:.2f}, {e['factor']})" for e in effects.values()]
            ok = separated(effects)
            accuracies.append(metrics["accuracy"])
            lower_shares.append(min(e["share"] for e in effects.values()))
            good += ok
            lines.append(f"| {variant} | {seed} | {metrics['epoch']} | {metrics['accuracy'] * 100:.2f}% | "
                         + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
        if accuracies:
            summary[variant] = {"runs": len(accuracies), "median_accuracy": statistics.median(accuracies),
                                "median_lower_share": statistics.median(lower_shares), "separated": good}
            medians.append(f"| {variant} | {len(accuracies)} | {statistics.median(accuracies) * 100:.2f}% | "
                           f"{statistics.median(lower_shares):.2f} | {good} of {len(accuracies)} |")
    return "\n".join(lines + medians), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="one run directory per variant and seed lands here")
    parser.add_argument("--variant", action="append", required=True, help="NAME=FLAGS (repeatable)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs (smoke runs)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default 1)")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    variants = {}
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        variants[name] = shlex.split(flags)
    runs = {name: [(seed, args.out / f"{name}-seed{seed}") for seed in seeds] for name in variants}
    todo = [(run, variants[name], seed) for name, seeded in runs.items() for seed, run in seeded
            if not (run / "label_map.json").exists()]  # written once a run has finished
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda job: train(*job, args.data_dir, args.epochs, args.threads), todo))
    table, summary = summarise(runs)
    print(table)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
