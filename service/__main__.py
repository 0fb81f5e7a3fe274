"""python -m service [--host H] [--port P] [--model MODEL_DIR]: serve a model directory with uvicorn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.app import open_model, serve
from service.metrics import MetricsSetupError
from service.model import ModelError
from service.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description="Serve an exported InfoGAN model over "
                                     "HTTP. Every setting can also come from an environment variable (HOST, PORT, "
                                     "MODEL_DIR, REQUIRE_GPU, MAX_BATCH, BATCH_WAIT_MS, ...); flags win.")
    parser.add_argument("--host", help="address to listen on (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (env PORT, default 8000)")
    parser.add_argument("--model", type=Path, help="model directory from `python -m export` "
                        "(env MODEL_DIR, default: the embedded models/mnist)")
    parser.add_argument("--workers", type=lambda text: text if text == "auto" else int(text),
                        help="processes serving the port, each with its own session (env WORKERS, default auto: "
                        "one per available core)")
    args = parser.parse_args(argv)
    overrides = {"host": args.host, "port": args.port, "model_dir": args.model, "workers": args.workers}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        model = open_model(settings)  # fails here, with the file's name, rather than in every worker
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    workers = settings.worker_count()
    print(f"serving {settings.model_dir} on http://{settings.host}:{settings.port} ({model.provider}, {workers} "
          f"worker(s) x {settings.threads_per_worker()} onnxruntime thread(s))", file=sys.stderr)
    if workers > 1:
        model = None  # each worker opens its own session; this process only supervises them
    try:
        serve(settings, model)
    except MetricsSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
