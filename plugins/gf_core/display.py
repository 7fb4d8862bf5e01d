"""Output nodes that show values to the user (CLI summary, editor)."""

from graphflow import Any, String, node


def describe(value: object) -> str:
    """Short text for any value: plain for text and numbers, shape and dtype for arrays."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", "")
        device = getattr(value, "device", "")
        return f"{type(value).__name__}(shape={tuple(shape)}, dtype={dtype}, device={device})"
    text = repr(value)
    return text if len(text) <= 500 else text[:497] + "..."


@node("core.show", category="core/display", display_name="Show Value", output=True)
def show(value: Any, label: String = "") -> None:
    """Show a value in the run summary and the editor (an output node)."""
    text = describe(value)
    return {"text": [f"{label}: {text}" if label else text]}


NODES = [show]
