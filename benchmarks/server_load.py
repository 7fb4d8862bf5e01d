"""Server under load: 20 websocket clients, 200 small jobs queued at once.

Starts the server in-process (its own thread and event loop, loopback, a temporary data
folder). 20 clients each open ``/ws`` with their own client id and together POST 200 small
jobs (a 10-node chain of core nodes with a distinct first value, so every job executes)
as fast as the server accepts them. Each client records when its jobs' ``job_done``
arrives.

Reports throughput (jobs/s from the first POST to the last ``job_done``), p50/p99 latency
from POST to ``job_done``, jobs lost (accepted but never finished, or not ``done`` in the
history — must be 0), and peak RSS of the process (server and clients together).

Run: python benchmarks/server_load.py [--clients 20] [--jobs 200] [--nodes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from server_roundtrip import ServerThread, chain


async def client(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    starts: list[float],
    submitted: dict,
    finished: dict,
    all_posted: asyncio.Event,
    connected: asyncio.Barrier,
) -> None:
    """One editor-like client: a websocket, some POSTs, then wait for its jobs."""
    ws = await session.ws_connect(f"{url}/ws?client_id={name}")
    await ws.receive_json()
    await connected.wait()
    mine = set()
    for start in starts:
        body = {"workflow": chain(10, start), "client_id": name}
        began = time.perf_counter()
        async with session.post(url + "/api/prompt", json=body) as response:
            job_id = (await response.json())["job_id"]
        submitted[job_id] = began
        mine.add(job_id)
    await all_posted.wait()
    while mine - set(finished):
        message = await ws.receive_json(timeout=120)
        if message["type"] == "job_done":
            finished[message["data"]["job_id"]] = (time.perf_counter(), message["data"]["status"])
    await ws.close()


async def run_load(url: str, clients: int, jobs: int) -> dict:
    """Run every client; returns the measurements."""
    submitted: dict[str, float] = {}
    finished: dict[str, tuple[float, str]] = {}
    all_posted = asyncio.Event()
    connected = asyncio.Barrier(clients)
    # Each websocket holds a pooled connection for its whole life: leave room for the POSTs.
    connector = aiohttp.TCPConnector(limit=2 * clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [
            asyncio.create_task(
                client(
                    session,
                    url,
                    f"client{c}",
                    [float(j) for j in range(c, jobs, clients)],
                    submitted,
                    finished,
                    all_posted,
                    connected,
                )
            )
            for c in range(clients)
        ]
        deadline = time.perf_counter() + 120
        while len(submitted) < jobs and not any(t.done() for t in tasks):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {len(submitted)} of {jobs} jobs were accepted")
            await asyncio.sleep(0.005)
        all_posted.set()
        with contextlib.suppress(TimeoutError):  # unfinished jobs are counted as lost below
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
        async with session.get(f"{url}/api/history?limit=1000") as response:
            history = await response.json()
    done_in_history = sum(1 for j in history["jobs"] if j["status"] == "done")
    latencies = [finished[j][0] - submitted[j] for j in submitted if j in finished]
    lost = [j for j in submitted if j not in finished or finished[j][1] != "done"]
    first = min(submitted.values())
    last = max(t for t, _ in finished.values())
    return {
        "accepted": len(submitted),
        "latencies": sorted(latencies),
        "lost": len(lost) + max(0, len(submitted) - done_in_history),
        "seconds": last - first,
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of sorted values."""
    index = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))
    return values[index]


def main() -> None:
    """Run the load and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server = ServerThread(data_dir)
        try:
            result = asyncio.run(
                run_load(f"http://127.0.0.1:{server.port}", args.clients, args.jobs)
            )
        finally:
            server.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / 1024 if sys.platform != "darwin" else peak / (1 << 20)
    lat = result["latencies"]
    print(f"server load: {args.clients} websocket clients, {result['accepted']} jobs of 11 nodes")
    print(f"throughput        {result['accepted'] / result['seconds']:8.1f} jobs/s")
    print(f"latency p50       {percentile(lat, 50) * 1000:8.1f} ms   (POST → job_done)")
    print(f"latency p99       {percentile(lat, 99) * 1000:8.1f} ms")
    print(f"latency mean      {statistics.mean(lat) * 1000:8.1f} ms")
    verdict = "meets" if result["lost"] == 0 else "FAILS"
    print(f"jobs lost         {result['lost']:8d}      (target 0: {verdict})")
    print(f"peak RSS          {peak_mb:8.1f} MiB (server + clients, one process)")


if __name__ == "__main__":
    main()
