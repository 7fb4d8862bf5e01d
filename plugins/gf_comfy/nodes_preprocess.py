"""ComfyUI's control-image preprocessor class types: Canny.

ComfyUI's Canny (comfy_extras/nodes_canny.py, a V3 node) runs kornia's ``canny`` with its
default 5×5 σ=1 blur and returns the edge map (0/1) repeated to three channels. We run
gf_image's torch implementation of the same rules (``edges.canny_like_kornia``), so the
pixels are those of ComfyUI's without kornia installed.
"""

from __future__ import annotations

from gf_image.edges import canny_like_kornia
from graphflow import Float, Image, NodeContext

from .names import comfy_node

THRESHOLD = Float(min=0.01, max=0.99, step=0.01)


@comfy_node("Canny", display_name=None, category="image/preprocessors")
def canny(
    image: Image,
    low_threshold: THRESHOLD = 0.4,
    high_threshold: THRESHOLD = 0.8,
    ctx: NodeContext = None,
) -> Image:
    """Canny edges: thin white lines on black, for a Canny ControlNet.

    A pixel is an edge where the (blurred) luminance gradient is above high_threshold, or
    above low_threshold and connected to such an edge. The thresholds are in unnormalised
    Sobel units (a sharp black-to-white step reaches about 2.6), as in ComfyUI: lower
    them for more edges. Each image of the batch is processed on the run's device.
    """
    device = ctx.device if ctx is not None else image.device
    planes = image.to(device).movedim(-1, 1)
    edges = canny_like_kornia(planes, low_threshold, high_threshold)
    return edges.repeat(1, 3, 1, 1).movedim(1, -1).to(image.device, image.dtype).contiguous()


NODES = [canny]
