"""The prompt language users write (ComfyUI's): weights, escapes, BREAK, ``embedding:NAME``.

Pure text processing, no torch and no files: :func:`parse_weights` turns a prompt into
weighted spans, :func:`prompt_words` into the runs of text, embeddings and BREAKs the
tokenizer sees, and :func:`chunk_groups` packs their tokens into the encoder's chunks.
The rules are written out, with examples, in docs/prompts.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

UP = 1.1  # ``(text)`` multiplies the weight by this
EMBEDDING_PREFIX = "embedding:"
BREAK_WORD = "BREAK"
KEEP_WHOLE_BELOW = 8  # a run of fewer tokens is moved whole to the next chunk, not split

_ESCAPES = {"\\(": "(", "\\)": ")", "\\[": "[", "\\]": "]"}
_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
_PAIRS = {")": "(", "]": "["}


@dataclass(frozen=True)
class Text:
    """A run of prompt text (tokenized as one piece) and its weight."""

    text: str
    weight: float


@dataclass(frozen=True)
class EmbeddingRef:
    """``embedding:NAME`` (or a bare name the user opted in to) at a weight."""

    name: str
    weight: float


@dataclass(frozen=True)
class Break:
    """``BREAK``: the next word starts a new chunk."""


BREAK = Break()


def _lex(text: str) -> list[tuple[str, bool]]:
    """(character, is_bracket) pairs; escaped brackets come out as plain characters."""
    items, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _ESCAPES:
            items.append((_ESCAPES[pair], False))
            i += 2
            continue
        items.append((text[i], text[i] in "()[]"))
        i += 1
    return items


def _match(items: list[tuple[str, bool]]) -> dict[int, int]:
    """Opening index → closing index for balanced pairs; the rest of the brackets are text."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for index, (char, bracket) in enumerate(items):
        if not bracket:
            continue
        if char in "([":
            stack.append(index)
        elif stack and items[stack[-1]][0] == _PAIRS[char]:
            pairs[stack.pop()] = index
    return pairs


def _weight_suffix(items, start: int, end: int, pairs: dict[int, int]):
    """(position of the top-level ``:`` and its number) in items[start:end], or None."""
    colon, i = None, start
    while i < end:
        if i in pairs:
            i = pairs[i] + 1
            continue
        if items[i] == (":", False):
            colon = i
        i += 1
    if colon is None or colon == start:
        return None
    tail = items[colon + 1 : end]
    if any(bracket for _, bracket in tail) or any(i in pairs for i in range(colon + 1, end)):
        return None
    number = "".join(char for char, _ in tail)
    if not _NUMBER.fullmatch(number):
        return None
    return colon, float(number)


def _spans(items, start: int, end: int, weight: float, pairs, out: list) -> None:
    i = start
    while i < end:
        char, bracket = items[i]
        if bracket and i in pairs:
            close = pairs[i]
            inner_end = close
            if char == "(":
                inner = weight * UP
                suffix = _weight_suffix(items, i + 1, close, pairs)
                if suffix is not None:
                    inner_end, inner = suffix
            else:
                inner = weight / UP
            if out:
                out[-1][2] = False  # a group boundary ends the span (ComfyUI splits there)
            _spans(items, i + 1, inner_end, inner, pairs, out)
            if out:
                out[-1][2] = False
            i = close + 1
            continue
        if out and out[-1][1] == weight and out[-1][2]:
            out[-1][0].append(char)
        else:
            out.append([[char], weight, True])
        i += 1


def parse_weights(text: str) -> list[tuple[str, float]]:
    """The prompt as (text, weight) spans, in order, escapes resolved.

    ``(x)`` multiplies the weight by 1.1, ``[x]`` divides it by 1.1, ``(x:1.3)`` sets 1.3
    (a number after the group's last top-level colon); groups nest. A bracket without its
    partner (or closed by the wrong kind) is literal text; ``\\(`` ``\\)`` ``\\[`` ``\\]`` are
    literal brackets. Spans on either side of a group are separate, even at equal weights.
    """
    items = _lex(text)
    out: list = []
    _spans(items, 0, len(items), 1.0, _match(items), out)
    return [("".join(chars), weight) for chars, weight, _ in out]


def _embedding(word: str, weight: float, exists, bare: frozenset) -> list:
    """[EmbeddingRef, optional trailing text] when the word names an embedding, else []."""
    if word.startswith(EMBEDDING_PREFIX):
        name = word[len(EMBEDDING_PREFIX) :]
        stripped = name.rstrip(",")
        if exists is not None and stripped != name and not exists(name) and exists(stripped):
            return [EmbeddingRef(stripped, weight), Text(name[len(stripped) :], weight)]
        return [EmbeddingRef(name, weight)]
    stripped = word.rstrip(",")
    if stripped and stripped in bare:
        rest = word[len(stripped) :]
        return [EmbeddingRef(stripped, weight), *([Text(rest, weight)] if rest else [])]
    return []


def prompt_words(
    text: str,
    exists: Callable[[str], bool] | None = None,
    bare_names: Iterable[str] = (),
) -> list[Text | EmbeddingRef | Break]:
    """The prompt as the tokenizer sees it: runs of text, embedding references and BREAKs.

    Each weighted span is one run of text, cut where a word of it is ``BREAK`` (upper case,
    a word of its own: :data:`BREAK`) or names an embedding: a word starting with
    ``embedding:`` (``exists``, when given, lets trailing commas be text: ``embedding:foo,``)
    or equal to one of ``bare_names`` (the user's opt-in). Runs keep their inner whitespace
    and lose the outer; blank runs are dropped.
    """
    bare = frozenset(bare_names)
    pieces: list[Text | EmbeddingRef | Break] = []

    def flush(run: str, weight: float) -> None:
        if run.strip():
            pieces.append(Text(run.strip(), weight))

    for span, weight in parse_weights(text):
        start = 0
        for match in re.finditer(r"\S+", span):
            word = match.group()
            special = [BREAK] if word == BREAK_WORD else _embedding(word, weight, exists, bare)
            if special:
                flush(span[start : match.start()], weight)
                pieces.extend(special)
                start = match.end()
        flush(span[start:], weight)
    return pieces


def chunk_groups(groups: list[Any], capacity: int) -> list[list[Any]]:
    """Pack token groups (one per run of text or embedding) into chunks of ``capacity`` items.

    ComfyUI's rule: a group that does not fit in what is left of the chunk starts the next
    chunk when it has fewer than 8 items, and is split at the boundary otherwise (so a long
    prompt without weights is cut every ``capacity`` tokens). A group
    equal to :data:`BREAK` closes the current chunk (when it holds anything). There is always
    at least one chunk (the empty prompt's).
    """
    if capacity < 1:
        raise ValueError(f"a chunk must hold at least one token (capacity {capacity})")
    chunks: list[list[Any]] = [[]]
    for group in groups:
        if group is BREAK:
            if chunks[-1]:
                chunks.append([])
            continue
        items = list(group)
        whole = len(items) < KEEP_WHOLE_BELOW
        while items:
            room = capacity - len(chunks[-1])
            if len(items) <= room:
                chunks[-1].extend(items)
                break
            if whole and chunks[-1]:
                chunks.append([])
                continue
            chunks[-1].extend(items[:room])
            items = items[room:]
            chunks.append([])
    if len(chunks) > 1 and not chunks[-1]:
        chunks.pop()
    return chunks
