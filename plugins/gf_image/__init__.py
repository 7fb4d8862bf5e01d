"""graphflow's image node pack: loading, saving and previewing images.

Images travel as float tensors (B, H, W, C) in 0..1; masks as (B, H, W); see convert.py.
"""

from graphflow import hookimpl

from . import io

MODULES = (io,)


@hookimpl
def graphflow_nodes():
    """Every node of the image pack."""
    return [spec for module in MODULES for spec in module.NODES]
