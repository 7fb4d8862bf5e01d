"""The vision pack's port types (declared here, registered through each module's PORT_TYPES).

``CLASSIFIER`` is a loaded ImageNet classifier (a model handle); ``CLASS_SCORES`` is what a
classifier says about a batch of images: one probability per class and image, with the
classes' names and WordNet ids, so that later nodes (top-k, hedging) need no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphflow import port_type
from graphflow.value_codec import register_dataclass

CLASSIFIER_TYPE, Classifier = port_type(
    "CLASSIFIER", "Image classifier (ImageNet-1k)", "#ffb74d", model=True
)
CLASS_SCORES_TYPE, ClassScoresPort = port_type(
    "CLASS_SCORES", "Class probabilities of a batch of images", "#ffd54f"
)


@dataclass(frozen=True)
class ClassScores:
    """Class probabilities of a batch: ``probabilities`` is a (B, N) float tensor (rows sum
    to 1), ``labels`` and ``wnids`` name the N classes (WordNet ids such as 'n02123045' for
    ImageNet), ``model`` names the classifier that scored them."""

    probabilities: Any
    labels: tuple[str, ...]
    wnids: tuple[str, ...]
    model: str = ""

    def __post_init__(self):
        rows = getattr(self.probabilities, "shape", (0, 0))
        if len(rows) != 2 or rows[1] != len(self.labels) or len(self.labels) != len(self.wnids):
            raise ValueError(
                f"ClassScores: probabilities {tuple(rows)} do not match {len(self.labels)} "
                f"labels and {len(self.wnids)} wnids"
            )

    @property
    def batch(self) -> int:
        """Number of images scored."""
        return int(self.probabilities.shape[0])

    def top(self, index: int, k: int) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs of image ``index``."""
        row = self.probabilities[index]
        values, classes = row.topk(min(k, row.shape[0]))
        return [(self.labels[int(c)], float(v)) for v, c in zip(values, classes, strict=True)]


register_dataclass(ClassScores, "vision.ClassScores")
