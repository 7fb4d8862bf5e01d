"""A re-run after a restart: with the disk cache tier against without it, same machine, same run.

Every measurement is a fresh Python process (a real restart: nothing in memory), which
loads the plugins, builds an executor and times ``executor.run(workflow)``:

- cold:            disk tier off, empty memory (what every restart costs today);
- cold + disk:     disk tier on and empty (the first run also writes the entries);
- restart + disk:  disk tier on, filled by the previous run (should execute 0 nodes);
- restart, no disk: disk tier off again (= cold: the memory cache died with the process).

Workflows: an engine-only chain of ``core.add`` nodes (gf_core; by default only its output
is stored, with ``--all-nodes`` every node is, to show the cost of writing), and
workflows/txt2img.json on the embedded graphflow-tiny model (``--no-txt2img`` to skip;
``--steps`` overrides the sampler's steps to keep it short on a CPU; torch is imported
before the timed run in every case, since a restored tensor needs torch and a cold run
imports it anyway — the "process" column includes it). The outputs of the
restart run are checked equal to the cold run's (a digest of every requested output).

Prints median seconds per case, nodes executed, and the ratio cold / restart+disk.
Run: python benchmarks/disk_cache_restart.py [--repeats 3] [--chain 2000] [--steps 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def chain_doc(n: int) -> dict:
    """n trivial nodes in a chain, and a show node."""
    link = lambda node_id: {"link": [node_id, "float"]}  # noqa: E731
    nodes = {"n0": {"type": "core.float", "inputs": {"value": 1.0}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "core.add", "inputs": {"a": link(f"n{i - 1}"), "b": 1.0}}
    nodes["out"] = {"type": "core.show", "inputs": {"value": link(f"n{n - 1}")}}
    return {"format": "graphflow/1", "nodes": nodes}


def digest(value: Any) -> str:
    """A digest of output values (tensors by their bytes, the rest by repr)."""
    h = hashlib.blake2b(digest_size=8)
    stack = [value]
    while stack:
        item = stack.pop()
        if hasattr(item, "detach") and hasattr(item, "cpu"):
            h.update(item.detach().cpu().contiguous().view(-1).view(dtype=_uint8()).numpy())
        elif isinstance(item, dict):
            for key in sorted(item, key=str):
                h.update(str(key).encode())
                stack.append(item[key])
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif hasattr(item, "__dataclass_fields__"):
            stack.append(vars(item))
        else:
            h.update(repr(item).encode())
    return h.hexdigest()


def _uint8():
    import torch

    return torch.uint8


# -- one measurement: a fresh process --------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Run the workflow once in this (fresh) process; print one JSON line."""
    began = time.perf_counter()
    from graphflow import Executor, load_plugins, loads_workflow
    from graphflow.settings import Settings

    if args.import_torch:  # counted as setup: otherwise a restart's run pays torch's import
        import torch  # noqa: F401

    registry = load_plugins().registry
    workflow = loads_workflow(Path(args.workflow).read_text())
    for assignment in args.set or []:
        target, value = assignment.split("=", 1)
        node_id, name = target.rsplit(".", 1)
        workflow.set_input(node_id, name, json.loads(value))
    settings = Settings(
        disk_cache=args.disk,
        disk_cache_dir=Path(args.folder),
        disk_cache_min_seconds=0.0 if args.all_nodes else 0.05,
        device="cpu",
    )
    outputs = args.outputs.split(",") if args.outputs else None
    executor = Executor(registry, settings=settings, output_dir=Path(args.folder) / "out")
    setup = time.perf_counter() - began
    result = executor.run(workflow, outputs)
    assert result.ok, result.error
    values = {k: v for k, v in result.outputs.items() if v}
    print(
        json.dumps(
            {
                "seconds": result.seconds,
                "setup": setup,
                "executed": len(result.executed),
                "cached": len(result.cached),
                "digest": digest(values),
            }
        )
    )


def measure(workflow: Path, folder: Path, disk: bool, extra: list[str]) -> dict:
    """One fresh process; its JSON line plus its whole wall time."""
    command = [sys.executable, __file__, "--child", str(workflow), "--folder", str(folder)]
    command += ["--disk"] if disk else []
    began = time.perf_counter()
    done = subprocess.run([*command, *extra], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["process"] = time.perf_counter() - began
    return row


def scenario(name: str, workflow: Path, extra: list[str], repeats: int) -> dict:
    """The four cases, ``repeats`` times each (a fresh disk folder per repeat)."""
    cases: dict[str, list[dict]] = {k: [] for k in ("cold", "cold+disk", "restart+disk", "restart")}
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="gf-disk-bench-"))
        cases["cold"].append(measure(workflow, folder / "off", False, extra))
        cases["cold+disk"].append(measure(workflow, folder, True, extra))
        cases["restart+disk"].append(measure(workflow, folder, True, extra))
        cases["restart"].append(measure(workflow, folder / "off", False, extra))
    digests = {row["digest"] for rows in cases.values() for row in rows}
    assert len(digests) == 1, f"{name}: outputs differ between cases: {digests}"
    summary = {"workflow": name}
    for case, rows in cases.items():
        summary[case] = {
            "run_s": statistics.median(r["seconds"] for r in rows),
            "process_s": statistics.median(r["process"] for r in rows),
            "executed": rows[-1]["executed"],
        }
    summary["ratio_run"] = summary["cold"]["run_s"] / summary["restart+disk"]["run_s"]
    summary["ratio_process"] = summary["cold"]["process_s"] / summary["restart+disk"]["process_s"]
    return summary


def show(summary: dict) -> None:
    """One table per workflow."""
    print(f"\n{summary['workflow']}")
    print(f"  {'case':<14} {'run (median)':>14} {'process':>10} {'executed':>9}")
    for case in ("cold", "cold+disk", "restart+disk", "restart"):
        row = summary[case]
        print(
            f"  {case:<14} {row['run_s'] * 1e3:>11.1f} ms {row['process_s']:>8.2f} s "
            f"{row['executed']:>9}"
        )
    print(
        f"  cold / restart+disk: {summary['ratio_run']:.0f}× (run), "
        f"{summary['ratio_process']:.2f}× (whole process)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chain", type=int, default=2000, help="nodes of the engine chain")
    parser.add_argument("--steps", type=int, default=8, help="txt2img sampler steps")
    parser.add_argument("--no-txt2img", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON too")
    # a child process (internal)
    parser.add_argument("--child", metavar="WORKFLOW", dest="workflow")
    parser.add_argument("--folder")
    parser.add_argument("--disk", action="store_true")
    parser.add_argument("--all-nodes", action="store_true", help="store every node on disk")
    parser.add_argument("--set", action="append")
    parser.add_argument("--import-torch", action="store_true", help="import torch in setup")
    parser.add_argument("--outputs")
    args = parser.parse_args()
    if args.workflow:
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="gf-disk-bench-"))
    chain = work / "chain.json"
    chain.write_text(json.dumps(chain_doc(args.chain)))
    summaries = [
        scenario(f"core chain of {args.chain} nodes", chain, [], args.repeats),
        scenario(
            f"core chain of {args.chain} nodes, every node on disk",
            chain,
            ["--all-nodes"],
            args.repeats,
        ),
    ]
    if not args.no_txt2img:
        extra = ["--set", f"sampler.steps={args.steps}", "--outputs", "save,decode"]
        extra.append("--import-torch")
        summaries.append(
            scenario(
                f"txt2img.json on graphflow-tiny, {args.steps} steps (CPU)",
                ROOT / "workflows" / "txt2img.json",
                extra,
                max(2, args.repeats // 2),
            )
        )
    for summary in summaries:
        show(summary)
    if args.json:
        print(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
