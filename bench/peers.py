"""The service at this tree against the service at earlier commits and against LitServe, same model, same
request (`POST /generate` n=1, a PNG), in one run with alternating rounds.

    python bench/peers.py --base HEAD~3 [--base HEAD~9] [--rounds 5] [--seconds 5] [--concurrency 16] [--load-generator wrk]

Each earlier commit is checked out with `git worktree` into a temporary folder and run with this tree's
virtual environment; LitServe runs `bench/litserve_peer.py` (pip install litserve). The servers start
once and stay up; each round measures them one after the other, in an order that rotates from round to round,
so a drift of the machine's speed falls on all of them. Prints a markdown table (medians over the rounds, each
round's ratio) and a JSON line with every round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from serve_load import CASES, cpu_seconds, drive, free_port, median

ROOT = Path(__file__).resolve().parent.parent
CASE = "POST /generate n=1"


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """The tree of `ref` in a temporary folder, removed after the block."""
    folder = Path(tempfile.mkdtemp(prefix="infogan-base-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), ref], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False)


@contextmanager
def server(command: list[str], cwd: Path, port: int, ready_path: str) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([*command, "--port", str(port)], cwd=cwd, env={**os.environ, "LOG_LEVEL": "warning"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}").status == 200:
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{' '.join(command)} (in {cwd}) did not become ready") from None
                time.sleep(0.2)
        yield process
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def measure(port: int, pid: int, concurrency: int, seconds: float, load_generator: str) -> dict:
    method, path, body, _ = CASES[CASE]
    before = cpu_seconds(pid)
    load = drive(port, method, path, body, concurrency, seconds, load_generator)
    requests = max(1, load["requests"])
    return {"requests_per_s": load["requests"] / load["elapsed"], "errors": load["errors"], "p99_ms": load["p99_ms"],
            "server_cpu_ms": (cpu_seconds(pid) - before) / requests * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", action="append", required=True, help="an earlier commit (any git revision; repeat "
                        "for several)")
    parser.add_argument("--model", default="models/mnist", help="model directory, relative to each tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--load-generator", choices=["python", "wrk"], default="python")
    parser.add_argument("--no-litserve", action="store_true", help="only the two commits")
    args = parser.parse_args()
    python = sys.executable
    with ExitStack() as stack:
        targets = {"this tree": (ROOT, [python, "-m", "service", "--model", args.model], "/readyz")}
        for base in args.base:
            targets[f"base {base}"] = (stack.enter_context(worktree(base)), [python, "-m", "service", "--model",
                                                                             args.model], "/readyz")
        if not args.no_litserve:
            targets["LitServe"] = (ROOT, [python, "bench/litserve_peer.py", "--model", args.model, "--workers", "2"],
                                   "/health")
        running = {}
        for name, (cwd, command, ready) in targets.items():
            port = free_port()
            running[name] = (port, stack.enter_context(server(command, cwd, port, ready)).pid)
        names = list(running)
        rounds: list[dict[str, dict]] = []
        for index in range(args.rounds):
            order = names[index % len(names):] + names[: index % len(names)]
            rounds.append({name: measure(*running[name], args.concurrency, args.seconds, args.load_generator)
                           for name in order})
            print(f"round {index + 1}: " + ", ".join(f"{name} {rounds[-1][name]['requests_per_s']:,.0f} req/s"
                                                      for name in names), file=sys.stderr)
    head = names[0]
    print(f"| server | {CASE}, c={args.concurrency}: req/s (median) | server CPU ms/req | p99 ms (median / worst) | errors "
          f"| this tree / it, per round | median |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        ratios = [r[head]["requests_per_s"] / r[name]["requests_per_s"] for r in rounds]
        print(f"| {name} | {median([r[name]['requests_per_s'] for r in rounds]):,.0f} | "
              f"{median([r[name]['server_cpu_ms'] for r in rounds]):.2f} | {median([r[name]['p99_ms'] for r in rounds]):.1f}"
              f" / {max(r[name]['p99_ms'] for r in rounds):.1f} | "
              f"{sum(r[name]['errors'] for r in rounds)} | {' / '.join(f'{x:.2f}' for x in ratios)} | {median(ratios):.2f}x |")
    print(json.dumps({"case": CASE, "concurrency": args.concurrency, "seconds": args.seconds, "cpus": os.cpu_count(),
                      "load_generator": args.load_generator, "rounds": rounds}))


if __name__ == "__main__":
    main()
