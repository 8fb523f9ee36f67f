"""textgen serve under load on loopback: continuous batching against one request at a time.

    python bench/serve.py                       # 1, 8, 32, 64 clients, 20 s each, both servers (~4 min)
    python bench/serve.py --seconds 10 --clients 1 32
    python bench/serve.py --soak 300            # one server, 32 clients for 5 minutes: memory

A model of the default config (2 x LSTM 128 on tinyshakespeare's 65 characters; trained for a
few steps: speed does not depend on the weights) is served twice, one server at a time on a
free loopback port: as ``textgen serve`` runs by default (concurrent requests stepped together)
and with ``--max-concurrent 1`` (one request at a time: the baseline without batching). For each
number of clients, every client streams completions (``max_tokens`` 200, its own prompt and
seed, on a connection of its own) one after another for ``--seconds``; the table gives the
characters received per second in all (aggregate) and per client, the time from sending a
request to its first character (p50, p99), and the server's peak resident memory. Clients run in this process (asyncio + httpx), on
the same 2 cores as the server, so the figures include their cost.
Writes a record to bench/results/serve/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import records

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["ROMEO:\n", "First Citizen:\n", "MENENIUS:\nO, ", "\n", "ROMEO:\nWhat ",
           "MENENIUS:\nI ", "The ", "First Citizen:\nWe "]


def train_model(folder: Path) -> Path:
    run = folder / "run"
    subprocess.run([sys.executable, "-m", "textgen", "train",
                    str(ROOT / "corpora" / "tinyshakespeare.txt"), "--out", str(run),
                    "--epochs", "1", "--steps-per-epoch", "20", "--sample-every", "0",
                    "--seed", "0"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=folder)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, *flags: str):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")  # one line per request: read on a failure
        self.proc = subprocess.Popen([sys.executable, "-m", "textgen", "serve", f"m={run}",
                                      "--port", str(self.port), "--max-queued", "1024", *flags],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("textgen serve did not start")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def tail(self, lines: int = 20) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])


async def client(http, url: str, k: int, until: float, out: dict) -> None:
    """Stream completions one after another until ``until``; count characters, time the
    first character of each."""
    n = 0
    while time.monotonic() < until:
        body = {"model": "m", "prompt": PROMPTS[k % len(PROMPTS)], "max_tokens": 200,
                "stream": True, "seed": 1000 * k + n, "temperature": 0.8}
        sent, first = time.monotonic(), None
        async with http.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                text = json.loads(line[6:])["choices"][0]["text"]
                if text and first is None:
                    first = time.monotonic()
                    out["ttfc"].append(first - sent)
                if time.monotonic() < until:
                    out["chars"] += len(text)
        n += 1


def own_connection():
    """An HTTP client with one connection of its own, as each user of a server has (one
    httpx pool shared by 64 clients stalled some requests for seconds inside the pool)."""
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(timeout=300, limits=limits)


async def load(url: str, clients: int, seconds: float, server: Server) -> dict:

    out = {"chars": 0, "ttfc": []}
    async with contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(own_connection()) for _ in range(clients)]
        start = time.monotonic()
        until = start + seconds
        tasks = [asyncio.create_task(client(http, url, k, until, out))
                 for k, http in enumerate(https)]
        peak = 0.0
        while not all(t.done() for t in tasks):
            peak = max(peak, server.rss_mb())
            await asyncio.sleep(0.25)
        for t in tasks:
            t.result()
    ttfc = sorted(out["ttfc"])
    return {"clients": clients, "seconds": seconds,
            "aggregate_chars_per_s": round(out["chars"] / seconds),
            "per_client_chars_per_s": round(out["chars"] / seconds / clients),
            "ttfc_p50_ms": round(1000 * statistics.median(ttfc), 1),
            "ttfc_p99_ms": round(1000 * ttfc[min(len(ttfc) - 1, int(0.99 * len(ttfc)))], 1),
            "requests": len(ttfc), "peak_rss_mb": round(peak, 1)}


def measure(run: Path, counts: list[int], seconds: float) -> list[dict]:
    rows = []
    for label, flags in (("batching", ()), ("one at a time", ("--max-concurrent", "1"))):
        server = Server(run, *flags)
        try:
            for clients in counts:
                try:
                    row = asyncio.run(load(server.url, clients, seconds, server))
                except Exception:
                    print(f"{label}, {clients} clients failed; the server's log ends:\n"
                          f"{server.tail()}", file=sys.stderr)
                    raise
                rows.append({"server": label, **row})
                print(f"{label}, {clients} clients: {row}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    return rows


def soak(run: Path, seconds: float, clients: int = 32) -> dict:
    """RSS of a batching server under ``clients`` streaming clients, each minute."""
    server = Server(run)
    samples = []

    async def watch():
        async with contextlib.AsyncExitStack() as stack:
            https = [await stack.enter_async_context(own_connection()) for _ in range(clients)]
            until = time.monotonic() + seconds
            out = {"chars": 0, "ttfc": []}
            tasks = [asyncio.create_task(client(http, server.url, k, until, out))
                     for k, http in enumerate(https)]
            start = time.monotonic()
            while not all(t.done() for t in tasks):
                await asyncio.sleep(1)
                samples.append((round(time.monotonic() - start), round(server.rss_mb(), 1)))
            return out["chars"]

    try:
        chars = asyncio.run(watch())
    finally:
        server.stop()
    minute = [rss for t, rss in samples if t <= 60][-1]
    last = samples[-1][1]
    return {"clients": clients, "seconds": seconds, "chars": chars,
            "rss_mb_after_1_min": minute, "rss_mb_at_end": last,
            "change_after_1_min": round(last / minute - 1, 4),
            "rss_mb_each_minute": [rss for t, rss in samples if t % 60 == 0]}


def table(rows: list[dict]) -> str:
    lines = ["| server | clients | aggregate chars/s | per client chars/s | first char p50 ms | "
             "first char p99 ms | requests | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['server']} | {r['clients']} | {r['aggregate_chars_per_s']:,} | "
                     f"{r['per_client_chars_per_s']:,} | {r['ttfc_p50_ms']} | "
                     f"{r['ttfc_p99_ms']} | {r['requests']} | {r['peak_rss_mb']} |")
    return "\n".join(lines)


def ratios(rows: list[dict]) -> dict:
    get = {(r["server"], r["clients"]): r["aggregate_chars_per_s"] for r in rows}
    out = {}
    if ("batching", 32) in get and ("batching", 1) in get:
        out["aggregate_32_over_1"] = round(get[("batching", 32)] / get[("batching", 1)], 2)
    if ("batching", 32) in get and ("one at a time", 32) in get:
        out["batching_over_one_at_a_time_32"] = round(
            get[("batching", 32)] / get[("one at a time", 32)], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--soak", type=float, metavar="SECONDS",
                        help="instead: 32 clients for this long, the server's memory each minute")
    parser.add_argument("--run", type=Path, help="serve this run (default: train one)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train_model(Path(tmp))
        if args.soak:
            result = soak(run, args.soak)
            print(json.dumps(result, indent=1))
            records.write_record("serve-soak", {"clients": 32, "seconds": args.soak,
                                                "model": "default config (2 x LSTM 128)"},
                                 result)
            return
        rows = measure(run, args.clients, args.seconds)
    print(table(rows))
    found = ratios(rows)
    print("\n" + ", ".join(f"{k}: {v}x" for k, v in found.items()))
    records.write_record("serve", {"clients": args.clients, "seconds": args.seconds,
                                   "max_tokens": 200, "model": "default config (2 x LSTM 128), "
                                   "65 characters"}, {"rows": rows, **found})


if __name__ == "__main__":
    main()
