"""The WordNet hypernym hierarchy above the 1000 ImageNet-1k classes (a DAG).

Each ImageNet class is a WordNet 3.0 noun synset (a leaf here); its ancestors are the
synsets reached by following hypernym links (``@``, and ``@i`` for instances) up to
"entity". Some synsets have two hypernyms, so the hierarchy is a DAG, not a tree.

Where it comes from:

* a WordNet 3.0 database folder, such as Debian's ``wordnet-base`` (``/usr/share/wordnet``):
  ``data.noun`` is read directly in the documented wndb(5) format (each synset's line
  starts at the byte offset that is its id, so only the ~1,900 synsets needed are read).
  nltk's ``WordNetCorpusReader`` cannot open Debian's folder (it lacks the ``lexnames``
  file nltk requires); tests check this reader against nltk's on a completed copy.
* otherwise the compact file graphflow ships, ``embedded/imagenet_hierarchy.json``
  (~100 KB: the classes, and each needed synset's name and hypernyms), written from
  WordNet by ``python -m gf_vision.wordnet_tree``. So the nodes work without WordNet.

WordNet 3.0 is distributed under Princeton's WordNet licence (permissive; the notice is
:data:`WORDNET_LICENCE`, kept in the shipped file as the licence requires).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from graphflow.runtime.models import ModelFileError

from .imagenet_labels import EMBEDDED_HIERARCHY, imagenet_categories, imagenet_wnids

WORDNET_DIR = Path("/usr/share/wordnet")
HYPERNYM_POINTERS = ("@", "@i")

WORDNET_LICENCE = """\
WordNet Release 3.0. This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license. By obtaining, using and/or copying this
software and database, you agree that you have read, understood, and will comply with these
terms and conditions.: Permission to use, copy, modify and distribute this software and
database and its documentation for any purpose and without fee or royalty is hereby
granted, provided that you agree to comply with the following copyright notice and
statements, including the disclaimer, and that the same appear on ALL copies of the
software, database and documentation, including modifications that you make for internal
use or for distribution. WordNet 3.0 Copyright 2006 by Princeton University. All rights
reserved. THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO
REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT LIMITATION,
PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT- ABILITY OR FITNESS
FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR
DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER
RIGHTS. The name of Princeton University or Princeton may not be used in advertising or
publicity pertaining to distribution of the software and/or database. Title to copyright in
this software, database and any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same."""


class Hierarchy:
    """A DAG of synsets over leaf classes: names, parents, and each node's leaf set.

    ``classes`` are the leaves' ids in class-index order; ``parents`` maps every node to
    its parents' ids (roots map to ``()``). Node ids are strings (wnids for WordNet).
    """

    def __init__(
        self,
        classes: Sequence[str],
        names: Mapping[str, str],
        parents: Mapping[str, Sequence[str]],
        source: str = "",
    ):
        self.classes = tuple(classes)
        self.parents = {node: tuple(ups) for node, ups in parents.items()}
        missing = [n for n in (*self.classes, *_flatten(self.parents.values())) if n not in names]
        if missing:
            raise ValueError(f"hierarchy: no name for {missing[0]}")
        self.names = dict(names)
        self.source = source
        self.nodes = tuple(self.parents)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.class_index = {wnid: i for i, wnid in enumerate(self.classes)}

    @cached_property
    def children(self) -> dict[str, tuple[str, ...]]:
        """Each node's children (in node order)."""
        found: dict[str, list[str]] = {node: [] for node in self.nodes}
        for node, ups in self.parents.items():
            for up in ups:
                found[up].append(node)
        return {node: tuple(kids) for node, kids in found.items()}

    @cached_property
    def leaf_sets(self) -> dict[str, frozenset[int]]:
        """Each node's leaf descendants, as class indices (a class's set is itself)."""
        sets: dict[str, set[int]] = {node: set() for node in self.nodes}
        for index, wnid in enumerate(self.classes):
            for node in self.ancestors(wnid, include_self=True):
                sets[node].add(index)
        return {node: frozenset(found) for node, found in sets.items()}

    def ancestors(self, node: str, include_self: bool = False) -> set[str]:
        """Every node above ``node`` (and ``node`` itself if asked)."""
        seen = {node} if include_self else set()
        stack = list(self.parents[node])
        while stack:
            up = stack.pop()
            if up not in seen:
                seen.add(up)
                stack.extend(self.parents[up])
        return seen

    @cached_property
    def roots(self) -> tuple[str, ...]:
        """The nodes without parents ("entity" for WordNet nouns)."""
        return tuple(node for node in self.nodes if not self.parents[node])

    def membership(self) -> Any:
        """(nodes, classes) float32 tensor: 1 where the class is below (or is) the node."""
        import torch

        matrix = torch.zeros(len(self.nodes), len(self.classes))
        for node, leaves in self.leaf_sets.items():
            matrix[self.index[node], sorted(leaves)] = 1.0
        return matrix

    def rewards(self) -> Any:
        """Information gain of answering each node: log2 N − log2 |leaves(node)| (Deng et
        al. 2012): 0 at the root, log2 N for a class."""
        import torch

        total = math.log2(len(self.classes))
        sizes = [len(self.leaf_sets[node]) for node in self.nodes]
        return torch.tensor([total - math.log2(max(size, 1)) for size in sizes])

    def to_data(self) -> dict[str, Any]:
        """The JSON form written to the shipped file (:func:`hierarchy_from_data` reads it)."""
        return {
            "classes": [[wnid, self.names[wnid]] for wnid in self.classes],
            "synsets": {node: [self.names[node], list(self.parents[node])] for node in self.nodes},
        }


def _flatten(groups: Iterable[Iterable[str]]) -> list[str]:
    return [item for group in groups for item in group]


def wnid_offset(wnid: str) -> int:
    """'n02123045' → 2123045 (the synset's byte offset in data.noun)."""
    if not (wnid.startswith("n") and wnid[1:].isdigit()):
        raise ValueError(f"{wnid!r} is not a WordNet noun id like 'n02123045'")
    return int(wnid[1:])


def read_noun_synset(data_noun: Any, offset: int) -> tuple[list[str], list[int]]:
    """(lemmas, hypernym offsets) of the noun synset at ``offset`` of an open data.noun
    (binary). Line: offset lex_filenum ss_type w_cnt(hex) [word lex_id]… p_cnt
    [symbol offset pos source/target]… | gloss (wndb(5))."""
    data_noun.seek(offset)
    fields = data_noun.readline().decode("utf-8").split(" | ")[0].split()
    if not fields or int(fields[0]) != offset:
        raise ModelFileError(f"data.noun has no synset at offset {offset:08d}")
    words = int(fields[3], 16)
    lemmas = [fields[4 + 2 * i] for i in range(words)]
    at = 4 + 2 * words
    pointers = int(fields[at])
    hypernyms = []
    for i in range(pointers):
        symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
        if symbol in HYPERNYM_POINTERS and pos == "n":
            hypernyms.append(int(target))
    return lemmas, hypernyms


def lemma_name(lemma: str) -> str:
    """'Egyptian_cat' → 'Egyptian cat'."""
    return lemma.replace("_", " ")


def hierarchy_from_wordnet(
    folder: Path | str, classes: Sequence[str], class_names: Sequence[str] | None = None
) -> Hierarchy:
    """The hypernym DAG above ``classes`` (wnids) read from a WordNet 3.0 folder.

    Classes are named ``class_names`` (e.g. ImageNet's short names) when given, other
    synsets by their first lemma.
    """
    path = Path(folder) / "data.noun"
    names: dict[str, str] = {}
    parents: dict[str, tuple[str, ...]] = {}
    try:
        with open(path, "rb") as data_noun:
            todo = list(classes)
            while todo:
                wnid = todo.pop()
                if wnid in parents:
                    continue
                lemmas, ups = read_noun_synset(data_noun, wnid_offset(wnid))
                names[wnid] = lemma_name(lemmas[0])
                parents[wnid] = tuple(f"n{up:08d}" for up in ups)
                todo.extend(parents[wnid])
    except (OSError, ValueError, IndexError) as error:
        raise ModelFileError(f"{path} is not a readable WordNet 3.0 data.noun ({error})") from None
    if class_names is not None:
        names.update(zip(classes, class_names, strict=True))
    ordered = {wnid: parents[wnid] for wnid in classes}
    ordered.update(sorted((k, v) for k, v in parents.items() if k not in ordered))
    return Hierarchy(classes, names, ordered, source=f"WordNet 3.0 ({folder})")


def hierarchy_from_data(data: Mapping[str, Any], source: str = "") -> Hierarchy:
    """A hierarchy from its JSON form (:meth:`Hierarchy.to_data`)."""
    synsets = data["synsets"]
    names = {node: entry[0] for node, entry in synsets.items()}
    names.update({wnid: name for wnid, name in data["classes"]})
    parents = {node: tuple(entry[1]) for node, entry in synsets.items()}
    return Hierarchy([wnid for wnid, _ in data["classes"]], names, parents, source=source)


def embedded_hierarchy(path: Path = EMBEDDED_HIERARCHY) -> Hierarchy:
    """The hierarchy graphflow ships (no WordNet needed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return hierarchy_from_data(data, source=f"shipped {path.name} (from WordNet 3.0)")
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise ModelFileError(f"{path} is not a readable hierarchy file ({error})") from None


@lru_cache(maxsize=4)
def imagenet_hierarchy(wordnet_dir: Path | None = WORDNET_DIR) -> Hierarchy:
    """The ImageNet-1k hierarchy: from WordNet in ``wordnet_dir`` when it has data.noun,
    else the shipped file (``wordnet_dir=None`` asks for the shipped file)."""
    if wordnet_dir is not None and (Path(wordnet_dir) / "data.noun").is_file():
        return hierarchy_from_wordnet(wordnet_dir, imagenet_wnids(), imagenet_categories())
    return embedded_hierarchy()


def write_embedded_hierarchy(
    path: Path = EMBEDDED_HIERARCHY, wordnet_dir: Path = WORDNET_DIR
) -> Path:
    """Write the shipped hierarchy file from a WordNet folder (with the WordNet licence)."""
    hierarchy = hierarchy_from_wordnet(wordnet_dir, imagenet_wnids(), imagenet_categories())
    data = {
        "about": (
            "The WordNet 3.0 hypernym hierarchy above the 1000 ImageNet-1k classes, for "
            "graphflow's vision.hedge_prediction. classes: [wnid, name] in class-index order "
            "(names from torchvision). synsets: wnid -> [name, hypernym wnids]. Written by "
            "python -m gf_vision.wordnet_tree from WordNet 3.0 (Debian wordnet-base)."
        ),
        "licence": WORDNET_LICENCE,
        **hierarchy.to_data(),
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace('],"n', '],\n"n') + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"wrote {write_embedded_hierarchy()}")
