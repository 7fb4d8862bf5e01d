"""Output nodes that show values to the user (CLI summary, editor)."""

from graphflow import Any, String, node


@node("core.show", category="core/display", display_name="Show Value", output=True)
def show(value: Any, label: String = "") -> None:
    """Show a value in the run summary and the editor (an output node)."""
    text = value if isinstance(value, str) else repr(value)
    return {"text": [f"{label}: {text}" if label else text]}


NODES = [show]
