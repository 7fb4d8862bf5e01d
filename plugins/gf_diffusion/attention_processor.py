"""Diffusers attention processor that routes attention through graphflow's dispatcher.

:class:`GraphflowAttnProcessor` is a drop-in replacement for diffusers'
``AttnProcessor2_0`` on ``diffusers.models.attention_processor.Attention``
modules: the projections, norms, residual and output rescale are the module's
own; only the ``softmax(q k^T) v`` core goes through
:func:`graphflow.kernels.attention.attention`.

:func:`install_attention_processor` swaps it in (or out) on a whole model.
Diffusers is imported only inside these functions, so importing this module
does not pull diffusers in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from graphflow.kernels.attention import attention

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention

__all__ = ["GraphflowAttnProcessor", "install_attention_processor"]


def _mask_for_heads(attn: Attention, mask: torch.Tensor, batch: int, key_len: int) -> torch.Tensor:
    """Shape a diffusers attention mask as ``(B, H or 1, Nq or 1, Nk)``.

    The common shapes, ``(B, Nk)`` and ``(B, Nq or 1, Nk)``, become views that
    broadcast over heads (stride 0), instead of the per-head copy that
    ``Attention.prepare_attention_mask`` makes.  Anything else (per-head masks,
    masks needing diffusers' length padding) goes through that method so the
    semantics stay diffusers'.
    """
    if mask.shape[-1] == key_len and mask.shape[0] == batch:
        if mask.ndim == 2:
            return mask[:, None, None, :]
        if mask.ndim == 3:
            return mask[:, None, :, :]
    mask = attn.prepare_attention_mask(mask, key_len, batch)
    return mask.view(batch, attn.heads, -1, mask.shape[-1])


class GraphflowAttnProcessor:
    """Attention processor for diffusers ``Attention`` using graphflow's dispatcher.

    Handles what ``AttnProcessor2_0`` handles: spatial norm, 4-D (image)
    inputs, group norm, cross-attention norm, q/k norms, attention masks,
    the residual connection and ``rescale_output_factor``.  Unlike
    ``AttnProcessor2_0`` it passes the module's ``scale`` to the kernel, so
    modules built with ``scale_qk=False`` are also correct.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply ``attn`` as self-attention, or as cross-attention on ``encoder_hidden_states``."""
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        image_shape = None
        if hidden_states.ndim == 4:
            # (B, C, H, W) feature maps attend over their H*W positions.
            image_shape = hidden_states.shape
            batch, channels, height, width = image_shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)

        if attn.group_norm is not None:
            # GroupNorm wants channels in dim 1.
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        if encoder_hidden_states is None:
            context = hidden_states
        elif attn.norm_cross is not None:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states)
        else:
            context = encoder_hidden_states

        batch = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        key = attn.to_k(context)
        value = attn.to_v(context)

        heads = attn.heads
        head_dim = key.shape[-1] // heads
        # (B, N, H*D) -> (B, H, N, D) as views; the kernel reads any strides.
        query = query.view(batch, -1, heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, heads, head_dim).transpose(1, 2)

        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        mask = None
        if attention_mask is not None:
            mask = _mask_for_heads(attn, attention_mask, batch, key.shape[2])

        out = attention(query, key, value, attn_mask=mask, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)

        out = attn.to_out[0](out)  # output projection
        out = attn.to_out[1](out)  # dropout

        if image_shape is not None:
            out = out.transpose(1, 2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _model_on_cuda(model: torch.nn.Module) -> bool:
    param = next(model.parameters(), None)
    return param is not None and param.device.type == "cuda"


def install_attention_processor(model: torch.nn.Module, enabled: bool | None = None) -> int:
    """Route a diffusers model's attention through graphflow, or undo it.

    ``enabled=None`` enables when the model's parameters are on CUDA (where the
    Triton kernel can help) and disables otherwise; ``True``/``False`` force it.
    Enabling replaces ``AttnProcessor``/``AttnProcessor2_0`` on every diffusers
    ``Attention`` module; modules with other processors (added-KV, IP-adapter,
    fused projections, custom ones) are left alone because their attention is
    not the plain form this processor implements.  Disabling puts diffusers'
    ``AttnProcessor2_0`` back on modules that have ours.

    Returns the number of modules whose processor changed, so a second call
    with the same setting returns 0.
    """
    from diffusers.models.attention_processor import (
        Attention,
        AttnProcessor,
        AttnProcessor2_0,
    )

    if enabled is None:
        enabled = _model_on_cuda(model)

    replaceable: tuple[type[Any], ...] = (AttnProcessor, AttnProcessor2_0)
    # One stateless instance serves every module.
    shared: Any = GraphflowAttnProcessor() if enabled else AttnProcessor2_0()

    changed = 0
    for module in model.modules():
        if not isinstance(module, Attention):
            continue
        current = module.processor
        if enabled:
            wanted = type(current) in replaceable
        else:
            wanted = isinstance(current, GraphflowAttnProcessor)
        if wanted:
            module.set_processor(shared)
            changed += 1
    return changed
