"""graphflow's core node pack: constants, arithmetic, text, flow control and display.

An ordinary plugin, registered through the ``graphflow.plugins`` entry point like any other.
"""

from graphflow import hookimpl

from . import arithmetic, constants, display, flow, lists, text

MODULES = (constants, arithmetic, text, flow, display, lists)


@hookimpl
def graphflow_nodes():
    """Every node declared in this pack's modules."""
    return [spec for module in MODULES for spec in module.NODES]
