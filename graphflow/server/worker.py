"""Old home of the job runners; the names now live where their concept does.

- the records, protocols and :func:`execute_job`: :mod:`graphflow.jobs` (the engine's);
- :class:`LocalRunner`: :mod:`graphflow.server.runner_local`;
- :class:`Dispatcher`: :mod:`graphflow.server.dispatcher`.

Imports from ``graphflow.server.worker`` keep working through the names below.
"""

from __future__ import annotations

from ..jobs import (
    JobRunner,
    RunnerListener,
    error_outcome,
    execute_job,
    free_executor,
    outcome_from_result,
)
from .dispatcher import Dispatcher
from .runner_local import LocalRunner

__all__ = [
    "Dispatcher",
    "JobRunner",
    "LocalRunner",
    "RunnerListener",
    "error_outcome",
    "execute_job",
    "free_executor",
    "outcome_from_result",
]
