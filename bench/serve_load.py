"""Load test of the service: requests/s, images/s, latency percentiles and inference batch size.

    python bench/serve_load.py [--model models/mnist] [--seconds 5] [--concurrency 1 4 16 64]
    python bench/serve_load.py --goals     # the service's defaults against onnxruntime alone, as ratios (5 rounds)

Starts `python -m service` twice (micro-batching on, then off with MAX_BATCH=1) and drives each with a
keep-alive HTTP/1.1 client on asyncio (one connection per concurrent client; `--load-generator wrk` for wrk,
which leaves the server more of the cores it shares with the load), for GET /healthz,
POST /generate n=1 and n=16 (PNG). Prints one markdown table and a JSON line.

`--replay-inference` measures what the HTTP path alone costs: one server, micro-batching on, whose generator
session answers every run with the output it computed for that batch size first. Everything else (routing,
validation, latent draws, batching, the thread hop, PNG encoding) runs as usual.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASES = {  # codes and a seed, as a client that reproduces images sends them
    "GET /healthz": ("GET", "/healthz", b"", 0),
    "POST /generate n=1": ("POST", "/generate", b'{"n": 1, "codes": {"c1": 3}, "seed": 7}', 1),
    "POST /generate n=16": ("POST", "/generate", b'{"n": 16, "codes": {"c1": 3}, "seed": 7}', 16),
}
# The goals of docs/PERFORMANCE.md: each case against onnxruntime alone at a batch size, in the same run.
GOALS = [("POST /generate n=1", 16, 16, 0.5), ("POST /generate n=16", 16, 64, 0.8)]  # case, concurrency, batch, ratio


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """One HTTP/1.1 response off a keep-alive connection: its status and headers (the body is read and dropped)."""
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers


async def client(host: str, port: int, request: bytes, stop: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    while time.perf_counter() < stop:
        started = time.perf_counter()
        writer.write(request)
        status, headers = await read_response(reader)
        if status != 200:
            errors.append(status)
        latencies.append(time.perf_counter() - started)
        if headers.get(b"connection", b"").lower() == b"close":  # MAX_REQUESTS_PER_CONNECTION: reconnect
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
    writer.close()


def process_tree(pid: int) -> list[Path]:
    """/proc/PID of a process and of its children, e.g. uvicorn's workers (Linux; empty elsewhere)."""
    found = []
    for directory in Path("/proc").glob("[0-9]*"):
        try:
            parent = (directory / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if directory.name == str(pid) or parent == str(pid):
            found.append(directory)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children."""
    total = 0.0
    for directory in process_tree(pid):
        try:
            fields = (directory / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def batch_stats(url: str) -> tuple[float, float]:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    values = dict(re.findall(r'^inference_batch_size_(count|sum)\{model="[^"]*",session="generator"\} (\S+)$', text, re.M))
    return float(values.get("count", 0)), float(values.get("sum", 0))


def python_clients(port: int, request: bytes, concurrency: int, seconds: float) -> dict:
    """`concurrency` keep-alive connections from this process (asyncio), each sending `request` in a loop."""
    latencies: list[float] = []
    errors: list[int] = []
    client_cpu, started = time.process_time(), time.perf_counter()

    async def run() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(client("127.0.0.1", port, request, stop, latencies, errors) for _ in range(concurrency)))

    asyncio.run(run())
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {"requests": len(latencies), "elapsed": time.perf_counter() - started, "errors": len(errors),
            "p50_ms": percentile(50), "p95_ms": percentile(95), "p99_ms": percentile(99),
            "client_cpu": time.process_time() - client_cpu}


WRK_SCRIPT = """
wrk.method = "%s"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  io.write(string.format("percentiles_us %%d %%d %%d\\n", latency:percentile(50), latency:percentile(95),
                         latency:percentile(99)))
end
"""
WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_clients(port: int, method: str, path: str, body: bytes, concurrency: int, seconds: float) -> dict:
    """The same load from wrk (one thread, C): a load generator that takes less of the cores it shares."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % (method, body.decode()))
        script.flush()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
                                 "-s", script.name, f"http://127.0.0.1:{port}{path}"],
                                capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)

    summary = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    p50, p95, p99 = (int(value) / 1000 for value in re.search(r"percentiles_us (\d+) (\d+) (\d+)", output).groups())
    return {"requests": int(summary.group(1)), "elapsed": float(summary.group(2)) * WRK_UNITS[summary.group(3)] / 1e3,
            "errors": (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "client_cpu": after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime}


def drive(port: int, method: str, path: str, body: bytes, concurrency: int, seconds: float,
          load_generator: str) -> dict:
    """`concurrency` keep-alive connections sending the request for `seconds`, from wrk or from this process."""
    if load_generator == "wrk":
        return wrk_clients(port, method, path, body, concurrency, seconds)
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return python_clients(port, request, concurrency, seconds)


def measure(url: str, port: int, case: str, concurrency: int, seconds: float, server_pid: int,
            load_generator: str = "python") -> dict:
    method, path, body, images = CASES[case]
    count_before, sum_before = batch_stats(url)
    server_cpu = cpu_seconds(server_pid)
    load = drive(port, method, path, body, concurrency, seconds, load_generator)
    server_cpu = cpu_seconds(server_pid) - server_cpu
    count_after, sum_after = batch_stats(url)
    requests = max(1, load["requests"])
    return {"case": case, "concurrency": concurrency, "load_generator": load_generator,
            "requests_per_s": load["requests"] / load["elapsed"],
            "images_per_s": (load["requests"] - load["errors"]) * images / load["elapsed"],
            "p50_ms": load["p50_ms"], "p95_ms": load["p95_ms"], "p99_ms": load["p99_ms"], "errors": load["errors"],
            # CPU per request, server (all its threads) and the load generator: on a shared machine their sum bounds req/s
            "server_cpu_ms": server_cpu / requests * 1000, "client_cpu_ms": load["client_cpu"] / requests * 1000,
            "avg_batch": (sum_after - sum_before) / (count_after - count_before) if count_after > count_before else None}


class ReplaySession:
    """An onnxruntime session that runs once per batch size, then replays that output: inference costs nothing."""

    def __init__(self, session: Any):
        self.session, self.outputs = session, {}

    def run(self, names: list[str] | None, feeds: dict[str, Any]) -> list:
        size = len(next(iter(feeds.values())))
        if size not in self.outputs:
            self.outputs[size] = self.session.run(names, feeds)
        return self.outputs[size]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def serve_replaying(model_dir: Path, port: int) -> None:
    """The service as `python -m service` runs it, with the generator session replaced by a ReplaySession."""
    sys.path.insert(0, str(ROOT))  # imported here, in the server process only: the client stays light
    from service.app import serve
    from service.repository import open_models
    from service.settings import Settings

    settings = Settings(model_dir=model_dir, port=port, workers=1)  # the replaying session lives in this process
    models = open_models(settings)
    for model in models.values():
        model.generator = ReplaySession(model.generator)
    serve(settings, models)


class OnnxruntimeAlone:
    """The generator session alone (all cores, no HTTP), on the service's own feeds, loaded once."""

    def __init__(self, model_dir: Path):
        sys.path.insert(0, str(ROOT))
        from service.latents import draw
        from service.model import load_model

        self.model = load_model(model_dir)
        self.draw = draw

    def images_per_s(self, batch: int, seconds: float) -> float:
        feeds = self.draw(self.model.layout, 7, range(batch)).feeds()
        for _ in range(10):
            self.model.generator.run(None, feeds)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self.model.generator.run(None, feeds)
            runs += 1
        return runs * batch / (time.perf_counter() - started)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def goals(model_dir: Path, seconds: float, rounds: int, load_generator: str) -> None:
    """The service with its defaults against onnxruntime alone, one after the other (never together), in
    alternating rounds: this machine's speed drifts between runs by as much as the effect measured (onnxruntime
    alone gave 1,726 and 2,888 images/s in two runs minutes apart), so each round's ratio compares neighbours in
    time, and the median over the rounds is the figure."""
    alone = OnnxruntimeAlone(model_dir)
    cells: dict[str, list[tuple[dict, float]]] = {case: [] for case, *_ in GOALS}
    with serving(model_dir, {}) as server:
        for _ in range(rounds):
            for case, concurrency, batch, _goal in GOALS:
                reference = alone.images_per_s(batch, seconds)
                row = measure(server.url, server.port, case, concurrency, seconds, server.process.pid, load_generator)
                cells[case].append((row, reference))
    print("| case | concurrency | service images/s | onnxruntime alone images/s (batch) | ratio (median) | ratio per round "
          "| goal | p99 ms (worst round) | errors | server CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case, concurrency, batch, goal in GOALS:
        rows = cells[case]
        ratios = [row["images_per_s"] / reference for row, reference in rows]
        print(f"| {case} | {concurrency} | {median([row['images_per_s'] for row, _ in rows]):,.0f} | "
              f"{median([reference for _, reference in rows]):,.0f} ({batch}) | {median(ratios):.2f}x | "
              f"{' / '.join(f'{ratio:.2f}' for ratio in ratios)} | >= {goal}x | "
              f"{max(row['p99_ms'] for row, _ in rows):.1f} | {sum(row['errors'] for row, _ in rows)} | "
              f"{median([row['server_cpu_ms'] for row, _ in rows]):.2f} |")
    print(json.dumps({"model": str(model_dir), "seconds": seconds, "cpus": os.cpu_count(), "rounds": [
        {"case": case, **row, "onnxruntime_alone_images_per_s": reference}
        for case in cells for row, reference in cells[case]]}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path | None, port: int, env: dict, replay: bool = False) -> subprocess.Popen:
    """`model`: one model directory, or None for the repository (models/, or MODEL_REPOSITORY in `env`)."""
    command = [__file__, "--serve-replaying"] if replay else ["-m", "service"]
    if model is not None:
        command += ["--model", str(model)]
    process = subprocess.Popen([sys.executable, *command, "--port", str(port)], cwd=ROOT,
                               env={**os.environ, "LOG_LEVEL": "warning", **env})  # otherwise the defaults
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz").status == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the service did not become ready")


@dataclass
class Served:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(model: Path | None, env: dict, replay: bool = False) -> Iterator[Served]:
    """`python -m service` on a free port, ready, for the length of the block; stopped after it."""
    port = free_port()
    process = start_server(model, port, env, replay)
    try:
        yield Served(process, port)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--replay-inference", action="store_true",
                        help="one server whose generator replays its first output per batch size: the HTTP path alone")
    parser.add_argument("--goals", action="store_true",
                        help="only the goal cells: the service's defaults against onnxruntime alone, with the ratios")
    parser.add_argument("--load-generator", choices=["python", "wrk"], default="python",
                        help="python: keep-alive asyncio clients in this process; wrk: wrk (apt-get install wrk), "
                        "which takes less of the cores the server shares with it")
    parser.add_argument("--rounds", type=int, default=5, help="with --goals: alternating rounds (the median ratio counts)")
    parser.add_argument("--serve-replaying", action="store_true", help=argparse.SUPPRESS)  # the server --replay starts
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_replaying:
        serve_replaying(args.model, args.port)
        return
    if args.goals:
        goals(args.model, args.seconds, args.rounds, args.load_generator)
        return
    modes = {"batching on": {}, "batching off": {"MAX_BATCH": "1", "BATCH_WAIT_MS": "0"}}
    if args.replay_inference:
        modes = {"inference replayed": {}}
    results = []
    for mode, env in modes.items():
        with serving(args.model, env, replay=args.replay_inference) as server:
            for case in CASES:
                if mode == "batching off" and case == "GET /healthz":
                    continue
                for concurrency in args.concurrency:
                    row = measure(server.url, server.port, case, concurrency, args.seconds, server.process.pid,
                                  args.load_generator)
                    results.append({"mode": mode, **row})
                    print(json.dumps(results[-1]), file=sys.stderr)
    print("| mode | case | concurrency | req/s | images/s | p50 ms | p95 ms | p99 ms | avg batch | errors "
          "| server CPU ms/req | client CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        batch = f"{r['avg_batch']:.1f}" if r["avg_batch"] else "-"
        print(f"| {r['mode']} | {r['case']} | {r['concurrency']} | {r['requests_per_s']:,.0f} | {r['images_per_s']:,.0f} | "
              f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {batch} | {r['errors']} | "
              f"{r['server_cpu_ms']:.2f} | {r['client_cpu_ms']:.2f} |")
    print(json.dumps({"model": str(args.model), "seconds": args.seconds, "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
