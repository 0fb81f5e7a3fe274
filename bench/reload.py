"""A model reloaded under steady load: wrk keeps `POST /generate?model=NAME` busy on 4 connections while the model's
directory gets a new version (loaded through `POST /v2/repository/models/NAME/load`), then a damaged one.

    python bench/reload.py [--model models/mnist] [--seconds 12] [--rounds 3]     (needs wrk: apt-get install wrk)

The new version is the same network saved again with one more metadata entry, so its files and hashes differ;
the damaged one has the generator's last 100 bytes zeroed. The service runs with its defaults (WORKERS=auto).
Prints one markdown row per round and a JSON line: requests, non-2xx answers and connection errors over the
whole run, how long the load took, whether every worker (16 fresh connections) served the new hashes and a
new ETag right after it returned, and whether the damaged version was refused with the old one still serving.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import onnx
from serve_load import free_port, wrk_clients

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from infogan.files import sha256  # noqa: E402

NAME = "bench"


def new_version(source: Path, out: Path) -> None:
    """`source` saved again with a metadata entry more (other bytes, other hashes), model.json updated."""
    shutil.copytree(source, out)
    card = json.loads((out / "model.json").read_text())
    for file in card["files"]:
        model = onnx.load(str(out / file))
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "bench.reload": "2"})
        onnx.save(model, str(out / file))
        card["files"][file]["sha256"] = sha256(out / file)
    (out / "model.json").write_text(json.dumps(card, indent=1))


def post(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=120) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def served_hashes(url: str) -> list[dict]:
    """/info's hashes on 16 new connections (the kernel spreads them over the workers)."""
    return [json.load(urllib.request.urlopen(f"{url}/info?model={NAME}", timeout=30))["model"]["sha256"]
            for _ in range(16)]


def etag(url: str) -> str:
    return urllib.request.urlopen(f"{url}/generate?model={NAME}&seed=1", timeout=30).headers["etag"]


def changes(url: str, directory: Path, version: Path, checks: dict) -> None:
    """What happens to the model while the load runs: the new version, then a damaged one."""
    time.sleep(3)
    tag = etag(url)
    for file in ("generator.onnx", "encoder.onnx", "model.json"):
        shutil.copy(version / file, directory / file)
    started = time.perf_counter()
    status, _ = post(f"{url}/v2/repository/models/{NAME}/load")
    checks["load_s"] = round(time.perf_counter() - started, 2)
    expected = {f: e["sha256"] for f, e in json.loads((version / "model.json").read_text())["files"].items()}
    checks["loaded"] = status == 200 and all(h == expected for h in served_hashes(url)) and etag(url) != tag
    time.sleep(2)
    damaged = directory / "generator.onnx"
    damaged.write_bytes(damaged.read_bytes()[:-100] + b"\0" * 100)
    status, body = post(f"{url}/v2/repository/models/{NAME}/load")
    checks["damaged_refused"] = status == 400 and "generator.onnx" in body.get("error", "")
    checks["old_still_served"] = all(h == expected for h in served_hashes(url))


def one_round(model: Path, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as temporary:
        repository, version = Path(temporary) / "models", Path(temporary) / "version"
        shutil.copytree(model, repository / NAME)
        new_version(model, version)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port)], cwd=ROOT,
                                  env={**os.environ, "MODEL_REPOSITORY": str(repository), "DEFAULT_MODEL": NAME,
                                       "LOG_LEVEL": "warning"})
        try:
            for _ in range(600):
                try:
                    if urllib.request.urlopen(url + "/readyz", timeout=1).status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            checks: dict = {}
            changer = threading.Thread(target=changes, args=(url, repository / NAME, version, checks))
            changer.start()
            load = wrk_clients(port, "POST", f"/generate?model={NAME}", b'{"n": 1}', 4, seconds)
            changer.join()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {"requests": load["requests"], "errors": load["errors"], **checks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each round's load")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [one_round(args.model, args.seconds) for _ in range(args.rounds)]
    print("| round | requests | non-2xx + connection errors | load took (s) | every worker on the new version, new ETag "
          "| damaged version refused | old version still served |")
    print("|---|---|---|---|---|---|---|")
    for index, row in enumerate(rounds, 1):
        print(f"| {index} | {row['requests']:,} | {row['errors']} | {row.get('load_s')} | {row.get('loaded')} | "
              f"{row.get('damaged_refused')} | {row.get('old_still_served')} |")
    print(json.dumps({"model": str(args.model), "seconds": args.seconds, "cpus": os.cpu_count(), "rounds": rounds}))


if __name__ == "__main__":
    main()
