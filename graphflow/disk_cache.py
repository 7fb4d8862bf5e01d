"""The disk tier of the output cache: node outputs that survive a restart.

A content-addressed store keyed by node signatures (``cache.py``), shared by every process
that points at the same folder (``DATA/cache`` by default; see :func:`cache_folder`)::

    v1/objects/ab/ab12...ef    one entry per signature (header + safetensors payload)
    v1/tmp/                    entries being written (renamed into objects/ when complete)
    v1/index.sqlite3           sizes, LRU clock and counters (SQLite, WAL)

Crash safety: an entry is written to ``tmp/``, flushed and fsynced, then renamed over its
final name (``os.replace``, atomic on one file system), so a name in ``objects/`` is either
absent or complete. Every read checks the header (magic, payload length, BLAKE2b digest): a
file that fails — truncated, or written by a broken copy — is removed and counted as
corrupt, and the node simply runs. Files are the truth; the SQLite index only orders them
for eviction and keeps counters, so an index that lags behind after a crash costs at most
some budget accuracy (``verify`` puts it right).

Concurrency: processes never write the same file in place (each writes its own temp file;
the last rename wins, and both are complete entries of the same signature), and every index
change is one short ``BEGIN IMMEDIATE`` transaction in WAL mode, so readers never block and
writers queue on SQLite's lock. Eviction removes the least recently used entries (a logical
clock bumped on every write and hit) until the total fits ``max_bytes``.

Values are stored through ``value_codec.py`` (JSON manifest + safetensors, never pickle);
a value with no codec is skipped and counted, and stays in the memory tier only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import default_data_dir
from .value_codec import (
    MissingCodec,
    UndecodableError,
    Unencodable,
    decode_value,
    encode_value,
    pack,
    unpack,
)

log = logging.getLogger("graphflow.disk_cache")

FORMAT = 1
_MAGIC = b"GFCACHE1"
_HEADER = struct.Struct("<8sQ16s")  # magic, payload length, BLAKE2b-128 of the payload
_KEY = re.compile(r"[0-9a-f]{32}")  # a portable signature (see cache.node_signature)
STALE_TEMP_SECONDS = 3600.0
"""Temp files older than this are leftovers of a crashed writer (removed on open)."""

_COUNTERS = ("hits", "misses", "writes", "skipped", "too_large", "evictions", "corrupt", "errors")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, bytes INTEGER NOT NULL, used INTEGER NOT NULL, created REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_used ON entries (used);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def cache_folder(settings: Any) -> Path:
    """Where the disk tier lives: ``disk_cache_dir``, else ``DATA/cache``."""
    if settings.disk_cache_dir is not None:
        return Path(settings.disk_cache_dir)
    return default_data_dir(settings) / "cache"


@dataclass
class DiskHit:
    """What a disk entry holds: the node's outputs, its display data, its compute seconds."""

    outputs: dict[str, Any]
    ui: dict | None
    cost: float
    nbytes: int


class DiskCache:
    """Node outputs on disk under ``folder``, keyed by portable signatures, within
    ``max_bytes`` (LRU). Safe to share between threads and between processes."""

    def __init__(self, folder: str | os.PathLike, max_bytes: int, min_seconds: float = 0.0):
        """``min_seconds``: what the executor compares a node's recompute time with before
        it stores the node here (requested outputs are always stored; see caching.md)."""
        self.folder = Path(folder)
        self.root = self.folder / f"v{FORMAT}"
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        self._objects = os.fspath(self.objects)  # plain strings: a miss must be cheap
        self.max_bytes = max_bytes
        self.min_seconds = min_seconds
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._pending = dict.fromkeys(_COUNTERS, 0)  # counted here, not yet in the index
        self.local = dict.fromkeys(_COUNTERS, 0)  # this instance's own counts

    @classmethod
    def from_settings(cls, settings: Any) -> DiskCache | None:
        """The tier the settings ask for (``disk_cache`` on), else None."""
        if not settings.disk_cache:
            return None
        return cls(
            cache_folder(settings), settings.disk_cache_bytes, settings.disk_cache_min_seconds
        )

    # -- the index ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.root / "index.sqlite3", timeout=30.0, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA busy_timeout = 30000")
        for _attempt in range(50):  # switching to WAL needs a moment alone with the file
            try:
                db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                time.sleep(0.05)
        db.execute("PRAGMA synchronous = NORMAL")
        with _transaction(db):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
        self._db = db
        self._sweep_temp()
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the index (pending counters are added in it)."""
        with self._lock:
            db = self._connect()
            with _transaction(db):
                yield db
                self._flush_pending(db)

    def _flush_pending(self, db: sqlite3.Connection) -> None:
        for name, delta in self._pending.items():
            if delta:
                db.execute(
                    "INSERT INTO counters VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, delta),
                )
        self._pending = dict.fromkeys(_COUNTERS, 0)

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._pending[name] += amount
            self.local[name] += amount

    def _failed(self, action: str, error: BaseException) -> None:
        """A disk or index error never fails a run: the tier just misses (logged, counted)."""
        log.warning(
            "disk cache %s: %s failed: %s: %s", self.folder, action, type(error).__name__, error
        )
        self._count("errors")

    def flush(self) -> None:
        """Write this process's pending counters into the index (the executor calls it after
        each run; puts and hits do it anyway). Never raises for disk or index errors."""
        if any(self._pending.values()):
            try:
                with self._write():
                    pass
            except (OSError, sqlite3.Error) as error:
                self._failed("writing the counters", error)

    def close(self) -> None:
        """Flush the counters and close the index (the store stays usable: it reopens)."""
        self.flush()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- entries ------------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file of one entry (``key`` must be a portable signature)."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a portable signature (32 hex digits)")
        return self.objects / key[:2] / key

    def __contains__(self, key: str) -> bool:
        return bool(_KEY.fullmatch(key)) and self.path_for(key).is_file()

    def get(self, key: str) -> DiskHit | None:
        """The entry for ``key``, or None (absent, corrupt — then removed —, or of a type
        whose codec is not registered in this process). Never raises for disk or index
        errors (they are logged and counted as ``errors``)."""
        try:
            return self._get(key)
        except (OSError, sqlite3.Error) as error:
            self._failed("reading", error)
            return None

    def _get(self, key: str) -> DiskHit | None:
        if not _KEY.fullmatch(key):
            return None
        name = f"{self._objects}/{key[:2]}/{key}"
        try:
            with open(name, "rb") as file:
                data = file.read()
        except OSError:  # absent (or vanished under an evicting process)
            self._count("misses")
            return None
        path = Path(name)
        try:
            hit = _decode_entry(key, data)
        except MissingCodec:  # a plugin type not loaded here: the entry is fine, keep it
            self._count("misses")
            return None
        except Exception as error:  # corrupt, or a pack's from_data refused stale data
            self._count("misses")
            self._remove_corrupt(key, path, f"{type(error).__name__}: {error}")
            return None
        with self._write() as db:
            db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET used = excluded.used",
                (key, len(data), _next_clock(db), time.time()),
            )
            self._count("hits")
        return hit

    def put(self, key: str, outputs: dict[str, Any], ui: dict | None, cost: float) -> bool:
        """Store one node's outputs; False when they are not stored (not encodable — counted
        as ``skipped`` —, larger than the whole budget, or the write failed — logged and
        counted as ``errors``, never raised)."""
        try:
            return self._put(key, outputs, ui, cost)
        except (OSError, sqlite3.Error) as error:
            self._failed("writing", error)
            return False

    def _put(self, key: str, outputs: dict[str, Any], ui: dict | None, cost: float) -> bool:
        if not _KEY.fullmatch(key):
            self._count("skipped")
            return False
        path = self.path_for(key)
        if path.is_file():  # another process (or run) stored this signature already
            self._touch(key, path.stat().st_size)
            return True
        try:
            data = _encode_entry(key, outputs, ui, cost)
        except Unencodable as error:
            log.debug("not stored on disk: %s", error)
            self._count("skipped")
            return False
        except Exception as error:  # a pack's to_data raised: its bug, not the run's
            log.warning(
                "disk cache: encoding failed, not stored: %s: %s", type(error).__name__, error
            )
            self._count("skipped")
            return False
        if len(data) > self.max_bytes:
            self._count("too_large")
            return False
        self._write_file(key, path, data)
        self._count("writes")
        self._touch(key, len(data), evict=True)
        return True

    def _write_file(self, key: str, path: Path, data: bytes) -> None:
        self._connect()
        temp = self.tmp / f"{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            with open(temp, "xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _touch(self, key: str, nbytes: int, evict: bool = False) -> None:
        doomed: list[str] = []
        with self._write() as db:
            db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET used = excluded.used, bytes = excluded.bytes",
                (key, nbytes, _next_clock(db), time.time()),
            )
            if evict:
                doomed = self._evict(db, protect=key)
        for victim in doomed:
            self.path_for(victim).unlink(missing_ok=True)

    def _evict(self, db: sqlite3.Connection, protect: str) -> list[str]:
        (total,) = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()
        doomed = []
        if total <= self.max_bytes:
            return doomed
        rows = db.execute("SELECT key, bytes FROM entries WHERE key != ? ORDER BY used", (protect,))
        for key, nbytes in rows:
            if total <= self.max_bytes:
                break
            doomed.append(key)
            total -= nbytes
        db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in doomed])
        self._count("evictions", len(doomed))
        return doomed

    def _remove_corrupt(self, key: str, path: Path, why: str) -> None:
        log.warning("disk cache: removing corrupt entry %s (%s)", path, why)
        path.unlink(missing_ok=True)
        with self._write() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            self._count("corrupt")

    # -- maintenance --------------------------------------------------------------------------

    def _sweep_temp(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        removed = 0
        limit = time.time() - older_than
        for temp in self.tmp.glob("*.tmp"):
            try:
                if temp.stat().st_mtime <= limit:
                    temp.unlink()
                    removed += 1
            except OSError:
                pass
        return removed

    def stats(self) -> dict:
        """Entries, bytes, budget, and the counters of every process that used the folder."""
        with self._write() as db:
            self._flush_pending(db)
            entries, total = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM entries"
            ).fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        return {
            "folder": str(self.folder),
            "entries": entries,
            "bytes": total,
            "max_bytes": self.max_bytes,
            **{name: counters.get(name, 0) for name in _COUNTERS},
        }

    def clear(self) -> int:
        """Remove every entry and reset the counters; returns the number of files removed."""
        removed = 0
        with self._write() as db:
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM counters")
            for path in [*self.objects.glob("*/*"), *self.tmp.glob("*.tmp")]:
                try:
                    path.unlink()
                    removed += 1
                except OSError:
                    pass
            self._pending = dict.fromkeys(_COUNTERS, 0)
        return removed

    def verify(self) -> dict:
        """Check every file (removing corrupt ones) and make the index match the files:
        entries a crash left unindexed are adopted, rows without a file dropped."""
        found: dict[str, int] = {}
        corrupt = 0
        for path in self.objects.glob("*/*"):
            key = path.name
            try:
                data = path.read_bytes()
                if not _KEY.fullmatch(key):
                    raise UndecodableError("not an entry name")
                _check_header(data)
            except (OSError, UndecodableError) as error:
                if _KEY.fullmatch(key):
                    self._remove_corrupt(key, path, str(error))
                else:
                    path.unlink(missing_ok=True)
                corrupt += 1
                continue
            found[key] = len(data)
        with self._write() as db:
            indexed = {k for (k,) in db.execute("SELECT key FROM entries")}
            db.executemany(
                "DELETE FROM entries WHERE key = ?", [(k,) for k in indexed - set(found)]
            )
            clock = _next_clock(db)
            db.executemany(
                "INSERT INTO entries VALUES (?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
                [(k, n, clock, time.time()) for k, n in found.items() if k not in indexed],
            )
        return {"valid": len(found), "corrupt": corrupt, "dropped_rows": len(indexed - set(found))}


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _next_clock(db: sqlite3.Connection) -> int:
    (clock,) = db.execute("SELECT COALESCE(MAX(used), 0) + 1 FROM entries").fetchone()
    return clock


# -- the file format --------------------------------------------------------------------------


def _encode_entry(key: str, outputs: dict[str, Any], ui: dict | None, cost: float) -> bytes:
    out_tree, tensors = encode_value(outputs, "outputs")
    ui_tree, ui_tensors = encode_value(ui, "ui")
    if ui_tensors:
        raise Unencodable("ui", "display data holds tensors")
    manifest = {"format": FORMAT, "key": key, "cost": cost, "outputs": out_tree, "ui": ui_tree}
    payload = pack(manifest, tensors)
    digest = hashlib.blake2b(payload, digest_size=16).digest()
    return _HEADER.pack(_MAGIC, len(payload), digest) + payload


def _check_header(data: bytes) -> memoryview:
    if len(data) < _HEADER.size:
        raise UndecodableError(f"truncated entry ({len(data)} bytes)")
    magic, length, digest = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise UndecodableError("not a graphflow cache entry (bad magic)")
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) != length:
        raise UndecodableError(f"truncated entry ({len(payload)} of {length} payload bytes)")
    if hashlib.blake2b(payload, digest_size=16).digest() != digest:
        raise UndecodableError("checksum mismatch")
    return payload


def _decode_entry(key: str, data: bytes) -> DiskHit:
    payload = _check_header(data)
    manifest, tensors = unpack(bytes(payload))
    if manifest.get("format") != FORMAT or manifest.get("key") != key:
        raise UndecodableError("entry of another key or format")
    outputs = decode_value(manifest.get("outputs"), tensors)
    if not isinstance(outputs, dict):
        raise UndecodableError("stored outputs are not a dict")
    ui = decode_value(manifest.get("ui"), tensors)
    return DiskHit(outputs, ui, float(manifest.get("cost") or 0.0), len(data))
