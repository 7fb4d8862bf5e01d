"""Placeholder: filled in by the issue-19 helper that owns it."""

NODES = []
