"""Console progress for ``graphflow run``: one bar for the run, one for a node's own steps."""

from __future__ import annotations

import sys

from tqdm import tqdm

from .events import Event, NodeCached, NodeFinished, NodeStarted, Progress, RunStarted


class ConsoleProgress:
    """An event observer drawing tqdm bars on stderr (silent when stderr is not a terminal)."""

    def __init__(self, disable: bool = False):
        # None lets tqdm switch itself off when stderr is not a TTY (logs, CI).
        self.disable = True if disable else None
        self.nodes: tqdm | None = None
        self.steps: tqdm | None = None
        self.step_node = ""

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.close()
            self.nodes = tqdm(
                total=len(event.planned),
                desc="nodes",
                unit="node",
                file=sys.stderr,
                disable=self.disable,
                leave=False,
            )
        elif isinstance(event, NodeStarted) and self.nodes is not None:
            self.nodes.set_postfix_str(event.node, refresh=False)
        elif isinstance(event, Progress) and event.unit == "element":
            if self.nodes is not None:  # elements of a mapped node: on the node bar
                self.nodes.set_postfix_str(f"{event.node} {event.value}/{event.total}")
        elif isinstance(event, Progress):
            if self.steps is None or self.step_node != event.node:
                self._close_steps()
                self.step_node = event.node
                self.steps = tqdm(
                    total=event.total,
                    desc=event.node,
                    unit="step",
                    file=sys.stderr,
                    disable=self.disable,
                    leave=False,
                )
            self.steps.total = event.total
            self.steps.n = event.value
            self.steps.refresh()
        elif isinstance(event, (NodeFinished, NodeCached)):
            if isinstance(event, NodeFinished) and event.node == self.step_node:
                self._close_steps()
            if self.nodes is not None:
                self.nodes.update(1)

    def _close_steps(self) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None
            self.step_node = ""

    def close(self) -> None:
        """Remove the bars (at the end of a run, or before the next one)."""
        self._close_steps()
        if self.nodes is not None:
            self.nodes.close()
            self.nodes = None
