"""A build's records on disk while they are gathered: memory stays flat in the corpus size.

`kb build` merges every record it reads by study (PMID, then DOI) before it writes any. Kept in
dicts, that is ~33 KiB of Python objects per record (a million records: ~32 GiB). Here the same
mappings live in tables of a temporary SQLite file beside kb.db: each value pickled and
compressed, looked up by key through the table's index, iterated in the order first seen (or
newest first, for writing). The build reads them back one batch at a time.
"""

from __future__ import annotations

import os
import pickle
import re
import sqlite3
import tempfile
import zlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from .atomic import alive

# Values are compressed quickly rather than tightly: the file lives only as long as the build.
_LEVEL = 1
_COMMIT_EVERY = 5_000  # writes per transaction (journal off: a crash discards the file anyway)
_CACHE_KIB = 64 * 1024  # SQLite page cache of the staging file
_PAGE = 500  # rows read at a time when iterating


def staging_path(target: Path) -> Path:
    """A new, empty staging file beside ``target`` (same disk as the database being built),
    named by this process; those of builds that died without cleaning up are removed first."""
    _remove_stale(target)
    prefix = f".{target.name}.staging-{os.getpid()}-"
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".db", dir=target.parent)
    os.close(fd)
    return Path(name)


def _remove_stale(target: Path) -> None:
    pattern = re.compile(rf"\.{re.escape(target.name)}\.staging-(\d+)-")
    for path in target.parent.glob(f".{target.name}.staging-*"):
        found = pattern.match(path.name)
        if found and not alive(int(found.group(1))):
            path.unlink(missing_ok=True)


class StagingFile:
    """The staging database: one connection, shared by the mappings it holds."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=off", "synchronous=off", f"cache_size=-{_CACHE_KIB}",
                       "temp_store=file", "locking_mode=exclusive"):
            self.conn.execute(f"pragma {pragma}")
        self.conn.execute("begin")
        self._writes = 0

    def mapping(self, name: str, ordered_by_year: bool = False) -> StagedMap:
        return StagedMap(self, name, ordered_by_year)

    def wrote(self) -> None:
        self._writes += 1
        if self._writes >= _COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        self.conn.execute("commit")
        self.conn.execute("begin")
        self._writes = 0

    def close(self) -> None:
        """Close and delete the file."""
        try:
            self.conn.close()
        finally:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def _pack(value: Any) -> bytes:
    return zlib.compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), _LEVEL)


def _unpack(blob: bytes) -> Any:
    # Only this process's own temporary file is ever unpickled.
    return pickle.loads(zlib.decompress(blob))


class StagedMap(MutableMapping):
    """A dict in a table: insertion order kept (a replaced value keeps its place, as in a dict).

    Values come back as copies: change one, then store it again. ``ordered_by_year``: each value
    is a record whose ``year`` is kept in a column, for :meth:`newest_first`.
    """

    def __init__(self, staging: StagingFile, name: str, ordered_by_year: bool = False):
        self.staging, self.table, self.by_year = staging, f"map_{name}", ordered_by_year
        # rowid is the insertion order; a key set again keeps its row (upsert), as dict keys do.
        staging.conn.execute(f"create table if not exists [{self.table}] "
                             "(seq integer primary key, key text not null unique, newest integer, value blob)")

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.staging.conn

    def __getitem__(self, key: str) -> Any:
        row = self._conn.execute(f"select value from [{self.table}] where key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return _unpack(row[0])

    def __setitem__(self, key: str, value: Any) -> None:
        # Sorting key for newest_first: -year (a record without a year counts as year 0, as before).
        newest = -int(value.get("year") or 0) if self.by_year else None
        self._conn.execute(f"insert into [{self.table}] (key, newest, value) values (?, ?, ?) "
                           "on conflict(key) do update set newest = excluded.newest, value = excluded.value",
                           (key, newest, _pack(value)))
        self.staging.wrote()

    def __delitem__(self, key: str) -> None:
        if self._conn.execute(f"delete from [{self.table}] where key = ?", (key,)).rowcount == 0:
            raise KeyError(key)
        self.staging.wrote()

    def __contains__(self, key: object) -> bool:
        return self._conn.execute(f"select 1 from [{self.table}] where key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return self._conn.execute(f"select count(*) from [{self.table}]").fetchone()[0]

    def __iter__(self) -> Iterator[str]:
        for _, key, _ in self._pages("seq", "seq"):
            yield key

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        for _, key, blob in self._pages("seq", "seq", "value"):
            yield key, _unpack(blob)

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        for _, value in self.items():
            yield value

    def newest_first(self) -> Iterator[tuple[str, Any]]:
        """(key, record) by year, newest first, ties in the order first seen: sorted()'s order
        over ``-(year or 0)``, without sorting the values themselves (an index does it)."""
        self._conn.execute(f"create index if not exists [{self.table}_newest] on [{self.table}] (newest, seq)")
        for _, key, blob in self._pages("newest, seq", "(newest, seq)", "value"):
            yield key, _unpack(blob)

    def _pages(self, order: str, position: str, value: str = "null") -> Iterator[tuple]:
        """(position, key, value) rows in ``order``, a page at a time from where the last page ended
        (keyset paging: constant memory, and safe while the table is written)."""
        last: tuple | None = None
        while True:
            where = f"where {position} > ({', '.join('?' * len(last))})" if last else ""
            rows = self._conn.execute(f"select {order}, key, {value} from [{self.table}] {where} "
                                      f"order by {order} limit {_PAGE}", last or ()).fetchall()
            for row in rows:
                yield row[:-2], row[-2], row[-1]
            if len(rows) < _PAGE:
                return
            last = rows[-1][:-2]
