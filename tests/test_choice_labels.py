"""Choice labels: text shown beside a dropdown's values, emitted only when given."""

import argparse

import pytest

from graphflow import Choice, String, node
from graphflow.cli_groups import command_group


def _spec(ref):
    @node("test.pick")
    def pick(value: ref = "a") -> String:  # type: ignore[valid-type]
        """Pick a value."""
        return value

    return pick


def test_choices_without_labels_keep_the_old_json():
    data = _spec(Choice(["a", "b"])).to_dict()["inputs"][0]
    assert data["choices"] == ["a", "b"]
    assert "choice_labels" not in data


def test_mapping_labels_are_emitted_for_the_values_that_have_one():
    data = _spec(Choice(["a", "b", "c"], labels={"a": "first", "c": "third"})).to_dict()
    assert data["inputs"][0]["choice_labels"] == {"a": "first", "c": "third"}


def test_a_label_function_is_called_per_value_with_current_choices():
    files = ["x.safetensors"]
    spec = _spec(Choice(lambda: list(files), labels=lambda v: f"label of {v}"))
    assert spec.to_dict()["inputs"][0]["choice_labels"] == {
        "x.safetensors": "label of x.safetensors"
    }
    files.append("y.safetensors")
    labels = spec.to_dict()["inputs"][0]["choice_labels"]
    assert labels == {
        "x.safetensors": "label of x.safetensors",
        "y.safetensors": "label of y.safetensors",
    }


def test_a_failing_or_empty_label_leaves_that_value_without_one():
    def label(value):
        if value == "bad":
            raise OSError("unreadable")
        return None if value == "none" else value.upper()

    data = _spec(Choice(["ok", "bad", "none"], labels=label)).to_dict()["inputs"][0]
    assert data["choice_labels"] == {"ok": "OK"}


def test_labels_of_non_text_values_are_keyed_by_their_text():
    @node("test.pick_int")
    def pick_int(value: Choice([1, 2], type_name="INT", labels={1: "one"}) = 1) -> String:
        """Pick a number."""
        return str(value)

    assert pick_int.to_dict()["inputs"][0]["choice_labels"] == {"1": "one"}


def test_labels_do_not_change_which_values_are_allowed():
    spec = _spec(Choice(["a"], labels={"a": "x", "zzz": "not a choice"}))
    assert spec.inputs[0].allowed_choices() == ["a"]
    assert spec.to_dict()["inputs"][0]["choice_labels"] == {"a": "x"}


def test_command_group_is_shared_by_two_plugins():
    parser = argparse.ArgumentParser(prog="graphflow")
    sub = parser.add_subparsers(dest="command", required=True)
    command_group(sub, "models", help="models").add_parser("one").set_defaults(which=1)
    command_group(sub, "models", help="ignored").add_parser("two").set_defaults(which=2)
    assert parser.parse_args(["models", "one"]).which == 1
    args = parser.parse_args(["models", "two"])
    assert args.which == 2 and args.models_command == "two"


def test_command_group_refuses_a_plain_command_of_that_name():
    parser = argparse.ArgumentParser(prog="graphflow")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run")
    with pytest.raises(ValueError, match="'graphflow run' is a command"):
        command_group(sub, "run", help="x")
