"""What a kill -9 of one worker costs under load, and of the supervisor.

    python bench/worker_kill.py [--model models/mnist] [--connections 8] [--rounds 3]

Starts `python -m service` with two workers and drives POST /generate n=1 from keep-alive connections (asyncio,
one per client, honouring `Connection: close`; a connection that fails is counted, then reopened, as a load
balancer's pool would; --requests-per-connection N also reopens each every N requests). After a
steady spell, one worker gets SIGKILL. Reported per round:
- lost: requests that got no answer or a non-2xx, over all requests sent from the kill to the end;
- back: seconds from the kill until the supervisor's replacement worker listens on the port (model loaded and
  warmed up), and until the throughput from a 0.5 s window to the end is back to 95% of the mean before the kill
  (`capacity`; the end of that window is reported).
Then the supervisor gets SIGKILL, and `orphans_after_5s` counts workers still alive 5 s later.
Pause background jobs first (kill -STOP): the load shares the machine's cores with the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"n": 1, "codes": {"c1": 3}, "seed": 7}'
WINDOW_S = 0.5
TIMELINE = bool(os.environ.get("TIMELINE"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workers_of(supervisor: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == supervisor and fields[0] != "Z" and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on `port` (a worker that is serving)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    try:
        return any(os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes
                   for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


async def client(port: int, stop: float, log: list[tuple[float, bool]], per_connection: int) -> None:
    request = (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
               + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
    writer, sent = None, 0
    while time.monotonic() < stop:
        try:
            if writer is None or sent == per_connection:  # a pool that recycles its connections
                if writer is not None:
                    writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                sent = 0
            sent += 1
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length, closing = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                closing = closing or line.lower().strip() == b"connection: close"
            await reader.readexactly(length)
            log.append((time.monotonic(), 200 <= status < 300))
            if closing:  # the server ends the connection after this answer, as HTTP/1.1 allows
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            log.append((time.monotonic(), False))
            writer = None


async def drive(port: int, connections: int, per_connection: int, seconds: float, kill_after: float,
                supervisor: int) -> dict:
    log: list[tuple[float, bool]] = []
    start = time.monotonic()
    tasks = [asyncio.create_task(client(port, start + seconds, log, per_connection)) for _ in range(connections)]
    await asyncio.sleep(kill_after)
    before = workers_of(supervisor)
    victim = min(before)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replaced = None
    while time.monotonic() < start + seconds:
        await asyncio.sleep(0.02)
        if replaced is None and any(listening(pid, port) for pid in workers_of(supervisor) - before):
            replaced = time.monotonic()
    await asyncio.gather(*tasks)
    windows: dict[int, int] = {}
    for when, ok in log:
        if ok:
            windows[int((when - start) / WINDOW_S)] = windows.get(int((when - start) / WINDOW_S), 0) + 1
    kill_window = int((killed - start) / WINDOW_S)
    steady = statistics.mean(windows.get(i, 0) for i in range(2, kill_window))  # after the first second's warm-up
    last = int(seconds / WINDOW_S) - 1
    # The first window from which the mean throughput to the end is back to 95% of the steady mean: single windows
    # vary by +-20% here, where the load shares the two cores with the service.
    back = next((i for i in range(kill_window + 1, last) if statistics.mean(windows.get(j, 0) for j in range(i, last))
                 >= 0.95 * steady), None)
    after = [ok for when, ok in log if when >= killed]
    if TIMELINE:
        print(" ".join(f"{'|' if i == kill_window else ''}{windows.get(i, 0)}" for i in range(last + 1)), file=sys.stderr)
    return {"requests_after_kill": len(after), "lost": after.count(False),
            "lost_share": round(after.count(False) / max(1, len(after)), 5),
            "steady_rps": round(steady / WINDOW_S, 1),
            "new_worker_listening_s": None if replaced is None else round(replaced - killed, 2),
            "capacity_back_s": None if back is None else round((back + 1) * WINDOW_S - (killed - start), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests-per-connection", type=int, default=0,
                        help="a connection is closed and reopened after this many requests (0: never), as pools "
                        "that recycle connections do; only new connections reach the replacement worker")
    parser.add_argument("--seconds", type=float, default=14.0)
    parser.add_argument("--kill-after", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        port = free_port()
        service = subprocess.Popen([sys.executable, "-m", "service", "--model", str(args.model), "--port", str(port),
                                    "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while len(workers_of(service.pid)) < 2 or not ready(port):
                if time.monotonic() > deadline:
                    raise SystemExit("error: the service did not start in 60 s")
                time.sleep(0.2)
            time.sleep(2)  # both workers warmed up
            result = asyncio.run(drive(port, args.connections, args.requests_per_connection, args.seconds,
                                       args.kill_after, service.pid))
            workers = workers_of(service.pid)
            os.kill(service.pid, signal.SIGKILL)
            service.wait()
            time.sleep(5)
            result["orphans_after_5s"] = sum(Path(f"/proc/{pid}").exists() and
                                             Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
                                             for pid in workers)
            rounds.append(result)
            print(json.dumps(result), flush=True)
        finally:
            if service.poll() is None:
                service.kill()
    print(f"{args.connections} connections, each reopened every {args.requests_per_connection or 'never'} requests")
    print("| round | requests after the kill | lost | lost share | steady req/s | new worker listening (s) | "
          "capacity back (s) | workers alive 5 s after the supervisor's kill -9 |\n|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rounds, 1):
        print(f"| {i} | {r['requests_after_kill']} | {r['lost']} | {r['lost_share']:.2%} | {r['steady_rps']} | "
              f"{r['new_worker_listening_s']} | {r['capacity_back_s']} | {r['orphans_after_5s']} |")
    return 0


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
