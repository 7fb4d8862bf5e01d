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
    monkeypatch.setenv("GRAPHFLOW_INPUT_DIR", "")  # recorded, so serve()'s export is undone
    monkeypatch.delenv("GRAPHFLOW_INPUT_DIR")
    monkeypatch.setattr(app_module.web, "run_app", lambda app, **kw: started.append(kw))
    app_module.serve(ServerConfig(data_dir=tmp_path, port=9999))
    assert started[0]["host"] == "127.0.0.1" and started[0]["port"] == 9999
    import os

    assert os.environ["GRAPHFLOW_INPUT_DIR"] == str(tmp_path / "input")


def test_an_input_folder_from_the_environment_is_where_uploads_go(monkeypatch, tmp_path):
    from graphflow.server.app import input_folder

    monkeypatch.setenv("GRAPHFLOW_INPUT_DIR", str(tmp_path / "elsewhere"))
    assert input_folder(ServerConfig(data_dir=tmp_path)) == tmp_path / "elsewhere"
    explicit = ServerConfig(data_dir=tmp_path, input_dir=tmp_path / "mine")
    assert input_folder(explicit) == tmp_path / "mine"
