"""Server round trip: POST a chain of trivial nodes, wait on the websocket until it is done.

Starts ``graphflow serve`` in-process (its own thread and event loop, loopback, a temporary
data folder), then from a client event loop in the main thread:

- cold: a 500-node ``core.add`` chain whose first value changes every time, so every node
  executes (POST → validate → queue → worker → events over /ws → ``job_done``);
- cached: the identical workflow again (only the output node is looked up);
- the same for a 10,000-node chain (accepted and run; times reported).

Each is the median of ``--repeats`` runs (default 5), measured from just before the POST to
the ``job_done`` message. Peer reference on this machine: 7.7 s cold, 5.0 s cached (500
nodes). Targets (issue 7): ≤ 0.5 s cold, ≤ 0.1 s cached.

Run: python benchmarks/server_roundtrip.py [--repeats 5] [--big 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time

import aiohttp
from aiohttp import web

from graphflow.server import ServerConfig, create_app

PEER = {"cold": 7.7, "cached": 5.0}
TARGET = {"cold": 0.5, "cached": 0.1}


def chain(n: int, start: float) -> dict:
    """``core.float`` then ``n - 1`` ``core.add`` nodes, shown at the end."""
    nodes = {"n0": {"type": "core.float", "inputs": {"value": start}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {
            "type": "core.add",
            "inputs": {"a": {"link": [f"n{i - 1}", "float"]}, "b": 1.0},
        }
    nodes["out"] = {"type": "core.show", "inputs": {"value": {"link": [f"n{n - 1}", "float"]}}}
    return {"format": "graphflow/1", "nodes": nodes}


class ServerThread:
    """The server on 127.0.0.1 (a free port) in a thread with its own event loop."""

    def __init__(self, data_dir: str):
        self.app = create_app(ServerConfig(data_dir=data_dir, port=0))
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


async def round_trip(session, ws, url: str, workflow: dict) -> tuple[float, float, dict]:
    """(seconds to the POST answer, seconds to job_done, the job record)."""
    began = time.perf_counter()
    async with session.post(
        url + "/api/prompt", json={"workflow": workflow, "client_id": "b"}
    ) as r:
        body = await r.json()
        assert r.status == 200, body
    accepted = time.perf_counter() - began
    job_id = body["job_id"]
    while True:
        message = await ws.receive_json(timeout=300)
        if message["type"] == "job_done" and message["data"]["job_id"] == job_id:
            break
    done = time.perf_counter() - began
    async with session.get(f"{url}/api/history/{job_id}") as r:
        record = await r.json()
    assert record["status"] == "done", record
    return accepted, done, record


async def measure(url: str, nodes: int, repeats: int, offset: float) -> dict[str, tuple]:
    """Median cold and cached round trips for an ``nodes``-node chain."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url + "/ws?client_id=b", max_msg_size=0)
        await ws.receive_json()
        cold, cold_post, cached, cached_post = [], [], [], []
        for i in range(repeats):
            workflow = chain(nodes, start=offset + i)
            post, done, record = await round_trip(session, ws, url, workflow)
            assert record["executed"] == nodes + 1
            cold.append(done)
            cold_post.append(post)
            post, done, record = await round_trip(session, ws, url, workflow)
            assert record["executed"] == 0
            cached.append(done)
            cached_post.append(post)
        await ws.close()
    return {
        "cold": (statistics.median(cold), statistics.median(cold_post)),
        "cached": (statistics.median(cached), statistics.median(cached_post)),
    }


def report(nodes: int, results: dict[str, tuple], compare: bool) -> None:
    """Print one size's numbers with the peer ratio and the target."""
    for kind in ("cold", "cached"):
        total, post = results[kind]
        line = f"{nodes:>6} nodes {kind:<6} {total * 1000:9.1f} ms"
        line += f"  (POST answered {post * 1000:.1f} ms)"
        if compare:
            verdict = "meets" if total <= TARGET[kind] else "MISSES"
            line += (
                f"  peer {PEER[kind]:.1f} s → {PEER[kind] / total:,.0f}× faster;"
                f" target ≤ {TARGET[kind]} s: {verdict}"
            )
        print(line)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big", type=int, default=10_000, help="size of the large chain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server = ServerThread(data_dir)
        url = f"http://127.0.0.1:{server.port}"
        try:
            asyncio.run(measure(url, 500, 1, offset=-1000.0))  # warm-up: imports, first JIT
            small = asyncio.run(measure(url, 500, args.repeats, offset=0.0))
            big = asyncio.run(measure(url, args.big, max(1, args.repeats // 2 + 1), offset=1e6))
        finally:
            server.stop()
    print(f"server round trip, median of {args.repeats} (POST → job_done on /ws)")
    report(500, small, compare=True)
    report(args.big, big, compare=False)


if __name__ == "__main__":
    main()
