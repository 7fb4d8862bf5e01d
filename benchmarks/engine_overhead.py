"""Engine overhead per node: graphflow against calling the same functions directly.

For chains of 100, 500, 1,000 and 10,000 trivial ``core.add`` nodes and a ~500-node
fan-out/fan-in graph, measures (best of several repeats, same process, same run):

- direct: calling the node functions in a plain Python loop (the baseline);
- cold: validate + plan + signatures + execute with an empty cache;
- cached: the same run again, everything served from the cache;
- parse: building the Workflow document from JSON text (reported apart).

Prints µs per node of overhead ((engine − direct) / nodes) and the ratio engine / direct.
Targets (issue 2): cold overhead < 50 µs/node, cached 500-node re-run < 20 ms, 10,000-node
chain cold < 1 s, and µs/node flat as the chain grows.

Run: python benchmarks/engine_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

from graphflow import Executor, OutputCache, load_plugins, loads_workflow


def link(node_id: str, output: str = "float") -> dict:
    return {"link": [node_id, output]}


def chain_doc(n: int) -> dict:
    nodes = {"n0": {"type": "core.float", "inputs": {"value": 1.0}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "core.add", "inputs": {"a": link(f"n{i - 1}"), "b": 1.0}}
    nodes["out"] = {"type": "core.show", "inputs": {"value": link(f"n{n - 1}")}}
    return {"format": "graphflow/1", "nodes": nodes}


def fan_doc(width: int) -> dict:
    nodes = {"src": {"type": "core.float", "inputs": {"value": 1.0}}}
    level = []
    for i in range(width):
        nodes[f"f{i}"] = {"type": "core.add", "inputs": {"a": link("src"), "b": float(i)}}
        level.append(f"f{i}")
    depth = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            name = f"r{depth}_{j}"
            nodes[name] = {
                "type": "core.add",
                "inputs": {"a": link(level[j]), "b": link(level[j + 1])},
            }
            nxt.append(name)
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    nodes["out"] = {"type": "core.show", "inputs": {"value": link(level[0])}}
    return {"format": "graphflow/1", "nodes": nodes}


def direct_chain(add, show, n: int) -> None:
    x = 1.0
    for _ in range(1, n):
        x = add(a=x, b=1.0)
    show(value=x)


def direct_fan(add, show, width: int) -> None:
    level = [add(a=1.0, b=float(i)) for i in range(width)]
    while len(level) > 1:
        nxt = [add(a=level[j], b=level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    show(value=level[0])


def best(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def measure(name: str, doc: dict, direct, registry, repeats: int) -> dict:
    text = json.dumps(doc)
    nodes = len(doc["nodes"])
    workflow = loads_workflow(text)
    parse = best(repeats, lambda: loads_workflow(text))
    direct_s = best(repeats, direct)

    def cold():
        Executor(registry, cache=OutputCache()).run(workflow)

    cold_s = best(repeats, cold)
    executor = Executor(registry, cache=OutputCache())
    first = executor.run(workflow)
    assert first.ok and len(first.executed) == nodes, first.error
    cached_s = best(repeats, lambda: executor.run(workflow))
    assert executor.run(workflow).executed == []
    return {
        "graph": name,
        "nodes": nodes,
        "direct_ms": direct_s * 1e3,
        "parse_ms": parse * 1e3,
        "cold_ms": cold_s * 1e3,
        "cached_ms": cached_s * 1e3,
        "cold_us_per_node": (cold_s - direct_s) / nodes * 1e6,
        "cached_us_per_node": cached_s / nodes * 1e6,
        "cold_ratio": cold_s / direct_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print rows as JSON too")
    args = parser.parse_args()
    registry = load_plugins().registry
    add, show = registry["core.add"].function, registry["core.show"].function
    rows = []
    for n in (100, 500, 1000, 10_000):
        repeats = args.repeats if n < 10_000 else max(2, args.repeats // 2)
        rows.append(
            measure(
                f"chain {n}",
                chain_doc(n),
                lambda n=n: direct_chain(add, show, n),
                registry,
                repeats,
            )
        )
    rows.append(
        measure(
            "fan-out/in 250",
            fan_doc(250),
            lambda: direct_fan(add, show, 250),
            registry,
            args.repeats,
        )
    )

    header = (
        "graph",
        "nodes",
        "direct ms",
        "parse ms",
        "cold ms",
        "cached ms",
        "cold µs/node overhead",
        "cached µs/node",
        "cold ÷ direct",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r['graph']} | {r['nodes']} | {r['direct_ms']:.2f} | {r['parse_ms']:.2f} | "
            f"{r['cold_ms']:.2f} | {r['cached_ms']:.2f} | {r['cold_us_per_node']:.1f} | "
            f"{r['cached_us_per_node']:.1f} | {r['cold_ratio']:.0f}× |"
        )
    chains = [r for r in rows if r["graph"].startswith("chain")]
    spread = max(r["cold_us_per_node"] for r in chains) / min(r["cold_us_per_node"] for r in chains)
    c500 = next(r for r in rows if r["graph"] == "chain 500")
    c10k = next(r for r in rows if r["graph"] == "chain 10000")
    print()
    print(f"cold overhead per node, max/min over chain sizes: {spread:.2f} (flat ≈ 1)")
    print(
        f"targets: cold < 50 µs/node: worst {max(r['cold_us_per_node'] for r in rows):.1f}; "
        f"cached 500-chain < 20 ms: {c500['cached_ms']:.2f}; "
        f"10,000-chain cold < 1 s: {c10k['cold_ms'] / 1e3:.3f} s"
    )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
