"""The committed editor build (graphflow/web_dist) is complete and made from today's sources."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from graphflow.server.app import find_web_root

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
REBUILD_HINT = "run `npm --prefix web ci && npm --prefix web run build`"
DIST = ROOT / "graphflow" / "web_dist"
# The same list and hash as web/build-stamp.mjs (the build writes the stamp with it).
STAMP_INPUTS = [
    "web/index.html",
    "web/package-lock.json",
    "web/vite.config.ts",
    "web/tsconfig.json",
    "web/build-stamp.mjs",
    "web/src",
    "workflows/txt2img.json",
]


def source_hash() -> dict:
    files = []
    for item in STAMP_INPUTS:
        path = ROOT / item
        found = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        files.extend(p.relative_to(ROOT).as_posix() for p in found)
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\n".encode())
        digest.update((ROOT / name).read_bytes())
        digest.update(b"\n")
    return {"source_hash": digest.hexdigest(), "files": len(files)}


def test_stamp_inputs_match_the_build_script():
    script = (WEB / "build-stamp.mjs").read_text()
    listed = re.search(r"STAMP_INPUTS = \[(.*?)\];", script, re.S)
    assert listed is not None
    assert re.findall(r'"([^"]+)"', listed.group(1)) == STAMP_INPUTS


def test_committed_build_is_made_from_the_current_sources():
    stamp_file = DIST / "build-stamp.json"
    assert stamp_file.is_file(), f"graphflow/web_dist has no build stamp: {REBUILD_HINT}"
    stamp = json.loads(stamp_file.read_text())
    assert stamp == source_hash(), f"the committed editor build is stale: {REBUILD_HINT}"


def test_build_references_only_files_it_contains():
    index = (DIST / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', index)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert (DIST / asset).is_file(), f"index.html needs {asset}: {REBUILD_HINT}"


def test_server_serves_the_packaged_build():
    assert find_web_root() == DIST
