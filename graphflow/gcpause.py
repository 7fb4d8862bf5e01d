"""Pausing Python's cyclic garbage collector around allocation-heavy, cycle-free passes,
and setting it up for a long-running server (:func:`tune_for_server`).

Parsing and validating a 10,000-node workflow allocates hundreds of thousands of small
objects; each allocation burst triggers full collections whose cost grows with the heap, so
per-node cost would grow with graph size. These passes create no reference cycles, so
collecting during them finds nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (re-enabled only if it was enabled)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


SERVER_THRESHOLDS = (50_000, 20, 20)
"""The collector's thresholds in a long-running server (CPython's default: 700, 10, 10).

A 10,000-node job makes ~140,000 container objects (the parsed document, the workflow
model, the graph), almost all freed by reference counting when the job ends; with the
default thresholds the collector traversed them in several young and full collections per
job (~90 ms of a ~700 ms job, measured in ``graphflow serve``). Fewer, larger young
collections find the same garbage: what graphflow builds has no reference cycles
(tests/test_scale.py checks), so cyclic garbage comes only from plugin code."""


def tune_for_server(thresholds: tuple[int, int, int] = SERVER_THRESHOLDS) -> None:
    """Set up the collector for a server process, once its plugins are loaded: everything
    alive now (modules, the registry) moves to the permanent generation, so full
    collections no longer traverse it, and ``thresholds`` apply (see SERVER_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
