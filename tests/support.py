"""Test support: a small node pack with call counters, and a workflow builder."""

from __future__ import annotations

import threading
from collections import Counter

from graphflow import (
    Any,
    Executor,
    Float,
    Int,
    NodeContext,
    OutputCache,
    Outputs,
    Registry,
    String,
    Workflow,
    load_plugins,
    node,
)


def link(node_id: str, output: str) -> dict:
    """A link literal as written in workflow files."""
    return {"link": [node_id, output]}


def registry_with(*specs) -> Registry:
    """The installed plugins' registry plus ``specs`` (those a plugin already registers are
    kept as the plugin's, so a test module works whether or not its pack lists the module)."""
    registry = load_plugins().registry
    for spec in specs:
        if spec.id not in registry:
            registry.register(spec, plugin="tests")
    return registry


def prompt_nodes(prompt: str, checkpoint: str = "tiny-sd", scheduler: str | None = "ddim") -> dict:
    """The start of a txt2img graph: checkpoint ``ckpt``, the prompt and an empty negative
    tokenized (``pos_tokens``/``neg_tokens``) and encoded (``pos``/``neg``), and ``sched``
    (the checkpoint's own scheduler when ``scheduler`` is None)."""
    tokens = {"tokenizer": link("ckpt", "tokenizer")}
    encode = {"text_encoder": link("ckpt", "text_encoder")}
    sched = {"scheduler": link("ckpt", "scheduler")}
    if scheduler is not None:
        sched["name"] = scheduler
    return {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": checkpoint}),
        "pos_tokens": ("diffusion.tokenize", {"text": prompt, **tokens}),
        "neg_tokens": ("diffusion.tokenize", {"text": "", **tokens}),
        "pos": ("diffusion.encode_text", {"tokens": link("pos_tokens", "tokens"), **encode}),
        "neg": ("diffusion.encode_text", {"tokens": link("neg_tokens", "tokens"), **encode}),
        "sched": ("diffusion.scheduler", sched),
    }


def make_workflow(nodes: dict[str, tuple[str, dict]]) -> Workflow:
    """Build a workflow from ``{id: (type, inputs)}``."""
    return Workflow.model_validate(
        {
            "format": "graphflow/1",
            "nodes": {k: {"type": t, "inputs": inputs} for k, (t, inputs) in nodes.items()},
        }
    )


class TestPack:
    """Nodes that count their calls; one fresh pack per test."""

    __test__ = False

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.fingerprints: dict[str, int] = {}
        self.hold = threading.Event()
        self.resume = threading.Event()
        calls = self.calls

        @node("t.value")
        def value(value: Float = 0.0) -> Float:
            """A number."""
            calls["t.value"] += 1
            return value

        @node("t.add")
        def add(a: Float, b: Float = 0.0) -> Float:
            """a + b."""
            calls["t.add"] += 1
            return a + b

        @node("t.out", output=True)
        def out(value: Any) -> None:
            """Record a value."""
            calls["t.out"] += 1
            return {"value": [value]}

        @node("t.random", idempotent=False)
        def random(value: Float = 0.0) -> Float:
            """Not idempotent."""
            calls["t.random"] += 1
            return value + calls["t.random"]

        fingerprints = self.fingerprints

        @node("t.file")
        def file(path: String = "a.txt") -> Float:
            """Reads 'a file' whose version lives in the pack."""
            calls["t.file"] += 1
            return float(fingerprints.get(path, 0))

        @file.fingerprint
        def _file_version(path):
            return fingerprints.get(path, 0)

        @node("t.fail")
        def fail(value: Float = 0.0) -> Float:
            """Always raises."""
            calls["t.fail"] += 1
            raise ValueError(f"boom at {value}")

        hold, resume = self.hold, self.resume

        @node("t.steps")
        def steps(value: Float, steps: Int(min=1) = 10, ctx: NodeContext = None) -> Float:
            """Reports progress each step; while ``hold`` is set, waits for ``resume``."""
            calls["t.steps"] += 1
            for i in range(steps):
                ctx.progress(i + 1, steps)
                if hold.is_set():
                    resume.wait(10)
            return value

        @node("t.blob")
        def blob(size: Int(min=0) = 0, tag: String = "") -> Any:
            """A bytes value of the given size."""
            calls["t.blob"] += 1
            return bytes(size)

        @node("t.pair")
        def pair(value: Float = 0.0) -> Outputs(low=Float, high=Float):
            """Two outputs."""
            calls["t.pair"] += 1
            return value - 1, value + 1

        self.specs = [value, add, out, random, file, fail, steps, blob, pair]
        self.registry = Registry()
        self.registry.register_all(self.specs, plugin="tests")

    def executor(self, **kwargs) -> Executor:
        """An executor over this pack (its own cache unless one is given)."""
        kwargs.setdefault("cache", OutputCache())
        return Executor(self.registry, **kwargs)
