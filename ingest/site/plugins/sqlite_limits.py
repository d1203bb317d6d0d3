"""SQLite limits on every Datasette connection: a huge randomblob/printf/zeroblob fails fast.

Datasette's ``sql_time_limit_ms`` stops a query that runs too long; these limits stop one that
asks for too much at once (a gigabyte string is built in well under the time limit). They are
far above anything kb.db or its pages need: the longest stored value is an abstract of a few
kilobytes and the longest SQL a canned query of a few kilobytes.

One value is at most ``SQLITE_LIMIT_LENGTH`` (1 MB), and the rows one query hands to Datasette
at most ``MAX_RESULT_BYTES`` (a row factory counts them): 100 rows of 10 MB each, or 1,000 rows
of 500 columns of 1 MB, fail with an error instead of filling the server's memory.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import weakref

from datasette import hookimpl

LIMITS = {
    # The longest string or blob any expression may produce (and any value read or bound):
    # randomblob(1e9), zeroblob(1e9), printf('%.*c', 1e9, 'x') fail at once. kb.db's longest
    # values are a few tens of kilobytes (ingest caps an abstract at 100 kB).
    "SQLITE_LIMIT_LENGTH": 1_000_000,
    # The longest SQL statement accepted.
    "SQLITE_LIMIT_SQL_LENGTH": 100_000,
    "SQLITE_LIMIT_COLUMN": 500,
    "SQLITE_LIMIT_EXPR_DEPTH": 500,
    "SQLITE_LIMIT_COMPOUND_SELECT": 200,
    "SQLITE_LIMIT_ATTACHED": 0,
    "SQLITE_LIMIT_LIKE_PATTERN_LENGTH": 10_000,
    "SQLITE_LIMIT_VARIABLE_NUMBER": 2_000,
    "SQLITE_LIMIT_TRIGGER_DEPTH": 10,
}


def apply_limits(conn: sqlite3.Connection) -> dict[str, int]:
    """Lower each limit on ``conn`` (never raise one); returns the limits now in force."""
    applied = {}
    for name, value in LIMITS.items():
        category = getattr(sqlite3, name, None)
        if category is None:  # a limit this SQLite build does not know
            continue
        try:
            current = conn.getlimit(category)
            if current < 0 or value < current:
                conn.setlimit(category, value)
            applied[name] = conn.getlimit(category)
        except (sqlite3.ProgrammingError, sqlite3.OperationalError):
            continue
    return applied


# SQLite (3.40 at least) builds `printf('%.*c', 1e9, 'x')` one character at a time before the
# length limit makes it give up: seconds of CPU inside one function call, where the time limit
# cannot reach, and then answers NULL as if nothing had happened. printf/format are replaced by
# a wrapper that fails at once for a field over the length limit, hands everything else to the
# real printf of a private connection, and fails too when that one gave up (NULL for a format
# that is not NULL): the query errs with "string or blob too big" instead of a column of NULLs.
_CONVERSION = re.compile(r"%([-+ 0#,!]*)(\*|\d+)?(?:\.(\*|\d+))?(?:ll|l)?([a-zA-Z%])")
MAX_REPEAT = LIMITS["SQLITE_LIMIT_LENGTH"]


def too_big(fmt, args) -> bool:
    """True when a printf format asks for more than MAX_REPEAT characters in one field."""
    if not isinstance(fmt, str):
        return False
    index = 0
    for match in _CONVERSION.finditer(fmt):
        width, precision, conversion = match.group(2), match.group(3), match.group(4)
        if conversion == "%":
            continue
        sizes = []
        for part in (width, precision):
            if part == "*":
                value = args[index] if index < len(args) else 0
                index += 1
                try:
                    sizes.append(abs(int(value)))
                except (TypeError, ValueError):
                    sizes.append(0)
            elif part:
                sizes.append(int(part))
        index += 1
        if any(size > MAX_REPEAT for size in sizes):
            return True
    return False


def _too_big_value() -> str:
    # A value one character over the limit: SQLite refuses it with its own "string or blob too
    # big" (an exception raised here would only say "user-defined function raised exception").
    return "x" * (MAX_REPEAT + 1)


def _bounded_printf(helper: sqlite3.Connection, lock: threading.Lock):
    def printf(*args):
        if not args:
            return None
        if too_big(args[0], args[1:]):
            return _too_big_value()
        marks = ", ".join("?" for _ in args)
        with lock:
            value = helper.execute(f"select printf({marks})", args).fetchone()[0]
        return _too_big_value() if value is None and args[0] is not None else value

    return printf


def bound_printf(conn: sqlite3.Connection) -> None:
    helper = sqlite3.connect(":memory:", check_same_thread=False)
    apply_limits(helper)
    function = _bounded_printf(helper, threading.Lock())
    for name in ("printf", "format"):
        conn.create_function(name, -1, function, deterministic=True)


# The rows of one query, counted in characters and bytes of their text and blob values. A page of
# 1,000 studies is about 3 MB; this is ten times the largest page kb.db can fill.
MAX_RESULT_BYTES = 32_000_000


class ResultTooBig(sqlite3.DataError):
    """A query's rows are more than MAX_RESULT_BYTES (a DatabaseError: Datasette answers 400)."""


def budgeted_rows(limit: int = MAX_RESULT_BYTES):
    """A row factory giving sqlite3.Row, as Datasette's does, that fails a cursor past ``limit`` bytes."""
    spent: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def row_factory(cursor: sqlite3.Cursor, row: tuple) -> sqlite3.Row:
        size = spent.get(cursor, 0) + sum(len(v) for v in row if isinstance(v, str | bytes))
        if size > limit:
            raise ResultTooBig(f"query result too big: more than {limit:,} bytes "
                               "(select fewer rows or columns, or shorter values)")
        spent[cursor] = size
        return sqlite3.Row(cursor, row)

    return row_factory


@hookimpl
def prepare_connection(conn, database, datasette):
    # Datasette's own _internal catalogue holds every table's schema: leave it alone.
    if database == "_internal":
        return
    apply_limits(conn)
    bound_printf(conn)
    conn.row_factory = budgeted_rows()
