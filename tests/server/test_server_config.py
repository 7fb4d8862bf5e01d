"""Server settings that are refused before anything listens."""

from __future__ import annotations

import pytest

from graphflow.server import ConfigError, ServerConfig, add_serve_arguments, run_serve
from graphflow.server.app import config_from_args, default_data_dir

TOKEN = "correct-horse-battery-staple"


def test_binding_a_non_loopback_address_needs_a_token():
    with pytest.raises(ConfigError, match="auth-token"):
        ServerConfig(host="0.0.0.0").check()
    ServerConfig(host="0.0.0.0", auth_token=TOKEN).check()
    ServerConfig(host="0.0.0.0", insecure_no_auth=True).check()
    ServerConfig(host="localhost").check()


def test_a_short_token_is_refused():
    with pytest.raises(ConfigError, match="16"):
        ServerConfig(auth_token="short").check()


def test_a_malformed_allowed_origin_is_refused():
    with pytest.raises(ConfigError, match="allow-origin"):
        ServerConfig(allow_origins=["localhost:5173"]).check()


def test_the_default_data_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHFLOW_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "graphflow"
    monkeypatch.setenv("GRAPHFLOW_DATA_DIR", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"


def test_serve_arguments_build_the_config(monkeypatch, tmp_path):
    import argparse

    monkeypatch.setenv("GRAPHFLOW_AUTH_TOKEN", TOKEN)
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(
        [
            *("--host", "0.0.0.0", "--port", "9000", "--data-dir", str(tmp_path)),
            *("--allow-origin", "http://localhost:5173", "--allow-origin", "http://a.test"),
        ]
    )
    config = config_from_args(args)
    assert (config.host, config.port, config.data_dir) == ("0.0.0.0", 9000, tmp_path)
    assert config.allow_origins == ["http://localhost:5173", "http://a.test"]
    assert config.auth_token == TOKEN  # from the environment: no token in the process list
    config.check()


def test_serve_refuses_to_start_open_to_the_network(capsys, tmp_path):
    from graphflow.server.app import main

    code = main(["--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "auth-token" in capsys.readouterr().err


def test_run_serve_refuses_bad_settings_with_a_config_error(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    with pytest.raises(ConfigError):
        run_serve(args)


def test_declaring_the_serve_options_does_not_import_aiohttp():
    import subprocess
    import sys

    script = (
        "import argparse, sys; from graphflow.server import add_serve_arguments; "
        "add_serve_arguments(argparse.ArgumentParser()); print('aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_serve_points_the_image_nodes_at_the_upload_folder(monkeypatch, tmp_path):
    from graphflow.server import app as app_module

    started = []
    monkeypatch.delenv("GRAPHFLOW_INPUT_DIR", raising=False)
    monkeypatch.setattr(app_module.web, "run_app", lambda app, **kw: started.append((app, kw)))
    app_module.serve(ServerConfig(data_dir=tmp_path, port=9999))
    app, options = started[0]
    assert options["host"] == "127.0.0.1" and options["port"] == 9999
    state = app[app_module.STATE]
    assert state.settings.input_dir == tmp_path / "input"
    assert state.executor.settings.input_dir == tmp_path / "input"
    import os

    assert "GRAPHFLOW_INPUT_DIR" not in os.environ  # told, never exported


def test_the_disk_cache_of_serve_lives_in_its_data_folder(monkeypatch, tmp_path):
    from graphflow.server import app as app_module
    from graphflow.settings import Settings

    started = []
    monkeypatch.setattr(app_module.web, "run_app", lambda app, **kw: started.append(app))
    settings = Settings(disk_cache=True, data_dir=tmp_path / "ignored")
    app_module.serve(ServerConfig(data_dir=tmp_path / "data", settings=settings))
    disk = started[0][app_module.STATE].executor.cache.disk
    assert disk is not None and disk.folder == tmp_path / "data" / "cache"


def test_an_input_folder_from_the_environment_is_where_uploads_go(monkeypatch, tmp_path):
    from graphflow.server.app import input_folder

    monkeypatch.setenv("GRAPHFLOW_INPUT_DIR", str(tmp_path / "elsewhere"))
    assert input_folder(ServerConfig(data_dir=tmp_path)) == tmp_path / "elsewhere"
    explicit = ServerConfig(data_dir=tmp_path, input_dir=tmp_path / "mine")
    assert input_folder(explicit) == tmp_path / "mine"


def test_settings_given_to_the_server_decide_its_data_folder(tmp_path):
    from graphflow.settings import Settings

    config = ServerConfig(settings=Settings(data_dir=tmp_path / "from-settings"))
    assert config.folder == tmp_path / "from-settings"
    assert ServerConfig(data_dir=tmp_path / "flag", settings=config.settings).folder == (
        tmp_path / "flag"
    )


def test_a_token_in_the_servers_settings_is_its_token_unless_one_is_given():
    from graphflow.settings import Settings

    settings = Settings(auth_token="s" * 16)
    config = ServerConfig(host="0.0.0.0", settings=settings)
    assert config.auth_token == "s" * 16
    config.check()  # a token is set, so binding every address is allowed
    assert ServerConfig(auth_token="g" * 16, settings=settings).auth_token == "g" * 16


@pytest.mark.asyncio
async def test_two_servers_in_one_process_list_the_files_of_their_own_models_folder(
    make_api, tmp_path
):
    from graphflow.settings import Settings

    apis = {}
    for name in ("left", "right"):
        checkpoints = tmp_path / name / "checkpoints"
        checkpoints.mkdir(parents=True)
        (checkpoints / f"{name}.safetensors").write_bytes(b"")
        apis[name] = await make_api(
            data_dir=tmp_path / f"data-{name}", settings=Settings(models=tmp_path / name)
        )
    for name, api in apis.items():
        nodes = await (await api.client.get("/api/nodes")).json()
        loader = nodes["nodes"]["diffusion.load_checkpoint"]
        (checkpoint,) = [i for i in loader["inputs"] if i["name"] == "checkpoint"]
        other = "right" if name == "left" else "left"
        assert f"{name}.safetensors" in checkpoint["choices"]
        assert f"{other}.safetensors" not in checkpoint["choices"]


def test_gc_thresholds_come_from_the_environment_or_the_servers_default(monkeypatch):
    from graphflow.gcpause import SERVER_THRESHOLDS
    from graphflow.server.app import _gc_thresholds
    from graphflow.server.config import ConfigError

    monkeypatch.delenv("GRAPHFLOW_GC_THRESHOLDS", raising=False)
    assert _gc_thresholds() == SERVER_THRESHOLDS
    monkeypatch.setenv("GRAPHFLOW_GC_THRESHOLDS", " 700,10,10 ")
    assert _gc_thresholds() == (700, 10, 10)
    for bad in ("abc", "1,2", "1,2,-3"):
        monkeypatch.setenv("GRAPHFLOW_GC_THRESHOLDS", bad)
        with pytest.raises(ConfigError, match="GRAPHFLOW_GC_THRESHOLDS"):
            _gc_thresholds()
