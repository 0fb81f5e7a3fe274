"""What a cached answer costs the server: a 304 against a computed traversal, in server CPU per request.

    python bench/cache_cost.py [--model models/mnist] [--requests 200]

One worker (`python -m service`, defaults otherwise). Sequential requests from one keep-alive client:
`GET /traverse?code=1&rows=10&seed=S` (a 10 x 10 grid, computed, S new each time), then the same URLs again
with the ETag each answer gave in `If-None-Match` (304, nothing computed). Server CPU is the process's user +
system time over each phase (/proc), so other load on the machine does not count; both sides of the ratio
come from the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx
from serve_load import ROOT, cpu_seconds, serving

PATH = "/traverse?code=1&rows=10&seed={seed}"


def phase(http: httpx.Client, pid: int, requests: list[tuple[str, dict]], status: int) -> tuple[float, float, list[str]]:
    """(server CPU ms per request, wall ms per request, the ETags answered)."""
    tags = []
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    for path, headers in requests:
        answer = http.get(path, headers=headers)
        if answer.status_code != status:
            raise SystemExit(f"{path}: expected {status}, got {answer.status_code}")
        tags.append(answer.headers["etag"])
    return ((cpu_seconds(pid) - cpu) / len(requests) * 1000, (time.perf_counter() - wall) / len(requests) * 1000, tags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with serving(args.model, {"WORKERS": "1"}) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        pid = server.process.pid
        phase(http, pid, [(PATH.format(seed=10**6 + i), {}) for i in range(20)], 200)  # warm
        computed_cpu, computed_wall, tags = phase(
            http, pid, [(PATH.format(seed=i), {}) for i in range(args.requests)], 200)
        cached_cpu, cached_wall, _ = phase(
            http, pid, [(PATH.format(seed=i), {"If-None-Match": tag}) for i, tag in enumerate(tags)], 304)
    print(f"{args.requests} requests each, one worker, sequential, server CPU from /proc\n")
    print("| request | server CPU ms/request | wall ms/request |")
    print("|---|---|---|")
    print(f"| GET /traverse, 10 x 10 grid, computed (200) | {computed_cpu:.2f} | {computed_wall:.2f} |")
    print(f"| the same with If-None-Match (304) | {cached_cpu:.2f} | {cached_wall:.2f} |")
    print(f"\na 304 costs {cached_cpu / computed_cpu:.1%} of a computed traversal's server CPU (goal < 10%)")


if __name__ == "__main__":
    main()
