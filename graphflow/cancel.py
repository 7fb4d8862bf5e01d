"""A request to stop one run: :class:`CancelToken`.

Whoever starts a run (the CLI, a job runner, an embedding program) makes one token for it
and passes it to :meth:`graphflow.executor.Executor.run`; cancelling the token from any
thread stops that run at its next node boundary or ``context.progress()`` call, and no other
run. A token cancelled before the run starts makes the run end ``interrupted`` at once,
without executing a node, so a job stopped while it waits needs no special path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("graphflow.cancel")


class CancelToken:
    """One-way, thread-safe "please stop" for one run (once cancelled, it stays cancelled)."""

    __slots__ = ("_callbacks", "_event")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], object]] = []

    def cancel(self) -> None:
        """Ask the run holding this token to stop (any thread, a signal handler, any number
        of times); calls the :meth:`on_cancel` callbacks once."""
        self._event.set()
        self._drain()

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the token is cancelled (at once if it already is),
        in the cancelling thread; e.g. to forward the request to a remote run."""
        self._callbacks.append(callback)
        if self._event.is_set():
            self._drain()

    def _drain(self) -> None:
        # No lock on purpose: cancel() may run in a signal handler that interrupted this
        # very thread inside on_cancel(). list.pop is atomic, so each callback runs once.
        while True:
            try:
                callback = self._callbacks.pop(0)
            except IndexError:
                return
            try:
                callback()
            except Exception:  # one failing callback must not stop the cancel
                log.exception("cancel callback %r failed", callback)

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
