"""Prompt nodes: tokenize, encode, and combine or average conditionings."""

from __future__ import annotations

import logging
from contextlib import ExitStack

from graphflow import Float, Int, NodeContext, NodeResult, String, node
from graphflow.runtime.handles import compute_device

from .types import Conditioning as ConditioningType
from .types import TextEncoder, Tokenizer
from .types import Tokens as TokensType
from .values import Conditioning, ConditioningEntry, TokenizedText, Tokens

log = logging.getLogger("graphflow.diffusion")


@node("diffusion.tokenize", category="diffusion/conditioning", display_name="Tokenize")
def tokenize(text: String(multiline=True), tokenizer: Tokenizer) -> TokensType:
    """Split a prompt into the model's tokens (padded to its maximum length).

    Shows the tokens, and reports how many were cut off when the prompt is longer than the
    model's maximum.
    """
    per_tokenizer = []
    notes = []
    for tok in tokenizer.tokenizers:
        max_length = tok.model_max_length
        full_length = len(tok(text, truncation=False)["input_ids"])
        encoded = tok(
            text, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        truncated = max(0, full_length - max_length)
        shown = encoded.input_ids[0][: min(full_length, max_length)].tolist()
        per_tokenizer.append(
            TokenizedText(
                encoded.input_ids,
                encoded.attention_mask,
                tok.convert_ids_to_tokens(shown),
                truncated,
            )
        )
        if truncated:
            notes.append(f"prompt truncated: {truncated} token(s) beyond {max_length} dropped")
            log.warning("%s", notes[-1])
    tokens = Tokens(text, per_tokenizer)
    ui = {"tokens": per_tokenizer[0].tokens if per_tokenizer else []}
    if notes:
        ui["warnings"] = notes
    return NodeResult(tokens, ui=ui)


def _encode_one(encoder, tokenized: TokenizedText, device, clip_skip: int):
    """SD 1.x/2.x: last hidden state, or an earlier layer through the final layer norm."""
    ids = tokenized.input_ids.to(device)
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        mask = tokenized.attention_mask.to(device)
    if clip_skip == 0:
        return encoder(ids, attention_mask=mask)[0], None
    out = encoder(ids, attention_mask=mask, output_hidden_states=True)
    hidden = out.hidden_states[-(clip_skip + 1)]
    # transformers < 5 nests the layers under .text_model; 5.x puts them on the model itself.
    layers = getattr(encoder, "text_model", encoder)
    return layers.final_layer_norm(hidden), None


def _encode_sdxl(encoders, tokens: Tokens, device, clip_skip: int):
    """SDXL: penultimate layers of both encoders side by side, pooled from the second."""
    embeds, pooled = [], None
    for encoder, tokenized in zip(encoders, tokens.per_tokenizer, strict=True):
        out = encoder(tokenized.input_ids.to(device), output_hidden_states=True)
        pooled = out[0]
        embeds.append(out.hidden_states[-(clip_skip + 2)])
    import torch

    return torch.cat(embeds, dim=-1), pooled


@node("diffusion.encode_text", category="diffusion/conditioning", display_name="Encode Text")
def encode_text(
    tokens: TokensType,
    text_encoder: TextEncoder,
    clip_skip: Int(min=0, max=24) = 0,
    ctx: NodeContext = None,
) -> ConditioningType:
    """Turn tokens into the conditioning a sampler follows.

    clip_skip skips that many of the encoder's last layers (0: use the last one). SDXL's
    two encoders and its pooled embedding are handled. The encoders run on the run's device.
    """
    import torch

    handles = text_encoder.encoders
    if len(handles) != len(tokens.per_tokenizer):
        raise ValueError(
            f"tokens come from {len(tokens.per_tokenizer)} tokenizer(s) but the checkpoint has "
            f"{len(handles)} text encoder(s): tokenize with this checkpoint's tokenizer"
        )
    device = compute_device(handles[0], ctx)
    with ExitStack() as taken, torch.no_grad():
        encoders = [taken.enter_context(handle.on_device(device)) for handle in handles]
        device = encoders[0].device
        if len(encoders) == 1:
            embeds, pooled = _encode_one(encoders[0], tokens.per_tokenizer[0], device, clip_skip)
        else:
            embeds, pooled = _encode_sdxl(encoders, tokens, device, clip_skip)
    return Conditioning([ConditioningEntry(embeds, pooled)])


@node(
    "diffusion.combine_conditioning",
    category="diffusion/conditioning",
    display_name="Combine Conditioning",
)
def combine_conditioning(a: ConditioningType, b: ConditioningType) -> ConditioningType:
    """Follow both prompts: the sampler averages their guidance (each entry keeps its weight)."""
    return Conditioning([*a.entries, *b.entries])


@node(
    "diffusion.average_conditioning",
    category="diffusion/conditioning",
    display_name="Average Conditioning",
)
def average_conditioning(
    a: ConditioningType, b: ConditioningType, weight_a: Float(0.0, 1.0, step=0.01) = 0.5
) -> ConditioningType:
    """Blend two prompts' embeddings: weight_a × a + (1 − weight_a) × b."""
    first, second = a.entries[0], b.entries[0]
    if first.embeds.shape != second.embeds.shape:
        raise ValueError(
            f"cannot average conditionings of shapes {tuple(first.embeds.shape)} and "
            f"{tuple(second.embeds.shape)}"
        )
    embeds = first.embeds * weight_a + second.embeds * (1 - weight_a)
    pooled = None
    if first.pooled is not None and second.pooled is not None:
        pooled = first.pooled * weight_a + second.pooled * (1 - weight_a)
    return Conditioning([ConditioningEntry(embeds, pooled, first.weight)])


NODES = [tokenize, encode_text, combine_conditioning, average_conditioning]
