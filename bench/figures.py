"""The pictures of the README and the model cards, drawn by the served models through `GET /traverse`.

    python bench/figures.py [--seed 0]

Serves `models/` (every model in it) and writes, for each model and each of its codes, a traversal grid of 10
independent draws (rows) across the code's values (columns: every category, or 9 values over the model's
default traversal range): docs/traverse_CODE.png for the default model, docs/MODEL_traverse_CODE.png for the
others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
from serve_load import ROOT, serving

ROWS, STEPS = 10, 9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the draws' seed (default 0)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the pictures go (default docs/)")
    args = parser.parse_args()
    with serving(None, {"WORKERS": "1"}) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        listed = http.get("/models").json()
        for model in listed["models"]:
            prefix = "" if model["name"] == listed["default"] else f"{model['name']}_"
            for code in http.get("/info", params={"model": model["name"]}).json()["codes"]:
                answer = http.get("/traverse", params={"model": model["name"], "code": code["name"], "rows": ROWS,
                                                       "steps": STEPS, "seed": args.seed})
                answer.raise_for_status()
                path = args.out / f"{prefix}traverse_{code['name']}.png"
                path.write_bytes(answer.content)
                print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {model['name']}, {code['name']}")


if __name__ == "__main__":
    main()
