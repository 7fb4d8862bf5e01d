"""Text nodes: join, replace, format values as text."""

from graphflow import Any, Int, String, node


@node("core.concat", category="core/text", display_name="Join Text")
def concat(a: String = "", b: String = "", separator: String = "") -> String:
    """Join two pieces of text with an optional separator."""
    return f"{a}{separator}{b}" if a and b else a or b


@node("core.replace", category="core/text", display_name="Replace Text")
def replace(
    text: String = "", old: String = "", new: String = "", count: Int(min=-1) = -1
) -> String:
    """Replace occurrences of old with new (count -1: all of them)."""
    if not old:
        return text
    return text.replace(old, new, count)


@node("core.to_string", category="core/text", display_name="To Text")
def to_string(value: Any) -> String:
    """Any value as text (numbers printed plainly)."""
    return str(value) if isinstance(value, (str, int, float, bool)) else repr(value)


@node("core.length", category="core/text", display_name="Text Length")
def length(text: String = "") -> Int:
    """Number of characters in a piece of text."""
    return len(text)


NODES = [concat, replace, to_string, length]
