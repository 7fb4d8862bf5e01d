"""One settings object: layered sources, per-run scope, origins, clear errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from graphflow import Executor, NodeContext, String, node
from graphflow.cli import main
from graphflow.runtime.folders import input_dir
from graphflow.runtime.models import models_dir
from graphflow.settings import (
    Settings,
    SettingsError,
    current_settings,
    load_settings,
    use_settings,
)
from support import make_workflow, registry_with


def test_defaults_apply_when_nothing_is_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./graphflow.toml here
    loaded = load_settings(environ={})
    assert loaded.settings == Settings()
    assert loaded.settings.models == Path("models")
    assert {row.origin for row in loaded.sources()} == {"default"}


def test_explicit_beats_environment_beats_file(tmp_path):
    config = tmp_path / "graphflow.toml"
    config.write_text('models = "/from/file"\ncache_bytes = 11\ndevice = "mps"\n')
    loaded = load_settings(
        {"device": "cpu", "input_dir": None},
        config_file=config,
        environ={"GRAPHFLOW_CACHE_BYTES": "22", "GRAPHFLOW_UNRELATED": "x"},
    )
    settings = loaded.settings
    assert (settings.models, settings.cache_bytes, settings.device) == (
        Path("/from/file"),
        22,
        "cpu",
    )
    assert loaded.origins == {
        "models": f"config file {config}",
        "cache_bytes": "environment GRAPHFLOW_CACHE_BYTES",
        "device": "command line",
    }


def test_every_existing_environment_variable_still_works():
    environ = {
        "GRAPHFLOW_MODELS": "/m",
        "GRAPHFLOW_INPUT_DIR": "/i",
        "GRAPHFLOW_DEVICE": "cuda:1",
        "GRAPHFLOW_ALLOW_PICKLE": "yes",
        "GRAPHFLOW_MODEL_BYTES": "1",
        "GRAPHFLOW_CACHE_BYTES": "2",
        "GRAPHFLOW_CACHE_DEVICE_BYTES": "3",
        "GRAPHFLOW_UPSCALE_BYTES": "4",
        "GRAPHFLOW_PLUGIN_PATH": "/p1:/p2",
        "GRAPHFLOW_DATA_DIR": "/d",
        "GRAPHFLOW_AUTH_TOKEN": "t" * 16,
        "GRAPHFLOW_ATTENTION": " SDPA ",
        "GRAPHFLOW_COMFY_PREVIEWS": "1",
    }
    settings = load_settings(environ=environ).settings
    assert settings.model_dump() == {
        "models": Path("/m"),
        "input_dir": Path("/i"),
        "device": "cuda:1",
        "allow_pickle": True,
        "model_bytes": 1,
        "cache_bytes": 2,
        "cache_device_bytes": 3,
        "upscale_bytes": 4,
        "extra_models": [],
        "model_paths": {},
        "plugin_path": "/p1:/p2",
        "data_dir": Path("/d"),
        "auth_token": "t" * 16,
        "attention": "sdpa",
        "comfy_previews": True,
        "disk_cache": False,
        "disk_cache_dir": None,
        "disk_cache_bytes": 20 << 30,
        "disk_cache_min_seconds": 0.05,
    }
    assert settings.plugin_folders == [Path("/p1"), Path("/p2")]


def test_bad_value_names_the_setting_and_where_it_came_from():
    with pytest.raises(SettingsError, match=r"cache_bytes \(from environment GRAPHFLOW_CACHE"):
        load_settings(environ={"GRAPHFLOW_CACHE_BYTES": "lots"})


def test_unknown_key_in_config_file_is_refused_with_the_known_ones(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("model_dir = 'x'\n")
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) model_dir \(known: models"):
        load_settings(config_file=config, environ={})


def test_broken_or_missing_config_file_is_one_clear_error(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("models = \n")
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(config_file=broken, environ={})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.toml", environ={})


def test_config_file_is_named_by_environment_or_found_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graphflow.toml").write_text("cache_bytes = 5\n")
    assert load_settings(environ={}).settings.cache_bytes == 5
    other = tmp_path / "other.toml"
    other.write_text("cache_bytes = 6\n")
    assert load_settings(environ={"GRAPHFLOW_CONFIG": str(other)}).settings.cache_bytes == 6


def test_use_settings_scopes_helpers_and_restores_the_previous_ones(tmp_path):
    outer = Settings(models=tmp_path / "a", input_dir=tmp_path / "in")
    inner = outer.with_values(models=tmp_path / "b")
    with use_settings(outer):
        assert models_dir() == tmp_path / "a"
        with use_settings(inner):
            assert models_dir() == tmp_path / "b"
            assert input_dir() == tmp_path / "in"
        assert current_settings() is outer


def test_process_default_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path / "one"))
    assert models_dir() == tmp_path / "one"
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path / "two"))
    assert models_dir() == tmp_path / "two"


def test_process_default_follows_edits_of_the_config_file_the_environment_names(
    monkeypatch, tmp_path
):
    import os

    config = tmp_path / "named.toml"
    config.write_text("cache_bytes = 5\n")
    monkeypatch.setenv("GRAPHFLOW_CONFIG", str(config))
    assert current_settings().cache_bytes == 5
    config.write_text("cache_bytes = 6\n")
    stamp = config.stat().st_mtime_ns + 1_000_000_000  # a clearly newer modification time
    os.utime(config, ns=(stamp, stamp))
    assert current_settings().cache_bytes == 6


@node("settings_probe.models", output=True)
def models_probe(tag: String = "", ctx: NodeContext = None) -> None:
    """Report the models folder this run sees, through the context and the helper."""
    return {"seen": [str(ctx.settings.models), str(models_dir())]}


def test_two_executors_in_one_process_each_run_with_their_own_settings(tmp_path):
    registry = registry_with(models_probe)
    executors = {
        name: Executor(registry, settings=Settings(models=tmp_path / name))
        for name in ("first", "second")
    }
    seen: dict[str, list] = {}

    def run(name: str) -> None:
        workflow = make_workflow({"p": ("settings_probe.models", {"tag": name})})
        seen[name] = executors[name].run(workflow).ui["p"]["seen"]

    threads = [threading.Thread(target=run, args=(name,)) for name in executors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in executors:
        assert seen[name] == [str(tmp_path / name)] * 2


def test_a_run_keeps_the_settings_current_when_it_started(monkeypatch, tmp_path):
    from graphflow.events import RunStarted

    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path / "at-start"))

    def change_the_environment(event):
        if isinstance(event, RunStarted):
            monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path / "later"))

    executor = Executor(registry_with(models_probe))  # no settings of its own
    workflow = make_workflow({"p": ("settings_probe.models", {})})
    result = executor.run(workflow, observers=[change_the_environment])
    assert result.ui["p"]["seen"] == [str(tmp_path / "at-start")] * 2


def test_executor_settings_set_default_budgets():
    executor = Executor(
        registry_with(), settings=Settings(cache_bytes=123, cache_device_bytes=45, model_bytes=6)
    )
    assert (executor.cache.max_bytes, executor.cache.max_device_bytes) == (123, 45)
    assert executor.models.max_bytes == 6


def test_config_command_prints_values_and_origins(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHFLOW_CACHE_BYTES", "77")
    monkeypatch.setenv("GRAPHFLOW_AUTH_TOKEN", "secret-token-0123456789")
    assert main(["config", "--device", "cpu", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["cache_bytes"] == {"value": 77, "origin": "environment GRAPHFLOW_CACHE_BYTES"}
    assert shown["device"] == {"value": "cpu", "origin": "command line"}
    assert shown["models"] == {"value": "models", "origin": "default"}
    assert shown["auth_token"]["value"] == "(set, hidden)"
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert "secret-token" not in text
    assert "cache_bytes" in text and "environment GRAPHFLOW_CACHE_BYTES" in text


def test_cli_models_dir_flag_is_the_models_setting_without_touching_the_environment(
    capsys, monkeypatch, tmp_path
):
    monkeypatch.delenv("GRAPHFLOW_MODELS", raising=False)
    code = main(["config", "--models-dir", str(tmp_path), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["models"]["value"] == str(tmp_path)
    import os

    assert "GRAPHFLOW_MODELS" not in os.environ


def test_bad_setting_is_one_line_from_the_cli(capsys, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODEL_BYTES", "-5")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings") and "model_bytes" in err
    assert "Traceback" not in err
