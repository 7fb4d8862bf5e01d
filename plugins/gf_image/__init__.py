"""graphflow's image node pack: image files, example photos, noise and film grain, transforms.

Images travel as float tensors (B, H, W, C) in 0..1; masks as (B, H, W); see convert.py.
"""

from graphflow import hookimpl

from . import examples, io, noise, transform

MODULES = (io, examples, noise, transform)


@hookimpl
def graphflow_nodes():
    """Every node of the image pack."""
    return [spec for module in MODULES for spec in module.NODES]
