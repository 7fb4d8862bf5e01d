"""Regional prompts: how the native sampler combines the predictions of several prompts.

(issue 17: the regional-prompts helper completes this module: areas, masks, timestep
ranges, and the nodes that set them.)
"""

from __future__ import annotations

from typing import Any


def combine(predictions: list, entries: list, step: Any = None) -> Any:
    """The weighted mean of ``predictions`` (one per conditioning entry of one prompt list,
    in the same order) by each entry's ``weight``."""
    if len(predictions) == 1:
        return predictions[0]
    total = sum(float(e.weight) for e in entries)
    out = predictions[0] * (float(entries[0].weight) / total)
    for prediction, entry in zip(predictions[1:], entries[1:], strict=True):
        out = out + prediction * (float(entry.weight) / total)
    return out


NODES = []
