"""graphflow's image node pack: image files, example photos, noise and film grain, transforms,
upscaling (spandrel models, Real-ESRGAN converted from ncnn, our own SR model), style transfer
(Gatys optimisation, and fast feed-forward networks).

Images travel as float tensors (B, H, W, C) in 0..1; masks as (B, H, W); see convert.py.
"""

from graphflow import hookimpl

from . import (
    commands,
    edges,
    examples,
    fast_style,
    grid,
    hed,
    io,
    masks,
    noise,
    outpaint,
    pose,
    preprocessors_user,
    style,
    transform,
    types,
    upscale,
)

MODULES = (io, examples, noise, transform, upscale, style, fast_style)
MODULES += (masks, outpaint, edges, hed, preprocessors_user, pose)  # issue 17
MODULES += (grid,)


@hookimpl
def graphflow_port_types():
    """UPSCALE_MODEL (Load Upscale Model → Upscale) and FAST_STYLE_MODEL (Load Fast Style
    Model → Fast Style)."""
    return [types.UPSCALE_MODEL_TYPE, fast_style.FAST_STYLE_MODEL_TYPE]


@hookimpl
def graphflow_nodes():
    """Every node of the image pack."""
    return [spec for module in MODULES for spec in module.NODES]


@hookimpl
def graphflow_cli_commands(subparsers):
    """``graphflow models import-ncnn``."""
    commands.add_commands(subparsers)
