"""Which worker of the pool takes a job: model affinity first, then the least loaded.

Pure bookkeeping, no Ray: the runner keeps one :class:`WorkerSlot` per actor and asks
:func:`choose_worker` each time a job and an idle worker meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class SlotState(str, Enum):
    """Where a worker actor is in its life."""

    STARTING = "starting"
    """Created; its process is still starting (importing, loading plugins)."""
    READY = "ready"
    """Answered ``ready()``: it takes jobs."""
    LOST = "lost"
    """Died (crash, killed, node lost) or could not start; it takes nothing more."""


@dataclass
class WorkerSlot:
    """The server's view of one worker actor."""

    name: str
    handle: Any
    """The Ray actor handle."""
    state: SlotState = SlotState.STARTING
    job: str | None = None
    """The job it runs now."""
    warm: dict[str, str] = field(default_factory=dict)
    """Affinity keys whose models are resident and outputs cached there → their labels."""
    jobs_run: int = 0
    node: str | None = None
    """The Ray node id it lives on."""
    device: str | None = None

    @property
    def idle(self) -> bool:
        """Ready and running nothing."""
        return self.state is SlotState.READY and self.job is None


def choose_worker(
    slots: Iterable[WorkerSlot],
    keys: Mapping[str, str] | Iterable[str],
    exclude: Iterable[str] = (),
) -> WorkerSlot | None:
    """The idle worker for a job whose model affinity keys are ``keys`` (None if none is idle).

    The idle worker holding the most of the job's models wins. When none holds any, the least
    loaded idle worker takes it: the one with the fewest resident models (so different models
    spread over the pool instead of evicting each other), then the one that ran the fewest
    jobs. ``exclude`` names workers not to use (e.g. one the job was lost on).
    """
    wanted = set(keys)
    skip = set(exclude)
    idle = [slot for slot in slots if slot.idle and slot.name not in skip]
    if not idle:
        return None
    best = max(idle, key=lambda slot: len(wanted & slot.warm.keys()))
    if wanted & best.warm.keys():
        return best
    return min(idle, key=lambda slot: (len(slot.warm), slot.jobs_run))
