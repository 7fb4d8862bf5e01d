"""graphflow's vision node pack: the perception side of the lecture. An ImageNet classifier
with WordNet hedging, a small CLIP of our own for zero-shot scoring (and real CLIP folders
users bring), segmentation, and pictures of latent space and of the VAE's compression.

An ordinary plugin built on graphflow's public API only, registered through the
``graphflow.plugins`` entry point like any third-party pack. Node ids are ``vision.*``.
"""

from graphflow import hookimpl

from . import classify, clip_nodes, hedging, latent_map, segment, vae_view

MODULES = (classify, hedging, clip_nodes, segment, latent_map, vae_view)


@hookimpl
def graphflow_port_types():
    """The port types the pack's modules declare in their ``PORT_TYPES``."""
    return [port for module in MODULES for port in getattr(module, "PORT_TYPES", ())]


@hookimpl
def graphflow_nodes():
    """Every node of the vision pack."""
    return [spec for module in MODULES for spec in module.NODES]
