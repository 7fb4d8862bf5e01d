"""Model folders: symbolic links are followed, names cannot escape, extra folders are searched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import (
    ModelFileError,
    file_version,
    list_models,
    model_search_dirs,
    resolve_model_path,
)
from graphflow.settings import Settings, use_settings

SUFFIXES = (".safetensors",)


@pytest.fixture
def models(tmp_path: Path):
    """A models folder (with checkpoints/) in force for the test, and a folder elsewhere."""
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    elsewhere = tmp_path / "shared-drive"
    elsewhere.mkdir()
    with use_settings(Settings(models=root)):
        yield root, elsewhere


def test_a_linked_file_is_listed_and_loads_from_its_target(models):
    root, elsewhere = models
    target = elsewhere / "sd15.safetensors"
    target.write_bytes(b"weights")
    (root / "checkpoints" / "sd15.safetensors").symlink_to(target)
    assert list_models("checkpoints", SUFFIXES) == ["sd15.safetensors"]
    path = resolve_model_path("checkpoints", "sd15.safetensors")
    assert path.read_bytes() == b"weights"


def test_a_linked_sub_folder_is_listed_with_its_files(models):
    root, elsewhere = models
    (elsewhere / "loras").mkdir()
    (elsewhere / "loras" / "style.safetensors").write_bytes(b"")
    (root / "checkpoints" / "linked").symlink_to(elsewhere / "loras", target_is_directory=True)
    assert list_models("checkpoints", SUFFIXES) == ["linked/style.safetensors"]
    assert resolve_model_path("checkpoints", "linked/style.safetensors").is_file()


def test_a_link_to_another_file_system_is_followed(models):
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm (a second file system) here")
    root, _ = models
    target = shm / f"graphflow-test-{os.getpid()}.safetensors"
    target.write_bytes(b"on tmpfs")
    try:
        (root / "checkpoints" / "far.safetensors").symlink_to(target)
        assert list_models("checkpoints", SUFFIXES) == ["far.safetensors"]
        assert resolve_model_path("checkpoints", "far.safetensors").read_bytes() == b"on tmpfs"
    finally:
        target.unlink()


def test_a_dangling_link_is_left_out_of_the_list_and_named_clearly(models, caplog):
    root, elsewhere = models
    (root / "checkpoints" / "gone.safetensors").symlink_to(elsewhere / "missing.safetensors")
    (root / "checkpoints" / "here.safetensors").write_bytes(b"")
    assert list_models("checkpoints", SUFFIXES) == ["here.safetensors"]
    assert "gone.safetensors is a symbolic link" in caplog.text
    with pytest.raises(ModelFileError, match=r"symbolic link to .*missing.safetensors"):
        resolve_model_path("checkpoints", "gone.safetensors")


def test_a_link_loop_does_not_hang_the_listing(models):
    root, _ = models
    folder = root / "checkpoints" / "loop"
    folder.mkdir()
    (folder / "a.safetensors").write_bytes(b"")
    (folder / "again").symlink_to(folder, target_is_directory=True)
    (folder / "up").symlink_to(root / "checkpoints", target_is_directory=True)
    began = time.perf_counter()
    listed = list_models("checkpoints", SUFFIXES)
    assert time.perf_counter() - began < 5
    assert "loop/a.safetensors" in listed
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize(
    "name",
    [
        "../secret.safetensors",
        "a/../../secret.safetensors",
        "/etc/passwd",
        "C:\\x.safetensors",
        "..\\secret.safetensors",
        "a\x00b.safetensors",
        "",
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "backslash-dotdot", "nul", "empty"],
)
def test_a_name_cannot_escape_its_folder_by_itself(models, name):
    root, _ = models
    (root / "secret.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="outside the checkpoints models folder"):
        resolve_model_path("checkpoints", name)


def test_the_file_version_follows_the_link_target(models):
    root, elsewhere = models
    target = elsewhere / "model.safetensors"
    target.write_bytes(b"one")
    link = root / "checkpoints" / "model.safetensors"
    link.symlink_to(target)
    before = file_version(resolve_model_path("checkpoints", "model.safetensors"))
    target.write_bytes(b"a different, longer file")
    assert file_version(link) != before


def test_extra_models_roots_and_per_kind_folders_are_searched_in_order(tmp_path):
    mine, comfy, webui = tmp_path / "models", tmp_path / "ComfyUI/models", tmp_path / "webui"
    for folder, names in (
        (mine / "checkpoints", ["a.safetensors"]),
        (comfy / "checkpoints", ["a.safetensors", "b.safetensors"]),
        (webui / "Stable-diffusion", ["c.safetensors"]),
    ):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text(str(folder))
    settings = Settings(
        models=mine,
        extra_models=[comfy],
        model_paths={"checkpoints": [webui / "Stable-diffusion"]},
    )
    with use_settings(settings):
        assert model_search_dirs("checkpoints") == [
            mine / "checkpoints",
            comfy / "checkpoints",
            webui / "Stable-diffusion",
        ]
        assert list_models("checkpoints", SUFFIXES) == [
            "a.safetensors",
            "b.safetensors",
            "c.safetensors",
        ]
        first = resolve_model_path("checkpoints", "a.safetensors")
        assert first.read_text() == str(mine / "checkpoints")  # the first folder wins
        assert resolve_model_path("checkpoints", "c.safetensors").is_file()
        with pytest.raises(ModelFileError, match="Stable-diffusion"):
            resolve_model_path("checkpoints", "z.safetensors")  # every folder is named


def test_a_catalog_prefers_a_linked_models_folder_file_over_the_bundled_one(models):
    root, elsewhere = models
    bundled = elsewhere / "bundled.safetensors"
    bundled.write_bytes(b"bundled")
    mine = elsewhere / "mine.safetensors"
    mine.write_bytes(b"mine")
    (root / "checkpoints" / "shared").symlink_to(mine)
    catalog = ModelCatalog("checkpoints", (".safetensors", ""))
    catalog.bundle({"shared": bundled})
    assert catalog.path("shared").read_bytes() == b"mine"


def test_ray_workers_get_every_model_folder_as_an_absolute_path(tmp_path, monkeypatch):
    from graphflow.distributed.cluster import worker_settings

    monkeypatch.chdir(tmp_path)
    relative = Settings(
        models=Path("models"),
        extra_models=[Path("comfy/models")],
        model_paths={"loras": [Path("webui/Lora")]},
    )
    absolute = worker_settings(relative)
    assert absolute.models == tmp_path / "models"
    assert absolute.extra_models == [tmp_path / "comfy/models"]
    assert absolute.model_paths == {"loras": [tmp_path / "webui/Lora"]}
    assert absolute.input_dir == tmp_path / "input"


def test_ray_workers_share_the_servers_data_and_disk_cache_folders(tmp_path, monkeypatch):
    from graphflow.disk_cache import cache_folder
    from graphflow.distributed.cluster import worker_settings

    monkeypatch.chdir(tmp_path)
    on_server = worker_settings(Settings(data_dir=Path("data")))
    assert on_server.data_dir == tmp_path / "data"
    assert cache_folder(on_server) == tmp_path / "data" / "cache"
    chosen = worker_settings(Settings(disk_cache_dir=Path("fast/cache")))
    assert chosen.disk_cache_dir == tmp_path / "fast" / "cache"


def test_two_links_to_one_folder_are_both_listed(models):
    root, elsewhere = models
    (elsewhere / "model").mkdir()
    (elsewhere / "model" / "weights.safetensors").write_bytes(b"")
    for name in ("first", "second"):
        (root / "checkpoints" / name).symlink_to(elsewhere / "model", target_is_directory=True)
    assert list_models("checkpoints", SUFFIXES) == [
        "first/weights.safetensors",
        "second/weights.safetensors",
    ]


def test_a_loop_through_two_folders_ends(models):
    root, elsewhere = models
    (elsewhere / "x").mkdir()
    (elsewhere / "x" / "m.safetensors").write_bytes(b"")
    (root / "checkpoints" / "a").symlink_to(elsewhere / "x", target_is_directory=True)
    (elsewhere / "x" / "back").symlink_to(root / "checkpoints", target_is_directory=True)
    listed = list_models("checkpoints", SUFFIXES)
    assert "a/m.safetensors" in listed
    assert len(listed) < 10
