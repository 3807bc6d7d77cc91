"""The results database: one SQLite file (`results.sqlite`) per run directory.

A row is keyed by everything that can change its numbers (`ResultKey`): the model and a
digest of its weights, the defense, the attack's fully resolved spec (defaults included),
its norm and eps (None for a minimum-norm attack), the data set and its version, a digest
of the exact samples evaluated, and the batch size (or "independent" when the attack's
outcome per sample does not depend on its batch). Identification metrics and gradient
probes are rows of their own kind, keyed the same way. So a run directory can hold
results for several sample sets without ever mixing them.

Each row is written in its own transaction: a run killed mid-way loses at most the cell it
was computing, and a rerun skips every cell already stored (no lost, no duplicated rows).

The file carries a schema marker; a database from an older robustlab (whose keys lack the
data, samples and batch size), a foreign SQLite file, an empty, truncated or damaged file or
any other file is refused with a message saying which, and so are a read-only location and a
full disk. A refused file is only ever read through a connection that takes no lock and makes
no side file (`inspect_store`), so it and its folder stay exactly as they were.

Several processes may write one run directory at once: the database is created whole under a
temporary name and linked into place (the first creator wins, the others use its file), and
the run-directory check takes such temporaries for robustlab's own, not for foreign content.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from robustlab.core.digest import canonical
from robustlab.core.errors import RobustlabError
from robustlab.core.threat import Budget, Norm
from robustlab.store.temporaries import remove_stale

SCHEMA_VERSION = 2
_MARKER = "robustlab_schema"
_COLUMNS = ("kind", "model", "model_digest", "defense", "attack", "norm", "eps", "data", "samples", "batch", "subset")
SCHEMA = f"""
CREATE TABLE results (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    model        TEXT NOT NULL,
    model_digest TEXT NOT NULL,
    defense      TEXT NOT NULL,
    attack       TEXT NOT NULL,
    norm         TEXT NOT NULL,
    eps          REAL,
    data         TEXT NOT NULL,
    samples      TEXT NOT NULL,
    batch        TEXT NOT NULL,
    subset       TEXT NOT NULL,
    metrics      TEXT NOT NULL,
    per_sample   TEXT NOT NULL,
    created      REAL NOT NULL
);
CREATE INDEX results_model ON results (model, kind);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('{_MARKER}', '{SCHEMA_VERSION}');
"""
_SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(RobustlabError):
    """The results database cannot be used: not robustlab's, an older schema, read-only, disk full."""


@dataclass(frozen=True)
class ResultKey:
    """What one result row is about; two rows with equal keys hold the same numbers.

    - ``model``: the model's id (shown in tables); ``model_digest``: digest of its weights;
    - ``defense``: "none" or the defense's name;
    - ``attack``: canonical JSON of the attack's resolved spec (`Attack.spec()`, eps left out);
    - ``eps``: the budget in ``norm`` (pixel units, [0, 1] scale), None for minimum-norm attacks;
    - ``data``: canonical JSON of the data set's name and version; ``samples``: digest of the
      evaluated images and labels; ``subset``: which split they come from;
    - ``batch``: "independent", or the batch size the attack ran with;
    - ``kind``: "attack" (a grid cell), "identification" or "probe".
    """

    model: str
    defense: str
    attack: str
    eps: float | None
    subset: str
    norm: Norm
    model_digest: str
    data: str
    samples: str
    batch: str
    kind: str = "attack"

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", Norm.parse(self.norm))  # a stored row's column holds the string

    @property
    def budget(self) -> Budget:
        """The cell's threat model: eps in its norm, or eps None (a minimum-norm attack's cell)."""
        return Budget(self.norm, self.eps)

    @property
    def id(self) -> str:
        """A digest of every field: the primary key of the row (the norm as its canonical string)."""
        doc = asdict(self)
        doc["norm"] = self.norm.value
        return hashlib.sha256(canonical(doc).encode()).hexdigest()[:32]

    def as_tuple(self) -> tuple[Any, ...]:
        """Every field, in column order (kind first)."""
        return self.values()

    def values(self) -> tuple[Any, ...]:
        return (self.kind, self.model, self.model_digest, self.defense, self.attack, self.norm.value,
                None if self.eps is None else float(self.eps), self.data, self.samples, self.batch, self.subset)


@dataclass
class ResultRow:
    key: ResultKey
    metrics: dict[str, Any]
    per_sample: dict[str, list]


def _finite(obj: Any) -> Any:
    """`obj` with NaN and infinite floats replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def store_path(path: str | Path) -> Path:
    """The database file of run directory `path` (``path/results.sqlite``); a path naming a
    ``*.sqlite`` file is taken as the file itself. Any other existing file is refused."""
    path = Path(path)
    if path.suffix == ".sqlite" and not path.is_dir():
        return path
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a run directory")
    return path / ResultStore.FILENAME


def _os_error(exc: OSError, path: Path) -> StoreError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"{path} is read-only: cannot write results there ({exc.strerror})")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"disk full: cannot write results to {path}")
    if exc.errno == errno.ENAMETOOLONG:
        return StoreError(f"{path}: a file name is too long for the file system")
    return StoreError(f"cannot use {path}: {exc.strerror or exc}")


def _disk_nearly_full(path: Path, margin: int = 1 << 20) -> bool:
    """Less than `margin` bytes left on the file system holding `path` (SQLite then reports all
    sorts of errors, "malformed" among them)."""
    target = path if path.exists() else path.parent
    try:
        st = os.statvfs(target)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


def _sqlite_error(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc).lower()
    if "full" in text or _disk_nearly_full(path):
        return StoreError(f"disk full: cannot write results to {path}")
    if "readonly" in text or "read-only" in text or not os.access(path.parent, os.W_OK):
        if os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK)):
            return StoreError(f"{path}: SQLite refuses to write it ({exc}): a damaged file or a newer SQLite "
                              "format; evaluate into a new run directory")
        return StoreError(f"{path} is read-only: cannot write results there")
    if "malformed" in text or "corrupt" in text:
        return StoreError(f"{path} is a damaged SQLite file, not a usable robustlab results database ({exc})")
    if "not a database" in text or "file is encrypted" in text:
        return StoreError(f"{path} is not a robustlab results database ({exc})")
    return StoreError(f"{path}: database error: {exc}")


def inspect_store(path: str | Path) -> str:
    """What `path` (a run directory or its database file) holds, without writing anything:
    "absent" or "robustlab". Anything else raises `StoreError` saying what it is.

    Nothing is created or changed: the file is read through a connection that takes no lock
    and makes no ``-wal`` / ``-shm`` file (`_inspection_uri`), so a refused file and its folder
    stay byte for byte as they were. A robustlab database must hold the whole schema, a
    marker of this schema version, strict JSON in every JSON column and typed key columns.
    """
    db = store_path(path)
    if not db.exists():
        return "absent"
    if db.is_dir():
        raise StoreError(f"{db} is a directory, not a results database")
    for side in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):  # a FIFO would block the read forever
        if (side.exists() or side == db) and not side.is_file():
            raise StoreError(f"{side} is not a regular file: not part of a robustlab results database")
    try:
        size = db.stat().st_size
        with db.open("rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise _os_error(exc, db) from None
    if not head:
        raise StoreError(f"{db} is an empty file, not a robustlab results database")
    if head[:16] != _SQLITE_MAGIC:
        raise StoreError(f"{db} is not a robustlab results database (not an SQLite file)")
    if _truncated(head, size):
        raise StoreError(f"{db} is truncated or damaged (shorter than its SQLite header says): "
                         "not a usable robustlab results database")
    try:
        conn = sqlite3.connect(_inspection_uri(db), uri=True, timeout=30.0)
        try:
            _check_schema(conn, db)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _sqlite_error(exc, db) from None
    except UnicodeDecodeError:  # a damaged schema or value read as text
        raise StoreError(f"{db} is a damaged robustlab results database (text that is not UTF-8)") from None
    return "robustlab"


def _truncated(head: bytes, size: int) -> bool:
    """True when the SQLite header (first 100 bytes) names more pages than the file holds."""
    if len(head) < 100:
        return True
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    valid = head[92:96] == head[24:28]  # the page count is only valid when these agree
    return valid and pages * page_size > size


def _check_schema(conn: sqlite3.Connection, db: Path) -> None:
    """Raise `StoreError` unless `conn` holds robustlab's schema (this version) with sound rows."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    version = None
    if "meta" in tables and _columns(conn, "meta") >= {"key", "value"}:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (_MARKER,)).fetchone()
        version = row[0] if row else None
    if version is None:
        if {"results", "meta"} <= tables:
            raise StoreError(
                f"{db} was written by an older robustlab whose result keys lack the data set, samples and "
                "batch size, so its numbers cannot be matched safely; evaluate into a new run directory"
            )
        raise StoreError(f"{db} is an SQLite database, but not a robustlab results database")
    if str(version) != str(SCHEMA_VERSION):
        raise StoreError(f"{db} has robustlab results schema {version}; this robustlab reads schema {SCHEMA_VERSION}")
    missing = sorted({"results", "meta"} - tables)
    if missing or _columns(conn, "results") != _RESULT_COLUMNS or _columns(conn, "meta") != {"key", "value"}:
        what = f"table {missing[0]} is missing" if missing else "its tables do not have robustlab's columns"
        raise StoreError(f"{db} is a damaged robustlab results database ({what}): "
                         "evaluate into a new run directory")
    try:
        bad = conn.execute(_BAD_ROW).fetchone() or conn.execute(_BAD_META).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such function" not in str(exc):
            raise
        bad = None  # an SQLite without JSON functions: each value is checked as it is read
    if bad is not None:
        raise StoreError(f"{db} is a damaged robustlab results database ({bad[0]} {bad[1]!r} holds values "
                         "robustlab did not write: not strict JSON, or wrongly typed keys)")
    _check_utf8(conn, db)
    checked = conn.execute("PRAGMA quick_check(1)").fetchone()
    if checked is None or checked[0] != "ok":
        raise StoreError(f"{db} is a damaged SQLite file ({checked[0] if checked else 'no answer'})")


def _check_utf8(conn: sqlite3.Connection, db: Path) -> None:
    """Every text value must be UTF-8 (SQLite does not check; Python's reader fails on it)."""
    conn.text_factory = bytes
    try:
        for table in ("results", "meta"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                for value in row:
                    if isinstance(value, bytes):
                        try:
                            value.decode("utf-8")
                        except UnicodeDecodeError:
                            raise StoreError(f"{db} is a damaged robustlab results database ({table} holds "
                                             "text that is not UTF-8)") from None
    finally:
        conn.text_factory = str


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


_RESULT_COLUMNS = {"id", *_COLUMNS, "metrics", "per_sample", "created"}
_JSON_OBJECT = "(CASE WHEN json_valid({0}) THEN json_type({0}) END) IS NOT 'object'"
_BAD_ROW = (
    "SELECT 'row', id FROM results WHERE typeof(id) != 'text' OR "
    + " OR ".join(f"typeof({c}) != 'text'" for c in _COLUMNS if c != "eps")
    + " OR typeof(eps) NOT IN ('real', 'integer', 'null') OR typeof(created) NOT IN ('real', 'integer') OR "
    + _JSON_OBJECT.format("metrics") + " OR " + _JSON_OBJECT.format("per_sample") + " LIMIT 1"
)
_BAD_META = "SELECT 'meta entry', key FROM meta WHERE typeof(value) != 'text' OR NOT json_valid(value) LIMIT 1"


def _inspection_uri(db: Path) -> str:
    """A read-only URI for `db` that creates no side file. With its ``-wal`` and ``-shm`` both
    present (a writer is running, or was killed) SQLite reads them as usual ("mode=ro": it
    creates nothing, both exist); otherwise the main file holds every committed change and is
    read as immutable (no lock, no side file). robustlab's schema and marker are in the main
    file from the moment it exists (`ResultStore._create`), so the verdict is the same."""
    live = Path(f"{db}-wal").is_file() and Path(f"{db}-shm").is_file() and os.access(db.parent, os.W_OK)
    return f"file:{quote(db.resolve().as_posix())}?mode=ro" + ("" if live else "&immutable=1")


def _readonly_uri(db: Path) -> str:
    # a WAL database in a directory we cannot write can only be read as immutable
    immutable = "&immutable=1" if not os.access(db.parent, os.W_OK) else ""
    return f"file:{quote(db.resolve().as_posix())}?mode=ro{immutable}"


def _json(text: Any, db: Path, what: str) -> Any:
    """`text` parsed as JSON; `StoreError` naming the damaged value otherwise."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise StoreError(f"{db} is a damaged robustlab results database ({what} is not JSON)") from None


def check_writable(path: str | Path) -> None:
    """Raise `StoreError` unless results can be written to run directory `path` (nothing is created)."""
    db = store_path(path)
    state = inspect_store(path)
    target = db if state == "robustlab" else db.parent
    while not target.exists():
        if len(target.name.encode()) > 255:
            raise StoreError(f"{target}: a file name is too long for the file system")
        target = target.parent
    if not target.is_dir() and target != db:
        raise StoreError(f"{target} is a file, not a directory")
    if not os.access(target if target.is_dir() else target.parent, os.W_OK):
        raise StoreError(f"{target} is read-only: cannot write results there")


class ResultStore:
    """Results of one run directory (`results.sqlite`).

    `ResultStore(run_dir)` opens the database for writing, creating the directory and the
    file when absent; ``readonly=True`` opens an existing one and never writes (reports).
    """

    FILENAME = "results.sqlite"

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = store_path(path)
        self.readonly = readonly
        state = inspect_store(self.path)
        if readonly and state == "absent":
            raise StoreError(f"{Path(path)} holds no results ({self.FILENAME} not found)")
        try:
            if readonly:
                self._conn = sqlite3.connect(_readonly_uri(self.path), uri=True, timeout=30.0, isolation_level=None)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, self.path) from None
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, self.path) from None
        try:
            if state == "absent":
                self._create()
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, self.path) from None
        except OSError as exc:
            raise _os_error(exc, self.path) from None

    def _create(self) -> None:
        """Create the database whole (schema, WAL mode) under a temporary name, then link it into
        place: another process never sees a half-made file, and the first creator wins."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        remove_stale(self.path.parent)  # creations that a kill interrupted
        try:
            conn = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("COMMIT")
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                inspect_store(self.path)  # someone else made it first: it must be ours
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(str(tmp) + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, self.path) from None

    def has(self, key: ResultKey) -> bool:
        return self._conn.execute("SELECT 1 FROM results WHERE id=?", (key.id,)).fetchone() is not None

    def put(self, key: ResultKey, metrics: dict[str, Any], per_sample: dict[str, list] | None = None) -> bool:
        """Store one row atomically; returns False (and writes nothing) if the key is already there."""
        blob = (json.dumps(_finite(metrics), allow_nan=False), json.dumps(_finite(per_sample or {}), allow_nan=False))
        with self._transaction() as conn:
            cur = conn.execute(
                f"INSERT OR IGNORE INTO results (id, {', '.join(_COLUMNS)}, metrics, per_sample, created) "
                f"VALUES ({', '.join('?' * (len(_COLUMNS) + 4))})",
                (key.id, *key.values(), *blob, time.time()),
            )
            return cur.rowcount == 1

    def get(self, key: ResultKey) -> ResultRow | None:
        row = self._conn.execute("SELECT metrics, per_sample FROM results WHERE id=?", (key.id,)).fetchone()
        return ResultRow(key, *self._loads(row, key.id)) if row else None

    def rows(self, model: str | None = None, kind: str = "attack") -> list[ResultRow]:
        """Every row of `kind` (of `model` when given), in insertion order."""
        query = f"SELECT {', '.join(_COLUMNS)}, metrics, per_sample FROM results WHERE kind=?"
        args: tuple[Any, ...] = (kind,)
        if model is not None:
            query += " AND model=?"
            args += (model,)
        query += " ORDER BY created, rowid"
        out = []
        for values in self._conn.execute(query, args):
            fields = dict(zip(_COLUMNS, values[: len(_COLUMNS)], strict=True))
            key = ResultKey(**fields)
            out.append(ResultRow(key, *self._loads(values[-2:], key.id)))
        return out

    def _loads(self, values: Any, row: str) -> tuple[dict[str, Any], dict[str, list]]:
        metrics, per_sample = (_json(v, self.path, f"row {row}") for v in values)
        if not isinstance(metrics, dict) or not isinstance(per_sample, dict):
            raise StoreError(f"{self.path} is a damaged robustlab results database (row {row} is not a mapping)")
        return metrics, per_sample

    def count(self, kind: str = "attack") -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results WHERE kind=?", (kind,)).fetchone()[0])

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, allow_nan=False)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return _json(row[0], self.path, f"meta entry {key!r}") if row else default

    def update_meta(self, key: str, entries: dict[str, Any]) -> dict[str, Any]:
        """Merge `entries` into the mapping stored under `key`, in one transaction (safe when
        several processes write one run directory); returns the merged mapping."""
        with self._transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            stored = _json(row[0], self.path, f"meta entry {key!r}") if row else {}
            if not isinstance(stored, dict):
                raise StoreError(f"{self.path} is a damaged robustlab results database (meta entry {key!r} "
                                 "is not a mapping)")
            merged = {**stored, **entries}
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(merged, allow_nan=False)))
        return merged


__all__ = [
    "SCHEMA_VERSION",
    "ResultKey",
    "ResultRow",
    "ResultStore",
    "StoreError",
    "canonical",
    "check_writable",
    "inspect_store",
    "store_path",
]
