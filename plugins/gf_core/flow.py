"""Flow control: choose between branches without computing the unused one."""

from graphflow import Any, Boolean, Lazy, node


@node("core.switch", category="core/flow")
def switch(condition: Boolean, on_true: Lazy(Any), on_false: Lazy(Any)) -> Any:
    """Pass on_true when condition holds, else on_false; the other branch never runs."""
    return on_true if condition else on_false


@switch.needs
def _only_the_chosen_branch(condition, **_):
    return ["on_true" if condition else "on_false"]


NODES = [switch]
