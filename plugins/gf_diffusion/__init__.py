"""graphflow's diffusion node pack: checkpoints, prompts, schedulers, sampling, VAE.

An ordinary plugin using only graphflow's public API; torch and diffusers are imported when
a node runs, not when the pack is registered.
"""

from graphflow import hookimpl

from . import (
    commands,
    component_loaders,
    controlnet,
    inpaint,
    ip2p,
    k_sampler_node,
    latent_tools,
    latents,
    loader,
    lora,
    regions,
    sampler,
    schedulers,
    t2i_adapter,
    text,
    text_encoder_loaders,
    types,
    vae,
)

MODULES = (loader, text, schedulers, latents, sampler, vae, lora, k_sampler_node)
MODULES += (component_loaders, text_encoder_loaders)  # separate loaders (issue 15 §2)
MODULES += (inpaint, controlnet, t2i_adapter, ip2p, regions, latent_tools)  # issue 17


@hookimpl
def graphflow_port_types():
    """LATENT, CONDITIONING, TOKENS, MODEL, VAE, TEXT_ENCODER, TOKENIZER, SCHEDULER."""
    return list(types.PORT_TYPES)


@hookimpl
def graphflow_nodes():
    """Every node of the diffusion pack."""
    return [spec for module in MODULES for spec in module.NODES]


@hookimpl
def graphflow_cli_commands(subparsers):
    """``graphflow models list`` and ``graphflow models inspect``."""
    commands.add_commands(subparsers)
