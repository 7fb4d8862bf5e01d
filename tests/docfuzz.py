"""A seeded mutation fuzzer for workflow documents (used by tests/test_document_fuzz.py).

Every case is rebuilt from its seed alone: ``make_case(seed, corpus, catalog)`` picks a seed
document, applies up to three structural mutations and sometimes one to the text (always
one when no structural one was drawn), all chosen by ``random.Random(seed)``, and returns
the bytes to feed to the loader. Mutations are structural (drop, duplicate or rename keys, swap
node types, wrong-typed values at any path, links to missing nodes or outputs, self links,
cycles), nasty values (non-finite numbers as floats, strings and raw JSON tokens, huge ints,
-0, long and odd unicode strings, NUL, lone surrogates, deep nesting), and damage to the text
(truncation, flipped and inserted bytes, duplicated keys, other encodings, random bytes).

Replay one case: ``.venv/bin/python tests/docfuzz.py SEED`` (add ``--png`` for a PNG case)
prints its mutations, its payload and what loading, validating and running it did. A seed
gives the same bytes on any machine with the same node packs installed (the mutators draw
node types, inputs and outputs from the registry).
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphflow import Executor, OutputCache, Registry, ValidationFailed, WorkflowFormatError
from graphflow.graph import build_graph
from graphflow.workflow import Workflow, dumps_workflow, load_workflow, loads_workflow

ROOT = Path(__file__).resolve().parents[1]
CHEAP_PREFIX = "core."
CHEAP_BASES = {"hello", "chain", "math", "text", "prototype"}
"""Node types whose documents are also run (the gf_core pack: no models, no files)."""

LONG_TEXT = "\u2603" * 20_000  # long, yet no short pool value occurs in it (core.replace)
NASTY_VALUES: list[Any] = [
    float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324, 2**53 + 1, 2**63,
    -(2**63) - 1, 2**64, 10**300, 2**1100, -(10**400), 0, -1,
    "NaN", "Infinity", "-0", "1e999", "", " ", "x", LONG_TEXT, "é" * 300, "\u0000",
    "a\u0000b", "\ud800", "\udfff", "x\udc00y", "\U0001f4a5", "\u202e", "\ufeff", "\u0301",
    "../../etc/passwd", "%s%n{0}", "<script>", "graphflow/1", "core.add",
]  # fmt: skip
WRONG_TYPED: list[Any] = [
    None, True, False, 0, 1, -7, 1.5, "", "text", [], [1, "a"], [[]], {}, {"k": 1},
    {"link": ["n", "out"]}, {"type": "core.int"},
]  # fmt: skip
RAW_TOKENS = [
    "NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "-0", "-0.0", "1E400",
    "1" * 4000, "9" * 4301, "-" + "9" * 5000, "0." + "0" * 5000 + "1", "1e-400",
    '"\\ud800"', '"\\udc00\\ud800"', '"\\u0000"', '"\\ud83d\\udca5"', "true", "null",
]  # fmt: skip
NEST_DEPTHS = [10, 100, 250, 500, 900, 1_000, 10_000, 100_000]
KEY_WORDS = ["format", "nodes", "type", "inputs", "link", "title", "editor", "id", "values"]
ENCODINGS = ["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1"]


@dataclass(frozen=True)
class Case:
    """One fuzzed document: its seed, the seed document it came from, what was done to it."""

    seed: int
    base: str
    kinds: tuple[str, ...]
    payload: bytes


class Catalog:
    """What the mutators know about node types: input names and output names per type."""

    def __init__(self, registry: Registry):
        self.types = sorted(spec.id for spec in registry)
        self.inputs = {spec.id: [i.name for i in spec.inputs] for spec in registry}
        self.outputs = {spec.id: [o.name for o in spec.outputs] for spec in registry}

    def input_names(self, node_type: Any) -> list[str]:
        """The inputs of a type (empty for unknown or non-string types)."""
        return self.inputs.get(node_type, []) if isinstance(node_type, str) else []

    def output_names(self, node_type: Any) -> list[str]:
        """The outputs of a type (empty for unknown or non-string types)."""
        return self.outputs.get(node_type, []) if isinstance(node_type, str) else []


# -- seed documents ----------------------------------------------------------------------------


def _link(node: str, output: str) -> dict:
    return {"link": [node, output]}


def _node(node_type: str, **inputs: Any) -> dict:
    return {"type": node_type, "inputs": inputs}


def _hand_made() -> dict[str, dict]:
    """Small documents that reach every gf_core node (so mutants of them get run)."""
    chain = {"n0": _node("core.float", value=0.5)}
    for i in range(1, 30):
        chain[f"n{i}"] = _node("core.add", a=_link(f"n{i - 1}", "float"))
    chain["out"] = _node("core.show", value=_link("n29", "float"))
    math_nodes = {
        "a": _node("core.float", value=7.25),
        "b": _node("core.int", value=3),
        "sub": _node("core.subtract", a=_link("a", "float"), b=2),
        "div": _node("core.divide", a=_link("sub", "float"), b=_link("b", "int")),
        "pow": _node("core.power", base=_link("div", "float"), exponent=2),
        "round": _node("core.round", value=_link("pow", "float"), mode="ceil"),
        "clamp": _node("core.clamp", value=_link("round", "int"), high=4),
        "cmp": _node("core.compare", a=_link("clamp", "float"), b=1.5, op=">="),
        "mul": _node("core.multiply", a=_link("b", "int"), b=-0.5),
        "show": _node("core.show", value=_link("clamp", "float"), label="n"),
        "show2": _node("core.show", value=_link("cmp", "boolean")),
        "show3": _node("core.show", value=_link("mul", "float")),
    }
    text_nodes = {
        "s": _node("core.string", value="Hello, wörld"),
        "t": _node("core.to_string", value=42),
        "cat": _node("core.concat", a=_link("s", "string"), b=_link("t", "string"), separator=" "),
        "rep": _node("core.replace", text=_link("cat", "string"), old="l", new="L", count=2),
        "len": _node("core.length", text=_link("rep", "string")),
        "yes": _node("core.boolean", value=True),
        "pick": _node(
            "core.switch",
            condition=_link("yes", "boolean"),
            on_true=_link("rep", "string"),
            on_false=_link("len", "int"),
        ),
        "show": _node("core.show", value=_link("pick", "any"), label="text"),
    }
    prototype = {
        "format": "graphflow/0",
        "nodes": [
            {"id": 1, "type": "core.float", "values": {"value": 2.0}, "pos": [0, 0]},
            {"id": 2, "type": "core.multiply", "values": {"b": 3}, "title": "x3"},
            {"id": 3, "type": "core.show", "values": {}, "pos": [200, 0]},
        ],
        "links": [[1, "float", 2, "a"], [2, "float", 3, "value"]],
    }
    doc = {"format": "graphflow/1"}
    return {
        "chain": {**doc, "nodes": chain},
        "math": {**doc, "nodes": math_nodes, "editor": {"positions": {"a": [0, 0]}}},
        "text": {**doc, "nodes": text_nodes},
        "prototype": prototype,
        "empty": {**doc, "nodes": {}},
    }


def seed_corpus() -> dict[str, dict]:
    """The shipped workflows (workflows/*.json) and the hand-made documents, by name."""
    corpus = {
        path.stem: json.loads(path.read_text()) for path in sorted(ROOT.glob("workflows/*.json"))
    }
    corpus.update(_hand_made())
    return corpus


# -- structural mutations ----------------------------------------------------------------------


class Mutator:
    """Applies mutations drawn from ``rng``; values JSON cannot carry as Python objects (raw
    number tokens, deep nesting) are placeholders that ``render`` swaps for raw text."""

    def __init__(self, rng: random.Random, catalog: Catalog):
        self.rng = rng
        self.catalog = catalog
        self.raw: dict[str, str] = {}

    # helpers

    def _raw(self, text: str) -> str:
        marker = f"@@raw{len(self.raw)}@@"
        self.raw[marker] = text
        return marker

    def _containers(self, doc: Any) -> list[Any]:
        """Every dict and list in the document (iteratively: mutants may be deep)."""
        found, stack = [], [doc]
        while stack and len(found) < 5_000:
            item = stack.pop()
            if isinstance(item, (dict, list)):
                found.append(item)
                stack.extend(item.values() if isinstance(item, dict) else item)
        return found

    def _nodes(self, doc: Any) -> dict | None:
        nodes = doc.get("nodes") if isinstance(doc, dict) else None
        return nodes if isinstance(nodes, dict) and nodes else None

    def _node(self, doc: Any) -> tuple[str, dict] | None:
        nodes = self._nodes(doc)
        if nodes is None:
            return None
        node_id = self.rng.choice(list(nodes))
        entry = nodes[node_id]
        return (node_id, entry) if isinstance(entry, dict) else None

    def _inputs(self, entry: dict) -> dict:
        if not isinstance(entry.get("inputs"), dict):
            entry["inputs"] = {}
        return entry["inputs"]

    def _input_name(self, entry: dict) -> str:
        names = self.catalog.input_names(entry.get("type")) + list(self._inputs(entry))
        return self.rng.choice(names) if names else "value"

    def value(self, nasty: bool = False) -> Any:
        """A wrong-typed, nasty, raw-token or deeply nested value (``nasty``: not just of the
        wrong type)."""
        roll = self.rng.random()
        if roll < (0.0 if nasty else 0.35):
            return self.rng.choice(WRONG_TYPED)
        if roll < 0.75:
            return self.rng.choice(NASTY_VALUES)
        if roll < 0.92:
            return self._raw(self.rng.choice(RAW_TOKENS))
        depth = self.rng.choice(NEST_DEPTHS)
        if self.rng.random() < 0.5:
            return self._raw("[" * depth + "]" * depth)
        return self._raw('{"a": ' * depth + "1" + "}" * depth)

    # structural mutations: each takes the document and returns the mutated document

    def drop_key(self, doc: Any) -> Any:
        """Remove one key of any object (a node, an input, "format", "type"...)."""
        dicts = [c for c in self._containers(doc) if isinstance(c, dict) and c]
        if dicts:
            target = self.rng.choice(dicts)
            del target[self.rng.choice(list(target))]
        return doc

    def rename_key(self, doc: Any) -> Any:
        """Rename one key to a vocabulary word, a nasty string or a near miss."""
        dicts = [c for c in self._containers(doc) if isinstance(c, dict) and c]
        if dicts:
            target = self.rng.choice(dicts)
            old = self.rng.choice(list(target))
            odd = ["", " ", "\u0000", "\ud800", "x\udc00y", "\U0001f4a5", LONG_TEXT]
            new = self.rng.choice([*KEY_WORDS, old.upper(), old + " ", *odd])
            target[new] = target.pop(old)
        return doc

    def wrong_type(self, doc: Any) -> Any:
        """Replace the value at a random path (or the whole document) with a bad value."""
        containers = self._containers(doc)
        if not containers or self.rng.random() < 0.03:
            return self.value()
        target = self.rng.choice(containers)
        if isinstance(target, dict) and target:
            target[self.rng.choice(list(target))] = self.value()
        elif isinstance(target, list) and target:
            target[self.rng.randrange(len(target))] = self.value()
        return doc

    def format_value(self, doc: Any) -> Any:
        """Set "format" to a wrong type or another (unknown, old, near-miss) format."""
        if isinstance(doc, dict):
            doc["format"] = self.rng.choice(
                [*WRONG_TYPED, "graphflow/0", "graphflow/2", "GRAPHFLOW/1", "graphflow/1 ",
                 "graphflow/1\n", "", self.value()]
            )  # fmt: skip
        return doc

    def duplicate_node(self, doc: Any) -> Any:
        """Copy a node under a new id (or under an existing one's id, replacing it)."""
        picked, nodes = self._node(doc), self._nodes(doc)
        if picked and nodes:
            new_id = self.rng.choice([f"{picked[0]}_copy", self.rng.choice(list(nodes)), ""])
            nodes[new_id] = json.loads(json.dumps(picked[1]))
        return doc

    def drop_node(self, doc: Any) -> Any:
        """Delete a node (links to it now dangle)."""
        nodes = self._nodes(doc)
        if nodes:
            del nodes[self.rng.choice(list(nodes))]
        return doc

    def swap_node_type(self, doc: Any) -> Any:
        """Give a node another registered type, an unknown one or a wrong-typed one."""
        picked = self._node(doc)
        if picked:
            choices = [*self.catalog.types, "core.ad", "Core.Add", "", "nope.node", self.value()]
            picked[1]["type"] = self.rng.choice(choices)
        return doc

    def nasty_input(self, doc: Any) -> Any:
        """Set a real (or made-up) input of a node to a nasty value."""
        picked = self._node(doc)
        if picked:
            entry = picked[1]
            self._inputs(entry)[self._input_name(entry)] = self.value(nasty=True)
        return doc

    def _link_input(self, doc: Any, source: Any, output: Any) -> Any:
        picked = self._node(doc)
        if picked:
            entry = picked[1]
            self._inputs(entry)[self._input_name(entry)] = {"link": [source, output]}
        return doc

    def _random_output(self, doc: Any) -> tuple[Any, Any]:
        nodes = self._nodes(doc) or {"n": {}}
        source = self.rng.choice(list(nodes))
        entry = nodes[source] if isinstance(nodes[source], dict) else {}
        outputs = self.catalog.output_names(entry.get("type")) or ["out"]
        return source, self.rng.choice(outputs)

    def link_missing_node(self, doc: Any) -> Any:
        """Link an input to a node id that is not in the document."""
        return self._link_input(doc, self.rng.choice(["ghost", "", "\ud800", LONG_TEXT]), "float")

    def link_missing_output(self, doc: Any) -> Any:
        """Link an input to an output name the source node does not have."""
        source, _ = self._random_output(doc)
        return self._link_input(doc, source, self.rng.choice(["nope", "", "FLOAT", "\u0000"]))

    def rewire(self, doc: Any) -> Any:
        """Link an input to a real output of a random node (type mismatches, new valid graphs)."""
        return self._link_input(doc, *self._random_output(doc))

    def self_link(self, doc: Any) -> Any:
        """Link a node's input to one of its own outputs."""
        picked = self._node(doc)
        if picked:
            node_id, entry = picked
            outputs = self.catalog.output_names(entry.get("type")) or ["out"]
            self._inputs(entry)[self._input_name(entry)] = _link(node_id, self.rng.choice(outputs))
        return doc

    def cycle(self, doc: Any) -> Any:
        """Link two nodes (or a longer loop of three) into each other."""
        nodes = self._nodes(doc)
        if not nodes:
            return doc
        ids = [k for k, v in nodes.items() if isinstance(v, dict)]
        loop = self.rng.sample(ids, min(len(ids), self.rng.choice([2, 3])))
        for source, target in zip(loop, loop[1:] + loop[:1], strict=True):
            entry = nodes[target]
            outputs = self.catalog.output_names(nodes[source].get("type")) or ["out"]
            self._inputs(entry)[self._input_name(entry)] = _link(source, self.rng.choice(outputs))
        return doc

    def bad_link_shape(self, doc: Any) -> Any:
        """An input that is almost a link: wrong arity, wrong types, extra keys."""
        source, output = self._random_output(doc)
        shape = self.rng.choice(
            [{"link": [source]}, {"link": [source, output, "x"]}, {"link": source},
             {"link": [1, 2]}, {"link": [source, output], "extra": 1}, {"link": None},
             {"link": {"node": source}}, {"Link": [source, output]}, {"link": [[source], output]}]
        )  # fmt: skip
        picked = self._node(doc)
        if picked:
            self._inputs(picked[1])[self._input_name(picked[1])] = shape
        return doc

    def grow(self, doc: Any) -> Any:
        """Add up to 40 copies of a node (more nodes, same kinds)."""
        picked, nodes = self._node(doc), self._nodes(doc)
        if picked and nodes:
            for i in range(self.rng.randint(1, 40)):
                nodes[f"{picked[0]}_{i}"] = json.loads(json.dumps(picked[1]))
        return doc

    def render(self, doc: Any) -> bytes:
        """The document as JSON text, placeholders replaced by their raw text."""
        text = json.dumps(
            doc, ensure_ascii=self.rng.random() < 0.5, indent=self.rng.choice([None, 2])
        )
        for marker, raw in self.raw.items():
            text = text.replace(json.dumps(marker), raw)
        return text.encode("utf-8", "surrogatepass")


STRUCTURAL = [
    "drop_key", "rename_key", "wrong_type", "format_value", "duplicate_node", "drop_node",
    "swap_node_type", "nasty_input", "link_missing_node", "link_missing_output", "rewire",
    "self_link", "cycle", "bad_link_shape", "grow",
]  # fmt: skip


# -- damage to the text ------------------------------------------------------------------------

_KEY = re.compile(rb'"[A-Za-z_]+": ?')


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _flip_bytes(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if buffer:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
    return bytes(buffer)


def _insert_bytes(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    junk = rng.choice([b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"}", b"]]", b",", b'"'])
    return data[:at] + junk + data[at:]


def _duplicate_json_key(rng: random.Random, data: bytes) -> bytes:
    keys = list(_KEY.finditer(data))
    if not keys:
        return data
    key = rng.choice(keys)
    extra = key.group(0) + rng.choice([b"null", b"1", b'"x"', b"[]", b"{}"]) + b", "
    return data[: key.start()] + extra + data[key.start() :]


def _reencode(rng: random.Random, data: bytes) -> bytes:
    text = data.decode("utf-8", "surrogatepass")
    return text.encode(rng.choice(ENCODINGS), "replace")


def _random_bytes(rng: random.Random, data: bytes) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))


def _splice(rng: random.Random, data: bytes) -> bytes:
    cut = rng.randrange(len(data) + 1)
    return data[:cut] + data[rng.randrange(len(data) + 1) :]


TEXTUAL = {
    "truncate": _truncate,
    "flip_bytes": _flip_bytes,
    "insert_bytes": _insert_bytes,
    "duplicate_json_key": _duplicate_json_key,
    "reencode": _reencode,
    "random_bytes": _random_bytes,
    "splice": _splice,
}
KINDS = [*STRUCTURAL, *TEXTUAL]


def make_case(seed: int, corpus: dict[str, dict], catalog: Catalog) -> Case:
    """The case of ``seed``: 0-3 structural mutations, then one to the text (sometimes; always
    after none)."""
    rng = random.Random(seed)
    # Half the cases start from a document of cheap nodes, so that many mutants get run.
    cheap = [name for name in sorted(corpus) if name in CHEAP_BASES]
    base = rng.choice(cheap if rng.random() < 0.5 else sorted(corpus))
    doc = json.loads(json.dumps(corpus[base]))
    mutator = Mutator(rng, catalog)
    kinds = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
        kind = rng.choice(STRUCTURAL)
        kinds.append(kind)
        doc = getattr(mutator, kind)(doc)
    payload = mutator.render(doc)
    if not kinds or rng.random() < 0.2:
        kind = rng.choice(list(TEXTUAL))
        kinds.append(kind)
        payload = TEXTUAL[kind](rng, payload)
    return Case(seed, base, tuple(kinds), payload)


# -- the harness -------------------------------------------------------------------------------


class Harness:
    """Load → validate → run (cheap documents only), returning an outcome label; anything
    but a structured error escapes as the exception it is."""

    def __init__(self, registry: Registry, output_dir: str | Path):
        self.registry = registry
        self.executor = Executor(registry, cache=OutputCache(), output_dir=output_dir)

    def exercise(self, payload: bytes) -> str:
        """What the pipeline did with ``payload`` (``format_error``, ``invalid``, ``valid``,
        ``run:<status>``); raises AssertionError when a guarantee is broken."""
        try:
            workflow = loads_workflow(payload)
        except WorkflowFormatError as error:
            assert str(error), "a format error needs a message"
            return "format_error"
        return self.validate_and_run(workflow)

    def exercise_file(self, path: Path, data: bytes) -> str:
        """Like :meth:`exercise`, for ``data`` written to ``path`` and read by load_workflow
        (so PNG files go through graphflow.pngmeta)."""
        path.write_bytes(data)
        try:
            workflow = load_workflow(path)
        except WorkflowFormatError as error:
            assert str(path) in str(error), "a file's format error names the file"
            return "format_error"
        return self.validate_and_run(workflow)

    def validate_and_run(self, workflow: Workflow) -> str:
        """Save-stability, validation, and a run when every node is cheap."""
        text = dumps_workflow(workflow)  # load → save → load is byte-stable, in UTF-8
        text.encode("utf-8")
        assert dumps_workflow(loads_workflow(text)) == text, "save is not byte-stable"
        try:
            validated = build_graph(workflow, self.registry)
        except ValidationFailed as error:
            assert error.errors, "ValidationFailed without errors"
            return "invalid"
        if not all(spec.id.startswith(CHEAP_PREFIX) for spec in validated.specs.values()):
            return "valid"
        result = self.executor.run(validated)
        assert result.status in ("finished", "failed"), result.status
        if result.status == "failed":
            assert result.error is not None and result.error.exception_type
            return f"run:failed:{result.error.exception_type}"
        return "run:finished"


def replay(seed: int, png: bool = False) -> None:
    """Print one case and its outcome (the traceback, if it breaks a guarantee)."""
    from graphflow import load_plugins

    registry = load_plugins().registry
    from pngfuzz import make_png_case

    make = make_png_case if png else make_case
    case = make(seed, seed_corpus(), Catalog(registry))
    print(f"seed {seed}: base {case.base!r}, mutations {', '.join(case.kinds)}")
    print(f"payload ({len(case.payload)} bytes): {case.payload[:2000]!r}")
    with tempfile.TemporaryDirectory() as folder:
        harness = Harness(registry, folder)
        if png:
            outcome = harness.exercise_file(Path(folder) / "case.png", case.payload)
        else:
            outcome = harness.exercise(case.payload)
        print("outcome:", outcome)


if __name__ == "__main__":
    import sys

    arguments = sys.argv[1:]
    for argument in arguments:
        if argument != "--png":
            replay(int(argument), png="--png" in arguments)
