"""(issue 17: being written)."""

NODES = []
