"""ComfyUI dialect vs graphflow's own API: the same 500-node chain, both round trips.

Starts ``graphflow serve`` in-process (loopback, a temporary data folder; see
server_roundtrip.py), opens one socket per dialect (``/ws?clientId=`` and
``/ws?client_id=``), then alternates, for ``--repeats`` rounds:

- ComfyUI: ``POST /prompt`` (API format: ``core.float`` → 499 ``core.add`` → ``core.show``,
  links ``["n3", 0]``) → ``executing`` with ``node: null`` → ``GET /history/{prompt_id}``;
- graphflow: ``POST /api/prompt`` (the same chain as a graphflow/1 document) → ``job_done``
  → ``GET /api/history/{job_id}``;

each cold (a new first value, so all 501 nodes run) and cached (the same prompt again). It
reports the medians and the best times (on a shared machine the best is the steadier
estimate) and the ratios ComfyUI / graphflow (target ≤ 1.10: the dialect adds at most
10 %).

Run: python benchmarks/comfy_protocol.py [--repeats 7] [--nodes 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from server_roundtrip import ServerThread, chain

TARGET = 1.10
SETTLE = 0.1
"""Seconds between round trips, so what one run leaves to do (a garbage collection, the
queue's status broadcast) is not timed as part of the next."""


def api_chain(n: int, start: float) -> dict:
    """The chain of :func:`chain` as a ComfyUI API-format prompt (graphflow node ids as
    class types, links by output index)."""
    prompt = {"n0": {"class_type": "core.float", "inputs": {"value": start}}}
    for i in range(1, n):
        prompt[f"n{i}"] = {"class_type": "core.add", "inputs": {"a": [f"n{i - 1}", 0], "b": 1.0}}
    prompt["out"] = {"class_type": "core.show", "inputs": {"value": [f"n{n - 1}", 0]}}
    return prompt


async def comfy_trip(session, ws, url: str, prompt: dict) -> float:
    """Seconds from ``POST /prompt`` to the history entry read after ``executing(null)``."""
    began = time.perf_counter()
    async with session.post(url + "/prompt", json={"prompt": prompt, "client_id": "c"}) as r:
        body = await r.json()
        assert r.status == 200, body
    prompt_id = body["prompt_id"]
    while True:
        message = await ws.receive_json(timeout=300)
        data = message["data"]
        done = message["type"] == "executing" and data.get("node") is None
        if done and data.get("prompt_id") == prompt_id:
            break
    async with session.get(f"{url}/history/{prompt_id}") as r:
        entry = (await r.json())[prompt_id]
    assert entry["status"]["status_str"] == "success", entry["status"]
    return time.perf_counter() - began


async def graphflow_trip(session, ws, url: str, workflow: dict) -> float:
    """Seconds from ``POST /api/prompt`` to the record read after ``job_done``."""
    began = time.perf_counter()
    body = {"workflow": workflow, "client_id": "g"}
    async with session.post(url + "/api/prompt", json=body) as r:
        answer = await r.json()
        assert r.status == 200, answer
    job_id = answer["job_id"]
    while True:
        message = await ws.receive_json(timeout=300)
        if message["type"] == "job_done" and message["data"]["job_id"] == job_id:
            break
    async with session.get(f"{url}/api/history/{job_id}") as r:
        record = await r.json()
    assert record["status"] == "done", record
    return time.perf_counter() - began


async def measure(url: str, nodes: int, repeats: int, offset: float) -> dict[str, list[float]]:
    """Round trips per (dialect, cold/cached), alternating the dialects."""
    times: dict[str, list[float]] = {
        key: [] for key in ("comfy cold", "graphflow cold", "comfy cached", "graphflow cached")
    }
    async with aiohttp.ClientSession() as session:
        comfy_ws = await session.ws_connect(url + "/ws?clientId=c", max_msg_size=0)
        await comfy_ws.receive_json()
        own_ws = await session.ws_connect(url + "/ws?client_id=g", max_msg_size=0)
        await own_ws.receive_json()
        for i in range(repeats):
            prompt = api_chain(nodes, offset + 2 * i)
            workflow = chain(nodes, offset + 2 * i + 1)
            pairs = [("comfy", comfy_trip, comfy_ws, prompt),
                     ("graphflow", graphflow_trip, own_ws, workflow)]  # fmt: skip
            if i % 2:
                pairs.reverse()
            for name, trip, ws, job in pairs:
                for kind in ("cold", "cached"):
                    await asyncio.sleep(SETTLE)
                    times[f"{name} {kind}"].append(await trip(session, ws, url, job))
        await comfy_ws.close()
        await own_ws.close()
    return times


def main() -> None:
    """Run the benchmark and print both round trips and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--nodes", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server = ServerThread(data_dir)
        url = f"http://127.0.0.1:{server.port}"
        try:
            asyncio.run(measure(url, args.nodes, 1, offset=-1e6))  # warm-up
            times = asyncio.run(measure(url, args.nodes, args.repeats, offset=0.0))
        finally:
            server.stop()
    print(f"{args.nodes}-node chain, {args.repeats} rounds (POST → completion → history)")
    for kind in ("cold", "cached"):
        for label, pick in (("median", statistics.median), ("best", min)):
            comfy = pick(times[f"comfy {kind}"])
            own = pick(times[f"graphflow {kind}"])
            ratio = comfy / own
            verdict = "meets" if ratio <= TARGET else "MISSES"
            print(
                f"  {kind:<6} {label:<6} ComfyUI {comfy * 1000:8.1f} ms   graphflow"
                f" {own * 1000:8.1f} ms   ratio {ratio:.3f} (target ≤ {TARGET}: {verdict})"
            )


if __name__ == "__main__":
    main()
