"""Ray backend scaling: 16 small jobs on 1 vs 2 Ray workers, and the local worker as baseline.

Starts a local Ray cluster (``--cpus`` CPUs, loopback, no dashboard) and drives the job
runners directly, as the server's dispatcher does (submit, then wait for every ``job_done``):

- batch: ``--jobs`` image jobs (example photo → film grain with a different seed each →
  save PNG), all submitted at once; wall time from the first submit to the last outcome;
- overhead: ``--trivial`` one-after-another jobs of three ``core`` nodes; the median time
  from submit to outcome, Ray minus local, is the per-job cost of the Ray path (routing,
  the actor call, the event stream, shipping the outcome back).

Every runner gets one warm-up job first (actor start, imports, the photo in its cache), so
the numbers compare steady states. Ratios come from the same run; nothing is asserted.

Run: python benchmarks/ray_scaling.py [--jobs 16] [--size 384] [--cpus 2] [--trivial 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from graphflow import Executor, load_plugins
from graphflow.server.queue_base import Job, JobStatus
from graphflow.server.worker import LocalRunner


def grain_job(seed: int, size: int) -> dict:
    """Example photo → film grain (seeded) → save: a fixed amount of CPU work per job."""
    return {
        "format": "graphflow/1",
        "nodes": {
            "photo": {
                "type": "image.example_photo",
                "inputs": {"photo": "astronaut", "size": size},
            },
            "grain": {
                "type": "image.film_grain",
                "inputs": {"image": {"link": ["photo", "image"]}, "intensity": 0.2, "seed": seed},
            },
            "save": {
                "type": "image.save",
                "inputs": {"images": {"link": ["grain", "image"]}, "filename_prefix": "bench"},
            },
        },
    }


def trivial_job(value: float) -> dict:
    """Three core nodes (a float, an add, a show): nearly no work, so overhead shows."""
    return {
        "format": "graphflow/1",
        "nodes": {
            "a": {"type": "core.float", "inputs": {"value": value}},
            "b": {"type": "core.add", "inputs": {"a": {"link": ["a", "float"]}, "b": 1.0}},
            "out": {"type": "core.show", "inputs": {"value": {"link": ["b", "float"]}}},
        },
    }


class Collector:
    """A RunnerListener that records outcomes and when they arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: dict[str, tuple[float, object]] = {}
        self.changed = threading.Condition(self.lock)

    def job_event(self, job_id, event) -> None:
        pass

    def job_done(self, job_id, outcome) -> None:
        with self.changed:
            self.done[job_id] = (time.perf_counter(), outcome)
            self.changed.notify_all()

    def wait(self, ids: list[str], timeout: float = 600) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: all(i in self.done for i in ids), timeout)
        if not ok:
            raise SystemExit(f"jobs did not finish in {timeout} s")
        failed = [i for i in ids if self.done[i][1].status is not JobStatus.DONE]
        if failed:
            raise SystemExit(f"job {failed[0]} failed: {self.done[failed[0]][1].error}")


class Bench:
    """Runs the measurements on one runner."""

    def __init__(self, runner, name: str):
        self.runner = runner
        self.name = name
        self.listener = Collector()
        self.serial = 0
        runner.start(self.listener)

    def submit(self, workflow: dict) -> str:
        self.serial += 1
        job_id = f"{self.name}-{self.serial}"
        self.runner.submit(Job(id=job_id, workflow=workflow))
        return job_id

    def batch(self, workflows: list[dict]) -> float:
        began = time.perf_counter()
        ids = [self.submit(w) for w in workflows]
        self.listener.wait(ids)
        return time.perf_counter() - began

    def latency(self, workflow: dict) -> float:
        began = time.perf_counter()
        job_id = self.submit(workflow)
        self.listener.wait([job_id])
        return self.listener.done[job_id][0] - began


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, float]:
    """Warm up, then the batch wall time and the median trivial-job latency."""
    bench.batch([grain_job(10_000, args.size), trivial_job(-1.0)])
    wall = bench.batch([grain_job(i, args.size) for i in range(args.jobs)])
    latencies = [bench.latency(trivial_job(float(i))) for i in range(args.trivial)]
    bench.runner.stop()
    return {"wall": wall, "latency": statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--size", type=int, default=384, help="photo size in pixels")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--trivial", type=int, default=20, help="jobs for the overhead median")
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from graphflow.distributed.runner import RayBackendConfig, RayRunner

    registry = load_plugins().registry
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "output"
        local = Bench(LocalRunner(Executor(registry, output_dir=output)), "local")
        results["local worker"] = measure(local, args)
        ray.init(
            num_cpus=args.cpus,
            include_dashboard=False,
            object_store_memory=200 << 20,
            configure_logging=False,
            log_to_driver=False,
        )
        try:
            for workers in (1, 2):
                config = RayBackendConfig(workers=workers, gpus_per_worker=0, output_dir=output)
                bench = Bench(RayRunner(registry, config), f"ray{workers}")
                results[f"ray, {workers} worker{'s' if workers > 1 else ''}"] = measure(bench, args)
        finally:
            ray.shutdown()

    print(f"{args.jobs} jobs (photo {args.size}px → film grain → PNG), Ray with {args.cpus} CPUs")
    print(f"{'runner':<16} {'batch wall (s)':>15} {'per job (ms)':>13} {'trivial job (ms)':>17}")
    for name, r in results.items():
        print(
            f"{name:<16} {r['wall']:>15.2f} {r['wall'] / args.jobs * 1000:>13.0f} "
            f"{r['latency'] * 1000:>17.1f}"
        )
    one, two = results["ray, 1 worker"], results["ray, 2 workers"]
    local_r = results["local worker"]
    print(f"speed-up, 2 vs 1 Ray workers: {one['wall'] / two['wall']:.2f}×")
    print(f"speed-up, 2 Ray workers vs the local worker: {local_r['wall'] / two['wall']:.2f}×")
    overhead = (one["latency"] - local_r["latency"]) * 1000
    print(f"per-job overhead of the Ray path vs the local worker: {overhead:.1f} ms")


if __name__ == "__main__":
    main()
