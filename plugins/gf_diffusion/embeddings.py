"""Textual-inversion embeddings from ``models/embeddings`` (A1111, diffusers and SDXL files).

A file holds one or more learned input vectors per text encoder. Formats read:

- A1111 ``.pt`` / ``.safetensors``: ``string_to_param`` ``{'*': (n, dim)}``;
- ``emb_params`` (kohya-ss and others): ``(n, dim)``;
- SDXL two-encoder files: ``clip_l`` ``(n, 768)`` and ``clip_g`` ``(n, 1280)``;
- anything with a single tensor (diffusers' ``learned_embeds.bin``: ``{'<token>': (dim,)}``).

Pickle files (``.pt``, ``.bin``...) need the usual opt-in and are read weights-only
(:func:`graphflow.runtime.models.load_state_dict`). The vectors are injected as input
embeddings of the prompt's token positions (``text.py``); no tokenizer is ever changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphflow.runtime.models import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    ModelFileError,
    check_pickle_rule,
    file_version,
    find_model,
    list_models,
    load_state_dict,
)

FOLDER = "embeddings"
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin", ".pth", ".ckpt")
SDXL_KEYS = ("clip_l", "clip_g")  # in the order of SDXL's two text encoders
_CACHE: dict[tuple, TextualInversion] = {}


class EmbeddingError(ModelFileError):
    """An embedding file that cannot be used: not an embedding, or the wrong width."""


@dataclass(frozen=True)
class TextualInversion:
    """One embedding file's vectors: key (``clip_l``, ``clip_g`` or ``*``) → (n, dim)."""

    name: str
    vectors: dict[str, Any]

    @property
    def count(self) -> int:
        """How many token positions the embedding fills in a prompt."""
        return max(v.shape[0] for v in self.vectors.values())

    def for_encoder(self, index: int, encoders: int, width: int) -> Any:
        """The (n, width) vectors for encoder ``index`` of ``encoders``.

        SDXL files give ``clip_l`` to the first of two encoders and ``clip_g`` to the second;
        otherwise the vectors whose width matches are used. A width that matches nothing is
        an EmbeddingError naming both sizes.
        """
        if encoders == len(SDXL_KEYS) and SDXL_KEYS[index] in self.vectors:
            chosen = self.vectors[SDXL_KEYS[index]]
        else:
            fitting = [v for v in self.vectors.values() if v.shape[-1] == width]
            chosen = fitting[0] if fitting else next(iter(self.vectors.values()))
        if chosen.shape[-1] != width:
            widths = ", ".join(f"{k}: {v.shape[-1]}" for k, v in self.vectors.items())
            raise EmbeddingError(
                f"embedding {self.name!r} has vectors of width {chosen.shape[-1]} ({widths}) "
                f"but text encoder {index + 1} of {encoders} takes width {width}: it was "
                "trained for another model family"
            )
        return chosen


def embedding_names() -> list[str]:
    """Embedding files in the embeddings folders (relative names, with their suffix)."""
    return list_models(FOLDER, EMBEDDING_SUFFIXES)


def find_embedding(name: str) -> Path | None:
    """The file for ``embedding:name``: the name as given, then with each known suffix, then
    a file of that name (with or without suffix) in a sub-folder. None when there is none."""
    if not name or "\x00" in name:
        return None
    try:
        for candidate in (name, *(name + suffix for suffix in EMBEDDING_SUFFIXES)):
            path = find_model(FOLDER, candidate)
            if path is not None and path.is_file():
                return path
    except ModelFileError:
        return None
    wanted = name.lower()
    for listed in embedding_names():
        base = Path(listed)
        if wanted in (base.name.lower(), base.stem.lower()):
            return find_model(FOLDER, listed)
    return None


def bare_names() -> list[str]:
    """File stems of the embeddings, for prompts that name them bare (A1111 style)."""
    return sorted({Path(listed).stem for listed in embedding_names()})


def _as_matrix(value: Any, where: str) -> Any:
    import torch

    if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2) or value.numel() == 0:
        raise EmbeddingError(f"{where} is not a vector or a matrix of vectors")
    return value.detach().reshape(-1, value.shape[-1]).float()


def vectors_of(state: Any, name: str) -> dict[str, Any]:
    """The embedding vectors in a loaded file (see the module docstring for the formats)."""
    import torch

    if not isinstance(state, dict) or not state:
        raise EmbeddingError(f"{name} is not a textual-inversion embedding (no tensors in it)")
    if "string_to_param" in state and isinstance(state["string_to_param"], dict):
        params = state["string_to_param"]
        if not params:
            raise EmbeddingError(f"{name}: string_to_param is empty")
        return {"*": _as_matrix(next(iter(params.values())), f"{name} string_to_param")}
    if "emb_params" in state:
        return {"*": _as_matrix(state["emb_params"], f"{name} emb_params")}
    if any(key in state for key in SDXL_KEYS):
        return {k: _as_matrix(state[k], f"{name} {k}") for k in SDXL_KEYS if k in state}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(tensors) == 1:
        return {"*": _as_matrix(next(iter(tensors.values())), name)}
    shown = ", ".join(list(map(str, state))[:5])
    raise EmbeddingError(
        f"{name} is not a textual-inversion embedding (keys: {shown}); a LoRA goes in "
        "models/loras, a checkpoint in models/checkpoints"
    )


def vector_shapes(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """:func:`vectors_of` from a file header's key → shape table: key → (count, width).

    The same rules, read without the tensors (for listings); empty when the keys are not an
    embedding's.
    """

    def matrix(shape: tuple[int, ...]) -> tuple[int, int] | None:
        if len(shape) not in (1, 2) or not all(shape):
            return None
        return (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])

    params = sorted(k for k in shapes if k.startswith("string_to_param."))
    if params:
        chosen = {"*": shapes[params[0]]}
    elif "emb_params" in shapes:
        chosen = {"*": shapes["emb_params"]}
    elif any(key in shapes for key in SDXL_KEYS):
        chosen = {k: shapes[k] for k in SDXL_KEYS if k in shapes}
    elif len(shapes) == 1:
        chosen = {"*": next(iter(shapes.values()))}
    else:
        return {}
    found = {key: matrix(tuple(shape)) for key, shape in chosen.items()}
    return {key: value for key, value in found.items() if value is not None}


def load_embedding(path: Path, name: str, allow_pickle: bool = False) -> TextualInversion:
    """Read an embedding file (cached per file version); pickle files need the opt-in."""
    suffix = path.suffix.lower()
    if suffix not in SAFE_SUFFIXES and suffix not in PICKLE_SUFFIXES:
        raise EmbeddingError(f"{path.name}: embeddings are .safetensors or .pt files")
    refusal = check_pickle_rule(path.name, allow_pickle)  # before the cache: every use asks
    if refusal:
        raise ModelFileError(refusal)
    key = (str(path), file_version(path))
    if key in _CACHE:
        return _CACHE[key]
    try:
        state = load_state_dict(path, allow_pickle)
    except ModelFileError:
        raise
    except Exception as error:  # not safetensors, truncated, a pickle with code in it
        raise EmbeddingError(f"cannot read embedding {path.name}: {error}") from error
    inversion = TextualInversion(name, vectors_of(state, path.name))
    _CACHE[key] = inversion
    return inversion
