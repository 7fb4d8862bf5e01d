"""graphflow's ComfyUI compatibility pack: ComfyUI's core class types, under their exact
names, on graphflow's own nodes and runtime (see ``names.py`` for how a class type is
declared, and docs/comfyui.md).
"""

from graphflow import hookimpl

from . import (
    nodes_conditioning,
    nodes_control,
    nodes_image,
    nodes_inpaint,
    nodes_io,
    nodes_ip2p,
    nodes_latent,
    nodes_loaders,
    nodes_mask,
    nodes_preprocess,
    nodes_regions,
    nodes_sampling,
    types,
)

MODULES = (nodes_loaders, nodes_conditioning, nodes_latent, nodes_image, nodes_io, nodes_sampling)
MODULES += (nodes_mask, nodes_inpaint, nodes_control, nodes_preprocess, nodes_ip2p, nodes_regions)


@hookimpl
def graphflow_port_types():
    """CLIP (ComfyUI's text encoder + tokenizer bundle)."""
    return list(types.PORT_TYPES)


@hookimpl
def graphflow_nodes():
    """Every ComfyUI class type this pack implements."""
    return [spec for module in MODULES for spec in module.NODES]


@hookimpl
def graphflow_server_routes():
    """ComfyUI's HTTP and websocket protocol on ``graphflow serve`` (``protocol/``)."""

    def install(app):
        from .protocol import install as install_protocol  # aiohttp loads only for serve

        install_protocol(app)

    return [install]


@hookimpl
def graphflow_workflow_importers():
    """ComfyUI's API and UI workflow formats (JSON files and PNG chunks) read by graphflow."""
    from .workflow_formats import IMPORTERS

    return list(IMPORTERS)


@hookimpl
def graphflow_workflow_exporters():
    """``convert --to comfy-api|comfy-ui``; saved PNGs get ComfyUI's prompt/workflow chunks."""
    from .workflow_formats import EXPORTERS

    return list(EXPORTERS)
