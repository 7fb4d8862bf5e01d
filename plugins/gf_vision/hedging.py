"""Hedging a classifier's bets: answer with a WordNet node general enough to be right.

Deng, Krause, Berg and Fei-Fei, "Hedging your bets: optimizing accuracy-specificity
trade-offs in large scale visual recognition" (CVPR 2012). A classifier gives a posterior
over the 1000 ImageNet classes (the leaves of the WordNet DAG, wordnet_tree.py). Every node
v of the DAG gets the posterior p(v) = Σ of its leaf descendants' probabilities, and a
reward r(v) = log2 N − log2 |leaves(v)| (information gain: 0 for "entity", log2 1000 ≈ 9.97
bits for a class). Answering v is right when the true class is below v.

Two rules (both here):

* **confidence** (per image): the most specific node (largest reward) whose posterior is at
  least the target accuracy; ties go to the larger posterior. If the classifier is
  calibrated, each answer is right with probability ≥ the target.
* **DARTS** (the paper's rule): answer argmax_v (r(v) + λ)·p(v). λ = 0 maximises the
  expected reward; larger λ moves answers up the hierarchy, and accuracy grows with λ.
  λ is either given, or fitted by binary search as the smallest λ whose accuracy reaches
  the target *over the images of the batch* — their true accuracy when ``true_labels``
  names their classes (a calibration set, as in the paper), else their expected accuracy
  (the mean posterior of the answers, which assumes a calibrated classifier).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from graphflow import Choice, Float, NodeContext, Outputs, String, node

from .vision_types import ClassScores, ClassScoresPort
from .wordnet_tree import Hierarchy, imagenet_hierarchy

RULES = ["confidence", "darts", "darts_fixed_lambda"]
RULE_LABELS = {
    "confidence": "most specific node with posterior ≥ target (per image)",
    "darts": "DARTS, λ fitted on the batch to reach the target",
    "darts_fixed_lambda": "DARTS with the λ given",
}
TOLERANCE = 1e-6  # posteriors are float sums: the root's may be 0.9999999
MAX_LAMBDA = 1e9
SEARCH_STEPS = 60


@lru_cache(maxsize=4)
def _tables(hierarchy: Hierarchy) -> tuple[Any, Any]:
    """(membership (nodes, classes), rewards (nodes,)) of a hierarchy, computed once."""
    return hierarchy.membership(), hierarchy.rewards()


def node_posteriors(hierarchy: Hierarchy, probabilities: Any) -> Any:
    """(B, classes) class probabilities → (B, nodes) posteriors of every DAG node."""
    membership, _ = _tables(hierarchy)
    return probabilities.to(membership.dtype) @ membership.T


def most_specific_above(posteriors: Any, rewards: Any, target: float) -> Any:
    """(B,) node index per image: the largest-reward node with posterior ≥ target (ties:
    the larger posterior). The root always qualifies."""
    import torch

    allowed = posteriors >= min(target, 1.0) - TOLERANCE
    reward = torch.where(allowed, rewards[None], torch.tensor(-math.inf))
    best = reward.max(dim=1, keepdim=True).values
    ties = allowed & (reward >= best - 1e-9)
    return torch.where(ties, posteriors, torch.tensor(-1.0)).argmax(dim=1)


def darts_choice(posteriors: Any, rewards: Any, lam: float) -> Any:
    """(B,) node index per image: argmax_v (r(v) + λ)·p(v)."""
    return ((rewards[None] + lam) * posteriors).argmax(dim=1)


def batch_accuracy(posteriors: Any, chosen: Any, correct: Any | None = None) -> float:
    """Share of right answers when ``correct`` (B, nodes) says which nodes hold each
    image's true class; else the expected share, the mean posterior of the answers."""
    rows = range(chosen.shape[0])
    table = posteriors if correct is None else correct.to(posteriors.dtype)
    return float(table[list(rows), chosen].mean())


def fit_darts_lambda(
    posteriors: Any, rewards: Any, target: float, correct: Any | None = None
) -> float:
    """The smallest λ ≥ 0 whose DARTS answers reach accuracy ``target`` on this batch
    (binary search: accuracy does not decrease as λ grows; at a large λ every answer is the
    root). The paper's bound λ̄ = (r_max(1 − ε) − r_root)/ε, ε = 1 − target, starts the search."""

    def accuracy(lam: float) -> float:
        return batch_accuracy(posteriors, darts_choice(posteriors, rewards, lam), correct)

    if accuracy(0.0) >= target - TOLERANCE:
        return 0.0
    epsilon = 1.0 - target
    high = MAX_LAMBDA
    if epsilon > 0:
        high = min(MAX_LAMBDA, max(1.0, float(rewards.max()) * (1 - epsilon) / epsilon))
    while accuracy(high) < target - TOLERANCE and high < MAX_LAMBDA:
        high = min(MAX_LAMBDA, high * 2)
    low = 0.0
    for _ in range(SEARCH_STEPS):
        middle = (low + high) / 2
        if accuracy(middle) >= target - TOLERANCE:
            high = middle
        else:
            low = middle
    return high


def true_class_indices(hierarchy: Hierarchy, text: str, batch: int) -> list[int] | None:
    """Class indices named in ``text`` (wnids or class names, separated by commas or new
    lines, one per image); None when ``text`` is empty. ValueError for unknown names."""
    names = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    if not names:
        return None
    if len(names) != batch:
        raise ValueError(f"true_labels names {len(names)} classes for {batch} images")
    by_name: dict[str, list[int]] = {}
    for index, wnid in enumerate(hierarchy.classes):
        by_name.setdefault(hierarchy.names[wnid].lower(), []).append(index)
    found = []
    for name in names:
        if name in hierarchy.class_index:
            found.append(hierarchy.class_index[name])
            continue
        matches = by_name.get(name.lower(), [])
        if len(matches) != 1:
            reason = "is ambiguous (use its wnid)" if matches else "is not an ImageNet class"
            raise ValueError(f"true_labels: {name!r} {reason}")
        found.append(matches[0])
    return found


def correct_table(hierarchy: Hierarchy, classes: list[int]) -> Any:
    """(B, nodes) booleans: node v is a right answer for image b (its class is below v)."""
    membership, _ = _tables(hierarchy)
    return membership[:, classes].T > 0.5


def hierarchy_path(hierarchy: Hierarchy, chosen: str, posterior: Any) -> list[str]:
    """A root → ``chosen`` → class path through ``chosen``: upwards by the most probable
    parent, downwards by the most probable child, ending at a class."""
    up, node = [], chosen
    while hierarchy.parents[node]:
        node = max(hierarchy.parents[node], key=lambda p: float(posterior[hierarchy.index[p]]))
        up.append(node)
    down, node = [], chosen
    while hierarchy.children[node]:
        node = max(hierarchy.children[node], key=lambda c: float(posterior[hierarchy.index[c]]))
        down.append(node)
    return [*reversed(up), chosen, *down]


def path_text(hierarchy: Hierarchy, path: list[str], chosen: str, context: int = 3) -> str:
    """'entity › … › mammal › carnivore › [feline] › cat › … › tabby': the path's names with
    the chosen node in brackets; only the root, ``context`` nodes either side of the chosen
    one and the class are kept, the rest shown as '…'."""
    at = path.index(chosen)
    keep = {0, len(path) - 1, *range(at - context, at + context + 1)}
    parts: list[str] = []
    for index, node_id in enumerate(path):
        if index in keep:
            name = hierarchy.names[node_id]
            parts.append(f"[{name}]" if node_id == chosen else name)
        elif parts[-1] != "…":
            parts.append("…")
    return " › ".join(parts)


def check_classes(scores: ClassScores, hierarchy: Hierarchy) -> None:
    """ValueError unless the scores' classes are the hierarchy's leaves, in order."""
    if tuple(scores.wnids) != hierarchy.classes:
        raise ValueError(
            f"Hedge Prediction needs scores over the {len(hierarchy.classes)} ImageNet-1k "
            f"classes in class-index order; these have {len(scores.wnids)} classes "
            f"({scores.model or 'unknown classifier'})"
        )


def hedge(
    scores: ClassScores,
    target_accuracy: float,
    rule: str = "confidence",
    darts_lambda: float = 0.0,
    true_labels: str = "",
    hierarchy: Hierarchy | None = None,
) -> dict[str, Any]:
    """Hedged answers for every image: {"nodes": chosen ids, "posteriors": theirs,
    "lambda": λ used (None for the confidence rule), "accuracy": batch accuracy,
    "paths": path texts}."""
    hierarchy = hierarchy or imagenet_hierarchy()
    check_classes(scores, hierarchy)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, not {rule!r}")
    posteriors = node_posteriors(hierarchy, scores.probabilities)
    _, rewards = _tables(hierarchy)
    classes = true_class_indices(hierarchy, true_labels, scores.batch)
    correct = None if classes is None else correct_table(hierarchy, classes)
    lam = None
    if rule == "confidence":
        chosen = most_specific_above(posteriors, rewards, target_accuracy)
    else:
        lam = darts_lambda
        if rule == "darts":
            lam = fit_darts_lambda(posteriors, rewards, target_accuracy, correct)
        chosen = darts_choice(posteriors, rewards, lam)
    nodes = [hierarchy.nodes[int(i)] for i in chosen]
    paths = [
        path_text(hierarchy, hierarchy_path(hierarchy, n, posteriors[b]), n)
        for b, n in enumerate(nodes)
    ]
    return {
        "nodes": nodes,
        "posteriors": [float(posteriors[b, int(i)]) for b, i in enumerate(chosen)],
        "lambda": lam,
        "accuracy": batch_accuracy(posteriors, chosen, correct),
        "labelled": correct is not None,
        "paths": paths,
        "rewards": [float(rewards[int(i)]) for i in chosen],
    }


def hedge_report(result: dict[str, Any], hierarchy: Hierarchy, target: float, rule: str) -> str:
    """The answers as text: the rule and the batch's accuracy, then per image its answer
    (posterior, number of classes below it, reward) and its path in the hierarchy."""
    kind = "accuracy" if result["labelled"] else "expected accuracy"
    if rule == "confidence":
        head = f"target {target:.2f}, most specific node with p >= target"
    else:
        how = "fitted" if rule == "darts" else "given"
        head = f"target {target:.2f}, DARTS with λ = {result['lambda']:.3g} ({how})"
    lines = [f"{head}: {kind} {result['accuracy']:.3f}"]
    for b, node_id in enumerate(result["nodes"]):
        size = len(hierarchy.leaf_sets[node_id])
        lines.append(
            f"image {b + 1}: {hierarchy.names[node_id]} (p = {result['posteriors'][b]:.3f}, "
            f"{size} {'class' if size == 1 else 'classes'}, {result['rewards'][b]:.2f} bits)"
        )
        lines.append(f"  {result['paths'][b]}")
    return "\n".join(lines)


@node("vision.hedge_prediction", category="vision/classify", display_name="Hedge Prediction")
def hedge_prediction(
    scores: ClassScoresPort,
    target_accuracy: Float(0.0, 1.0, step=0.01) = 0.9,
    rule: Choice(RULES, labels=RULE_LABELS) = "confidence",
    darts_lambda: Float(0.0, 1000.0, step=0.1) = 1.0,
    true_labels: String = "",
    ctx: NodeContext = None,
) -> Outputs(answer=String, report=String):
    """Answer with the most specific WordNet category likely enough to be right.

    "Hedging your bets" (Deng et al., CVPR 2012): a cat photo is 'tabby' at a low target
    accuracy, 'cat' or 'feline' at a higher one, 'mammal' or 'animal' higher still. rule
    confidence: per image, the most specific node whose posterior (the summed probability
    of its classes) is ≥ target_accuracy. darts: the paper's rule, argmax (reward + λ) ×
    posterior with reward the information gain in bits, λ fitted so the batch reaches the
    target (true accuracy if true_labels names each image's class, comma-separated, else
    expected accuracy). darts_fixed_lambda uses darts_lambda. answer has one line per
    image; report adds the posterior and the path from 'entity' through the answer.
    """
    hierarchy = imagenet_hierarchy()
    result = hedge(scores, target_accuracy, rule, darts_lambda, true_labels, hierarchy)
    answer = "\n".join(hierarchy.names[n] for n in result["nodes"])
    return answer, hedge_report(result, hierarchy, target_accuracy, rule)


NODES = [hedge_prediction]
