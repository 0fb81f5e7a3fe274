"""Overload benchmark: does the service stay useful when far more clients come than it can serve?

    python bench/overload.py [--model models/mnist] [--seconds 20] [--clients 300] [--soak-seconds 600]

One `python -m service` with its default settings, driven in turn by:
1. capacity: 4 patient clients, POST /generate {"n": 64}: the images/s the service can deliver;
2. overload: `--clients` impatient clients, each giving up after 2 s (it closes its connection, reconnects
   and retries) and honouring Retry-After on a 503; meanwhile a separate process probes /healthz, /readyz
   and POST /generate every 100 ms on fresh connections (the 300 clients' own event loop would delay what
   it measures). Goodput = images/s of 200 answers that arrived before their client gave up;
3. patient: 64 connections with long timeouts: full throughput should survive;
4. soak (--soak-seconds > 0): about 3x capacity of impatient clients; the server's memory (RSS summed over
   its processes) after warm-up and at the end.
Prints a Markdown table and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from serve_load import ROOT, process_tree, read_response, serving

BODY = b'{"n": 64}'
IMAGES = 64
RAMP_S = 1.0
REQUEST = (b"POST /generate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


@dataclass
class Tally:
    good_images: int = 0  # in 200 answers that came in time
    statuses: dict[int, int] = field(default_factory=dict)
    gave_up: int = 0
    reconnects: int = 0
    shed_latencies: list[float] = field(default_factory=list)  # seconds until a 503 arrived
    retry_after: list[float] = field(default_factory=list)
    # GET /healthz, GET /readyz, and POST /generate answered 503, each seen from the separate probe process
    probe_latencies: dict[str, list[float]] = field(default_factory=lambda: {"/healthz": [], "/readyz": [], "503": []})
    probe_failures: int = 0


async def client(port: int, stop: float, timeout_s: float, tally: Tally, delay_s: float = 0.0) -> None:
    """Sends /generate n=64 until `stop` (after `delay_s`); gives up on a request after timeout_s, backs off
    on 503."""
    await asyncio.sleep(delay_s)
    connection = None
    while time.perf_counter() < stop:
        try:
            if connection is None:
                connection = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
            reader, writer = connection
            started = time.perf_counter()
            writer.write(REQUEST)
            status, headers = await asyncio.wait_for(read_response(reader), timeout_s)
        except TimeoutError:  # gave up: closes the connection, reconnects, retries
            tally.gave_up += 1
            if connection is not None:
                connection[1].close()
            connection = None
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            # The server closed an idle keep-alive connection (uvicorn does after 5 s, and a Retry-After can be
            # longer): reconnect and send again at once, as an HTTP client's pool does.
            tally.reconnects += 1
            if connection is not None:
                connection[1].close()
            connection = None
            continue
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if status == 200:
            tally.good_images += IMAGES
        elif status == 503:
            tally.shed_latencies.append(time.perf_counter() - started)
            retry_after = float(headers.get(b"retry-after", b"1"))
            tally.retry_after.append(retry_after)
            await asyncio.sleep(max(0.0, min(retry_after, stop - time.perf_counter())))  # the phase ends on time
    if connection is not None:
        connection[1].close()


async def prober(port: int, path: str, stop: float, tally: Tally) -> None:
    """A fresh connection every 100 ms, as a kubelet's probe; 5 s timeout. For /generate, only the answers
    that are 503s count: how long a refusal takes to arrive."""
    request = f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode()
    if path == "/generate":
        request = REQUEST.replace(b"Host: bench", b"Host: probe\r\nConnection: close")
    while time.perf_counter() < stop:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                status, _ = await read_response(reader)
                writer.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            status = 0
        if path == "/generate":
            if status == 503:
                tally.probe_latencies["503"].append(time.perf_counter() - started)
        else:
            tally.probe_failures += status != 200
            tally.probe_latencies[path].append(time.perf_counter() - started)
        await asyncio.sleep(0.1)


async def probe_all(port: int, seconds: float) -> Tally:
    tally = Tally()
    stop = time.perf_counter() + seconds
    await asyncio.gather(*(prober(port, path, stop, tally) for path in ("/healthz", "/readyz", "/generate")))
    return tally


async def drive(port: int, clients: int, timeout_s: float, seconds: float, probes: bool) -> tuple[Tally, float]:
    """`clients` impatient clients for `seconds`; with `probes`, the health probes run in a process of their
    own, so that the load generator's event loop cannot delay them (their latency is the server's)."""
    tally, started = Tally(), time.perf_counter()
    prober_process = None
    if probes:
        prober_process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--probe", str(port), "--seconds", str(seconds), stdout=asyncio.subprocess.PIPE)
    # The clients arrive over the first second (RAMP_S), as users do, rather than in one instant's burst.
    await asyncio.gather(*(client(port, started + seconds, timeout_s, tally, RAMP_S * i / clients) for i in range(clients)))
    if prober_process:
        probed = json.loads((await prober_process.communicate())[0])
        tally.probe_latencies, tally.probe_failures = probed["latencies"], probed["failures"]
    return tally, time.perf_counter() - started


def p99_ms(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000 if len(values) >= 2 else float("nan")


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), MiB."""
    total = 0
    for directory in process_tree(pid):
        try:
            status = (directory / "status").read_text()
        except OSError:
            continue
        total += int(next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0"))
    return total / 1024


def summary(name: str, tally: Tally, seconds: float) -> dict:
    probes = tally.probe_latencies
    return {"phase": name, "images_per_s": tally.good_images / seconds, "statuses": tally.statuses,
            "gave_up": tally.gave_up, "reconnects": tally.reconnects, "p99_503_ms": p99_ms(tally.shed_latencies),
            "p99_503_probe_ms": p99_ms(probes["503"]), "probe_503s": len(probes["503"]),
            "retry_after_s": sorted(set(tally.retry_after)), "p99_healthz_ms": p99_ms(probes["/healthz"]),
            "p99_readyz_ms": p99_ms(probes["/readyz"]), "probe_failures": tally.probe_failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each phase")
    parser.add_argument("--clients", type=int, default=300, help="impatient clients in the overload phase")
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="10-minute soak: 600")
    parser.add_argument("--probe", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the prober process
    args = parser.parse_args()
    if args.probe:
        probed = asyncio.run(probe_all(args.probe, args.seconds))
        print(json.dumps({"latencies": probed.probe_latencies, "failures": probed.probe_failures}))
        return
    rows = []
    with serving(args.model, {}) as server:
        port = server.port
        tally, seconds = asyncio.run(drive(port, 4, 60, args.seconds, probes=False))
        rows.append(summary("capacity: 4 patient clients", tally, seconds))
        capacity = rows[-1]["images_per_s"]
        tally, seconds = asyncio.run(drive(port, args.clients, 2.0, args.seconds, probes=True))
        rows.append(summary(f"overload: {args.clients} clients, 2 s timeout", tally, seconds))
        tally, seconds = asyncio.run(drive(port, 64, 60, args.seconds, probes=False))
        rows.append(summary("patient: 64 clients, 60 s timeout", tally, seconds))
        soak = {}
        if args.soak_seconds:
            # Each impatient client offers about one request (64 images) a second: it waits at most ~0.5 s when
            # admitted, 1 s (Retry-After) when refused. 3x capacity is then 3 x capacity / 64 clients.
            clients = max(1, math.ceil(3 * capacity / IMAGES))
            asyncio.run(drive(port, clients, 2.0, 30, probes=False))  # warm-up
            soak["rss_after_warm_up_mib"] = rss_mib(server.process.pid)
            tally, seconds = asyncio.run(drive(port, clients, 2.0, args.soak_seconds, probes=False))
            soak["rss_at_end_mib"] = rss_mib(server.process.pid)
            soak["growth"] = soak["rss_at_end_mib"] / soak["rss_after_warm_up_mib"] - 1
            rows.append(summary(f"soak: {clients} clients, {args.soak_seconds:g} s", tally, seconds))
        alive = server.process.poll() is None
    print("| phase | images/s answered in time | vs capacity | statuses | gave up (reconnects) | p99 503 ms (load generator) "
          "| p99 503 ms (probe) | Retry-After s | p99 /healthz ms | p99 /readyz ms | probe failures |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['phase']} | {row['images_per_s']:,.0f} | {row['images_per_s'] / capacity:.2f}x | {row['statuses']} | "
              f"{row['gave_up']} ({row['reconnects']}) | {row['p99_503_ms']:.1f} | "
              f"{row['p99_503_probe_ms']:.1f} ({row['probe_503s']}) | "
              f"{row['retry_after_s']} | {row['p99_healthz_ms']:.1f} | "
              f"{row['p99_readyz_ms']:.1f} | {row['probe_failures']} |")
    if soak:
        print(f"\nsoak RSS: {soak['rss_after_warm_up_mib']:.0f} MiB after warm-up, {soak['rss_at_end_mib']:.0f} MiB at "
              f"the end ({soak['growth']:+.1%})")
    print(f"server process alive at the end: {alive}")
    print(json.dumps({"model": str(args.model), "cpus": os.cpu_count(), "capacity": capacity, "rows": rows,
                      "soak": soak, "alive": alive}))


if __name__ == "__main__":
    sys.exit(main())
