"""Load time of a full-size single-file checkpoint: graphflow's loader vs diffusers' own.

Usage::

    python benchmarks/checkpoint_load.py                  # SD 1.5-shaped, fp16 (~2.1 GB)
    python benchmarks/checkpoint_load.py --family sdxl    # SDXL-shaped, fp16 (~6.9 GB)
    python benchmarks/checkpoint_load.py --cache DIR --repeat 3

It writes a seeded random-weight checkpoint in the original LDM layout, built from
graphflow's shipped config of that family (so it also checks that the config loads a
full-size file), cached in ``--cache`` (default: a ``graphflow-ckpt-bench`` folder in the
temp dir) and reused by later runs. Then, in the same process, alternately:

* graphflow: ``load_pipeline_components(file, config="auto")`` (detection + shipped config
  + tokenizers built from the shipped BPE);
* diffusers: ``<Pipeline>.from_single_file(file, config=<the same config written out with
  full tokenizer files>, local_files_only=True)``.

The first of each pair warms the page cache; the best of ``--repeat`` is printed with the
ratio graphflow / diffusers. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "tests" / "diffusion")]


def time_graphflow(path: Path, dtype) -> float:
    """Seconds for graphflow's loader (config auto) to give the components."""
    from gf_diffusion.loader import load_pipeline_components

    start = time.perf_counter()
    components = load_pipeline_components(path, "auto", dtype)
    elapsed = time.perf_counter() - start
    assert components["unet"] is not None
    return elapsed


def time_diffusers(path: Path, folder: Path, dtype) -> float:
    """Seconds for diffusers' from_single_file with the same config, written out in full."""
    import diffusers

    class_name = json.loads((folder / "model_index.json").read_text())["_class_name"]
    pipeline = getattr(diffusers, class_name)
    start = time.perf_counter()
    pipe = pipeline.from_single_file(
        str(path), config=str(folder), local_files_only=True, dtype=dtype
    )
    elapsed = time.perf_counter() - start
    assert pipe.unet is not None
    return elapsed


def main() -> None:
    """Build (or reuse) the checkpoint, time both loaders, print the table."""
    import diffusers
    import torch
    from ldm_export import build_checkpoint

    from gf_diffusion.configs import complete_folder
    from gf_diffusion.detect import checkpoint_family

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    families = ["sd1", "sd2-768-v", "sd2-512", "sdxl", "sdxl-refiner", "sdxl-inpainting"]
    parser.add_argument("--family", default="sd1", choices=families)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "graphflow-ckpt-bench"
    )
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()

    path = args.cache / f"{args.family}-random-fp16.safetensors"
    start = time.perf_counter()
    build_checkpoint(args.family, path)
    print(
        f"checkpoint {path} ({path.stat().st_size / 2**30:.2f} GiB), ready in "
        f"{time.perf_counter() - start:.1f} s"
    )
    kind = checkpoint_family(path)
    print(f"detected: {kind.label} (config {kind.config})")
    folder = complete_folder(kind.config, args.cache / f"{kind.config}-config")
    dtype = torch.float16
    ours, theirs = [], []
    for _ in range(args.repeat):
        ours.append(time_graphflow(path, dtype))
        theirs.append(time_diffusers(path, folder, dtype))
    print(f"graphflow loader : {min(ours):6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in ours)})")
    print(
        f"diffusers        : {min(theirs):6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in theirs)})"
    )
    print(f"ratio graphflow / diffusers: {min(ours) / min(theirs):.2f}")


if __name__ == "__main__":
    main()
