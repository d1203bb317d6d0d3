"""A running `kb serve` follows kb.db when `kb build` or `kb import` replaces it.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. A build or import writes a new
file and renames it over kb.db. Datasette opened the database immutable and keeps one connection
per SQL thread, so threads that had already connected kept reading the old file while new ones
read the new: the same page answered from either. Now, at most once a second (``CHECK_SECONDS``),
the first request that comes along compares each immutable database's file (device, inode, size,
modification time) with the one being served; when it changed, and the new file passes the same
checks ``kb serve`` makes at start, the database is added again under the same name, so every
later query reads the new file. Requests already running finish on the old one, whose
connections are closed ``GRACE_SECONDS`` later. A replacement that cannot be served (not SQLite,
cut short, no studies table) is reported once on stderr and the old file stays served: each
database, the one served at start too, opens all its connections at once (ReopenedDatabase).
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import time
from pathlib import Path

from datasette import hookimpl
from datasette.database import Database

CHECK_SECONDS = 1.0
GRACE_SECONDS = 60.0


def file_identity(path: str) -> tuple[int, int, int, int] | None:
    """What tells one file at ``path`` from its replacement; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ReopenedDatabase(Database):
    """A Database whose connections are its own, all opened with it.

    Datasette keeps a thread's connection under the database's name, so a new Database of the
    same name would reuse a connection to the old file. And it opens a thread's connection, by
    path, when that thread first queries: a thread that had not queried yet when a file that
    cannot be served was renamed over kb.db read that file ("file is not a database", 500s). This
    one opens a connection for each SQL thread at once and each query takes a free one, so all of
    them read the file that was there when it was opened, whatever is renamed over it later.
    """

    def __init__(self, datasette, path: str, name: str):
        super().__init__(datasette, path=path, is_mutable=False)
        self.name = name  # add_database sets it too; prepare_connection hooks are told it now
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(max(1, datasette.setting("num_sql_threads") or 0)):  # SQLite opens the file here
            conn = self.connect()
            datasette._prepare_connection(conn, name)
            self._idle.put(conn)

    async def execute_fn(self, fn):
        def with_connection():
            conn = self._idle.get()  # as many connections as SQL threads: never waits
            try:
                return fn(conn)
            finally:
                self._idle.put(conn)

        if self.ds.executor is None:  # num_sql_threads 0: queries run on the event loop
            return with_connection()
        return await asyncio.get_running_loop().run_in_executor(self.ds.executor, with_connection)


def unservable(path: str) -> str | None:
    from ingest.site.cli import unservable as check  # the checks `kb serve` makes before starting

    return check(Path(path))


class Follower:
    """Swaps in a database whose file was replaced; checks the files at most every CHECK_SECONDS."""

    def __init__(self, datasette):
        self.datasette = datasette
        for name, db in self._files():
            if not isinstance(db, ReopenedDatabase):  # as Datasette opened it: by path, thread by thread
                self._add(name, db)
        self.served = {name: file_identity(db.path) for name, db in self._files()}
        self.refused: dict[str, tuple | None] = {}
        self.next_check = time.monotonic() + CHECK_SECONDS

    def _files(self):
        return [(name, db) for name, db in self.datasette.databases.items()
                if db.path and not db.is_mutable and not db.is_memory]

    def check(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + CHECK_SECONDS
        for name, db in self._files():
            identity = file_identity(db.path)
            if identity is None or identity == self.served.get(name) or identity == self.refused.get(name):
                continue
            problem = unservable(db.path)
            if problem:
                self.refused[name] = identity
                print(f"kb serve: {db.path} was replaced by a file that cannot be served ({problem}); "
                      "still serving the previous one", file=sys.stderr, flush=True)
                continue
            self.reopen(name, db, identity)

    def _add(self, name: str, old: Database) -> None:
        new = ReopenedDatabase(self.datasette, path=old.path, name=name)
        self.datasette.remove_database(name)
        self.datasette.add_database(new, name=name, route=old.route)

    def reopen(self, name: str, old: Database, identity: tuple) -> None:
        self._add(name, old)
        self.served[name] = identity
        asyncio.get_running_loop().call_later(GRACE_SECONDS, old.close)
        print(f"kb serve: {old.path} was replaced; serving the new file", file=sys.stderr, flush=True)


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        follower = Follower(datasette)

        async def follow(scope, receive, send):
            if scope["type"] == "http":
                follower.check()
            await app(scope, receive, send)

        return follow

    return wrap
