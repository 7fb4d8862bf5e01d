"""Sub-command groups that several plugins share (``graphflow models ...``).

argparse refuses two ``add_parser`` calls of one name, so a plugin that adds ``models
import-ncnn`` and another that adds ``models list`` cannot both create the ``models``
parser. :func:`command_group` gets the group if some plugin made it already, else makes
it; each plugin then adds its own commands to the group's sub-parsers.
"""

from __future__ import annotations

import argparse

_GROUPS_ATTRIBUTE = "_graphflow_groups"


def command_group(
    subparsers: argparse._SubParsersAction, name: str, help: str
) -> argparse._SubParsersAction:
    """The sub-parsers action of group ``name`` (``graphflow <name> <command>``), made once.

    The first caller's ``help`` is the group's help. The group's chosen command is stored
    as ``args.<name>_command``. A command of the same name that is not a group (made by
    plain ``add_parser``) is a ValueError naming it.
    """
    parser = subparsers.choices.get(name)
    if parser is None:
        parser = subparsers.add_parser(name, help=help)
        group = parser.add_subparsers(dest=f"{name}_command", required=True)
        setattr(parser, _GROUPS_ATTRIBUTE, group)
        return group
    group = getattr(parser, _GROUPS_ATTRIBUTE, None)
    if group is None:
        raise ValueError(f"'graphflow {name}' is a command, not a group of sub-commands")
    return group
