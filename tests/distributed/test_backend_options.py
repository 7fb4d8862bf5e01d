"""``--backend ray`` options: parsed by the CLI, checked by the server config (no Ray)."""

from __future__ import annotations

import pytest

from graphflow.cli import build_parser
from graphflow.server import ConfigError, ServerConfig
from graphflow.server.app import config_from_args


def test_serve_takes_the_ray_backend_options():
    options = "--backend ray --ray-address auto --workers 4 --gpus-per-worker 0.5"
    args = build_parser().parse_args(["serve", *options.split()])
    config = config_from_args(args)
    assert (config.backend, config.ray_address, config.workers) == ("ray", "auto", 4)
    assert config.gpus_per_worker == 0.5


def test_run_takes_a_backend_and_defaults_to_local():
    parser = build_parser()
    assert parser.parse_args(["run", "w.json"]).backend == "local"
    args = parser.parse_args(["run", "w.json", "--backend", "ray", "--ray-address", "h:6379"])
    assert (args.backend, args.ray_address) == ("ray", "h:6379")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backend", "spark", "--backend"),
        ("workers", 0, "--workers"),
        ("gpus_per_worker", -1.0, "--gpus-per-worker"),
    ],
)
def test_impossible_backend_settings_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**{field: value}).check()
