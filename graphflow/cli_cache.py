"""``graphflow cache stats|clear``: look at and empty the disk tier of the output cache.

The folder is the one the settings name (``disk_cache_dir``, else ``DATA/cache``), or the
``cache/`` of ``--data-dir`` (the same flag as ``graphflow serve``). Both commands work
whether or not ``disk_cache`` is on, so a cache can be inspected or emptied after turning
it off.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli_groups import command_group
from .disk_cache import FORMAT, DiskCache, cache_folder
from .settings import Settings, current_settings


def _folder(args: argparse.Namespace, settings: Settings) -> Path:
    if getattr(args, "data_dir", None):
        return Path(args.data_dir) / "cache"
    return cache_folder(settings)


def _store(args: argparse.Namespace) -> tuple[DiskCache, Settings]:
    loaded = getattr(args, "loaded_settings", None)
    settings = loaded.settings if loaded is not None else current_settings()
    folder = _folder(args, settings)
    return DiskCache(folder, settings.disk_cache_bytes, settings.disk_cache_min_seconds), settings


def _exists(store: DiskCache) -> bool:
    return (store.root / "index.sqlite3").is_file()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns first


def cmd_cache_stats(args: argparse.Namespace) -> int:
    """Print the disk cache's entries, bytes, budget and counters (all processes')."""
    store, settings = _store(args)
    if _exists(store):
        stats = store.stats()
        if args.verify:
            stats["verify"] = store.verify()
            stats.update({k: v for k, v in store.stats().items() if k in ("entries", "bytes")})
        store.close()
    else:  # nothing there yet: say so without creating the folder
        stats = {"folder": str(store.folder), "entries": 0, "bytes": 0}
        stats["max_bytes"] = store.max_bytes
    stats["enabled"] = settings.disk_cache
    stats["format"] = FORMAT
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    state = "on" if settings.disk_cache else "off (set disk_cache = true to use it)"
    print(f"disk cache: {stats['folder']} ({state})")
    print(f"  entries    {stats['entries']}")
    print(f"  bytes      {_size(stats['bytes'])} of {_size(stats['max_bytes'])}")
    counters = (
        "hits",
        "misses",
        "writes",
        "skipped",
        "too_large",
        "evictions",
        "corrupt",
        "errors",
    )
    shown = [f"{name} {stats[name]}" for name in counters if name in stats]
    if shown:
        print(f"  counts     {', '.join(shown)}")
        print("             (skipped: values with no codec, e.g. models, kept in memory only)")
    if "verify" in stats:
        checked = stats["verify"]
        print(
            f"  verified   {checked['valid']} valid, {checked['corrupt']} corrupt removed, "
            f"{checked['dropped_rows']} stale index rows dropped"
        )
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    """Remove every entry of the disk cache (and reset its counters)."""
    store, _settings = _store(args)
    if not _exists(store):
        print(f"disk cache: {store.folder} is empty")
        return 0
    removed = store.clear()
    store.close()
    print(f"disk cache: removed {removed} file{'s' if removed != 1 else ''} from {store.folder}")
    return 0


def add_cache_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``graphflow cache stats`` and ``graphflow cache clear``."""
    group = command_group(sub, "cache", help="the disk cache of node outputs: stats, clear")
    folder_help = "the data folder whose cache/ to use (default: the settings' disk cache)"
    stats = group.add_parser("stats", parents=[common], help="entries, bytes, budget, counts")
    stats.add_argument("--data-dir", metavar="DIR", help=folder_help)
    stats.add_argument("--json", action="store_true", help="as JSON")
    stats.add_argument(
        "--verify", action="store_true", help="check every entry, drop corrupt ones, fix index"
    )
    stats.set_defaults(handler=cmd_cache_stats)
    clear = group.add_parser("clear", parents=[common], help="remove every entry")
    clear.add_argument("--data-dir", metavar="DIR", help=folder_help)
    clear.set_defaults(handler=cmd_cache_clear)
