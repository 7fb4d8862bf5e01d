"""The 1000 ImageNet-1k (ILSVRC 2012) classes in class-index order: names and WordNet ids.

* Names come from torchvision's weight metadata (``ResNet50_Weights.IMAGENET1K_V1.meta``),
  which ships in the wheel: no download. They are the short names ("tabby", "tiger cat").
* WordNet ids (wnids, ``'n' + 8-digit noun offset``, e.g. ``n02123045`` for tabby) in
  class-index order come from timm's ``timm/data/_info/imagenet_synsets.txt`` when timm is
  installed (the file is read, timm is not imported), else from the compact hierarchy file
  graphflow ships (``embedded/imagenet_hierarchy.json``, made from that same list).

ImageNet-1k's class index is the sorted order of its wnids; :func:`imagenet_wnids` checks it.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from graphflow.runtime.models import ModelFileError

IMAGENET_CLASSES = 1000
EMBEDDED_HIERARCHY = Path(__file__).resolve().parent / "embedded" / "imagenet_hierarchy.json"


def timm_synsets_file() -> Path | None:
    """timm's list of the ImageNet-1k wnids, if timm is installed (found without importing)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data/_info/imagenet_synsets.txt"
    return path if path.is_file() else None


def _checked(wnids: list[str], source: str) -> tuple[str, ...]:
    """The list, if it is 1000 distinct noun ids in sorted order (ModelFileError if not)."""
    if (
        len(wnids) != IMAGENET_CLASSES
        or wnids != sorted(set(wnids))
        or not all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() for w in wnids)
    ):
        raise ModelFileError(f"{source} is not the sorted list of the 1000 ImageNet-1k wnids")
    return tuple(wnids)


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 wnids in class-index order (timm's file, else the shipped hierarchy file)."""
    path = timm_synsets_file()
    if path is not None:
        return _checked(path.read_text(encoding="utf-8").split(), str(path))
    try:
        classes = json.loads(EMBEDDED_HIERARCHY.read_text(encoding="utf-8"))["classes"]
    except (OSError, ValueError, KeyError) as error:
        raise ModelFileError(
            f"no ImageNet synset list: timm is not installed and {EMBEDDED_HIERARCHY.name} "
            f"cannot be read ({error}); pip install timm, or reinstall graphflow"
        ) from None
    return _checked([wnid for wnid, _ in classes], EMBEDDED_HIERARCHY.name)


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 class names in class-index order (torchvision's metadata, else the
    shipped hierarchy file)."""
    try:
        from torchvision.models import ResNet50_Weights

        names = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    except ImportError:
        classes = json.loads(EMBEDDED_HIERARCHY.read_text(encoding="utf-8"))["classes"]
        names = [name for _, name in classes]
    if len(names) != IMAGENET_CLASSES:
        raise ModelFileError(f"expected {IMAGENET_CLASSES} ImageNet class names, got {len(names)}")
    return tuple(names)
