"""The hierarchy Hedge Prediction uses: ImageNet's classes and wnids, the WordNet reader
(checked against nltk's), and the shipped hierarchy file that replaces WordNet at run time."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gf_vision import imagenet_labels, wordnet_tree
from graphflow.runtime.models import ModelFileError

HAVE_WORDNET = (wordnet_tree.WORDNET_DIR / "data.noun").is_file()
needs_wordnet = pytest.mark.skipif(
    not HAVE_WORDNET and os.environ.get("GRAPHFLOW_REQUIRE_DATA") != "1",
    reason="WordNet 3.0 is not installed (Debian package wordnet-base)",
)

# WordNet 3.0's standard lexnames file, which nltk needs and Debian's folder lacks.
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
POS_NUMBER = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def test_imagenet_wnids_are_in_class_index_order_with_torchvision_names():
    wnids, names = imagenet_labels.imagenet_wnids(), imagenet_labels.imagenet_categories()
    assert len(wnids) == len(names) == 1000
    assert (wnids[0], names[0]) == ("n01440764", "tench")
    assert (wnids[281], names[281]) == ("n02123045", "tabby")
    assert (wnids[967], names[967]) == ("n07920052", "espresso")


def test_without_timm_the_wnids_come_from_the_shipped_file(monkeypatch):
    expected = imagenet_labels.imagenet_wnids()
    monkeypatch.setattr(imagenet_labels.importlib.util, "find_spec", lambda name: None)
    imagenet_labels.imagenet_wnids.cache_clear()
    try:
        assert imagenet_labels.timm_synsets_file() is None
        assert imagenet_labels.imagenet_wnids() == expected
    finally:
        imagenet_labels.imagenet_wnids.cache_clear()


def test_the_shipped_hierarchy_is_a_dag_over_the_classes_under_entity():
    hierarchy = wordnet_tree.embedded_hierarchy()
    assert hierarchy.classes == imagenet_labels.imagenet_wnids()
    assert [hierarchy.names[root] for root in hierarchy.roots] == ["entity"]
    assert all(len(hierarchy.leaf_sets[wnid]) == 1 for wnid in hierarchy.classes)  # leaves
    assert len(hierarchy.leaf_sets[hierarchy.roots[0]]) == 1000
    assert any(len(parents) > 1 for parents in hierarchy.parents.values())  # a DAG
    tabby_up = {hierarchy.names[n] for n in hierarchy.ancestors("n02123045")}
    assert {"domestic cat", "cat", "feline", "carnivore", "mammal", "animal"} <= tabby_up


def test_the_shipped_file_is_small_and_carries_the_wordnet_licence():
    path = imagenet_labels.EMBEDDED_HIERARCHY
    assert path.stat().st_size < 300_000
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["licence"] == wordnet_tree.WORDNET_LICENCE
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in data["licence"]


def test_without_wordnet_the_shipped_hierarchy_is_used(tmp_path):
    hierarchy = wordnet_tree.imagenet_hierarchy(tmp_path)  # a folder without data.noun
    assert hierarchy.source.startswith("shipped imagenet_hierarchy.json")


def test_a_broken_hierarchy_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "hierarchy.json"
    broken.write_text("{}", encoding="utf-8")
    with pytest.raises(ModelFileError, match="is not a readable hierarchy file"):
        wordnet_tree.embedded_hierarchy(broken)


@needs_wordnet
def test_the_shipped_file_is_what_wordnet_gives():
    from_wordnet = wordnet_tree.imagenet_hierarchy()
    assert from_wordnet.source.startswith("WordNet 3.0")
    assert from_wordnet.to_data() == wordnet_tree.embedded_hierarchy().to_data()


@needs_wordnet
def test_a_wnid_that_is_not_a_synset_offset_is_a_clear_error():
    with pytest.raises(ModelFileError, match="no synset at offset"):
        wordnet_tree.hierarchy_from_wordnet(wordnet_tree.WORDNET_DIR, ["n02123046"])


@pytest.mark.slow
@needs_wordnet
def test_the_data_noun_reader_agrees_with_nltk(tmp_path, monkeypatch):
    nltk = pytest.importorskip("nltk")
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    folder = tmp_path / "wordnet"
    shutil.copytree(wordnet_tree.WORDNET_DIR, folder, ignore=shutil.ignore_patterns("bin", "wn*"))
    (folder / "lexnames").write_text(
        "".join(f"{i:02d}\t{n}\t{POS_NUMBER[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES))
    )
    # nltk maps this folder's synsets to those of an installed "wordnet" corpus unless its
    # version is "wordnet"; there is none here, and the folder is WordNet 3.0 itself.
    monkeypatch.setattr(WordNetCorpusReader, "map_wn", lambda self, version="wordnet": None)
    nltk.data.path.append(str(tmp_path))  # nltk reads only folders it is told to trust
    try:
        reader = WordNetCorpusReader(str(folder), None)
        hierarchy = wordnet_tree.imagenet_hierarchy()
        for wnid in hierarchy.nodes:
            synset = reader.synset_from_pos_and_offset("n", int(wnid[1:]))
            ups = synset.hypernyms() + synset.instance_hypernyms()
            assert set(hierarchy.parents[wnid]) == {f"n{s.offset():08d}" for s in ups}, wnid
            if wnid not in hierarchy.class_index:
                assert hierarchy.names[wnid] == synset.lemma_names()[0].replace("_", " ")
    finally:
        nltk.data.path.remove(str(tmp_path))


def test_the_generator_writes_the_shipped_file(tmp_path):
    if not HAVE_WORDNET:
        pytest.skip("WordNet 3.0 is not installed (Debian package wordnet-base)")
    written = wordnet_tree.write_embedded_hierarchy(tmp_path / "h.json")
    assert written.read_bytes() == Path(imagenet_labels.EMBEDDED_HIERARCHY).read_bytes()
