"""Basic arithmetic on numbers (INT outputs may feed FLOAT inputs)."""

import math

from graphflow import Boolean, Choice, Float, Int, node


@node("core.add", category="core/math")
def add(a: Float = 0.0, b: Float = 0.0) -> Float:
    """a + b."""
    return a + b


@node("core.subtract", category="core/math")
def subtract(a: Float = 0.0, b: Float = 0.0) -> Float:
    """a minus b."""
    return a - b


@node("core.multiply", category="core/math")
def multiply(a: Float = 1.0, b: Float = 1.0) -> Float:
    """a times b."""
    return a * b


@node("core.divide", category="core/math")
def divide(a: Float = 0.0, b: Float = 1.0) -> Float:
    """a ÷ b. Dividing by zero fails the run with a clear message."""
    if b == 0:
        raise ZeroDivisionError(f"cannot divide {a} by zero")
    return a / b


@node("core.power", category="core/math")
def power(base: Float = 1.0, exponent: Float = 1.0) -> Float:
    """base raised to exponent."""
    return math.pow(base, exponent)


@node("core.round", category="core/math", display_name="Round to Integer")
def round_to_int(value: Float = 0.0, mode: Choice(["nearest", "floor", "ceil"]) = "nearest") -> Int:
    """Round a real number to a whole number (nearest, floor or ceil)."""
    if mode == "floor":
        return math.floor(value)
    if mode == "ceil":
        return math.ceil(value)
    return round(value)


@node("core.clamp", category="core/math")
def clamp(value: Float = 0.0, low: Float = 0.0, high: Float = 1.0) -> Float:
    """Limit value to the range low..high."""
    return min(max(value, low), high)


_COMPARISONS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
}


@node("core.compare", category="core/math")
def compare(a: Float = 0.0, b: Float = 0.0, op: Choice(list(_COMPARISONS)) = "<") -> Boolean:
    """Compare two numbers; the result can drive a switch."""
    return _COMPARISONS[op](a, b)


@clamp.check
def _low_not_above_high(low, high, **_):
    if low > high:
        return f"high: must be at least low ({low})"
    return None


NODES = [add, subtract, multiply, divide, power, round_to_int, clamp, compare]
