"""The peer: LitServe serving the same ONNX generator for the same request (`bench/peers.py` drives it).

    python bench/litserve_peer.py --model models/mnist --port 8100     (pip install litserve)

POST /generate with the service's JSON body (`{"n": 1, "codes": {"c1": 3}, "seed": 7}`) answers the same PNG:
the same session options (service.model.load_model), the same latents (service.latents.draw), the same
encoder (infogan.images.png_bytes). LitServe batches requests itself (MAX_BATCH images, BATCH_WAIT_MS, the
service's defaults) and serves from its own worker process; `/health` is its readiness probe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import litserve as ls  # noqa: E402
from fastapi import Response  # noqa: E402

from infogan.images import png_bytes, tile, to_uint8  # noqa: E402
from service.latents import draw, parse_codes  # noqa: E402
from service.model import load_model  # noqa: E402
from service.settings import Settings  # noqa: E402


class GeneratorAPI(ls.LitAPI):
    def __init__(self, model_dir: Path, threads: int, **kwargs):
        super().__init__(**kwargs)
        self.model_dir, self.threads = model_dir, threads

    def setup(self, device: str) -> None:
        self.model = load_model(self.model_dir, self.threads)

    def decode_request(self, request: dict) -> dict:
        return request

    def predict(self, requests: list[dict]) -> list[bytes]:
        """One run for the whole batch, as the service's micro-batcher does."""
        layout = self.model.layout
        latents = [draw(layout, r.get("seed", 0), range(r.get("n", 1)), parse_codes(layout, r.get("codes")))
                   for r in requests]
        feeds = {name: np.concatenate([part.feeds()[name] for part in latents]) for name in latents[0].feeds()}
        images = to_uint8(self.model.generator.run(None, feeds)[0])
        answers, start = [], 0
        for request in requests:
            n = request.get("n", 1)
            mine = images[start : start + n]
            start += n
            answers.append(png_bytes(tile(mine, min(n, 8))) if n > 1 else png_bytes(mine[0]))
        return answers

    def encode_response(self, png: bytes) -> Response:
        return Response(png, media_type="image/png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1, help="LitServe inference workers")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker")
    args = parser.parse_args()
    defaults = Settings()
    api = GeneratorAPI(args.model, args.threads, max_batch_size=defaults.max_batch,
                       batch_timeout=defaults.batch_wait_ms / 1000, api_path="/generate")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, timeout=30)
    server.run(port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
