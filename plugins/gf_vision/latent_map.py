"""Maps of latent space: prompts or latents laid out in 2D by PCA, drawn with labels.

- Prompt Map: each prompt is embedded by a checkpoint's text encoder (what the denoiser is
  conditioned on), the embeddings are projected onto their two principal components and
  drawn as a labelled scatter plot.
- Latent Map: the same for the items of a LATENT batch (each latent flattened).

PCA: with the vectors as the rows of X (N × D), centred (X̄ = X − mean), the thin SVD
X̄ = U S Vᵀ gives the principal directions as the rows of Vᵀ; the 2D point of row i is
(X̄ V)[i, :2] = U[i, :2] · S[:2]. The fraction of the variance each axis explains is
S_k² / Σ S². Signs of singular vectors are arbitrary, so each axis is turned to make its
largest-magnitude coordinate positive: the same inputs give the same picture everywhere.

The walks between two prompts or seeds are in ``latent_walk.py``; this module's ``NODES``
lists them too, so the pack registers one module for the whole topic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gf_diffusion.types import Latent as LatentType
from gf_diffusion.types import TextEncoder, Tokenizer
from graphflow import Choice, Image, Int, NodeContext, Outputs, String, node

from .captions import font
from .latent_walk import CATEGORY, latent_walk

if TYPE_CHECKING:
    import torch

# Ten distinguishable colours (the usual categorical palette of plotting tools).
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip
NO_GROUP = (60, 60, 60)
INK = (90, 90, 90)


def pca_2d(vectors: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Project N vectors (N, ...) onto their first two principal components.

    Returns the (N, 2) points and the fraction of the total variance each axis explains.
    With fewer than two directions of spread (two items, or all on one line) the missing
    axis is zero.
    """
    import torch

    data = vectors.reshape(vectors.shape[0], -1).double()
    if data.shape[0] < 2:
        raise ValueError(f"a map needs at least two items, got {data.shape[0]}")
    centred = data - data.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum())
    points = torch.zeros(data.shape[0], 2, dtype=torch.float64)
    explained = [0.0, 0.0]
    for axis in range(min(2, s.shape[0])):
        if total <= 0 or float(s[axis] ** 2) <= 1e-12 * total:
            continue  # no spread along this axis: SVD's direction there is arbitrary
        column = u[:, axis] * s[axis]
        if column[column.abs().argmax()] < 0:  # deterministic sign
            column = -column
        points[:, axis] = column
        explained[axis] = float(s[axis] ** 2) / total
    return points.float(), explained


def groups_of(labels: list[str], group_words: list[str]) -> list[int | None]:
    """For each label, the index of the first group word it contains as a whole word (or
    phrase), case-insensitively; None when it contains none."""
    found: list[int | None] = []
    for label in labels:
        words = f" {label.lower()} "
        hit = next((i for i, w in enumerate(group_words) if w and f" {w.lower()} " in words), None)
        found.append(hit)
    return found


def _placer(points: torch.Tensor, left: float, right: float, top: float, bottom: float):
    """A function taking a 2D point to pixel (x, y) in the box, y up, each axis filled."""
    lows, highs = points.min(dim=0).values, points.max(dim=0).values
    spans = (highs - lows).clamp_min(1e-12)

    def place(point) -> tuple[float, float]:
        fx, fy = (float((point[i] - lows[i]) / spans[i]) for i in (0, 1))
        if float(highs[1] - lows[1]) <= 1e-12:
            fy = 0.5  # a map on one line: draw it across the middle
        return left + fx * (right - left), bottom - fy * (bottom - top)

    return place


def thumb_side(thumbnails: torch.Tensor, size: int) -> int:
    """The side thumbnails are drawn at: their own, but at most a tenth of the map."""
    return int(min(max(thumbnails.shape[1:3]), size // 10))


def paste_thumbnails(sheet, thumbnails: torch.Tensor, places, colours) -> None:
    """Paste each (H, W, 3) thumbnail centred on its place, framed in its colour."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageDraw

    draw = ImageDraw.Draw(sheet)
    side = thumb_side(thumbnails, sheet.width)
    for image, (x, y), colour in zip(thumbnails, places, colours, strict=True):
        pixels = (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        picture = PILImage.fromarray(pixels).resize((side, side), PILImage.Resampling.LANCZOS)
        left, top = round(x - side / 2), round(y - side / 2)
        draw.rectangle([left - 2, top - 2, left + side + 1, top + side + 1], fill=colour)
        sheet.paste(picture, (left, top))


def draw_map(
    points: torch.Tensor,
    labels: list[str],
    groups: list[int | None],
    group_names: list[str],
    explained: list[float],
    size: int = 640,
    font_size: int = 12,
    thumbnails: torch.Tensor | None = None,
) -> torch.Tensor:
    """A scatter plot of (N, 2) points with a label beside each, coloured by group.

    Returns an (size, size, 3) float image in 0..1: white background, axes named after the
    principal components with the variance they explain, a legend of the group names.
    With thumbnails (N, H, W, 3), each point is its image in a frame of its group's colour
    instead of a dot and a label.
    """
    import numpy as np
    import torch
    from PIL import Image as PILImage
    from PIL import ImageDraw

    typeface = font(font_size)
    sheet = PILImage.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    margin = 3 * font_size
    longest = max((typeface.getlength(label) for label in labels), default=0)
    if thumbnails is not None:
        longest = thumb_side(thumbnails, size)
    right = size - margin - min(longest + font_size, size / 3)  # room for the labels
    place = _placer(points, margin + font_size, right, margin, size - margin - font_size)
    draw.line([(margin, size - margin), (size - margin, size - margin)], fill=INK)
    draw.line([(margin, margin), (margin, size - margin)], fill=INK)
    draw.text((size / 2, size - margin / 2), f"PC1 ({explained[0]:.0%} of the variance)",
              fill=INK, font=typeface, anchor="mm")  # fmt: skip
    draw.text((margin, margin / 2), f"PC2 ({explained[1]:.0%})", fill=INK, font=typeface,
              anchor="lm")  # fmt: skip
    colours = [NO_GROUP if g is None else PALETTE[g % len(PALETTE)] for g in groups]
    places = [place(point) for point in points]
    if thumbnails is not None:
        paste_thumbnails(sheet, thumbnails, places, colours)
    else:
        radius = max(3, font_size // 3)
        for (x, y), label, colour in zip(places, labels, colours, strict=True):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
            draw.text((x + radius + 2, y), label, fill=colour, font=typeface, anchor="lm")
    for row, name in enumerate(group_names):
        y = margin + row * (font_size + 4)
        colour = PALETTE[row % len(PALETTE)]
        draw.rectangle([size - margin - 8, y - 4, size - margin, y + 4], fill=colour)
        draw.text((size - margin - 12, y), name, fill=colour, font=typeface, anchor="rm")
    return torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255.0)


def _lines(text: str) -> list[str]:
    """The non-empty lines of a multiline text, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def map_report(title: str, labels: list[str], points, explained: list[float]) -> str:
    """The map as text: the variance each axis explains and each item's coordinates."""
    lines = [f"{title}: {len(labels)} items, PC1 {explained[0]:.1%}, PC2 {explained[1]:.1%}"]
    lines += [
        f"{x:+8.3f} {y:+8.3f}  {label}"
        for (x, y), label in zip(points.tolist(), labels, strict=True)
    ]
    return "\n".join(lines)


def embed_prompts(prompts: list[str], tokenizer, text_encoder, pooling: str, ctx=None):
    """(N, D) embeddings of the prompts: the encoder's token states averaged over the
    prompt's own tokens ("mean"), or the whole padded sequence in order ("all tokens")."""
    import torch

    from gf_diffusion.text import encode_text, tokenize

    rows = []
    for prompt in prompts:
        tokens = tokenize(prompt, tokenizer).outputs  # the node returns its display data too
        embeds = encode_text(tokens, text_encoder, ctx=ctx).entries[0].embeds[0].float().cpu()
        if pooling == "mean":
            mask = tokens.per_tokenizer[0].attention_mask.reshape(-1).float()
            if mask.shape[0] == embeds.shape[0]:
                embeds = (embeds * mask[:, None]).sum(0) / mask.sum().clamp_min(1)
            else:  # several encoders side by side, or several chunks: every position counts
                embeds = embeds.mean(0)
        rows.append(embeds.reshape(-1))
    if len({row.shape[0] for row in rows}) > 1:
        raise ValueError("the prompts encode to different lengths: use pooling 'mean'")
    return torch.stack(rows)


def labelled_map(vectors, labels, group_words, size, font_size, title, thumbnails=None):
    """(picture batch, report) of a set of labelled vectors: PCA, scatter plot, text."""
    points, explained = pca_2d(vectors)
    groups = groups_of(labels, group_words)
    picture = draw_map(points, labels, groups, group_words, explained, size, font_size, thumbnails)
    return picture.unsqueeze(0), map_report(title, labels, points, explained)


@node("vision.prompt_map", category=CATEGORY, display_name="Prompt Map")
def prompt_map(
    tokenizer: Tokenizer,
    text_encoder: TextEncoder,
    prompts: String(multiline=True),
    group_words: String(multiline=True) = "",
    pooling: Choice(["mean", "all tokens"]) = "mean",
    size: Int(min=128, max=4096) = 640,
    font_size: Int(min=6, max=64) = 12,
    ctx: NodeContext = None,
) -> Outputs(image=Image, report=String):
    """Map prompts in 2D as the text encoder sees them (PCA of their embeddings).

    prompts: one per line. Each is encoded by the checkpoint's text encoder; "mean" averages
    the token states over the prompt's tokens (a sentence embedding), "all tokens" keeps the
    whole padded sequence the denoiser attends to. The embeddings are projected onto their
    two principal components and drawn with each prompt beside its point. group_words (one
    per line, e.g. class names) colour each point by the first of them its prompt contains.
    The report lists the variance each axis explains and every point.
    """
    labels = _lines(prompts)
    vectors = embed_prompts(labels, tokenizer, text_encoder, pooling, ctx)
    return labelled_map(vectors, labels, _lines(group_words), size, font_size, "prompt map")


def item_labels(given: list[str], batch_sizes: list[int]) -> list[str]:
    """One label per latent item: the given ones in order when there is one per item, each
    repeated over its batch when there is one per batch; items without one are numbered."""
    total = sum(batch_sizes)
    if len(given) == len(batch_sizes) and len(given) != total:
        return [label for label, size in zip(given, batch_sizes, strict=True) for _ in range(size)]
    if len(given) > total:
        raise ValueError(f"{len(given)} labels for {total} latents; give one per item or batch")
    return given + [f"#{i}" for i in range(len(given), total)]


@node(
    "vision.latent_map",
    category=CATEGORY,
    display_name="Latent Map",
    input_is_list=["latent", "labels", "thumbnails"],
)
def latent_map(
    latent: LatentType,
    labels: String(multiline=True) = "",
    thumbnails: Image = None,
    group_words: String(multiline=True) = "",
    size: Int(min=128, max=4096) = 640,
    font_size: Int(min=6, max=64) = 12,
) -> Outputs(image=Image, report=String):
    """Map the items of latent batches in 2D (PCA of the flattened latents).

    latent: one batch, or a list of them (e.g. a sampler mapped over prompts), taken
    together. labels: one per item or one per batch, a line each (or a list of texts);
    items without one are numbered. thumbnails (optional, the decoded images, one per item)
    are drawn at the points instead of dots and labels, framed in their group's colour.
    group_words colour each item by the first of them its label contains. The report lists
    the variance each axis explains and every point.
    """
    import torch

    batches = [item.samples.float().cpu() for item in latent]
    if len({tuple(b.shape[1:]) for b in batches}) > 1:
        raise ValueError("the latents differ in size; a map needs latents of one shape")
    given = [line for text in labels or [] for line in _lines(text)]
    names = item_labels(given, [b.shape[0] for b in batches])
    images = None
    thumbnails = [image for image in thumbnails or [] if image is not None]
    if thumbnails:
        images = torch.cat([image[..., :3].float().cpu() for image in thumbnails])
        if images.shape[0] != len(names):
            raise ValueError(f"{images.shape[0]} thumbnails for {len(names)} latents")
    words = _lines(group_words)
    return labelled_map(torch.cat(batches), names, words, size, font_size, "latent map", images)


NODES = [prompt_map, latent_map, latent_walk]
