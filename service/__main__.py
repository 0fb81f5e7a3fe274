"""python -m service [--host H] [--port P] [--model MODEL_DIR]: serve a model directory with uvicorn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from service.app import serve
from service.repository import open_models
from service.settings import ConfigurationError, Settings

EXIT_CONFIGURATION = 2  # a bad setting, model directory, metrics folder or port: one line on stderr names it


def settings_error(error: ValidationError) -> str:
    """pydantic's first complaint, as the environment variable (or flag) a user set."""
    first = error.errors()[0]
    name = "_".join(str(part) for part in first["loc"]).upper() or "settings"
    return f"setting {name}: {first['msg']} (got {str(first.get('input'))[:80]!r})"


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
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        serve(settings, open_models(settings))  # a model fails here, with the file's name, not in every worker
    except ValidationError as error:
        print(f"error: {settings_error(error)}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    return 0


if __name__ == "__main__":
    sys.exit(main())
