"""How close graphflow's graphs come to diffusers' pipelines: inpainting, ControlNet and
InstructPix2Pix, on the tiny random models the equality tests build (no downloads).

Every comparison is one of tests/diffusion/test_*_matches_diffusers.py: the same graph
builder, the same pipeline call, the same weights, prompt and seed, imported from those
modules and from tiny_models / tiny_inpaint / tiny_ip2p / tiny_control, so this report and
the tests cannot drift apart. It prints one markdown row per case: our max and mean
absolute pixel difference (images in 0..1) and the tests' tolerance on the max.

Usage: ``python scripts/equality_report.py [--models DIR] [--device cpu]``
(``--models`` keeps the built tiny models in DIR and reuses them on the next run.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The tests' helper modules, importable as pytest imports them (pyproject's pythonpath).
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "diffusion")]

import numpy as np  # noqa: E402

from graphflow import Executor, Image, Mask, String, node  # noqa: E402

TOLERANCE = 1e-3  # the max pixel difference every equality test asserts
INPAINT = "StableDiffusionInpaintPipeline"
CONTROLNET = "StableDiffusionControlNetPipeline"
# (diffusers pipeline, case, our image, the pipeline's image)
Case = tuple[str, str, Callable, Callable]


def build_models(root: Path) -> Path:
    """The models folder of all three test modules: tiny SD, SDXL, inpainting and
    InstructPix2Pix checkpoints and the tiny ControlNets (built once per folder)."""
    from tiny_control import save_controlnets
    from tiny_inpaint import ensure_inpaint_checkpoint
    from tiny_ip2p import build_ip2p_models
    from tiny_models import build_tiny_sdxl

    if (root / "equality-models-built").exists():
        return root
    build_ip2p_models(root)  # checkpoints/tiny-ip2p (+ single file) and tiny-sd
    build_tiny_sdxl(root / "checkpoints" / "tiny-sdxl")
    save_controlnets(root)
    ensure_inpaint_checkpoint(root)
    (root / "equality-models-built").write_text("ok")
    return root


def inpainting_registry():
    """The installed nodes plus the inpainting tests' picture and masks."""
    import test_inpaint_matches_diffusers as cases

    from support import registry_with

    @node("test.picture")
    def test_picture() -> Image:
        """The inpainting tests' picture."""
        return cases.PICTURE

    @node("test.mask")
    def test_mask(which: String = "aligned") -> Mask:
        """One of the inpainting tests' masks."""
        return cases.ALIGNED if which == "aligned" else cases.OFF_GRID

    return registry_with(test_picture, test_mask)


def inpainting_cases(root: Path) -> list[Case]:
    """(pipeline, case, ours, theirs) for StableDiffusionInpaintPipeline."""
    import test_inpaint_matches_diffusers as t

    executor = Executor(inpainting_registry())
    nine = root / "checkpoints" / t.INPAINT_CHECKPOINT
    four = root / "checkpoints" / "tiny-sd"

    def nine_theirs():
        pipe = t.inpaint_pipeline(nine)
        return t.pipeline_image(
            pipe, t.ALIGNED, masked_image_latents=t.mean_masked_latents(pipe, t.ALIGNED)
        )

    rows = [
        (
            INPAINT,
            "9-channel UNet (DDIM)",
            lambda: t.run_image(executor, t.nine_channel_graph()),
            nine_theirs,
        )
    ]
    for scheduler, denoise in (("ddim", 1.0), ("euler", 1.0), ("ddim", 0.5)):
        rows.append(
            (
                INPAINT,
                f"latent noise mask, 4-channel UNet ({scheduler}, strength {denoise})",
                lambda s=scheduler, d=denoise: t.run_image(executor, t.latent_mask_graph(s, d)),
                lambda s=scheduler, d=denoise: t.pipeline_image(
                    t.inpaint_pipeline(four, s), t.OFF_GRID, strength=d
                ),
            )
        )
    return rows


def controlnet_cases(root: Path) -> list[Case]:
    """(pipeline, case, ours, theirs) for the SD and SDXL ControlNet pipelines."""
    import test_controlnet_matches_diffusers as t

    from support import registry_with

    executor = Executor(registry_with(t.control_hint))
    one = [("tiny-cn", 0, 0.8, 0.0, 1.0)]
    two = [("tiny-cn", 0, 1.0, 0.0, 1.0), ("tiny-cn-b", 1, 0.6, 0.0, 1.0)]
    window = [("tiny-cn", 0, 1.0, 0.25, 0.75)]
    xl = [("tiny-xl-cn", 0, 0.9, 0.0, 1.0)]
    return [
        (
            CONTROLNET,
            "one ControlNet (strength 0.8)",
            lambda: t.run_image(executor, t.control_graph(one)),
            lambda: t.pipeline_image(t.controlnet_pipeline(root, ["tiny-cn"]), [0], [0.8]),
        ),
        (
            CONTROLNET,
            "two ControlNets (MultiControlNetModel)",
            lambda: t.run_image(executor, t.control_graph(two)),
            lambda: t.pipeline_image(
                t.controlnet_pipeline(root, ["tiny-cn", "tiny-cn-b"]), [0, 1], [1.0, 0.6]
            ),
        ),
        (
            CONTROLNET,
            "control_guidance_start 0.25, end 0.75",
            lambda: t.run_image(executor, t.control_graph(window)),
            lambda: t.pipeline_image(
                t.controlnet_pipeline(root, ["tiny-cn"]), [0], [1.0], start=0.25, end=0.75
            ),
        ),
        (
            "StableDiffusionXLControlNetPipeline",
            "SDXL, one ControlNet (Euler)",
            lambda: t.run_image(executor, t.control_graph(xl, "tiny-sdxl", "euler")),
            lambda: t.pipeline_image(
                t.controlnet_pipeline(root, ["tiny-xl-cn"], "tiny-sdxl"),
                [0],
                [0.9],
                negative_prompt="",
            ),
        ),
    ]


def ip2p_cases(root: Path) -> list[Case]:
    """(pipeline, case, ours, theirs) for StableDiffusionInstructPix2PixPipeline."""
    import test_ip2p_matches_diffusers as t

    from support import registry_with

    executor = Executor(registry_with(t.picture))
    rows = []
    for scheduler, guidance, image_guidance in (
        ("euler_ancestral", 7.5, 1.5),
        ("ddim", 7.5, 1.5),
        ("euler", 5.0, 1.2),
        ("ddim", 1.0, 1.5),
    ):
        settings = {
            "scheduler": scheduler,
            "guidance_scale": guidance,
            "image_guidance_scale": image_guidance,
        }
        rows.append(
            (
                "StableDiffusionInstructPix2PixPipeline",
                f"{scheduler}, guidance {guidance}, image guidance {image_guidance}",
                lambda s=settings: t.graph_image(executor, **s),
                lambda s=scheduler, g=guidance, i=image_guidance: t.pipeline_image(root, s, g, i),
            )
        )
    return rows


def compare(ours: Callable, theirs: Callable) -> tuple[float, float]:
    """(max, mean) |ours − theirs| over every pixel and channel."""
    a, b = np.asarray(ours(), dtype=np.float64), np.asarray(theirs(), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ours is {a.shape}, diffusers' {b.shape}")
    difference = np.abs(a - b)
    return float(difference.max()), float(difference.mean())


def quiet_libraries() -> None:
    """Keep diffusers' and transformers' warnings and progress bars out of the table."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Build the models, run every comparison, print the table; 1 if any is over."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="keep (and reuse) the tiny models here")
    parser.add_argument("--device", default="cpu", help="GRAPHFLOW_DEVICE for our graphs")
    args = parser.parse_args(argv)
    models = args.models or Path(tempfile.mkdtemp(prefix="graphflow-equality-"))
    models.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    quiet_libraries()
    build_models(models)
    # graphflow reads its models folder and device from the environment when it loads.
    os.environ["GRAPHFLOW_MODELS"] = str(models)
    os.environ["GRAPHFLOW_DEVICE"] = args.device
    cases = [*inpainting_cases(models), *controlnet_cases(models), *ip2p_cases(models)]
    print("| pipeline (diffusers) | case | max abs diff | mean abs diff | tolerance (max) |")
    print("|---|---|---|---|---|")
    failed = 0
    for pipeline, case, ours, theirs in cases:
        largest, mean = compare(ours, theirs)
        failed += largest >= TOLERANCE
        print(f"| {pipeline} | {case} | {largest:.2e} | {mean:.2e} | {TOLERANCE:.0e} |")
    seconds = time.perf_counter() - started
    print(f"\n{len(cases)} cases, {failed} over the tolerance, {seconds:.0f} s on {args.device}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
