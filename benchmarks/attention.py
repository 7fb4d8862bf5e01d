"""Benchmark graphflow's Triton flash attention against PyTorch SDPA.

Usage::

    python benchmarks/attention.py            # full table, fp16 + bf16, UNet step
    python benchmarks/attention.py --quick    # a few rows, fp16 only, short timings
    python benchmarks/attention.py --json out.json --sdpa-backend auto

For each Stable Diffusion 1.5 / SDXL attention shape it first checks the kernel
against SDPA (max abs diff), then prints TFLOP/s of both and their ratio.  It
then times one denoising step of an SD-1.5-shaped UNet (random weights, fp16,
64x64 latent, batch 2) with diffusers' AttnProcessor2_0 and with
GraphflowAttnProcessor.  Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

# Run from a checkout without installing graphflow.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    heads: int
    n_q: int
    n_k: int
    head_dim: int

    @property
    def flops(self) -> float:
        # Two matmuls (q k^T and p v), 2 flops per multiply-add.
        return 4.0 * self.batch * self.heads * self.n_q * self.n_k * self.head_dim


SHAPES = [
    Shape("sd15 L0 self", 2, 8, 4096, 4096, 40),
    Shape("sd15 L0 cross", 2, 8, 4096, 77, 40),
    Shape("sd15 L1 self", 2, 8, 1024, 1024, 80),
    Shape("sd15 L1 cross", 2, 8, 1024, 77, 80),
    Shape("sd15 L2 self", 2, 8, 256, 256, 160),
    Shape("sdxl L1 self", 2, 10, 4096, 4096, 64),
    Shape("sdxl L1 cross", 2, 10, 4096, 77, 64),
    Shape("sdxl/sd2 self", 2, 10, 1024, 1024, 64),
    Shape("sdxl L2 cross", 2, 20, 1024, 77, 64),
    Shape("H20 N4096 self", 2, 20, 4096, 4096, 64),
    Shape("H20 N4096 cross", 2, 20, 4096, 77, 64),
    Shape("D128 N4096 self", 2, 8, 4096, 4096, 128),
    Shape("D128 N4096 cross", 2, 8, 4096, 77, 128),
]
QUICK_SHAPES = ["sd15 L0 self", "sd15 L0 cross", "sdxl/sd2 self", "H20 N4096 self"]

# Diffusers' UNet2DConditionModel defaults are the SD-1.5 UNet except for the
# text width; 64x64 latents are 512x512 images.
UNET_CONFIG = {"sample_size": 64, "cross_attention_dim": 768}
LATENT_SIZE = 64
DEVICE = "cuda"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rows, fp16 only, short timings")
    parser.add_argument("--dtypes", default=None, help="comma list of fp16,bf16 (default both)")
    parser.add_argument(
        "--sdpa-backend",
        default="flash",
        choices=["flash", "cudnn", "efficient", "auto"],
        help="SDPA backend to compare against (default flash; 'auto' = torch's choice)",
    )
    parser.add_argument("--no-unet", action="store_true", help="skip the whole-UNet step timing")
    parser.add_argument("--unet-steps", type=int, default=None, help="timed UNet steps")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    return parser.parse_args(argv)


def sdpa_context(backend: str):
    """Context manager restricting SDPA to one backend (no-op for 'auto')."""
    import contextlib

    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kinds = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    return sdpa_kernel(kinds[backend])


def bench_ms(fn, quick: bool) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=10 if quick else 25, rep=30 if quick else 200)


def bench_shape(shape: Shape, dtype, sdpa_backend: str, quick: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from graphflow.kernels.attention_triton import _flash_attn_fwd, flash_attention

    gen = torch.Generator(device=DEVICE).manual_seed(0)

    def rand(n: int) -> torch.Tensor:
        # (B, N, H, D) buffers viewed as (B, H, N, D), as diffusers produces them.
        x = torch.randn(shape.batch, n, shape.heads, shape.head_dim, generator=gen, device=DEVICE)
        return x.to(dtype).transpose(1, 2)

    q, k, v = rand(shape.n_q), rand(shape.n_k), rand(shape.n_k)
    row = {**asdict(shape), "dtype": str(dtype).removeprefix("torch.")}

    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    out = flash_attention(q, k, v)  # also triggers autotuning for this shape
    torch.cuda.synchronize()
    row["max_abs_diff"] = (out.float() - reference).abs().max().item()
    row["triton_config"] = str(_flash_attn_fwd.best_config)
    row["triton_ms"] = bench_ms(lambda: flash_attention(q, k, v), quick)

    sdpa_used = sdpa_backend
    try:
        with sdpa_context(sdpa_backend):
            F.scaled_dot_product_attention(q, k, v)
            row["sdpa_ms"] = bench_ms(lambda: F.scaled_dot_product_attention(q, k, v), quick)
    except RuntimeError:
        # e.g. flash does not take this head dim; report torch's own choice.
        sdpa_used = "auto"
        row["sdpa_ms"] = bench_ms(lambda: F.scaled_dot_product_attention(q, k, v), quick)
    row["sdpa_backend"] = sdpa_used
    row["triton_tflops"] = shape.flops / row["triton_ms"] / 1e9
    row["sdpa_tflops"] = shape.flops / row["sdpa_ms"] / 1e9
    row["ratio"] = row["triton_tflops"] / row["sdpa_tflops"]
    return row


def print_kernel_table(rows: list[dict]) -> None:
    header = (
        f"{'shape':<18}{'dtype':<10}{'B':>3}{'H':>4}{'Nq':>6}{'Nk':>6}{'D':>5}"
        f"{'maxdiff':>10}{'triton TF/s':>13}{'sdpa TF/s':>11}{'ratio':>7}  sdpa"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<18}{r['dtype']:<10}{r['batch']:>3}{r['heads']:>4}{r['n_q']:>6}"
            f"{r['n_k']:>6}{r['head_dim']:>5}{r['max_abs_diff']:>10.2e}"
            f"{r['triton_tflops']:>13.1f}{r['sdpa_tflops']:>11.1f}{r['ratio']:>7.2f}"
            f"  {r['sdpa_backend']}"
        )


def bench_unet(steps: int) -> dict:
    """Time one UNet forward (a denoising step with CFG batch 2) per processor."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    from gf_diffusion.attention_processor import install_attention_processor
    from graphflow.kernels.attention import set_attention_backend

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    unet = unet.to(DEVICE, torch.float16).eval()
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    size, width = LATENT_SIZE, UNET_CONFIG["cross_attention_dim"]
    latent = torch.randn(2, 4, size, size, generator=gen, device=DEVICE, dtype=torch.float16)
    text = torch.randn(2, 77, width, generator=gen, device=DEVICE, dtype=torch.float16)
    timestep = torch.tensor([500, 500], device=DEVICE)

    @torch.inference_mode()
    def step() -> torch.Tensor:
        return unet(latent, timestep, encoder_hidden_states=text).sample

    def time_steps() -> float:
        for _ in range(3):  # warm-up, includes Triton autotuning
            step()
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / steps

    unet.set_attn_processor(AttnProcessor2_0())
    baseline = step().float()
    sdpa_ms = time_steps()

    # Forced, so unsupported calls show up as a logged fallback rather than
    # silently timing SDPA twice.
    set_attention_backend("triton")
    changed = install_attention_processor(unet, enabled=True)
    ours = step().float()
    graphflow_ms = time_steps()
    return {
        "attention_modules": changed,
        "max_abs_diff": (ours - baseline).abs().max().item(),
        "sdpa_step_ms": sdpa_ms,
        "graphflow_step_ms": graphflow_ms,
        "speedup": sdpa_ms / graphflow_ms,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch is not installed; skipped.")
        return 0
    if not torch.cuda.is_available():
        print("CUDA is not available; the attention benchmark needs a GPU. Skipped.")
        return 0

    dtype_names = (
        args.dtypes.split(",") if args.dtypes else (["fp16"] if args.quick else ["fp16", "bf16"])
    )
    dtypes = [{"fp16": torch.float16, "bf16": torch.bfloat16}[d.strip()] for d in dtype_names]
    shapes = [s for s in SHAPES if not args.quick or s.name in QUICK_SHAPES]
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"comparing against SDPA backend: {args.sdpa_backend}\n")

    rows = []
    for dtype in dtypes:
        for shape in shapes:
            rows.append(bench_shape(shape, dtype, args.sdpa_backend, args.quick))
    print_kernel_table(rows)
    results: dict = {"kernel": rows}

    # Loose bound: fp16/bf16 outputs vs an fp32 reference.
    bad = [f"{r['name']} {r['dtype']}" for r in rows if r["max_abs_diff"] > 2e-2]
    if bad:
        print(f"\nWARNING: large max abs diff for {bad}")

    if not args.no_unet:
        steps = args.unet_steps or (5 if args.quick else 20)
        unet = bench_unet(steps)
        results["unet"] = unet
        print(
            f"\nUNet step (SD-1.5 config, fp16, 64x64 latent, batch 2, {steps} steps, "
            f"{unet['attention_modules']} attention modules):\n"
            f"  AttnProcessor2_0        {unet['sdpa_step_ms']:8.2f} ms\n"
            f"  GraphflowAttnProcessor  {unet['graphflow_step_ms']:8.2f} ms"
            f"  (speedup {unet['speedup']:.2f}x, max abs diff {unet['max_abs_diff']:.2e})"
        )

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
