"""txt2img through graphflow's nodes versus diffusers' StableDiffusionPipeline, same process.

A random-weight SD-style model (built locally, nothing downloaded) is run at 64×64 for 20
steps, alternating graphflow and the pipeline for several rounds:

- equal work: graphflow with its output cache cleared each round (models stay resident, as
  in the pipeline), so it tokenizes, encodes, samples and decodes exactly like the pipeline;
- seed only: graphflow re-run with only the seed changed (prompt encoding comes from cache).

Prints medians and the ratio graphflow / diffusers (target ≤ 1.02) and checks the images
match. Run: python benchmarks/txt2img_overhead.py [--rounds 5] [--steps 20] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "diffusion"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    import diffusers
    import numpy as np
    import torch
    from tiny_models import build_tiny_sd

    from graphflow import Executor, OutputCache, load_plugins, loads_workflow

    models = Path(tempfile.mkdtemp(prefix="graphflow-bench-"))
    build_tiny_sd(models / "checkpoints" / "bench-sd")
    os.environ["GRAPHFLOW_MODELS"] = str(models)
    os.environ.setdefault("GRAPHFLOW_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
    device = os.environ["GRAPHFLOW_DEVICE"]

    prompt = "a red cat"
    workflow_text = (ROOT / "benchmarks" / "txt2img_bench.json").read_text()

    def workflow(seed: int):
        wf = loads_workflow(workflow_text)
        wf.set_input("sample", "seed", seed)
        wf.set_input("sample", "steps", args.steps)
        wf.set_input("empty", "width", args.size)
        wf.set_input("empty", "height", args.size)
        wf.set_input("positive", "text", prompt)
        return wf

    executor = Executor(load_plugins().registry, cache=OutputCache())
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        models / "checkpoints" / "bench-sd", local_files_only=True
    ).to(device)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def run_pipeline(seed: int):
        return pipe(
            prompt,
            num_inference_steps=args.steps,
            guidance_scale=7.5,
            height=args.size,
            width=args.size,
            output_type="np",
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images

    def run_graph(seed: int):
        result = executor.run(workflow(seed), outputs=["decode"])
        assert result.ok, result.error
        return result.outputs["decode"]["image"].cpu().numpy()

    # warm-up (loads models, first-call allocations) and a correctness check
    ours, theirs = run_graph(0), run_pipeline(0)
    diff = float(np.abs(ours - theirs).max())

    def timed(fn, *a):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        began = time.perf_counter()
        fn(*a)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - began

    graph_times, pipe_times, seed_times = [], [], []
    for round_ in range(args.rounds):
        seed = 100 + round_
        executor.cache.clear()
        graph_times.append(timed(run_graph, seed))
        pipe_times.append(timed(run_pipeline, seed))
        seed_times.append(timed(run_graph, seed + 1000))  # encoders cached, sampler + decode run

    g, p, s = (statistics.median(x) for x in (graph_times, pipe_times, seed_times))
    print(
        f"device {device}, {args.size}×{args.size}, {args.steps} steps, Euler, cfg 7.5, "
        f"{args.rounds} rounds (medians)"
    )
    print(f"max |graphflow − diffusers| pixel difference: {diff:.2e}")
    print(f"diffusers pipeline:           {p * 1e3:8.1f} ms")
    print(f"graphflow, equal work:        {g * 1e3:8.1f} ms   ratio {g / p:.3f} (target ≤ 1.02)")
    print(f"graphflow, only seed changed: {s * 1e3:8.1f} ms   ratio {s / p:.3f}")


if __name__ == "__main__":
    main()
