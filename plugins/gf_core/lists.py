"""List nodes: make lists, combine them, and move between lists and batches.

A list output makes every node downstream of it run once per element (graphflow.mapping,
docs/lists.md); the nodes here that take a list collect it whole (``input_is_list``).
"""

from __future__ import annotations

from graphflow import Any, Image, Int, Outputs, String, node

CATEGORY = "core/lists"


@node("core.text_list", category=CATEGORY, display_name="Text List", output_is_list=True)
def text_list(text: String(multiline=True) = "") -> String:
    """One text per line of ``text`` (blank lines and surrounding spaces dropped), as a
    list: the nodes it feeds run once per line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@node("core.range", category=CATEGORY, display_name="Number Range", output_is_list=True)
def number_range(start: Int = 0, count: Int(min=0, max=100_000) = 4, step: Int = 1) -> Int:
    """``count`` whole numbers from ``start``, ``step`` apart (seeds for a sweep), as a list."""
    return [start + i * step for i in range(count)]


@node(
    "core.cross",
    category=CATEGORY,
    display_name="Cross Product",
    input_is_list=True,
    output_is_list=True,
)
def cross(rows: Any, columns: Any) -> Outputs(rows=Any, columns=Any):
    """Every pair of an element of ``rows`` and an element of ``columns``, row by row:
    ``rows`` repeats each element once per column, ``columns`` repeats the whole list once
    per row, so two nodes fed by them see every combination (a prompt × seed grid)."""
    return (
        [row for row in rows for _ in columns],
        [column for _ in rows for column in columns],
    )


@node("core.join_text", category=CATEGORY, display_name="Join Text List", input_is_list=["texts"])
def join_text(texts: String, separator: String = "\n") -> String:
    """The texts of a list joined into one, ``separator`` between them (a newline by
    default: one label per line, as ``image.grid`` takes them)."""
    return separator.join(str(text) for text in texts)


@node("core.list_length", category=CATEGORY, display_name="List Length", input_is_list=True)
def list_length(values: Any) -> Int:
    """How many elements a list has (a single value counts as one)."""
    return len(values)


@node("core.image_batch", category=CATEGORY, display_name="Images to Batch", input_is_list=True)
def image_batch(images: Image) -> Image:
    """One IMAGE batch holding every image of a list, in list order (all the same size)."""
    import torch

    if not images:
        raise ValueError("Images to Batch got an empty list; there is nothing to batch")
    sizes = sorted({tuple(image.shape[1:3]) for image in images})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}×{h}" for h, w in sizes)
        raise ValueError(f"the images have different sizes ({shown}); resize them first")
    return torch.cat(list(images), dim=0)


@node("core.batch_to_list", category=CATEGORY, display_name="Batch to Images", output_is_list=True)
def batch_to_list(image: Image) -> Image:
    """Each image of an IMAGE batch as a batch of one, in a list: the nodes it feeds run
    once per image."""
    return [image[i : i + 1] for i in range(image.shape[0])]


NODES = [text_list, number_range, cross, join_text, list_length, image_batch, batch_to_list]
