"""Measures served models through their API on digits none of them was trained on.

    python bench/heldout.py models/mnist [MODEL_DIR ...]      # the validation split of data/mnist (make data)
    python bench/heldout.py models/mnist --split t10k          # the official test set: once per reported model
    python bench/heldout.py models/fashion-mnist --dataset fashion-mnist --data-dir DIR --split t10k --draws 0

For each model directory, `python -m service` is started on it and asked, over HTTP as any client would:
- the categorical code's accuracy: every held-out digit is sent to `POST /encode` as a PNG, and the label the
  service answers (through the model's label map) is compared with the digit's true label; per label read,
  its purity (the share of those images that are of it), and the most frequent mistakes;
- what each continuous code does: `GET /traverse` of that code over its prior, `--draws` rows at 9 values, the
  slant and stroke thickness of every returned image measured as infogan/effects.py does (Morpho-MNIST), in SDs over
  the held-out digits; effect, share and main factor per code.
Prints one Markdown table row per model (the table docs/RESULTS.md shows).
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serve_load import ROOT, serving

from infogan.effects import FACTORS, factors, main_factor, reference_scale, sweep_slopes
from infogan.images import png_bytes
from training.data import VALIDATION_IMAGES, DataError, Dataset, hold_out, load_idx_dataset

STEPS = 9
ROWS_PER_REQUEST = 30  # under the service's max_traverse_rows


def readings(http: httpx.Client, images: np.ndarray) -> list[str]:
    """The label /encode answers for each image (through the model's label map)."""
    labels = []
    for image in images:
        answer = http.post("/encode", content=png_bytes(image), headers={"Content-Type": "image/png"})
        answer.raise_for_status()
        labels.append(answer.json()["label"])
    return labels


def per_label(read: list[str], truth: list[str], confusions: int = 3) -> dict:
    """Each label's purity (the share of the images read as it that are of it) and the most frequent mistakes,
    as "true -> read": count."""
    pairs = collections.Counter(zip(truth, read))
    purity = {label: pairs[label, label] / count for label, count in sorted(collections.Counter(read).items())}
    mistakes = sorted(((n, t, r) for (t, r), n in pairs.items() if t != r), reverse=True)[:confusions]
    return {"purity": purity, "confusions": {f"{t} -> {r}": n for n, t, r in mistakes}}


def pixels(png_base64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64))), dtype=np.float64) / 255.0


def effects(http: httpx.Client, code: dict, draws: int, scale: dict[str, float]) -> dict:
    """A continuous code swept over its prior through /traverse: its effect on each factor, share, main factor."""
    responses = {name: [] for name in FACTORS}
    values = None
    for seed in range(-(-draws // ROWS_PER_REQUEST)):
        rows = min(ROWS_PER_REQUEST, draws - seed * ROWS_PER_REQUEST)
        answer = http.get("/traverse", params={"code": code["name"], "rows": rows, "steps": STEPS, "low": code["low"],
                                               "high": code["high"], "seed": 1000 + seed},
                          headers={"Accept": "application/json"})
        answer.raise_for_status()
        grid = answer.json()
        values = np.asarray(grid["values"], dtype=np.float64)
        for row in grid["rows"]:
            measured = factors(np.stack([pixels(image) for image in row["images"]])[:, None])
            for name in FACTORS:
                responses[name].append(measured[name] / scale[name])
    result = {name: float(np.abs(sweep_slopes(values, np.array(responses[name]))).mean() * (code["high"] - code["low"]))
              for name in FACTORS}
    return {**result, **main_factor(result)}


def measure(model_dir: Path, dataset: Dataset, scale: dict[str, float], draws: int) -> dict:
    with serving(model_dir, {"WORKERS": "1"}) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        info = http.get("/info").json()
        read = readings(http, dataset.images)
        truth = [dataset.class_names[label] for label in dataset.labels]
        result = {"model": str(model_dir), "accuracy": float(np.mean([r == t for r, t in zip(read, truth)])),
                  "labels": per_label(read, truth), "codes": {}}
        for code in info["codes"]:
            if code["kind"] == "continuous" and draws:
                result["codes"][code["name"]] = effects(http, code, draws, scale)
    return result


def lower_share(result: dict) -> float:
    """The smaller share of a model's continuous codes: the across-seed goal's measure of separation."""
    return min((e["share"] for e in result["codes"].values()), default=0.0)


def row(result: dict) -> str:
    if not result["codes"]:
        return f"| {result['model']} | {result['accuracy']:.2%} | not measured (--draws 0) | |"
    cells = [f"{name}: {e['slant']:.2f} / {e['thickness']:.2f} ({e['share']:.2f}, {e['factor'] or 'none'})"
             for name, e in result["codes"].items()]
    return f"| {result['model']} | {result['accuracy']:.2%} | {'; '.join(cells)} | {lower_share(result):.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="model directories written by python -m export")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "mnist",
                        help="IDX files of labelled images (default: data/mnist, from `make data`; "
                        "bench/data/mnist-heldout: 1,000 digits outside mnist-9k)")
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist",
                        help="what --data-dir holds, for its class names (default mnist)")
    parser.add_argument("--split", choices=["train", "validation", "t10k"], default="validation",
                        help="which images of --data-dir: train-*, the last 5,000 of them (default: the presets' "
                        "validation split, never trained on), or the official test set, t10k-*")
    parser.add_argument("--draws", type=int, default=150, help="traversal rows per continuous code (default 150; "
                        "0: accuracy only, e.g. for images that are not digits)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    try:
        dataset = load_idx_dataset(args.data_dir, args.dataset, "t10k" if args.split == "t10k" else "train")
    except (DataError, OSError):
        sys.exit(f"bench/heldout.py: {args.data_dir}: no readable {args.dataset} IDX files for --split {args.split} "
                 "(`make data` fetches the official files into data/mnist)")
    if args.split == "validation":
        dataset = hold_out(dataset, VALIDATION_IMAGES)[1]
    scale = reference_scale(dataset.images)
    print(f"{len(dataset.images)} held-out {args.dataset} images from {args.data_dir}; factors in their SDs "
          f"(slant {scale['slant']:.3f}, thickness {scale['thickness']:.3f}); {args.draws} draws x {STEPS} values per code\n")
    print("| model | accuracy (/encode) | each continuous code: slant / thickness SD (share, factor) | lower share |")
    print("|---|---|---|---|")
    results = []
    for model_dir in args.models:
        results.append(measure(model_dir, dataset, scale, args.draws))
        print(row(results[-1]), flush=True)
    for result in results:
        labels = result["labels"]
        print(f"\n{result['model']}: purity per label read: "
              + ", ".join(f"{label} {p:.2f}" for label, p in labels["purity"].items())
              + "; most frequent mistakes (true -> read): "
              + ", ".join(f"{pair} ({n})" for pair, n in labels["confusions"].items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
