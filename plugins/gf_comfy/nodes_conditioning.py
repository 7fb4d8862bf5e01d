"""ComfyUI's text and conditioning class types on graphflow's prompt code.

CLIPTextEncode is graphflow's ``diffusion.tokenize`` + ``diffusion.encode_text`` (ComfyUI's
prompt language: ``(word:1.2)`` weights against the empty prompt, ``embedding:NAME``, 77-token
chunks), encoded from the CLIP value's layer (``clip_layers.py``). The conditioning nodes
work on graphflow's :class:`~gf_diffusion.values.Conditioning` with ComfyUI's semantics: a
ComfyUI conditioning list ``[[cond, {"pooled_output", "area", "strength", ...}], ...]`` is
graphflow's list of entries, one :class:`~gf_diffusion.values.ConditioningEntry` each, whose
optional fields hold what ComfyUI keeps in the dict (area, strength, SDXL sizes).
"""

from __future__ import annotations

from dataclasses import replace

from gf_diffusion import text as prompts
from gf_diffusion.text import PromptError
from gf_diffusion.types import Conditioning as ConditioningType
from gf_diffusion.values import Conditioning, TokenizedText, Tokenizers, Tokens
from graphflow import Float, Int, NodeContext, NodeResult, String

from .clip_layers import encode_clip_skip
from .names import ComfyInput, comfy_node
from .types import Clip, ClipValue

MAX_RESOLUTION = 16384  # ComfyUI's nodes.MAX_RESOLUTION
PROMPT = ComfyInput(multiline=True, dynamic_prompts=True)
SIZE = Int(0, MAX_RESOLUTION)


def _tokens(tokenizers: Tokenizers, text: str) -> tuple[Tokens, list[str]]:
    """graphflow's tokenize node's tokens for ``text`` and its warnings."""
    result = prompts.tokenize.function(text, tokenizers, False, False)
    return result.outputs, list((result.ui or {}).get("warnings", []))


def _encoded(clip: ClipValue, tokens: Tokens, ctx: NodeContext, notes: list[str], **fields):
    """graphflow's encode_text at the CLIP value's layer, one entry with ``fields`` set."""
    clip_skip, note = encode_clip_skip(clip)
    if note:
        notes = [*notes, note]
    conditioning = prompts.encode_text.function(tokens, clip.text_encoder, clip_skip, ctx)
    if fields:
        conditioning = Conditioning([replace(e, **fields) for e in conditioning.entries])
    return NodeResult(conditioning, ui={"warnings": notes}) if notes else conditioning


def _text_check(text: str = "", **_) -> list[str]:
    """Pickle embeddings named in the prompt need graphflow's opt-in (said before the run)."""
    problems = prompts.tokenize.check_function(text=text, allow_pickle=False) or []
    return [p.replace("allow_pickle: ", "", 1) for p in problems]


def _text_files(text: str = "", **_) -> object:
    return prompts.tokenize.fingerprint_function(text=text)


@comfy_node(
    "CLIPTextEncode",
    display_name="CLIP Text Encode (Prompt)",
    category="conditioning",
    inputs={
        "text": replace(PROMPT, tooltip="The text to be encoded."),
        "clip": ComfyInput(tooltip="The CLIP model used for encoding the text."),
    },
    output_names=("CONDITIONING",),
)
def clip_text_encode(
    text: String(multiline=True), clip: Clip, ctx: NodeContext = None
) -> ConditioningType:
    """Encodes a text prompt using a CLIP model into an embedding that can be used to guide
    the diffusion model towards generating specific images.

    ComfyUI's prompt language on graphflow's encoder: ``(word:1.2)``, ``(word)`` and
    ``[word]`` weights (applied against the empty prompt's encoding), ``embedding:NAME``
    from models/embeddings (an unknown one is a warning), prompts longer than 75 tokens in
    77-token chunks, and the layer set by CLIP Set Last Layer.
    """
    tokens, notes = _tokens(clip.tokenizer, text)
    return _encoded(clip, tokens, ctx, notes)


clip_text_encode.check(_text_check)
clip_text_encode.fingerprint(_text_files)


@comfy_node(
    "CLIPSetLastLayer",
    display_name="CLIP Set Last Layer",
    category="conditioning",
    inputs={"stop_at_clip_layer": ComfyInput(step=1)},
    output_names=("CLIP",),
)
def clip_set_last_layer(clip: Clip, stop_at_clip_layer: Int(-24, -1) = -1) -> Clip:
    """Encode prompts from an earlier layer of the text encoder: -1 is the last layer, -2
    the penultimate ("clip skip 2"). A layer past the encoder's depth means the last."""
    return replace(clip, clip_skip=-stop_at_clip_layer)


@comfy_node(
    "ConditioningCombine",
    display_name="Conditioning (Combine)",
    category="conditioning",
    output_names=("CONDITIONING",),
)
def conditioning_combine(
    conditioning_1: ConditioningType, conditioning_2: ConditioningType
) -> ConditioningType:
    """Follow both conditionings: their entries together (the sampler averages their
    guidance by strength, each within its area)."""
    return Conditioning([*conditioning_1.entries, *conditioning_2.entries])


def _first(conditioning: Conditioning, name: str):
    if not conditioning.entries:
        raise PromptError(f"{name} is an empty conditioning")
    return conditioning.entries[0]


def _same_width(a, b, verb: str) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise PromptError(
            f"cannot {verb} conditionings of widths {a.shape[-1]} and {b.shape[-1]} "
            "(prompts of different model families)"
        )


@comfy_node(
    "ConditioningAverage",
    display_name="ConditioningAverage",
    category="conditioning",
    inputs={"conditioning_to_strength": ComfyInput(step=0.01)},
    output_names=("CONDITIONING",),
)
def conditioning_average(
    conditioning_to: ConditioningType,
    conditioning_from: ConditioningType,
    conditioning_to_strength: Float(0.0, 1.0, step=0.01) = 1.0,
) -> ConditioningType:
    """Blend each entry of conditioning_to with the first of conditioning_from:
    to × strength + from × (1 − strength), the pooled embeddings likewise.

    conditioning_from is cut to each entry's token length, or padded with zeros, as
    ComfyUI does; an entry without a pooled embedding takes conditioning_from's.
    """
    import torch

    source = _first(conditioning_from, "conditioning_from")
    s = conditioning_to_strength
    entries = []
    for entry in conditioning_to.entries:
        target = entry.embeds
        _same_width(target, source.embeds, "average")
        other = source.embeds[:, : target.shape[1]].to(target.device, target.dtype)
        missing = target.shape[1] - other.shape[1]
        if missing > 0:
            other = torch.cat([other, other.new_zeros(1, missing, other.shape[2])], dim=1)
        pooled = entry.pooled if entry.pooled is not None else source.pooled
        if source.pooled is not None and pooled is not None:
            from_pooled = source.pooled.to(pooled.device, pooled.dtype)
            pooled = pooled * s + from_pooled * (1.0 - s)
        entries.append(replace(entry, embeds=target * s + other * (1.0 - s), pooled=pooled))
    return Conditioning(entries)


@comfy_node(
    "ConditioningConcat",
    display_name="Conditioning (Concat)",
    category="conditioning",
    output_names=("CONDITIONING",),
)
def conditioning_concat(
    conditioning_to: ConditioningType, conditioning_from: ConditioningType
) -> ConditioningType:
    """Append the tokens of conditioning_from's first entry to every entry of
    conditioning_to (one longer prompt; the pooled embedding stays conditioning_to's)."""
    import torch

    source = _first(conditioning_from, "conditioning_from")
    entries = []
    for entry in conditioning_to.entries:
        _same_width(entry.embeds, source.embeds, "concatenate")
        extra = source.embeds.to(entry.embeds.device, entry.embeds.dtype)
        entries.append(replace(entry, embeds=torch.cat([entry.embeds, extra], dim=1)))
    return Conditioning(entries)


@comfy_node(
    "ConditioningSetArea",
    display_name="Conditioning (Set Area)",
    category="conditioning",
    inputs={name: ComfyInput(step=8) for name in ("width", "height", "x", "y")}
    | {"strength": ComfyInput(step=0.01)},
    output_names=("CONDITIONING",),
)
def conditioning_set_area(
    conditioning: ConditioningType,
    width: Int(64, MAX_RESOLUTION, step=8) = 64,
    height: Int(64, MAX_RESOLUTION, step=8) = 64,
    x: Int(0, MAX_RESOLUTION, step=8) = 0,
    y: Int(0, MAX_RESOLUTION, step=8) = 0,
    strength: Float(0.0, 10.0, step=0.01) = 1.0,
) -> ConditioningType:
    """Apply the conditioning only inside a rectangle of the image (in pixels), with its
    guidance multiplied by strength there; combine it with a whole-image prompt.

    Stored as ComfyUI stores it: (height, width, y, x) in latent pixels (pixels // 8).
    """
    area = (height // 8, width // 8, y // 8, x // 8)
    fields = dict(area=area, strength=strength, set_area_to_bounds=False)
    return Conditioning([replace(e, **fields) for e in conditioning.entries])


@comfy_node(
    "ConditioningZeroOut",
    display_name="ConditioningZeroOut",
    category="advanced/conditioning",
    output_names=("CONDITIONING",),
)
def conditioning_zero_out(conditioning: ConditioningType) -> ConditioningType:
    """The same conditioning with every embedding (and pooled embedding) set to zeros: the
    negative prompt SDXL-Turbo-style workflows use."""
    import torch

    return Conditioning(
        [
            replace(
                e,
                embeds=torch.zeros_like(e.embeds),
                pooled=None if e.pooled is None else torch.zeros_like(e.pooled),
            )
            for e in conditioning.entries
        ]
    )


def _padded(tokenized: TokenizedText, chunks: int) -> TokenizedText:
    """``tokenized`` with empty-prompt chunks appended up to ``chunks`` (as ComfyUI pads the
    shorter of SDXL's two prompts)."""
    import torch

    missing = chunks - tokenized.input_ids.shape[0]
    if missing <= 0:
        return tokenized
    ids = tokenized.empty_input_ids.repeat(missing, 1)
    mask = tokenized.empty_attention_mask.repeat(missing, 1)
    weights = torch.ones(ids.shape, dtype=torch.float32)
    return replace(
        tokenized,
        input_ids=torch.cat([tokenized.input_ids, ids]),
        attention_mask=torch.cat([tokenized.attention_mask, mask]),
        weights=None if tokenized.weights is None else torch.cat([tokenized.weights, weights]),
    )


@comfy_node(
    "CLIPTextEncodeSDXL",
    display_name=None,
    category="advanced/conditioning",
    inputs={"text_g": PROMPT, "text_l": PROMPT},
    output_names=("CONDITIONING",),
)
def clip_text_encode_sdxl(
    clip: Clip,
    width: SIZE = 1024,
    height: SIZE = 1024,
    crop_w: SIZE = 0,
    crop_h: SIZE = 0,
    target_width: SIZE = 1024,
    target_height: SIZE = 1024,
    *,
    text_g: String(multiline=True),
    text_l: String(multiline=True),
    ctx: NodeContext = None,
) -> ConditioningType:
    """Encode an SDXL prompt: text_g through the big encoder (OpenCLIP G), text_l through
    CLIP L, with SDXL's size conditioning (original size, crop corner, target size).

    The shorter prompt is padded with empty chunks to the longer one's length.
    """
    tokenizers = list(clip.tokenizer.tokenizers)
    if len(tokenizers) != 2:
        raise PromptError("CLIPTextEncodeSDXL needs an SDXL checkpoint's CLIP (two encoders)")
    tokens_l, notes_l = _tokens(Tokenizers(tokenizers[:1]), text_l)
    tokens_g, notes_g = _tokens(Tokenizers(tokenizers[1:]), text_g)
    parts = [tokens_l.per_tokenizer[0], tokens_g.per_tokenizer[0]]
    chunks = max(part.input_ids.shape[0] for part in parts)
    tokens = Tokens(text_g, [_padded(part, chunks) for part in parts])
    sizes = ((height, width), (crop_h, crop_w), (target_height, target_width))
    return _encoded(clip, tokens, ctx, notes_g + notes_l, sdxl_sizes=sizes)


@comfy_node(
    "CLIPTextEncodeSDXLRefiner",
    display_name=None,
    category="advanced/conditioning",
    inputs={"ascore": ComfyInput(step=0.01), "text": PROMPT},
    output_names=("CONDITIONING",),
)
def clip_text_encode_sdxl_refiner(
    ascore: Float(0.0, 1000.0, step=0.01) = 6.0,
    width: SIZE = 1024,
    height: SIZE = 1024,
    *,
    text: String(multiline=True),
    clip: Clip,
    ctx: NodeContext = None,
) -> ConditioningType:
    """Encode a prompt for the SDXL refiner, with its aesthetic score and original size."""
    tokens, notes = _tokens(clip.tokenizer, text)
    sizes = ((height, width), (0, 0), (height, width))
    return _encoded(clip, tokens, ctx, notes, sdxl_sizes=sizes, aesthetic_score=ascore)


def _sdxl_text_check(text: str = "", text_g: str = "", text_l: str = "", **_) -> list[str]:
    return _text_check(f"{text} {text_g} {text_l}")


def _sdxl_text_files(text: str = "", text_g: str = "", text_l: str = "", **_) -> object:
    return (_text_files(text), _text_files(text_g), _text_files(text_l))


for _spec in (clip_text_encode_sdxl, clip_text_encode_sdxl_refiner):
    _spec.check(_sdxl_text_check)
    _spec.fingerprint(_sdxl_text_files)

NODES = [
    clip_text_encode,
    clip_set_last_layer,
    conditioning_combine,
    conditioning_average,
    conditioning_concat,
    conditioning_set_area,
    conditioning_zero_out,
    clip_text_encode_sdxl,
    clip_text_encode_sdxl_refiner,
]
