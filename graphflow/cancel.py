"""A request to stop one run: :class:`CancelToken`.

Whoever starts a run (the CLI, a job runner, an embedding program) makes one token for it
and passes it to :meth:`graphflow.executor.Executor.run`; cancelling the token from any
thread stops that run at its next node boundary or ``context.progress()`` call, and no other
run. A token cancelled before the run starts makes the run end ``interrupted`` at once,
without executing a node, so a job stopped while it waits needs no special path.
"""

from __future__ import annotations

import threading


class CancelToken:
    """One-way, thread-safe "please stop" for one run (once cancelled, it stays cancelled)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the run holding this token to stop (any thread, any number of times)."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds pass; returns :attr:`cancelled`.

        Lets a node that sleeps or polls wake up as soon as it is told to stop.
        """
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"
