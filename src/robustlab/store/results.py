"""The results database: one SQLite file per run directory.

A row is keyed by (model, defense, attack spec, eps, data subset) and holds the cell's
metrics and its per-sample outcomes. Each row is written in its own transaction, so a
run killed mid-way loses at most the cell it was computing, and a rerun skips every
cell already stored: no lost, no duplicated rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlab.core.errors import RobustlabError

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model      TEXT NOT NULL,
    defense    TEXT NOT NULL,
    attack     TEXT NOT NULL,
    eps        REAL NOT NULL,
    subset     TEXT NOT NULL,
    metrics    TEXT NOT NULL,
    per_sample TEXT NOT NULL,
    created    REAL NOT NULL,
    PRIMARY KEY (model, defense, attack, eps, subset)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(RobustlabError):
    """The results database is unreadable or not robustlab's."""


def canonical(spec: Any) -> str:
    """A canonical JSON string of `spec` (sorted keys, no spaces): the attack part of a key."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ResultKey:
    """What one result row is about. `attack` is the canonical JSON of the attack spec."""

    model: str
    defense: str
    attack: str
    eps: float
    subset: str

    def as_tuple(self) -> tuple[str, str, str, float, str]:
        return (self.model, self.defense, self.attack, float(self.eps), self.subset)


@dataclass
class ResultRow:
    key: ResultKey
    metrics: dict[str, Any]
    per_sample: dict[str, list]


class ResultStore:
    """Results of one run directory (`results.sqlite`)."""

    FILENAME = "results.sqlite"

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path.mkdir(parents=True, exist_ok=True)
            path = path / self.FILENAME
        self.path = path
        try:
            self._conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a robustlab results database: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def has(self, key: ResultKey) -> bool:
        cur = self._conn.execute(
            "SELECT 1 FROM results WHERE model=? AND defense=? AND attack=? AND eps=? AND subset=?",
            key.as_tuple(),
        )
        return cur.fetchone() is not None

    def put(self, key: ResultKey, metrics: dict[str, Any], per_sample: dict[str, list]) -> bool:
        """Store one row atomically; returns False (and writes nothing) if the key is already there."""
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*key.as_tuple(), json.dumps(metrics), json.dumps(per_sample), time.time()),
            )
            return cur.rowcount == 1

    def get(self, key: ResultKey) -> ResultRow | None:
        cur = self._conn.execute(
            "SELECT metrics, per_sample FROM results WHERE model=? AND defense=? AND attack=? AND eps=? AND subset=?",
            key.as_tuple(),
        )
        row = cur.fetchone()
        return ResultRow(key, json.loads(row[0]), json.loads(row[1])) if row else None

    def rows(self, model: str | None = None) -> list[ResultRow]:
        """Every row (of `model` when given), in insertion order."""
        query = "SELECT model, defense, attack, eps, subset, metrics, per_sample FROM results"
        args: tuple = ()
        if model is not None:
            query += " WHERE model=?"
            args = (model,)
        query += " ORDER BY created, rowid"
        return [
            ResultRow(ResultKey(m, d, a, e, s), json.loads(mt), json.loads(ps))
            for m, d, a, e, s, mt, ps in self._conn.execute(query, args)
        ]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default
