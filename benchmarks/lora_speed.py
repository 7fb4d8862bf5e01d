"""LoRA sampling speed: a LoRA applied as a patch against the same delta merged into a copy.

Both run in the same process, in one graphflow Executor, on graphflow-tiny (the embedded
checkpoint, so nothing to download): ``diffusion.load_lora_model_only`` with a kohya-style
file written here (rank ``--rank`` on every attention projection and a LoCon delta on every
resnet conv) versus a node that merges the very same patch into a deep copy of the UNet once.
The two variants run alternately, ``--repeats`` times each, with a new seed each time so
that only the sampler runs again (the LoRA and merge nodes are cached); the process CPU time
of each run and the sampler node's wall time (NodeFinished.seconds) are printed, minimum and
median, with their ratios. On a shared machine CPU time is the steadier measure, and one
torch thread (``--threads``, default 1) keeps it so. The patch is applied when the sampler
takes the UNet, once per sampler call, not per step, so the ratio should stay close to 1
(target: within 5%).

Run: python benchmarks/lora_speed.py [--steps 20] [--size 256] [--rank 8] [--repeats 5]
     [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from gf_diffusion.lora import LORAS, PARSED, build_patches
from gf_diffusion.types import Model
from graphflow import EventLog, Executor, String, load_plugins, node
from graphflow.events import NodeFinished
from graphflow.runtime.handles import ModelHandle
from graphflow.runtime.patches import apply_patches
from graphflow.settings import Settings, use_settings
from graphflow.workflow import Workflow


def kohya_file(unet, rank: int) -> dict:
    """A kohya-ss LoRA/LoCon state dict for ``unet``: attention linears and resnet convs."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for path, module in unet.named_modules():
        linear = "attn" in path and isinstance(module, torch.nn.Linear)
        conv = ".resnets." in path and isinstance(module, torch.nn.Conv2d)
        if not (linear or conv):
            continue
        weight = module.weight
        name = "lora_unet_" + path.replace(".", "_")
        kernel = tuple(weight.shape[2:])
        down = torch.randn(rank, weight.shape[1], *kernel, generator=generator) * 1e-2
        up = torch.randn(weight.shape[0], rank, *((1, 1) if kernel else ()), generator=generator)
        state[f"{name}.lora_down.weight"] = down.half()
        state[f"{name}.lora_up.weight"] = (up * 1e-2).half()
        state[f"{name}.alpha"] = torch.tensor(float(rank))
    return state


def workflow(variant: str, steps: int, size: int, seed: int = 1):
    """graphflow-tiny txt2img up to the latent; the UNet goes through ``variant``'s node."""

    def link(node: str, output: str) -> dict:
        return {"link": [node, output]}

    ckpt = "ckpt"
    nodes = {
        ckpt: ("diffusion.load_checkpoint", {"checkpoint": "graphflow-tiny"}),
        "tokens": (
            "diffusion.tokenize",
            {"text": "a red cat", "tokenizer": link(ckpt, "tokenizer")},
        ),
        "pos": (
            "diffusion.encode_text",
            {"tokens": link("tokens", "tokens"), "text_encoder": link(ckpt, "text_encoder")},
        ),
        "empty": (
            "diffusion.empty_latent",
            {"width": size, "height": size, "vae": link(ckpt, "vae")},
        ),
        "unet": (variant, {"model": link(ckpt, "model"), "lora": "bench.safetensors"}),
        "sample": (
            "diffusion.sampler",
            {
                "model": link("unet", "model"),
                "positive": link("pos", "conditioning"),
                "negative": link("pos", "conditioning"),
                "latent": link("empty", "latent"),
                "scheduler": link(ckpt, "scheduler"),
                "seed": seed,
                "steps": steps,
            },
        ),
        "show": ("core.show", {"value": link("sample", "latent")}),
    }
    return Workflow.model_validate(
        {
            "format": "graphflow/1",
            "nodes": {k: {"type": t, "inputs": i} for k, (t, i) in nodes.items()},
        }
    )


@node("bench.merged", category="bench")
def merged_unet(model: Model, lora: String = "") -> Model:
    """The UNet with ``lora`` merged into a separate copy of its weights, once."""
    parsed, content_id = PARSED.get(LORAS.path(lora), False)
    unet = copy.deepcopy(model.unpatched)
    patch = build_patches(parsed, {"unet": unet}, content_id).patches["unet"]
    apply_patches(unet, [(patch, 1.0)])  # the originals are dropped: the copy keeps the change
    return ModelHandle.of(unet, "merged unet")


def main() -> None:
    """Write the LoRA, run both variants alternately, print the times and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    (root / "loras").mkdir()
    with use_settings(Settings(models=root, device=args.device)):
        registry = load_plugins().registry
        registry.register(merged_unet, plugin="bench")
        log = EventLog()
        executor = Executor(registry, device=args.device, observers=[log])
        probe = workflow("bench.merged", args.steps, args.size)  # no file needed yet
        base = executor.run(probe, outputs=["ckpt"]).outputs["ckpt"]["model"]
        state = kohya_file(base.unpatched, args.rank)
        save_file(state, str(root / "loras" / "bench.safetensors"))
        times: dict[str, dict[str, list[float]]] = {
            key: {"cpu": [], "wall": []} for key in ("patched", "merged")
        }
        kinds = {"patched": "diffusion.load_lora_model_only", "merged": "bench.merged"}
        for repeat in range(args.repeats + 1):  # the first round warms up
            for label, kind in kinds.items():
                # a new seed: only the sampler (and the show node) run again; the LoRA and
                # merge nodes, the prompt and the checkpoint come from the output cache
                log.events.clear()
                began = time.process_time()
                flow = workflow(kind, args.steps, args.size, seed=repeat + 1)
                result = executor.run(flow, outputs=["show"])
                cpu = time.process_time() - began
                assert result.ok, result.error
                finished = {e.node: e.seconds for e in log.events if isinstance(e, NodeFinished)}
                assert "unet" not in finished or not repeat
                if repeat:
                    times[label]["cpu"].append(cpu)
                    times[label]["wall"].append(finished["sample"])
    report(times, len(state) // 3, base.unpatched, args)


def report(times: dict, layers: int, unet, args) -> None:
    """Print the table: CPU and wall seconds per variant, and the ratios."""
    params = sum(p.numel() for p in unet.parameters())
    print(
        f"graphflow-tiny UNet ({params:,} parameters), {layers} LoRA layers of rank {args.rank}, "
        f"{args.steps} steps at {args.size}px, device {args.device}, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} runs each"
    )
    print("| sampler with | CPU s (min / median) | wall s (min / median) |")
    print("|---|---|---|")
    labels = {"patched": "LoRA as patch", "merged": "delta merged into a copy"}
    stats = {
        key: {m: (min(v), statistics.median(v)) for m, v in runs.items()}
        for key, runs in times.items()
    }
    for key, label in labels.items():
        cpu, wall = stats[key]["cpu"], stats[key]["wall"]
        print(f"| {label} | {cpu[0]:.3f} / {cpu[1]:.3f} | {wall[0]:.3f} / {wall[1]:.3f} |")
    for measure in ("cpu", "wall"):
        ratios = [stats["patched"][measure][i] / stats["merged"][measure][i] for i in (0, 1)]
        print(f"ratio patched / merged, {measure}: {ratios[0]:.3f} (min), {ratios[1]:.3f} (median)")


if __name__ == "__main__":
    main()
