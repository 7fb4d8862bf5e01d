"""Shipped diffusers configs for single-file checkpoints, and the CLIP tokenizers they use.

Each folder here (``sd1``, ``sdxl``, ...) is a diffusers model folder without weights:
``model_index.json``, the component configs, the scheduler config and each tokenizer's
``tokenizer_config.json``. The BPE vocabulary itself ships once, as OpenAI CLIP's
``bpe_simple_vocab_16e6.txt.gz`` (from open_clip_torch, MIT; see ../NOTICE), and the
``vocab.json``/``merges.txt`` a CLIPTokenizer reads are derived from it when needed. CLIP-L
(SD 1.x, SDXL's first encoder) and OpenCLIP-H/G (SD 2.x, SDXL's second) share that
vocabulary; only the padding token differs, which each tokenizer_config.json records.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

CONFIGS_ROOT = Path(__file__).resolve().parent
BPE_FILE = CONFIGS_ROOT / "tokenizers" / "bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (the rest were never trained).
MERGE_COUNT = 49152 - 256 - 2
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def config_folder(name: str) -> Path:
    """The shipped config folder of family config ``name`` (for example ``"sd1"``)."""
    return CONFIGS_ROOT / name


def is_shipped(folder: Path) -> bool:
    """True for a config folder shipped here (its tokenizers are built, not read)."""
    return folder.resolve().is_relative_to(CONFIGS_ROOT.resolve())


def _byte_characters() -> list[str]:
    """The 256 printable characters byte-level BPE uses for bytes, in CLIP's order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(others))]


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[str, str]:
    """``(vocab.json text, merges.txt text)`` of CLIP's BPE, derived from the shipped file."""
    lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : MERGE_COUNT + 1]
    chars = _byte_characters()
    tokens = [*chars, *(c + "</w>" for c in chars), *(m.replace(" ", "") for m in merges)]
    tokens += SPECIAL_TOKENS
    vocab = {token: index for index, token in enumerate(tokens)}
    return json.dumps(vocab), "#version: 0.2\n" + "\n".join(merges) + "\n"


def write_tokenizer_files(folder: Path) -> None:
    """Write vocab.json and merges.txt beside a shipped ``tokenizer_config.json`` copy."""
    vocab, merges = clip_vocabulary()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(vocab, encoding="utf-8")
    (folder / "merges.txt").write_text(merges, encoding="utf-8")


def clip_tokenizer(tokenizer_folder: Path) -> Any:
    """A CLIPTokenizer for a shipped tokenizer folder (its settings + the shared BPE)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="graphflow-tokenizer-") as temp:
        folder = Path(temp)
        shutil.copy(tokenizer_folder / "tokenizer_config.json", folder)
        write_tokenizer_files(folder)
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def family_tokenizers(folder: Path) -> dict[str, Any]:
    """The tokenizers a shipped config folder names: ``{"tokenizer": ..., "tokenizer_2": ...}``."""
    index = json.loads((folder / "model_index.json").read_text())
    return {
        name: clip_tokenizer(folder / name)
        for name in ("tokenizer", "tokenizer_2")
        if (index.get(name) or [None])[0] is not None
    }


def complete_folder(name: str, target: Path) -> Path:
    """Copy config ``name`` to ``target`` with full tokenizer files: a folder diffusers'
    ``from_single_file(config=...)`` reads on its own (for users and the benchmark)."""
    shutil.copytree(config_folder(name), target, dirs_exist_ok=True)
    for sub in ("tokenizer", "tokenizer_2"):
        if (target / sub).is_dir():
            write_tokenizer_files(target / sub)
    return target
