"""ComfyUI's dynamic prompts, as its frontend applies them when a UI workflow is queued.

A text widget declared with ``dynamicPrompts`` (``CLIPTextEncode.text``) is sent with
comments removed (``/* ... */`` and ``// ...`` to the end of the line, so ``http://host``
loses everything after ``//``) and each ``{a|b|c}`` replaced by one choice, picked at random
(nested groups are expanded too, every group is evaluated whether picked or not, a group
left open at the end still counts). A backslash makes the next character plain text
(``\\{`` → ``{``; the backslash is dropped). Behaviour checked against the frontend's own
tests (formatUtil's processDynamicPrompt); written without recursion.
"""

from __future__ import annotations

import random
import re

_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//.*")


def strip_comments(text: str) -> str:
    """``text`` without ``/* ... */`` blocks and ``// ...`` line ends."""
    return _COMMENTS.sub("", text)


def _pick(choices: list[str], rng: random.Random) -> str:
    return choices[int(rng.random() * len(choices))]


def expand_dynamic_prompt(text: str, rng: random.Random | None = None) -> str:
    """``text`` as ComfyUI's frontend sends it: comments removed, ``{a|b}`` groups chosen.

    ``rng`` picks the choices (``random.random()`` semantics: index = ⌊r · n⌋); the frontend
    uses an unseeded generator, so does the default.
    """
    rng = rng or random.Random()
    text = strip_comments(text)
    # stack[0] is the text outside any group; each open group is a list of choices, the
    # last one being written.
    stack: list[list[str]] = [[""]]
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if char == "\\":
            if index < len(text):
                stack[-1][-1] += text[index]
                index += 1
        elif char == "{":
            stack.append([""])
        elif char == "|" and len(stack) > 1:
            stack[-1].append("")
        elif char == "}" and len(stack) > 1:
            chosen = _pick(stack.pop(), rng)
            stack[-1][-1] += chosen
        else:
            stack[-1][-1] += char
    while len(stack) > 1:  # groups still open at the end
        chosen = _pick(stack.pop(), rng)
        stack[-1][-1] += chosen
    return stack[0][0]
