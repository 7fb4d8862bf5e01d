"""Model catalogs: models-folder entries first, bundled ones after, a folder entry wins."""

from __future__ import annotations

import pytest

from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import ModelFileError, list_models


@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty models folder, and a package folder with two shipped models."""
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path / "models"))
    shipped = tmp_path / "package"
    shipped.mkdir()
    for name in ("b.safetensors", "a.safetensors"):
        (shipped / name).write_bytes(b"x")
    return tmp_path


def catalog(root) -> ModelCatalog:
    shipped = root / "package"
    found = ModelCatalog("things", (".safetensors",))
    found.bundle(
        lambda: {"bundled/b": shipped / "b.safetensors", "bundled/a": shipped / "a.safetensors"}
    )
    found.bundle({"bundled/missing": shipped / "gone.safetensors", "bundled/a": shipped / "x"})
    return found


def put(root, name: str) -> None:
    path = root / "models" / "things" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"mine")


def test_bundled_models_are_offered_in_order_and_missing_files_are_skipped(models):
    assert catalog(models).names() == ["bundled/b", "bundled/a"]


def test_models_folder_names_come_first_sorted(models):
    put(models, "z.safetensors")
    put(models, "deep/y.safetensors")
    assert catalog(models).names() == [
        "deep/y.safetensors",
        "z.safetensors",
        "bundled/b",
        "bundled/a",
    ]


def test_a_models_folder_file_of_the_same_name_wins_and_is_listed_once(models):
    things = catalog(models)
    assert things.path("bundled/a") == models / "package" / "a.safetensors"
    put(models, "bundled/a")
    assert things.bundled_path("bundled/a") is None
    assert things.path("bundled/a") == (models / "models" / "things" / "bundled" / "a").resolve()
    assert things.names().count("bundled/a") == 1


def test_an_unknown_name_is_a_model_file_error_listing_what_is_there(models):
    put(models, "z.safetensors")
    with pytest.raises(ModelFileError, match=r"available: z\.safetensors"):
        catalog(models).path("nope.safetensors")


def test_a_pack_says_which_folders_are_one_model(models):
    folder = models / "models" / "things" / "packed"
    folder.mkdir(parents=True)
    (folder / "marker.json").write_text("{}")
    (folder / "inner.safetensors").write_bytes(b"x")
    put(models, "loose.safetensors")
    is_packed = lambda path: (path / "marker.json").is_file()  # noqa: E731
    assert list_models("things", (".safetensors",), is_model_folder=is_packed) == [
        "loose.safetensors",
        "packed",
    ]
    assert list_models("things", (".safetensors",)) == [
        "loose.safetensors",
        "packed/inner.safetensors",
    ]


def test_the_old_diffusers_folders_flag_still_works_and_warns(models):
    folder = models / "models" / "things" / "pipe"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    with pytest.deprecated_call():
        assert list_models("things", (), diffusers_folders=True) == ["pipe"]
