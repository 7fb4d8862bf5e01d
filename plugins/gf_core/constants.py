"""Constant nodes: a typed value typed into a widget, for wiring into several inputs."""

from graphflow import Boolean, Float, Int, String, node


@node("core.int", category="core/constants", display_name="Integer")
def int_constant(value: Int = 0) -> Int:
    """A whole number."""
    return value


@node("core.float", category="core/constants", display_name="Float")
def float_constant(value: Float = 0.0) -> Float:
    """A real number."""
    return float(value)


@node("core.string", category="core/constants", display_name="String")
def string_constant(value: String(multiline=True) = "") -> String:
    """A piece of text (multiline)."""
    return value


@node("core.boolean", category="core/constants", display_name="Boolean")
def boolean_constant(value: Boolean = False) -> Boolean:
    """True or false."""
    return value


NODES = [int_constant, float_constant, string_constant, boolean_constant]
