"""The CLI's progress bars: steps on the step bar, a mapped node's elements on the node bar."""

from __future__ import annotations

from graphflow.events import NodeStarted, Progress, RunStarted
from graphflow.progress import ConsoleProgress


def test_element_reports_go_to_the_node_bar_and_steps_to_the_step_bar():
    bars = ConsoleProgress()
    bars.disable = False  # draw even without a terminal (tqdm writes to stderr)
    bars(RunStarted("r", planned=("a", "b")))
    bars(NodeStarted("r", node="a"))
    bars(Progress("r", node="a", value=2, total=5, element=0, elements=3))
    assert (bars.steps.n, bars.steps.total) == (2, 5)
    bars(Progress("r", node="a", value=1, total=3, unit="element", elements=3))
    assert (bars.steps.n, bars.steps.total) == (2, 5)  # the element report left it alone
    assert "a 1/3" in bars.nodes.postfix
    bars.close()
