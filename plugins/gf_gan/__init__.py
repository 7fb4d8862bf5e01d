"""graphflow's GAN node pack: pretrained GAN generators (DCGAN faces, class-conditional
painted eyes, generator checkpoints users bring), sampling and latent interpolation, and
pix2pix image-to-image translation (the original release's generators and our own small
edges→item model).

An ordinary plugin built on graphflow's public API only, registered through the
``graphflow.plugins`` entry point like any third-party pack. Node ids are ``gan.*``.
"""

from graphflow import hookimpl

from . import dcgan_files, gan_nodes, pix2pix_models, pix2pix_nodes

# Modules with nodes or port types; the networks (gan_models, ...) import torch and load
# only when a node runs, so that listing the plugins stays torch-free.
MODULES = (dcgan_files, gan_nodes, pix2pix_models, pix2pix_nodes)


@hookimpl
def graphflow_port_types():
    """The port types the pack's modules declare in their ``PORT_TYPES``."""
    return [port for module in MODULES for port in getattr(module, "PORT_TYPES", ())]


@hookimpl
def graphflow_nodes():
    """Every node of the GAN pack."""
    return [spec for module in MODULES for spec in module.NODES]
