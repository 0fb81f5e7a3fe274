"""What hostile clients cost the service: RSS of the whole process tree and /healthz latency under attack.

    python bench/hostile.py [--model models/mnist] [--seconds 20]

`python -m service` with its defaults (WORKERS=auto). Each attack runs for `--seconds` while a separate
thread probes `GET /healthz` every 20 ms on its own connection and RSS (every process of the tree, from
/proc) is sampled every 50 ms:
- 8 clients uploading, over and over, the largest image /encode accepts (4096 x 4096, flat grey PNG: a few
  KB on the wire, 16 megapixels to decode);
- 8 clients uploading 12-megapixel phone photos (a dark digit on textured paper, JPEG);
- 100 connections that send half a request line and stop (READ_TIMEOUT_S closes them).
Prints, per attack, the requests answered by status, RSS before / peak / after (the added peak is the goal:
< 150 MiB), /healthz p50 / p99 / max, and for the slow clients how many connections were still open.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from serve_load import ROOT, process_tree, serving


def rss_mib(pid: int) -> float:
    total = 0
    for directory in process_tree(pid):
        try:
            for line in (directory / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def largest_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4096, 4096), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def phone_photo() -> bytes:
    rng = np.random.default_rng(0)
    paper = rng.normal(225, 6, (3024, 4032))
    rows, cols = np.indices((1800, 1800))
    stroke = np.abs(cols - 900 - 0.2 * (rows - 900)) < 90  # a thick slanted bar: a "1"
    paper[600:2400, 1100:2900] -= stroke * 180
    buffer = io.BytesIO()
    Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class Watch:
    """Samples the tree's RSS and probes /healthz until stopped."""

    def __init__(self, url: str, pid: int):
        self.url, self.pid, self.stop = url, pid, threading.Event()
        self.rss: list[float] = []
        self.latencies: list[float] = []
        self.threads = [threading.Thread(target=self.sample), threading.Thread(target=self.probe)]

    def sample(self) -> None:
        while not self.stop.wait(0.05):
            self.rss.append(rss_mib(self.pid))

    def probe(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stop.wait(0.02):
                started = time.perf_counter()
                http.get("/healthz")
                self.latencies.append((time.perf_counter() - started) * 1000)

    def __enter__(self) -> Watch:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def uploads(url: str, body: bytes, kind: str, clients: int, seconds: float) -> Counter:
    statuses: Counter = Counter()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                statuses[http.post("/encode", content=body, headers={"Content-Type": kind}).status_code] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def slow_clients(port: int, count: int, seconds: float) -> dict:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /info HT")
        sock.setblocking(False)
        sockets.append(sock)
    time.sleep(seconds)
    still_open = 0
    for sock in sockets:
        try:
            still_open += sock.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        sock.close()
    return {"connections": count, "still_open_after_s": seconds, "still_open": still_open}


def report(name: str, before: float, watch: Watch, after: float, extra: str) -> None:
    latencies = sorted(watch.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"| {name} | {before:.0f} | {max(watch.rss):.0f} (+{max(watch.rss) - before:.0f}) | {after:.0f} | "
          f"{statistics.median(latencies):.1f} / {p99:.1f} / {latencies[-1]:.1f} | {extra} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    attacks = [("8 x largest PNG (4096 x 4096)", largest_png(), "image/png"),
               ("8 x 12-megapixel phone photo (JPEG)", phone_photo(), "image/jpeg")]
    print("| attack | RSS before MiB | peak MiB (added) | after MiB | /healthz p50 / p99 / max ms | answers |")
    print("|---|---|---|---|---|---|")
    with serving(args.model, {}) as server:
        pid = server.process.pid
        for name, body, kind in attacks:
            time.sleep(2)
            before = rss_mib(pid)
            with Watch(server.url, pid) as watch:
                statuses = uploads(server.url, body, kind, 8, args.seconds)
            time.sleep(2)
            report(name, before, watch, rss_mib(pid),
                   f"{len(body) / 1e6:.2f} MB each; " + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items())))
        before = rss_mib(pid)
        with Watch(server.url, pid) as watch:
            slow = slow_clients(server.port, 100, 12.0)
        report("100 connections stalled mid-request", before, watch, rss_mib(pid),
               f"{slow['still_open']} of {slow['connections']} still open after {slow['still_open_after_s']:g} s")


if __name__ == "__main__":
    main()
