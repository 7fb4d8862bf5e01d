"""Node specifications: how a plugin author declares a node, and what the engine reads from it.

A node is a plain typed function. Its parameters are its inputs, their annotations are the
port types (with widget constraints), the return annotation names its outputs, and the
docstring is the help text the editor shows::

    @node("image.film_grain", version="1.0.0", category="image/noise")
    def film_grain(image: Image, intensity: Float(0.0, 1.0) = 0.2, seed: Int = 0) -> Image:
        \"\"\"Overlay synthetic silver-halide grain.\"\"\"

A parameter annotated with :class:`~graphflow.context.NodeContext` receives the node's
context instead of being an input.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .context import NodeContext
from .types import TypeRef, resolve_choice_labels

SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
NODE_ID = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")


class _Missing:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Missing()
"""Default of an input that must be linked or given a value."""


class NodeDeclarationError(TypeError):
    """A node is declared wrongly (a mistake of the plugin author, found at import time)."""


class UnequalLists(str, enum.Enum):
    """What a node mapped over lists does when its lists differ in length (graphflow.mapping)."""

    ERROR = "error"
    """Refuse to run, naming the inputs and their lengths (graphflow's own nodes)."""
    REPEAT_LAST = "repeat_last"
    """Run as often as the longest list; a shorter list repeats its last element (ComfyUI's
    rule, used by the gf_comfy class types so imported workflows behave as in ComfyUI)."""


@dataclass(frozen=True)
class InputSpec:
    """One input port of a node, with its widget constraints."""

    name: str
    type: str
    default: Any = REQUIRED
    lazy: bool = False
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: Any = field(default=None, compare=False)
    multiline: bool = False
    description: str = ""
    choice_labels: Any = field(default=None, compare=False)
    is_list: bool = False
    """A collect input: it receives a whole list (a single value as a one-element list) and
    the node does not map over it."""

    @property
    def required(self) -> bool:
        """True when the input must be linked or set (it has no default)."""
        return self.default is REQUIRED

    def allowed_choices(self) -> list[object] | None:
        """The current list of allowed values, or None when any value of the type goes."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def to_dict(self) -> dict:
        """JSON-ready form (choices are resolved now, so file lists are current)."""
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "lazy": self.lazy,
        }
        if not self.required:
            data["default"] = self.default
        for key in ("min", "max", "step"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        choices = self.allowed_choices()
        if choices is not None:
            data["choices"] = choices
            labels = resolve_choice_labels(self.choice_labels, choices)
            if labels:
                data["choice_labels"] = labels
        if self.multiline:
            data["multiline"] = True
        if self.description:
            data["description"] = self.description
        if self.is_list:
            data["is_list"] = True
        return data


@dataclass(frozen=True)
class OutputSpec:
    """One named output port of a node; ``is_list``: the node returns a list of values of
    ``type`` there, and downstream nodes map over it."""

    name: str
    type: str
    is_list: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form."""
        data: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.is_list:
            data["is_list"] = True
        return data


class Outputs:
    """Return annotation for several named outputs: ``-> Outputs(image=Image, mask=Mask)``."""

    def __init__(self, **ports: TypeRef):
        if not ports:
            raise NodeDeclarationError("Outputs(...) needs at least one named output")
        self.ports = ports


@dataclass
class NodeResult:
    """What a node may return to attach display data (``ui``) to its outputs."""

    outputs: Any = None
    ui: dict | None = None


class NodeSpec:
    """Everything the engine and the editor know about one node type."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        id: str,
        version: str,
        display_name: str,
        category: str,
        description: str,
        inputs: tuple[InputSpec, ...],
        outputs: tuple[OutputSpec, ...],
        output_node: bool,
        idempotent: bool,
        context_param: str | None,
        unequal_lists: UnequalLists = UnequalLists.ERROR,
    ):
        self.function = function
        self.id = id
        self.version = version
        self.display_name = display_name
        self.category = category
        self.description = description
        self.inputs = inputs
        self.outputs = outputs
        self.output_node = output_node
        self.idempotent = idempotent
        self.context_param = context_param
        self.inputs_by_name: dict[str, InputSpec] = {i.name: i for i in inputs}
        self.outputs_by_name: dict[str, OutputSpec] = {o.name: o for o in outputs}
        self.lazy_inputs: tuple[str, ...] = tuple(i.name for i in inputs if i.lazy)
        self.float_inputs: frozenset[str] = frozenset(i.name for i in inputs if i.type == "FLOAT")
        self.list_inputs: frozenset[str] = frozenset(i.name for i in inputs if i.is_list)
        self.list_outputs: frozenset[str] = frozenset(o.name for o in outputs if o.is_list)
        self.unequal_lists = UnequalLists(unequal_lists)
        self.needs_function: Callable[..., Iterable[str]] | None = None
        self.check_function: Callable[..., Iterable[str] | str | None] | None = None
        self.fingerprint_function: Callable[..., object] | None = None

    # -- decorators for the optional behaviours --------------------------------------------
    def needs(self, function: Callable[..., Iterable[str]]) -> Callable[..., Iterable[str]]:
        """Declare which lazy inputs the node needs, given the values it has so far.

        The function gets every input as a keyword argument (lazy inputs not yet evaluated
        are ``None``) and returns the names of the lazy inputs to evaluate.
        """
        self.needs_function = function
        return function

    def check(
        self, function: Callable[..., Iterable[str] | str | None]
    ) -> Callable[..., Iterable[str] | str | None]:
        """Add the node's own input check, run at validation time on literal inputs.

        The function gets the literal inputs as keyword arguments (linked inputs are absent)
        and returns ``None`` when all is well, else a message or a list of messages. A
        message may start with ``"input_name: "`` to point at one input.
        """
        self.check_function = function
        return function

    def fingerprint(self, function: Callable[..., object]) -> Callable[..., object]:
        """Declare what outside state the result depends on (a file's mtime, say).

        The function gets the literal inputs as keyword arguments and returns any value with a
        stable ``repr``; a change of it forces the node and its descendants to re-run.
        """
        self.fingerprint_function = function
        return function

    # -- calling ---------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in tests)."""
        return self.function(*args, **kwargs)

    def pack_result(self, result: Any) -> tuple[dict[str, Any], dict | None]:
        """Turn what the function returned into ({output name: value}, ui data)."""
        ui = None
        if isinstance(result, NodeResult):
            result, ui = result.outputs, result.ui
        names = [o.name for o in self.outputs]
        if not names:
            if ui is None and isinstance(result, Mapping):
                ui = dict(result)
            return {}, ui
        if len(names) == 1:
            return {names[0]: result}, ui
        if isinstance(result, Mapping):
            missing = [n for n in names if n not in result]
            if missing:
                raise TypeError(f"node {self.id} returned no value for output(s) {missing}")
            return {n: result[n] for n in names}, ui
        if isinstance(result, (tuple, list)) and len(result) == len(names):
            return dict(zip(names, result, strict=True)), ui
        raise TypeError(
            f"node {self.id} declares {len(names)} outputs {names} but returned "
            f"{type(result).__name__}; return a tuple in that order or a dict"
        )

    def to_dict(self) -> dict:
        """JSON-ready form for the editor, ``graphflow nodes --json`` and ``/api/nodes``."""
        data = {
            "id": self.id,
            "version": self.version,
            "display_name": self.display_name,
            "category": self.category,
            "description": self.description,
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
            "output_node": self.output_node,
            "idempotent": self.idempotent,
        }
        if self.unequal_lists is not UnequalLists.ERROR:
            data["unequal_lists"] = self.unequal_lists.value
        return data

    def __repr__(self) -> str:
        return f"<NodeSpec {self.id} {self.version}>"


def _is_context_annotation(annotation: object) -> bool:
    return annotation is NodeContext or annotation == "NodeContext"


def _signature(node_id: str, function: Callable[..., Any]) -> inspect.Signature:
    """The signature with string annotations evaluated (``from __future__ import annotations``).

    Annotations are evaluated one by one so that a ``NodeContext`` imported inside a
    function (not visible to ``eval``) still works and other failures name the parameter.
    """
    try:
        return inspect.signature(function, eval_str=True)
    except NameError:
        pass
    signature = inspect.signature(function)
    namespace = getattr(function, "__globals__", {})
    params = []
    for param in signature.parameters.values():
        annotation = param.annotation
        if isinstance(annotation, str) and annotation != "NodeContext":
            try:
                annotation = eval(annotation, namespace)
            except Exception as error:
                raise NodeDeclarationError(
                    f"node {node_id}: cannot evaluate the annotation of {param.name!r} "
                    f"({annotation!r}): {error}; declare port types at module level"
                ) from None
        params.append(param.replace(annotation=annotation))
    returns = signature.return_annotation
    if isinstance(returns, str) and returns != "None":
        try:
            returns = eval(returns, namespace)
        except Exception as error:
            raise NodeDeclarationError(
                f"node {node_id}: cannot evaluate the return annotation {returns!r}: {error}"
            ) from None
    return signature.replace(parameters=params, return_annotation=returns)


def _input_from_parameter(node_id: str, param: inspect.Parameter) -> InputSpec:
    ref = param.annotation
    if not isinstance(ref, TypeRef):
        raise NodeDeclarationError(
            f"node {node_id}: parameter {param.name!r} needs a port type annotation "
            f"(Int, Float(0, 1), Image, ...), got {ref!r}"
        )
    default = REQUIRED if param.default is inspect.Parameter.empty else param.default
    return InputSpec(
        name=param.name,
        type=ref.type_name,
        default=default,
        lazy=ref.lazy,
        min=ref.min,
        max=ref.max,
        step=ref.step,
        choices=ref.choices,
        multiline=ref.multiline,
        description=ref.description,
        choice_labels=ref.choice_labels,
    )


def _outputs_from(node_id: str, annotation: object, explicit: Mapping[str, TypeRef] | None):
    ports: Mapping[str, TypeRef]
    if explicit is not None:
        ports = explicit
    elif annotation is None or annotation == "None" or annotation is inspect.Signature.empty:
        ports = {}
    elif isinstance(annotation, Outputs):
        ports = annotation.ports
    elif isinstance(annotation, TypeRef):
        ports = {annotation.type_name.lower(): annotation}
    else:
        raise NodeDeclarationError(
            f"node {node_id}: return annotation must be a port type, Outputs(...) or None, "
            f"got {annotation!r}"
        )
    for name, ref in ports.items():
        if not isinstance(ref, TypeRef):
            raise NodeDeclarationError(f"node {node_id}: output {name!r} needs a port type")
    return tuple(OutputSpec(name, ref.type_name) for name, ref in ports.items())


def _check_default(node_id: str, spec: InputSpec) -> None:
    value = spec.default
    if spec.required or value is None:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            raise NodeDeclarationError(f"node {node_id}: default of {spec.name!r} is below min")
        if spec.max is not None and value > spec.max:
            raise NodeDeclarationError(f"node {node_id}: default of {spec.name!r} is above max")


def _list_flags(
    node_id: str, what: str, flags: bool | Iterable[Any], names: list[str]
) -> frozenset[str]:
    """The port names ``input_is_list``/``output_is_list`` mark: ``True`` (all of them), port
    names, or (outputs, as ComfyUI's OUTPUT_IS_LIST) one bool per port in order."""
    if flags is True or flags is False:
        return frozenset(names if flags else ())
    given = list(flags)
    if given and all(isinstance(flag, bool) for flag in given):
        if len(given) != len(names):
            raise NodeDeclarationError(
                f"node {node_id}: {what} has {len(given)} flags for {len(names)} ports {names}"
            )
        return frozenset(name for name, flag in zip(names, given, strict=True) if flag)
    unknown = [name for name in given if name not in names]
    if unknown:
        raise NodeDeclarationError(
            f"node {node_id}: {what} names {unknown}, which are not its ports {names}"
        )
    return frozenset(given)


def node(
    id: str,
    *,
    version: str = "1.0.0",
    display_name: str | None = None,
    category: str | None = None,
    output: bool = False,
    idempotent: bool = True,
    outputs: Mapping[str, TypeRef] | None = None,
    input_is_list: bool | Iterable[str] = False,
    output_is_list: bool | Iterable[str] | Iterable[bool] = False,
    unequal_lists: UnequalLists | str = UnequalLists.ERROR,
) -> Callable[[Callable[..., Any]], NodeSpec]:
    """Declare a node from a typed function; returns its :class:`NodeSpec`.

    ``id`` is stable and namespaced (``core.add``); ``version`` is semver and part of every
    cache key, so bump it when the node's results change. ``output=True`` marks an output
    node (runs are pulled from those); ``idempotent=False`` makes the node run every time.

    Lists (see graphflow.mapping and docs/lists.md): a list reaching an ordinary input makes
    the node run once per element. ``input_is_list`` (``True`` or input names) marks collect
    inputs, which get the whole list instead; ``output_is_list`` (``True``, output names, or
    one bool per output) marks outputs where the function returns a list. ``unequal_lists``
    says what lists of different lengths do (:class:`UnequalLists`).
    """
    if not NODE_ID.match(id):
        raise NodeDeclarationError(
            f"node id {id!r} must be namespaced lower_snake words joined by dots, e.g. 'core.add'"
        )
    if not SEMVER.match(version):
        raise NodeDeclarationError(f"node {id}: version {version!r} is not semver (like 1.2.0)")

    def declare(function: Callable[..., Any]) -> NodeSpec:
        doc = inspect.getdoc(function)
        if not doc:
            raise NodeDeclarationError(
                f"node {id}: add a docstring to {function.__name__}(); the editor shows it as help"
            )
        signature = _signature(id, function)
        inputs: list[InputSpec] = []
        context_param = None
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise NodeDeclarationError(
                    f"node {id}: parameter {param.name!r} must be a plain named parameter"
                )
            if _is_context_annotation(param.annotation):
                context_param = param.name
                continue
            spec = _input_from_parameter(id, param)
            _check_default(id, spec)
            inputs.append(spec)
        output_ports = _outputs_from(id, signature.return_annotation, outputs)
        collect = _list_flags(id, "input_is_list", input_is_list, [i.name for i in inputs])
        listed = _list_flags(id, "output_is_list", output_is_list, [o.name for o in output_ports])
        inputs = [dataclasses.replace(i, is_list=True) if i.name in collect else i for i in inputs]
        output_ports = tuple(
            dataclasses.replace(o, is_list=True) if o.name in listed else o for o in output_ports
        )
        if not output_ports and not output:
            raise NodeDeclarationError(
                f"node {id}: a node without outputs must be an output node (output=True)"
            )
        return NodeSpec(
            function,
            id=id,
            version=version,
            display_name=display_name or function.__name__.replace("_", " ").title(),
            category=category or id.rsplit(".", 1)[0],
            description=doc,
            inputs=tuple(inputs),
            outputs=output_ports,
            output_node=output,
            idempotent=idempotent,
            context_param=context_param,
            unequal_lists=UnequalLists(unequal_lists),
        )

    return declare
