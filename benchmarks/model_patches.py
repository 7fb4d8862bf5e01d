"""Model patches: what taking a patched handle costs, against one UNet forward in the same run.

A patched handle applies its patch stack when a node takes the module (``on_device``) and
restores the original weights when it lets go; no patched copy is kept. This measures, on
graphflow-tiny's UNet (shipped in the package) and on the CPU:

- take + release of the unpatched handle;
- take + release with a LoRA-shaped stack (rank ``--rank`` on every attention weight);
- hashing the patch's content once (its identity, paid when a patched handle is made);
- one UNet forward at 32×32 with a batch of 2 (the baseline: one sampling step).

Prints milliseconds (median of ``--repeats``) and each cost as a fraction of one forward, so
the ratio, not the absolute time, is what to compare between machines.

Run: python benchmarks/model_patches.py [--rank 8] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from graphflow import LowRankDelta, ModelHandle, ModelPatch

TINY_UNET = (
    Path(__file__).resolve().parents[1] / "plugins/gf_diffusion/embedded/graphflow-tiny/unet"
)


def median_ms(action, repeats: int) -> float:
    """Median wall milliseconds of ``action()`` over ``repeats`` calls (after one warm-up)."""
    action()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def lora_shaped_patch(unet, rank: int) -> ModelPatch:
    """Random rank-``rank`` deltas on every attention weight (what a LoRA file touches)."""
    generator = torch.Generator().manual_seed(0)
    changes = {}
    for name, weight in unet.named_parameters():
        if "attn" in name and name.endswith("weight") and weight.dim() >= 2:
            fan_in = weight[0].numel()
            up = torch.randn(weight.shape[0], rank, generator=generator) * 1e-3
            down = torch.randn(rank, fan_in, generator=generator) * 1e-3
            changes[name] = LowRankDelta(up, down, alpha=float(rank))
    return ModelPatch(changes, name=f"rank-{rank} attention stack")


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(TINY_UNET).eval()
    base = ModelHandle.of(unet, "unet")
    patch = lora_shaped_patch(unet, args.rank)
    patched = base.with_patches(patch)

    sample = torch.randn(2, unet.config.in_channels, 4, 4)
    context = torch.randn(2, 8, unet.config.cross_attention_dim)

    def forward() -> None:
        with torch.no_grad(), base.on_device("cpu") as module:
            module(sample, 10, encoder_hidden_states=context)

    def take(handle: ModelHandle):
        def action() -> None:
            with handle.on_device("cpu"):
                pass

        return action

    def identity() -> None:
        _ = ModelPatch(patch.changes).identity  # a fresh patch: its hash is computed anew

    rows = [
        ("UNet forward (baseline)", median_ms(forward, args.repeats)),
        ("take + release, unpatched", median_ms(take(base), args.repeats)),
        (
            f"take + release, {len(patch.changes)} rank-{args.rank} deltas",
            median_ms(take(patched), args.repeats),
        ),
        ("patch identity (content hash)", median_ms(identity, args.repeats)),
    ]
    baseline = rows[0][1]
    params = sum(p.numel() for p in unet.parameters())
    print(f"graphflow-tiny UNet: {params:,} parameters; torch threads {torch.get_num_threads()}")
    print("| what | ms | ÷ one forward |")
    print("|---|---|---|")
    for label, ms in rows:
        print(f"| {label} | {ms:.3f} | {ms / baseline:.3f} |")


if __name__ == "__main__":
    main()
