"""graphflow: a node-graph engine for image generation with diffusion models.

The public API for plugin authors and embedders. Importing graphflow does not import torch.
"""

from .cache import OutputCache
from .cancel import CancelToken
from .context import NodeContext
from .disk_cache import DiskCache
from .errors import (
    DuplicateNodeError,
    ErrorCode,
    GraphError,
    GraphflowError,
    Interrupted,
    RunStatus,
    ValidationFailed,
    WorkflowFormatError,
)
from .events import EventLog
from .executor import Executor, RunResult
from .expansion import Expand, ExpansionError, InnerGraph
from .graph import ValidatedGraph, build_graph, plan_execution, validate
from .mapping import ListLengthError, ValueList
from .node import NodeResult, NodeSpec, Outputs, node
from .plugins import hookimpl, load_plugins
from .registry import Registry
from .runtime.catalog import ModelCatalog
from .runtime.handles import ModelHandle, ModelPart
from .runtime.patches import FullDelta, LowRankDelta, ModelPatch, WeightFunction
from .settings import Settings
from .types import (
    Any,
    Boolean,
    Choice,
    Float,
    Image,
    Int,
    Lazy,
    Mask,
    PortType,
    String,
    TypeRef,
    port_type,
)
from .value_codec import Unencodable, register_codec, register_dataclass
from .workflow import Workflow, dumps_workflow, load_workflow, loads_workflow, save_workflow

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Port types that moved to their node packs (gf_diffusion.types, gf_image.types): the old
    # names still work, with a DeprecationWarning, for one release.
    from . import types as _types

    if name in _types.MOVED_REFS:
        return _types.moved_ref(__name__, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Any",
    "Boolean",
    "CancelToken",
    "Choice",
    "DiskCache",
    "DuplicateNodeError",
    "ErrorCode",
    "EventLog",
    "Executor",
    "Expand",
    "ExpansionError",
    "Float",
    "FullDelta",
    "GraphError",
    "GraphflowError",
    "Image",
    "InnerGraph",
    "Int",
    "Interrupted",
    "Lazy",
    "ListLengthError",
    "LowRankDelta",
    "Mask",
    "ModelCatalog",
    "ModelHandle",
    "ModelPart",
    "ModelPatch",
    "NodeContext",
    "NodeResult",
    "NodeSpec",
    "OutputCache",
    "Outputs",
    "PortType",
    "Registry",
    "RunResult",
    "RunStatus",
    "Settings",
    "String",
    "TypeRef",
    "Unencodable",
    "ValidatedGraph",
    "ValidationFailed",
    "ValueList",
    "WeightFunction",
    "Workflow",
    "WorkflowFormatError",
    "build_graph",
    "dumps_workflow",
    "hookimpl",
    "load_plugins",
    "load_workflow",
    "loads_workflow",
    "node",
    "plan_execution",
    "port_type",
    "register_codec",
    "register_dataclass",
    "save_workflow",
    "validate",
]
