"""The shipped inpainting workflows, run end to end on graphflow-tiny (the pictures of
docs/inpainting.md): what they keep of the input, and that they repaint the rest.

Tolerances. The sampler puts the input's latents back outside the noise mask after every
step, so those latents come out equal to the input's (1e-6: float noise only, there is no
arithmetic on them after the last step). The VAE decoder is not local (GroupNorm statistics
and mid-block attention reach every pixel), so the *decoded* pixels outside the mask drift
from the input: that is why both workflows paste the decoded image onto the input through
the mask (Composite Images (Masked): m·decoded + (1 − m)·input). Where that mask is 0 the
output is the input itself (1e-6 again), and everywhere it lies between the two.

"Changed": the mean change over the repainted pixels must be 6× the VAE's own round-trip
error (mean |decode(encode(x)) − x| = 0.005 on the workflow's picture), i.e. > 0.03; measured
0.064 for the dress's repainted lower half. The outpainted rows must be far from the grey
they start as (measured mean |x − 0.5| = 0.40, std 0.17; required 0.2 and 0.05).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gf_diffusion.sampler import sampler_mask
from graphflow import Executor, load_plugins
from graphflow.workflow import Workflow

WORKFLOWS = Path(__file__).parents[2] / "workflows"
EXACT = 1e-6
CHANGED = 0.03  # 6× the VAE round trip's mean error


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")


def run_shipped(name: str, wanted: list[str]) -> dict:
    """workflows/``name``.json without its save nodes: the ``wanted`` "node.output" values."""
    data = json.loads((WORKFLOWS / f"{name}.json").read_text())
    nodes = data["nodes"]
    for node_id in [k for k, v in nodes.items() if v["type"] == "image.save"]:
        del nodes[node_id]
    pairs = [tuple(name.split(".")) for name in wanted]
    for index, (node_id, output) in enumerate(pairs):
        nodes[f"show_{index}"] = {
            "type": "core.show",
            "inputs": {"value": {"link": [node_id, output]}},
        }
    ids = sorted({node_id for node_id, _ in pairs})
    result = Executor(load_plugins().registry).run(Workflow.model_validate(data), ids)
    assert result.ok, result.error
    return {f"{n}.{o}": result.outputs[n][o] for n, o in pairs}


def assert_latents_kept(before, after, noise_mask) -> None:
    """``after`` equals ``before`` wherever the sampler's view of ``noise_mask`` is 0."""
    keep = sampler_mask(noise_mask, before.samples)[0, 0] == 0
    assert 0 < int(keep.sum()) < keep.numel()
    assert (after.samples[..., keep] - before.samples[..., keep]).abs().max() < EXACT
    assert (after.samples[..., ~keep] - before.samples[..., ~keep]).abs().max() > 0.1


def assert_pasted_back(pasted, original, decoded, paste_mask) -> None:
    """``pasted`` is ``original`` where ``paste_mask`` is 0 and between ``original`` and
    ``decoded`` elsewhere (the blend m·decoded + (1 − m)·original)."""
    outside = paste_mask[0] == 0
    assert outside.float().mean() > 0.3
    assert (pasted[0][outside] - original[0][outside]).abs().max() < EXACT
    bound = paste_mask[0, ..., None] * (decoded[0] - original[0]).abs()
    assert ((pasted[0] - original[0]).abs() <= bound + EXACT).all()


@pytest.mark.slow
def test_latent_mask_workflow_keeps_the_top_half_and_repaints_the_bottom(on_cpu):
    out = run_shipped(
        "inpaint_latent_mask",
        ["source.image", "mask.mask", "encode.latent", "inpaint_sampler.latent",
         "decode.image", "paste_mask.mask", "pasted.image", "grid.image"],
    )  # fmt: skip
    mask, source, pasted = out["mask.mask"], out["source.image"], out["pasted.image"]
    assert torch.equal(mask[0, 16:], torch.ones(16, 32)) and not mask[0, :16].any()
    assert_latents_kept(out["encode.latent"], out["inpaint_sampler.latent"], mask)
    assert_pasted_back(pasted, source, out["decode.image"], out["paste_mask.mask"])
    repainted = out["paste_mask.mask"][0] == 1
    assert (pasted[0][repainted] - source[0][repainted]).abs().mean() > CHANGED
    grid = out["grid.image"]
    assert grid.shape[0] == 1 and grid.shape[2] > 4 * 128  # four panels, scaled ×4


@pytest.mark.slow
def test_outpaint_workflow_keeps_the_crop_and_fills_the_padded_canvas(on_cpu):
    out = run_shipped(
        "outpaint",
        ["crop.image", "pad.image", "pad.mask", "encode.latent", "outpaint_sampler.latent",
         "decode.image", "pasted.image"],
    )  # fmt: skip
    padded, pad_mask, pasted = out["pad.image"], out["pad.mask"], out["pasted.image"]
    assert out["crop.image"].shape[1:3] == (16, 32) and pasted.shape[1:3] == (32, 32)
    assert torch.equal(padded[0, 16:], torch.full((16, 32, 3), 0.5))  # grey to fill
    assert torch.equal(pad_mask[0, 16:], torch.ones(16, 32))
    encoded = out["encode.latent"]
    assert_latents_kept(encoded, out["outpaint_sampler.latent"], encoded.noise_mask)
    assert_pasted_back(pasted, padded, out["decode.image"], pad_mask)
    filled = pasted[0, 16:]
    assert (filled - 0.5).abs().mean() > 0.2 and filled.std() > 0.05
