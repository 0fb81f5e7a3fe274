"""The results table of docs/RESULTS-9k.md: evaluates each run's final checkpoint on its labelled data.

    python bench/results.py --data-dir ../shared/data/mnist-9k runs/mnist-seed1 runs/mnist-seed2 runs/mnist-seed3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from training.evaluate import evaluate


def percent(fraction: float) -> str:
    """Two decimals, truncated: a reported accuracy is never rounded up."""
    return f"{math.floor(fraction * 10000) / 100:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        state = load_checkpoint(run / CHECKPOINT_NAME)
        history = state["history"]
        result = evaluate(run, args.data_dir)
        rows.append({"run": run.name, "seed": state["config"].seed, "accuracy": result["accuracy"], "nmi": result["nmi"],
                     "info_cat_nats": result["info_cat_nats"], "bound": result["info_cat_bound_nats"],
                     "epochs": history[-1]["epoch"], "steps": state["step"], "wall_s": history[-1]["elapsed_s"],
                     "device": history[-1]["device"], "label_map": result["label_map"],
                     "curve": {m["epoch"]: m["accuracy"] for m in history if m["epoch"] % 10 == 0 or m["epoch"] == 1}})
    print("| run | seed | accuracy | NMI | L_I (nats) / H(c) | epochs (steps) | wall time | device |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['seed']} | {percent(r['accuracy'])} | {r['nmi']:.3f} | "
              f"{r['info_cat_nats']:.3f} / {r['bound']:.3f} | {r['epochs']} ({r['steps']}) | "
              f"{r['wall_s'] / 60:.1f} min | {r['device']} |")
    accuracies = [r["accuracy"] for r in rows]
    print(f"\nmedian accuracy {percent(statistics.median(accuracies))}, worst {percent(min(accuracies))}, "
          f"best {percent(max(accuracies))} over {len(rows)} run(s)")
    print("\naccuracy by epoch:\n```")
    for r in rows:
        print(f"{r['run']}: " + " ".join(f"{epoch}:{accuracy * 100:.1f}" for epoch, accuracy in r["curve"].items()))
    print("```")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
