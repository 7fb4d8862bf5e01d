"""Small ComfyUI class types of our own for the format tests (not ComfyUI's real ones).

``format_classes()`` declares them with ``names.comfy_node`` and registers them in a fresh
registry, and removes them from ``names.CLASSES`` afterwards, so the tests do not depend on
the real class types other modules implement.
"""

from __future__ import annotations

from contextlib import contextmanager

from gf_comfy import names
from gf_comfy.names import ComfyInput, comfy_node
from graphflow import Choice, Float, Image, Int, Mask, Outputs, Registry, String

TEST_CLASSES = ("TSampler", "TText", "TLoad", "TNumber", "TMix", "TSave", "TMask")


def _declare() -> list:
    @comfy_node(
        "TSampler",
        display_name="Test Sampler",
        category="testing",
        inputs={"cfg": ComfyInput(step=0.1, round=0.01)},
        output_names=("IMAGE",),
    )
    def t_sampler(
        image: Image,
        seed: Int(min=0, max=2**64 - 1) = 0,
        steps: Int(min=1, max=100) = 20,
        cfg: Float(min=0.0, max=100.0) = 8.0,
        sampler_name: Choice(["euler", "heun", "dpmpp_2m"]) = "euler",
        denoise: Float(min=0.0, max=1.0) = 1.0,
    ) -> Image:
        """Pretend to sample: give the image back."""
        return image

    @comfy_node(
        "TText",
        display_name="Test Text",
        category="testing",
        inputs={"text": ComfyInput(multiline=True, dynamic_prompts=True)},
        output_names=("STRING",),
    )
    def t_text(text: String(multiline=True), suffix: String = "") -> String:
        """Join a prompt text and a suffix."""
        return text + suffix

    @comfy_node(
        "TLoad",
        display_name="Test Load",
        category="testing",
        inputs={"image": ComfyInput(image_upload=True)},
        output_names=("IMAGE", "MASK"),
    )
    def t_load(image: Choice(["a.png", "b.png"])) -> Outputs(image=Image, mask=Mask):
        """Pretend to load an image file."""
        raise NotImplementedError

    @comfy_node(
        "TNumber",
        display_name="Test Number",
        category="testing",
        inputs={"value": ComfyInput(control_after_generate=True)},
        output_names=("INT",),
    )
    def t_number(value: Int(min=0, max=1000) = 7, scale: Float = 1.5) -> Int:
        """A number with ComfyUI's control_after_generate widget."""
        return value

    @comfy_node("TMix", display_name=None, category="testing", output_names=("IMAGE",))
    def t_mix(mask: Mask, image: Image, amount: Float = 0.5) -> Image:
        """An image through a mask."""
        return image

    @comfy_node("TMask", display_name=None, category="testing", output_names=("MASK",))
    def t_mask(image: Image) -> Mask:
        """A mask from an image."""
        return image

    @comfy_node("TSave", display_name="Test Save", category="testing", output=True, output_names=())
    def t_save(images: Image, filename_prefix: String = "ComfyUI") -> None:
        """Pretend to save images."""
        return {}

    return [t_sampler, t_text, t_load, t_number, t_mix, t_mask, t_save]


@contextmanager
def format_classes():
    """A registry holding the test class types (cleaned out of names.CLASSES after)."""
    specs = _declare()
    registry = Registry()
    registry.register_all(specs, plugin="tests")
    try:
        yield registry
    finally:
        for class_type in TEST_CLASSES:
            entry = names.CLASSES.pop(class_type, None)
            if entry is not None:
                names.BY_NODE_ID.pop(entry.spec.id, None)


def ui_node(node_id, class_type, widgets=None, *, inputs=(), outputs=(), mode=0, **extra):
    """A UI-format node; ``inputs``/``outputs`` are ``(name, type, link)`` /
    ``(name, type, [links])`` triples (an input name ``"w:seed"`` is a converted widget)."""
    node = {"id": node_id, "type": class_type, "pos": [0, 0], "size": [200, 100], "mode": mode}
    node["inputs"] = []
    for name, type_name, link in inputs:
        item = {"name": name.removeprefix("w:"), "type": type_name, "link": link}
        if name.startswith("w:"):
            item["widget"] = {"name": name[2:]}
        node["inputs"].append(item)
    node["outputs"] = [
        {"name": name, "type": type_name, "links": links, "slot_index": k}
        for k, (name, type_name, links) in enumerate(outputs)
    ]
    if widgets is not None:
        node["widgets_values"] = widgets
    node.update(extra)
    return node


def ui_workflow(nodes, links, **extra):
    """A UI-format workflow (version 0.4) from nodes and ``[id, from, slot, to, slot, type]``."""
    return {
        "last_node_id": max((n["id"] for n in nodes), default=0),
        "last_link_id": max(
            (link["id"] if isinstance(link, dict) else link[0] for link in links), default=0
        ),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
        **extra,
    }
