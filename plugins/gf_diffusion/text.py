"""Prompt nodes: tokenize, encode, and combine or average conditionings.

Prompts follow ComfyUI's language (``prompt_syntax.py``, docs/prompts.md): ``(word:1.2)``
weights, ``embedding:NAME`` textual inversions (``embeddings.py``), prompts of any length in
chunks of the encoder's maximum, and ``BREAK``.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

from graphflow import Boolean, Float, Int, NodeContext, NodeResult, String, node
from graphflow.errors import GraphflowError
from graphflow.runtime.handles import compute_device
from graphflow.runtime.models import check_pickle_rule, file_version

from . import embeddings as ti
from .prompt_syntax import (
    BREAK,
    EMBEDDING_PREFIX,
    EmbeddingRef,
    Text,
    chunk_groups,
    prompt_words,
)
from .types import Conditioning as ConditioningType
from .types import TextEncoder, Tokenizer
from .types import Tokens as TokensType
from .values import Conditioning, ConditioningEntry, EmbeddingSlot, TokenizedText, Tokens

log = logging.getLogger("graphflow.diffusion")

PLACEHOLDER_ID = 0  # the id under an embedding vector (never an end token: CLIP pools there)
_INJECTING: ContextVar = ContextVar("graphflow_embedding_rows", default=None)


class PromptError(GraphflowError, ValueError):
    """Tokens, encoders or conditionings that do not fit together (a one-line message)."""


def _resolve_embeddings(pieces, allow_pickle: bool, notes: list[str]) -> dict:
    """name → TextualInversion (or None when there is no such file, with a note)."""
    found: dict = {}
    for piece in pieces:
        if not isinstance(piece, EmbeddingRef) or piece.name in found:
            continue
        path = ti.find_embedding(piece.name)
        if path is None:
            found[piece.name] = None
            notes.append(f"embedding:{piece.name} does not exist in models/embeddings, ignored")
            log.warning("%s", notes[-1])
            continue
        found[piece.name] = ti.load_embedding(path, piece.name, allow_pickle)
    return found


def _token_groups(tok, pieces, inversions: dict) -> list:
    """One list of (id, weight, (embedding, index) or None) per run/embedding, or BREAK."""
    words = [piece.text for piece in pieces if isinstance(piece, Text)]
    ids = iter(tok(words, add_special_tokens=False)["input_ids"] if words else [])
    groups: list = []
    for piece in pieces:
        if piece is BREAK:
            groups.append(BREAK)
        elif isinstance(piece, Text):
            groups.append([(i, piece.weight, None) for i in next(ids)])
        elif inversions.get(piece.name) is not None:
            inversion = inversions[piece.name]
            groups.append(
                [(PLACEHOLDER_ID, piece.weight, (inversion, i)) for i in range(inversion.count)]
            )
    return groups


def _specials(tok) -> tuple[list[int], list[int], int]:
    """(start tokens, end tokens, padding id) as the tokenizer puts them around a prompt."""
    empty = tok("")["input_ids"]
    start, end = (empty[:1], empty[1:]) if len(empty) >= 2 else ([], empty)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (end or [0])[0]
    return start, end, pad


def _tokenized(tok, groups: list) -> TokenizedText:
    """Chunks of (start, content, end, padding) rows, their weights and embedding slots."""
    import torch

    length = tok.model_max_length
    start, end, pad = _specials(tok)
    chunks = chunk_groups(groups, length - len(start) - len(end))
    rows, masks, weights, shown, shown_weights, slots = [], [], [], [], [], []
    for c, chunk in enumerate(chunks):
        content = [token for token, _, _ in chunk]
        used = len(start) + len(content) + len(end)
        rows.append(start + content + end + [pad] * (length - used))
        masks.append([1] * used + [0] * (length - used))
        row_weights = [1.0] * len(start) + [w for _, w, _ in chunk] + [1.0] * len(end)
        weights.append(row_weights + [1.0] * (length - used))
        labels = tok.convert_ids_to_tokens(start + content + end)
        for j, (_, _, ref) in enumerate(chunk):
            if ref is not None:
                inversion, index = ref
                slots.append(EmbeddingSlot(c, len(start) + j, inversion, index))
                suffix = f"#{index}" if inversion.count > 1 else ""
                labels[len(start) + j] = f"embedding:{inversion.name}{suffix}"
        shown += labels
        shown_weights += row_weights
    return TokenizedText(
        torch.tensor(rows),
        torch.tensor(masks),
        shown,
        0,
        torch.tensor(weights, dtype=torch.float32),
        shown_weights,
        slots,
        torch.tensor([start + end + [pad] * (length - len(start) - len(end))]),
        torch.tensor([[1] * (len(start) + len(end)) + [0] * (length - len(start) - len(end))]),
    )


@node("diffusion.tokenize", category="diffusion/conditioning", display_name="Tokenize")
def tokenize(
    text: String(multiline=True),
    tokenizer: Tokenizer,
    bare_embedding_names: Boolean = False,
    allow_pickle: Boolean = False,
) -> TokensType:
    """Split a prompt into the model's tokens, in chunks of its maximum length.

    ComfyUI's prompt language: ``(word:1.2)`` sets a weight, ``(word)`` multiplies it by 1.1
    and ``[word]`` divides it by 1.1 (nestable; ``\\(`` is a literal bracket); ``BREAK``
    starts a new chunk; ``embedding:NAME`` inserts a textual inversion from
    models/embeddings (with bare_embedding_names, a word equal to a file's name does too;
    allow_pickle opts in to .pt files, read weights-only). A prompt longer than the model's
    maximum is encoded in several chunks, so nothing is cut off. Shows the tokens and each
    one's weight; an unknown embedding is a warning and is left out.
    """
    notes: list[str] = []
    bare = ti.bare_names() if bare_embedding_names else ()
    pieces = prompt_words(text, lambda name: ti.find_embedding(name) is not None, bare)
    inversions = _resolve_embeddings(pieces, allow_pickle, notes)
    per_tokenizer = [
        _tokenized(tok, _token_groups(tok, pieces, inversions)) for tok in tokenizer.tokenizers
    ]
    tokens = Tokens(text, per_tokenizer)
    first = per_tokenizer[0] if per_tokenizer else None
    ui = {
        "tokens": first.tokens if first else [],
        "weights": [round(w, 4) for w in first.token_weights] if first else [],
        "chunks": int(first.input_ids.shape[0]) if first else 0,
    }
    if notes:
        ui["warnings"] = notes
    return NodeResult(tokens, ui=ui)


@tokenize.check
def _embeddings_loadable(
    text: str = "", allow_pickle: bool = False, bare_embedding_names: bool = False, **_
) -> list[str]:
    """Pickle embeddings named in a literal prompt need the opt-in: said before the run."""
    if EMBEDDING_PREFIX not in text and not bare_embedding_names:
        return []
    problems = []
    bare = ti.bare_names() if bare_embedding_names else ()
    for piece in prompt_words(text, None, bare):
        if isinstance(piece, EmbeddingRef):
            path = ti.find_embedding(piece.name) or ti.find_embedding(piece.name.rstrip(","))
            refusal = check_pickle_rule(path.name, allow_pickle) if path else None
            if refusal:
                problems.append(f"allow_pickle: {refusal}")
    return problems


@tokenize.fingerprint
def _embedding_files(text: str = "", bare_embedding_names: bool = False, **_) -> tuple:
    """The versions of the embedding files a prompt names: adding, changing or removing one
    re-runs the node (the prompt's text alone does not change)."""
    if EMBEDDING_PREFIX not in text and not bare_embedding_names:
        return ()
    versions: list = []
    bare = ti.bare_names() if bare_embedding_names else ()
    for piece in prompt_words(text, None, bare):
        if isinstance(piece, EmbeddingRef):
            path = ti.find_embedding(piece.name) or ti.find_embedding(piece.name.rstrip(","))
            versions.append((piece.name, file_version(path) if path else None))
    if bare_embedding_names:
        versions.append(tuple(ti.embedding_names()))
    return tuple(versions)


@contextmanager
def _injected(encoder, slots: list[EmbeddingSlot], index: int, encoders: int):
    """Embedding vectors in place of the token embeddings at their slots, for this call only.

    A forward hook on the encoder's input embedding table replaces those rows while this
    thread's context says so: other workflows using the same resident encoder (in other
    threads) see nothing, and the table itself is never changed.
    """
    if not slots:
        yield
        return
    table = encoder.get_input_embeddings()
    width = table.weight.shape[1]
    rows = [
        (slot.chunk, slot.position, slot.embedding.for_encoder(index, encoders, width)[slot.index])
        for slot in slots
    ]

    def replace(module, args, output):
        active = _INJECTING.get()
        if active is None or active[0] is not module:
            return None
        output = output.clone()
        for chunk, position, vector in active[1]:
            output[chunk, position] = vector.to(device=output.device, dtype=output.dtype)
        return output

    hook = table.register_forward_hook(replace)
    token = _INJECTING.set((table, rows))
    try:
        yield
    finally:
        _INJECTING.reset(token)
        hook.remove()


def _hidden(encoder, ids, mask, clip_skip: int, sdxl: bool):
    """(token states as the UNet takes them, the encoder's first output for pooling).

    SD 1.x/2.x: the last hidden state, or an earlier layer through the final layer norm;
    SDXL: the penultimate (or earlier) layer, no final norm.
    """
    if sdxl:
        out = encoder(ids, output_hidden_states=True)
        return out.hidden_states[-(clip_skip + 2)], out[0]
    if clip_skip == 0:
        out = encoder(ids, attention_mask=mask)
        return out[0], None
    out = encoder(ids, attention_mask=mask, output_hidden_states=True)
    hidden = out.hidden_states[-(clip_skip + 1)]
    # transformers < 5 nests the layers under .text_model; 5.x puts them on the model itself.
    layers = getattr(encoder, "text_model", encoder)
    return layers.final_layer_norm(hidden), None


def _weighted(states, empty, weights):
    """ComfyUI's rule per token: z ← (z − z_empty)·w + z_empty where w ≠ 1, else z as is."""
    import torch

    w = weights.to(states.device).unsqueeze(-1)
    moved = ((states.float() - empty.float()) * w + empty.float()).to(states.dtype)
    return torch.where(w != 1.0, moved, states)


def _encode_with(encoder, tokenized: TokenizedText, device, clip_skip, sdxl, index, encoders):
    """One encoder's states for every chunk (chunks, length, dim), weighted; and pooled."""
    mask = None
    use_mask = getattr(encoder.config, "use_attention_mask", False)
    if use_mask:
        mask = tokenized.attention_mask.to(device)
    with _injected(encoder, tokenized.embeddings, index, encoders):
        states, first = _hidden(encoder, tokenized.input_ids.to(device), mask, clip_skip, sdxl)
    if tokenized.weighted:
        empty_mask = tokenized.empty_attention_mask.to(device) if use_mask else None
        empty_ids = tokenized.empty_input_ids.to(device)
        empty, _ = _hidden(encoder, empty_ids, empty_mask, clip_skip, sdxl)
        states = _weighted(states, empty, tokenized.weights)
    pooled = first[:1] if sdxl and first is not None else None
    return states, pooled


@node("diffusion.encode_text", category="diffusion/conditioning", display_name="Encode Text")
def encode_text(
    tokens: TokensType,
    text_encoder: TextEncoder,
    clip_skip: Int(min=0, max=24) = 0,
    ctx: NodeContext = None,
) -> ConditioningType:
    """Turn tokens into the conditioning a sampler follows.

    clip_skip skips that many of the encoder's last layers (0: use the last one). SDXL's
    two encoders and its pooled embedding (from the first chunk) are handled. Weighted
    tokens move away from the empty prompt's encoding (ComfyUI's rule); the chunks of a long
    prompt are concatenated on the token axis. The encoders run on the run's device.
    """
    import torch

    handles = text_encoder.encoders
    if len(handles) != len(tokens.per_tokenizer):
        raise PromptError(
            f"tokens come from {len(tokens.per_tokenizer)} tokenizer(s) but the checkpoint has "
            f"{len(handles)} text encoder(s): tokenize with this checkpoint's tokenizer"
        )
    device = compute_device(handles[0], ctx)
    # SDXL: two encoders; its refiner: OpenCLIP G alone, a projection model (pooled output).
    sdxl = len(handles) > 1 or hasattr(handles[0].unpatched, "text_projection")
    with ExitStack() as taken, torch.no_grad():
        encoders = [taken.enter_context(handle.on_device(device)) for handle in handles]
        device = encoders[0].device
        parts, pooled = [], None
        for index, (encoder, tokenized) in enumerate(
            zip(encoders, tokens.per_tokenizer, strict=True)
        ):
            states, pooled = _encode_with(
                encoder, tokenized, device, clip_skip, sdxl, index, len(encoders)
            )
            parts.append(states)
    if len({part.shape[0] for part in parts}) > 1:
        raise PromptError(
            "the tokenizers split this prompt into different numbers of chunks "
            f"({', '.join(str(p.shape[0]) for p in parts)}); shorten it or add BREAK"
        )
    embeds = torch.cat(parts, dim=-1)
    return Conditioning([ConditioningEntry(embeds.reshape(1, -1, embeds.shape[-1]), pooled)])


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
    """Blend two prompts' embeddings: weight_a × a + (1 − weight_a) × b.

    When b has more tokens than a (a longer prompt: more chunks) it is cut to a's length,
    when fewer it is padded with zeros, as ComfyUI's ConditioningAverage does. Every entry of
    a is blended with b's first entry and keeps its own options (area, mask, timestep range,
    ControlNets), as ComfyUI keeps those of its conditioning_to.
    """
    second = b.entries[0]
    return Conditioning([_averaged(first, second, weight_a) for first in a.entries])


def _averaged(first: ConditioningEntry, second: ConditioningEntry, weight: float):
    """``first`` with its embeddings (and pooled) blended toward ``second``'s."""
    import dataclasses

    import torch

    if first.embeds.shape[::2] != second.embeds.shape[::2]:
        raise PromptError(
            f"cannot average conditionings of shapes {tuple(first.embeds.shape)} and "
            f"{tuple(second.embeds.shape)}"
        )
    other = second.embeds[:, : first.embeds.shape[1]]
    missing = first.embeds.shape[1] - other.shape[1]
    if missing:
        other = torch.cat([other, other.new_zeros(other.shape[0], missing, other.shape[2])], 1)
    embeds = first.embeds * weight + other * (1 - weight)
    pooled = first.pooled if first.pooled is not None else second.pooled
    if first.pooled is not None and second.pooled is not None:
        pooled = first.pooled * weight + second.pooled * (1 - weight)
    return dataclasses.replace(first, embeds=embeds, pooled=pooled)


NODES = [tokenize, encode_text, combine_conditioning, average_conditioning]
