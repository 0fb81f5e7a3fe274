"""One grid per continuous code of a served model: rows are the digits in label order, columns the code's sweep.

    python bench/label_grids.py MODEL_DIR --out docs/samples/seed4-aligned [--seed 0] [--steps 9]

Starts `python -m service` on MODEL_DIR and asks `GET /traverse` once per label (c1 pinned to that label's value,
one row, everything else drawn from `--seed`), from -1 to 1; writes OUT_<code name>.png for each continuous code.
These are the grids docs/RESULTS-9k.md shows per seed.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serve_load import serving

from infogan.images import png_bytes, tile


def label_rows(http: httpx.Client, code: str, categorical: dict, steps: int, seed: int) -> np.ndarray:
    """The sweep of `code` for each label in order: (labels * steps, 1, height, width) uint8."""
    by_label = sorted(range(categorical["size"]), key=lambda value: int(categorical["labels"][value]))
    images = []
    for value in by_label:
        params = {"code": code, "steps": steps, "rows": 1, "low": -1, "high": 1, "seed": seed,
                  categorical["name"]: value}
        answer = http.get("/traverse", params=params, headers={"Accept": "application/json"})
        answer.raise_for_status()
        for encoded in answer.json()["rows"][0]["images"]:
            images.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("L")))
    return np.stack(images)[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model directory written by python -m export")
    parser.add_argument("--out", required=True, help="path prefix of the PNG files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and the other codes (default 0)")
    parser.add_argument("--steps", type=int, default=9, help="columns: values from -1 to 1 (default 9)")
    args = parser.parse_args()
    with serving(args.model, {"WORKERS": "1"}) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        codes = http.get("/info").json()["codes"]
        (categorical,) = [code for code in codes if code["kind"] == "categorical" and code["labels"]]
        for code in (code for code in codes if code["kind"] == "continuous"):
            grid = tile(label_rows(http, code["name"], categorical, args.steps, args.seed), columns=args.steps)
            path = Path(f"{args.out}_{code['name']}.png")
            path.write_bytes(png_bytes(grid))
            print(path)


if __name__ == "__main__":
    main()
