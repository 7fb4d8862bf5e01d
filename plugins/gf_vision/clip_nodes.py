"""Zero-shot image–text scoring nodes: Load Scoring Model, Zero-Shot Classify, CLIP Score.

A scoring model maps images and texts into one embedding space (CLIP, Radford et al. 2021):
the cosine similarity of an image and a text says how well the text describes the image.
That gives a classifier for any list of labels written as text (zero-shot: no training on
those labels) and CLIPScore (Hessel et al. 2021: 100 × max(cos, 0)), used here to rank a
batch of samples and keep the best of N.

``bundled/clip-graphflow-mini`` is our own small model, trained here (see its model card in
``embedded/clip-graphflow-mini/README.md``); folders in ``models/clip_models/<name>/`` holding
a transformers ``CLIPModel`` (config.json, weights, processor files as ``save_pretrained``
writes them, e.g. openai/clip-vit-base-patch32) are listed too and read offline.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graphflow import Choice, Image, Int, NodeContext, Outputs, String, node, port_type
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.handles import ModelHandle, compute_device
from graphflow.runtime.models import ModelFileError, file_version

from . import clip_paths


class _LazyModule:
    """``clip_model`` (which imports torch) loaded on first use, when a node runs."""

    def __getattr__(self, name: str) -> Any:
        from . import clip_model as module

        return getattr(module, name)


clip_model = _LazyModule()

SCORER_TYPE, Scorer = port_type(
    "SCORER",
    "An image–text scoring model (CLIP-like): zero-shot labels and CLIP scores",
    color="#26a69a",
    model=True,
)
PORT_TYPES = (SCORER_TYPE,)

CLIP_FOLDER = "clip_models"
EMBEDDED_CHOICE = "bundled/" + clip_paths.EMBEDDED_NAME


def is_clip_folder(path: Path) -> bool:
    """True for a folder whose config.json describes a transformers CLIP model."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("model_type") == "clip" or "CLIPModel" in (config.get("architectures") or [])


CLIP_MODELS = ModelCatalog(CLIP_FOLDER, (), is_model_folder=is_clip_folder)
CLIP_MODELS.bundle(lambda: {EMBEDDED_CHOICE: clip_paths.EMBEDDED_DIR})


def list_scoring_models() -> list[str]:
    """CLIP folders in models/clip_models, then the bundled clip-graphflow-mini."""
    return CLIP_MODELS.names()


def scoring_model_path(name: str) -> Path:
    """Folder of scoring model ``name`` (ModelFileError listing the choices if unknown)."""
    return CLIP_MODELS.path(name)


def load_scoring_components(path: Path) -> dict[str, Any]:
    """The loader's dict: modules become handle components, the rest the handle's extras."""
    if (path / clip_model.WEIGHTS_FILE).is_file() and not is_clip_folder(path):
        model = clip_model.load_mini_clip(path)
        return {
            "model": model,
            **clip_model.load_minilm(),
            "kind": "mini",
            "name": path.name,
        }
    if not is_clip_folder(path):
        raise ModelFileError(
            f"{path.name} is neither clip-graphflow-mini nor a transformers CLIP folder "
            f"(its config.json must have model_type 'clip'); put CLIP folders in "
            f"models/{CLIP_FOLDER}/<name>/"
        )
    scorer = clip_model.load_hf_clip(path)
    return {"model": scorer.model, "processor": scorer.processor, "kind": "clip", "name": path.name}


@contextmanager
def scorer_on_device(handle: ModelHandle, ctx: NodeContext | None):
    """The handle's modules on the run's device, wrapped as a ``clip_model.Scorer``."""
    extras = handle.extras
    model_handle = handle.component("model")
    device = compute_device(model_handle, ctx)
    with model_handle.on_device(device) as model:
        if extras["kind"] == "clip":
            yield clip_model.HFClipScorer(model, extras["processor"], extras["name"])
            return
        with handle.component("text_encoder").on_device(device) as text:
            encoder = clip_model.SentenceEncoder(
                extras["tokenizer"], text, model.config["max_tokens"]
            )
            yield clip_model.MiniClipScorer(model, encoder, extras["name"])


@node("vision.load_scoring_model", category="vision/clip", display_name="Load Scoring Model")
def load_scoring_model(
    model_name: Choice(list_scoring_models) = EMBEDDED_CHOICE, ctx: NodeContext = None
) -> Scorer:
    """Load an image–text scoring model for Zero-Shot Classify and CLIP Score.

    bundled/clip-graphflow-mini is graphflow's own small CLIP-like model (32×32 images,
    trained on tinted Fashion-MNIST, clip art and emoji; best on such pictures: it knows
    clothes, shoes, bags and colours well, everyday photos poorly). A real CLIP works too:
    save a transformers CLIPModel folder (e.g. openai/clip-vit-base-patch32 with its
    processor files) as models/clip_models/<name>/. Nothing is downloaded.
    """
    path = scoring_model_path(model_name)
    if ctx is None:
        return ModelHandle.of(load_scoring_components(path), f"scoring model {path.name}")
    return ctx.models.load("scoring_model", path, lambda: load_scoring_components(path))


@load_scoring_model.fingerprint
def _scoring_model_version(model_name: str = EMBEDDED_CHOICE, **_) -> tuple:
    path = scoring_model_path(model_name)
    weights = path / clip_model.WEIGHTS_FILE
    return file_version(weights if weights.is_file() else path)


def text_lines(text: str) -> list[str]:
    """One label per non-empty line (surrounding spaces removed)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _labels_given(labels: str = "", **_) -> str | None:
    return None if text_lines(labels) else "labels: write at least one label (one per line)"


DEFAULT_LABELS = "a photo of a t-shirt\na photo of a sneaker\na photo of a bag\na photo of a dress"


@node("vision.zero_shot_classify", category="vision/clip", display_name="Zero-Shot Classify")
def zero_shot_classify(
    scorer: Scorer,
    image: Image,
    labels: String(multiline=True) = DEFAULT_LABELS,
    top_k: Int(1, 20) = 3,
    ctx: NodeContext = None,
) -> Outputs(label=String, report=String, probability=String):
    """Classify each image against labels you write, one per line: no training on them.

    The scoring model embeds the images and the label texts; the softmax of their scaled
    cosine similarities (CLIP's zero-shot classifier) gives one probability per label.
    Outputs: label, the best label of each image (one line per image); report, the top_k
    labels with probabilities per image; probability, a JSON list per image of
    {label: probability}. Phrasing matters: "a photo of a cat" usually beats "cat".
    """
    texts = text_lines(labels)
    if not texts:
        raise ValueError("labels: write at least one label (one per line)")
    with scorer_on_device(scorer, ctx) as model:
        probs = model.probabilities(image, texts)
    best, lines, table = [], [], []
    for index, row in enumerate(probs.tolist()):
        order = sorted(range(len(texts)), key=lambda j: -row[j])
        best.append(texts[order[0]])
        ranked = ", ".join(f"{texts[j]} {row[j]:.1%}" for j in order[:top_k])
        lines.append(f"image {index}: {ranked}")
        table.append({t: round(p, 4) for t, p in zip(texts, row, strict=True)})
    report = f"{model.name}, {len(texts)} labels\n" + "\n".join(lines)
    return {"label": "\n".join(best), "report": report, "probability": json.dumps(table)}


zero_shot_classify.check(_labels_given)


def clip_scores(model: clip_model.Scorer, image: Any, prompt: str) -> Any:
    """CLIPScore per image: 100 × max(cosine(image, prompt), 0), a (B,) tensor."""
    return (100 * model.similarity(image, [prompt])[:, 0]).clamp(min=0)


@node("vision.clip_score", category="vision/clip", display_name="CLIP Score")
def clip_score(
    scorer: Scorer,
    image: Image,
    prompt: String(multiline=True) = "a photo of a red sneaker",
    keep: Int(1, 64) = 1,
    ctx: NodeContext = None,
) -> Outputs(ranked=Image, best=Image, report=String, scores=String, labels=String):
    """Score how well each image matches the prompt, and sort the batch by that score.

    The score is CLIPScore (Hessel et al. 2021): 100 × the cosine similarity of image and
    prompt embeddings, floored at 0. Feed it a batch of samples of one prompt (e.g. a few
    seeds of graphflow-tiny): ranked is the whole batch best first, best the first keep
    images; report lists rank, batch index and score; scores is a JSON list of the scores
    in the original batch order; labels has one line per ranked image ('image 3: 74.9'),
    for Image Grid's cell_labels.
    """
    if not prompt.strip():
        raise ValueError("prompt: write the text to score the images against")
    with scorer_on_device(scorer, ctx) as model:
        scores = clip_scores(model, image, prompt.strip())
    order = scores.argsort(descending=True, stable=True)
    ranked = image[order.to(image.device)]
    lines = [f"{rank + 1}. image {int(i)}: {float(scores[i]):.2f}" for rank, i in enumerate(order)]
    report = f"{model.name}, CLIP score for {prompt.strip()!r}\n" + "\n".join(lines)
    return {
        "ranked": ranked,
        "best": ranked[: min(keep, len(ranked))],
        "report": report,
        "scores": json.dumps([round(float(s), 3) for s in scores]),
        "labels": "\n".join(f"image {int(i)}: {float(scores[i]):.1f}" for i in order),
    }


NODES = [load_scoring_model, zero_shot_classify, clip_score]
