"""The values that travel between diffusion nodes (one documented shape per port type).

- MODEL: a :class:`~graphflow.runtime.handles.ModelHandle` of a diffusers denoiser
  (``UNet2DConditionModel``); take it with ``model.on_device(ctx.device)``, which applies its
  patches (LoRA...) for the duration of the block.
- VAE: a ModelHandle of a diffusers ``AutoencoderKL``.
- TEXT_ENCODER / TOKENIZER: :class:`TextEncoders` (one ModelHandle per encoder) /
  :class:`Tokenizers` (one entry for SD 1.x/2.x, two for SDXL, in the pipeline's order).
- SCHEDULER: a diffusers scheduler used as a template (samplers copy it before use).
- TOKENS: :class:`Tokens`; CONDITIONING: :class:`Conditioning`; LATENT: :class:`Latent`.
- CONTROL_NET: a ModelHandle of a diffusers ``ControlNetModel`` or ``T2IAdapter`` (applied to
  conditioning as :class:`ControlSpec`).
- IMAGE: float tensor (B, H, W, C) in 0..1 on the CPU or the run's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TextEncoders:
    """The text encoder(s) of a checkpoint, in the pipeline's order (ModelHandles)."""

    encoders: list[Any]


@dataclass
class Tokenizers:
    """The tokenizer(s) of a checkpoint, matching :class:`TextEncoders`."""

    tokenizers: list[Any]


@dataclass
class EmbeddingSlot:
    """A token position filled by a textual-inversion vector instead of a token's."""

    chunk: int
    position: int  # in the chunk, counting its start token
    embedding: Any  # embeddings.TextualInversion
    index: int  # which of the embedding's vectors


@dataclass
class TokenizedText:
    """One tokenizer's view of a prompt, in chunks of the model's maximum length.

    A prompt longer than one chunk (or with ``BREAK``) has several rows, each with its own
    start/end tokens and padding; the encoder encodes each and concatenates them.
    """

    input_ids: Any  # LongTensor (chunks, max_length)
    attention_mask: Any  # LongTensor (chunks, max_length)
    tokens: list[str]  # the token strings of every chunk without padding, for the editor
    truncated: int = 0  # always 0 now: long prompts are chunked, nothing is dropped
    weights: Any = None  # FloatTensor (chunks, max_length), 1 where no weight was written
    token_weights: list[float] = field(default_factory=list)  # beside ``tokens``
    embeddings: list[EmbeddingSlot] = field(default_factory=list)
    empty_input_ids: Any = None  # LongTensor (1, max_length): the empty prompt, for weights
    empty_attention_mask: Any = None

    @property
    def weighted(self) -> bool:
        """True when some token has a weight other than 1."""
        return self.weights is not None and bool((self.weights != 1.0).any())


@dataclass
class Tokens:
    """A prompt tokenized by each tokenizer of a checkpoint."""

    text: str
    per_tokenizer: list[TokenizedText]


@dataclass
class ConditioningEntry:
    """One encoded prompt: token embeddings, SDXL's pooled embedding, and a weight."""

    embeds: Any  # (1, tokens, dim)
    pooled: Any = None  # (1, dim) for SDXL, else None
    weight: float = 1.0
    # ComfyUI's per-prompt options (set by gf_comfy's nodes; the defaults change nothing):
    # ConditioningSetArea's area as ComfyUI stores it, (height, width, y, x) in latent
    # pixels (image pixels // 8), and the strength its guidance is multiplied by there.
    area: tuple[int, int, int, int] | None = None
    strength: float = 1.0
    # SDXL size conditioning in image pixels: ((original h, w), (crop top, left),
    # (target h, w)); None = the latent's own size, no crop. aesthetic_score: the refiner's.
    sdxl_sizes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    aesthetic_score: float | None = None
    # Regional prompts (issue 17): a mask (1|B, H, W) in 0..1 at any size (resized to the
    # latent; ComfyUI's ConditioningSetMask), its strength, and whether the prompt is
    # evaluated on the mask's bounding box only (ComfyUI's set_cond_area "mask bounds").
    mask: Any = None
    mask_strength: float = 1.0
    set_area_to_bounds: bool = False
    # (start, end) fractions of the sampling run (0 = first step, 1 = last) in which this
    # prompt is used; None = always (ComfyUI's ConditioningSetTimestepRange).
    timestep_range: tuple[float, float] | None = None
    # ControlNets / T2I-Adapters steering this prompt (applied at every model call).
    controls: tuple[ControlSpec, ...] = ()
    # Extra UNet input channels, exactly as the UNet takes them after the latent:
    # inpainting: concat_mask (B|1, 1, h, w) then concat_latent (the masked image's latent,
    # scaled like Latent.samples); InstructPix2Pix: concat_latent (the image's latent as
    # that model takes it: unscaled for SD 1.x). None = the sampler's fallback (inpainting:
    # the sampled latent and its noise mask, as ComfyUI; InstructPix2Pix: zeros).
    concat_latent: Any = None
    concat_mask: Any = None


@dataclass
class ControlSpec:
    """One ControlNet or T2I-Adapter applied to a prompt.

    ``model`` is a ModelHandle (diffusers ``ControlNetModel`` or ``T2IAdapter``/
    ``MultiAdapter``); ``kind`` is "controlnet" or "t2i_adapter". ``hint`` is the control
    image, IMAGE (B, H, W, 3) in 0..1 at image resolution (resized to the latent's image
    size when sampled). ``strength`` scales the residuals; they are applied while the
    sampling run is between ``start`` and ``end`` (fractions, 0 = first step). ``vae`` is
    kept for ControlNets that take latents (ComfyUI's optional input), else None.
    """

    model: Any
    kind: str
    hint: Any
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    vae: Any = None


@dataclass
class Conditioning:
    """One or more encoded prompts; the sampler averages their guidance by weight."""

    entries: list[ConditioningEntry] = field(default_factory=list)


@dataclass
class Latent:
    """Latents (B, C, h, w) already scaled by the VAE's scaling factor.

    ``posterior`` is kept from VAE encoding so that img2img can draw its sample with the
    sampler's own generator (which is what diffusers' img2img pipeline does).
    """

    samples: Any
    posterior: Any = None
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    downscale: int = 8  # image pixels per latent pixel (SDXL's size conditioning needs it)
    # Where a sampler may change the latent: (B|1, 1, h, w) or (B|1, H, W) in 0..1 at any
    # size (resized to the latent when sampled); None = everywhere. ComfyUI's noise_mask.
    noise_mask: Any = None
    # Which items of a larger batch these are (so each item gets the noise it would have
    # had in that batch); None = items 0..B-1. ComfyUI's batch_index.
    batch_index: list[int] | None = None

    def replaced(self, samples: Any) -> Latent:
        """The same latent geometry and noise mask around new samples (no posterior: they
        are final); like ComfyUI, a sampled latent keeps its noise mask and batch index."""
        return Latent(
            samples, None, self.scaling_factor, self.shift_factor, self.downscale,
            self.noise_mask, self.batch_index,
        )  # fmt: skip


def _register_codecs() -> None:
    """Let the disk cache tier store these values (by stable names). A value holding a
    model handle (a ControlSpec's model, a textual-inversion embedding) stays memory-only:
    the codec refuses it where it sits. VAE posteriors register when VAE Encode first runs
    (:func:`register_posterior_codec`), so that importing this module needs no diffusers."""
    from graphflow import register_dataclass

    for cls in (EmbeddingSlot, TokenizedText, Tokens, ConditioningEntry, ControlSpec):
        register_dataclass(cls, f"diffusion.{cls.__name__}")
    register_dataclass(Conditioning, "diffusion.Conditioning")
    register_dataclass(Latent, "diffusion.Latent")


def register_posterior_codec(posterior: Any) -> None:
    """Let a Latent's diffusers ``DiagonalGaussianDistribution`` be stored on disk (rebuilt
    from its parameters). Until it is registered in a process, a stored latent with a
    posterior is a cache miss there, never a wrong value."""
    from graphflow import register_codec

    cls = type(posterior)
    register_codec(
        cls,
        "diffusion.DiagonalGaussian",
        lambda p: {"parameters": p.parameters, "deterministic": bool(p.deterministic)},
        lambda d: cls(d["parameters"], deterministic=d["deterministic"]),
    )


_register_codecs()
