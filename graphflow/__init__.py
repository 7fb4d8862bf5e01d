"""graphflow: a node-graph engine for image generation with diffusion models.

The public API for plugin authors and embedders. Importing graphflow does not import torch.
"""

from .cache import OutputCache
from .context import NodeContext
from .errors import (
    DuplicateNodeError,
    ErrorCode,
    GraphError,
    GraphflowError,
    Interrupted,
    ValidationFailed,
    WorkflowFormatError,
)
from .events import EventLog
from .executor import Executor, RunResult
from .graph import ValidatedGraph, build_graph, plan_execution, validate
from .node import NodeResult, NodeSpec, Outputs, node
from .plugins import hookimpl, load_plugins
from .registry import Registry
from .types import (
    Any,
    Boolean,
    Choice,
    Conditioning,
    Float,
    Image,
    Int,
    Latent,
    Lazy,
    Mask,
    Model,
    PortType,
    Scheduler,
    String,
    TextEncoder,
    Tokenizer,
    Tokens,
    TypeRef,
    UpscaleModel,
    Vae,
    port_type,
)
from .workflow import Workflow, dumps_workflow, load_workflow, loads_workflow, save_workflow

__version__ = "0.1.0"

__all__ = [
    "Any",
    "Boolean",
    "Choice",
    "Conditioning",
    "DuplicateNodeError",
    "ErrorCode",
    "EventLog",
    "Executor",
    "Float",
    "GraphError",
    "GraphflowError",
    "Image",
    "Int",
    "Interrupted",
    "Latent",
    "Lazy",
    "Mask",
    "Model",
    "NodeContext",
    "NodeResult",
    "NodeSpec",
    "OutputCache",
    "Outputs",
    "PortType",
    "Registry",
    "RunResult",
    "Scheduler",
    "String",
    "TextEncoder",
    "Tokenizer",
    "Tokens",
    "TypeRef",
    "UpscaleModel",
    "Vae",
    "ValidatedGraph",
    "ValidationFailed",
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
    "save_workflow",
    "validate",
]
