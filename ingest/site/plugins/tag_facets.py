"""The ``tags`` facet: Datasette's array facet, counted without copying whole rows; and the
``counted`` and ``ordered`` facets: Datasette's column facet, every column of a page in one query.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. Configured like an array facet,
``- tags: designs`` in a table's ``facets`` (or ``?_facet_tags=designs``), on any column holding
a JSON array. It counts exactly what Datasette's ``array`` facet counts: for each value, the
filtered rows whose array contains it (a row once, however often the value repeats in it), the
rows that ``?designs__arraycontains=value`` selects; its links are the same
(``?designs__arraycontains=value`` added or removed) and each value is shown by its tag's label
from the ``tags`` table (the id itself when it is not a tag).

Why: Datasette 0.65's array facet runs ``select distinct j.value, inner.* ... from json_each(...)
join inner``, which copies every filtered row, abstract and all, into a temporary index to
de-duplicate it: 2.9 s for one studies page at 40,000 studies, most of its facets timed out. Here
every array column of one table page is counted in a single query that reads the filtered rows
once, keeping only the faceted columns (``with f as materialized (select designs, drugs... from
(<the page's filtered SQL>))``; kb.db's ``idx_studies_tag_columns`` holds them apart from the
abstracts), then, per column, its distinct arrays and their values with ``json_each``. A
database opened immutable (``kb serve``) never changes, so the counts of a filtered SQL are kept
(``CACHE_SIZE`` of them per database; ``KB_FACET_CACHE`` in the environment sets it, 0 for none):
a page asked for again is not counted again.

The time limit is Datasette's ``facet_time_limit_ms`` for each column counted (the time the
columns' facets would have had one after another); when it runs out every column of the query is
reported timed out, as Datasette reports a facet that ran out of time.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict

from datasette import hookimpl
from datasette.database import QueryInterrupted
from datasette.facets import ColumnFacet, Facet
from datasette.utils import escape_sqlite, path_with_added_args, path_with_removed_args

# Counts kept per database; KB_FACET_CACHE=0 turns the cache off (benchmarks of the uncached path).
CACHE_SIZE = int(os.environ.get("KB_FACET_CACHE", "512") or 0)
_CACHE_KEY = "_kb_tag_facet_counts"
_LABELS_KEY = "_kb_tag_facet_labels"
_LOCK = threading.Lock()
_DEADLINE_KEY = "kb_facets_deadline"
PAGE_FACET_LIMITS = 2  # a page's facets counted from its rows take at most this many facet time limits


def counts_sql(sql: str, columns: list[str], limit: int) -> str:
    """One query counting each column's array values over the rows of ``sql``.

    Rows come back as (facet, value, count): ``facet`` the column's position in ``columns``,
    at most ``limit`` values per column, most frequent first, then by value (the array facet's
    order). The filtered rows are read once, keeping the faceted columns alone (``f``); each
    column's distinct arrays are counted first (few: ``["rct"]`` stands for thousands of rows),
    then their values. A value repeated within one array counts once for its row (the array
    facet's ``distinct``); ``is`` compares as ``distinct`` does (types apart, NULLs alike).
    """
    picked = ", ".join(f"{escape_sqlite(column)} as c{i}" for i, column in enumerate(columns))
    parts = [
        f"select * from (select {i} as facet, j.value as value, sum(g.n) as count "
        f"from (select c{i} as a, count(*) as n from f group by c{i}) g, json_each(g.a) j "
        f"where not exists (select 1 from json_each(g.a) k where k.key < j.key and k.value is j.value) "
        f"group by j.value order by count desc, j.value limit {int(limit)})"
        for i in range(len(columns))
    ]
    return f"with f as materialized (select {picked} from ({sql}))\n" + "\nunion all\n".join(parts)


def _cache(db) -> OrderedDict | None:
    if db.is_mutable or CACHE_SIZE <= 0:
        return None
    with _LOCK:
        return db.__dict__.setdefault(_CACHE_KEY, OrderedDict())


def _cached(cache: OrderedDict | None, key):
    if cache is None:
        return None
    with _LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    return None


def _remember(cache: OrderedDict | None, key, value) -> None:
    if cache is None:
        return
    with _LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)


async def _labels(db) -> dict[str, str]:
    """Tag id -> label from the database's ``tags`` table, read once per Database (kb.db is immutable;
    a replaced kb.db is a new Database, see reopen.py). Empty for a database without one."""
    if _LABELS_KEY not in db.__dict__:
        labels = {}
        if "tags" in await db.table_names():
            labels = {row["id"]: row["label"] for row in (await db.execute("select id, label from tags")).rows
                      if row["label"]}
        db.__dict__[_LABELS_KEY] = labels
    return db.__dict__[_LABELS_KEY]


# The studies page's SQL and its filters, Datasette's clauses in their (sorted) order: kb.db holds the
# facets of the page with none, with the on-topic one alone (facet_counts), and with it and one more
# (facet_pair_counts; db/aggregates.py).
_STUDIES_PAGE = re.compile(r'select [^()]* from studies (?:where (?P<clauses>.+) )?')
_ON_TOPIC = re.compile(r'"on_topic" = :(?P<param>p\d+)')
_ARRAY_FILTER = re.compile(r':(?P<param>p\d+) in \(select value from json_each\("studies"\."(?P<column>\w+)"\)\)')
_VALUE_FILTER = re.compile(r'"(?P<column>\w+)" = :(?P<param>p\d+)')
_INTEGER = re.compile(r"-?\d{1,18}")
_PRECOMPUTED_KEY = "_kb_precomputed_facets"


def page_filters(table: str | None, sql: str, params) -> tuple[bool, list[tuple[str, str, str]]] | None:
    """(whether the studies page is on-topic only, its other filters as (how, column, value): how
    'array' for ``column__arraycontains=value``, 'value' for ``column=value``), or None when ``sql``
    has any other clause."""
    match = _STUDIES_PAGE.fullmatch(sql) if table == "studies" else None
    if not match:
        return None
    params = params if isinstance(params, dict) else dict(enumerate(params or ()))
    clauses = match.group("clauses").split(" and ") if match.group("clauses") else []
    on_topic, filters, used = False, [], set()
    for clause in clauses:
        found = _ON_TOPIC.fullmatch(clause)
        if found and params.get(found.group("param")) == "1" and not on_topic:
            on_topic = True
            used.add(found.group("param"))
            continue
        for how, pattern in (("array", _ARRAY_FILTER), ("value", _VALUE_FILTER)):
            found = pattern.fullmatch(clause)
            if found and isinstance(params.get(found.group("param")), str):
                filters.append((how, found.group("column"), params[found.group("param")]))
                used.add(found.group("param"))
                break
        else:
            return None
    return (on_topic, filters) if used == set(params) else None


async def _counted_facets(db) -> dict[tuple[str, str], tuple[str, int]]:
    """(scope, facet) -> ('array' or 'value', how many of each facet's values facet_pair_counts keeps
    filtered on one of its values, 0 for none), for every facet kb.db counted (facet_columns), read once."""
    if _PRECOMPUTED_KEY not in db.__dict__:
        counted = {}
        tables = set(await db.table_names())
        if {"facet_counts", "facet_columns", "facet_pair_counts"} <= tables:
            rows = (await db.execute("select scope, facet, is_array, filtered_top from facet_columns")).rows
            counted = {(r[0], r[1]): (("array" if r[2] else "value"), r[3] or 0) for r in rows}
        db.__dict__[_PRECOMPUTED_KEY] = counted
    return db.__dict__[_PRECOMPUTED_KEY]


async def _precomputed(db, facet, columns: list[str], limit: int) -> dict[str, list[tuple]] | None:
    """The columns' counts from facet_counts or facet_pair_counts, when the page is unfiltered or
    on-topic and filtered on one value and kb.db has them all; else None (counted from the rows)."""
    found = None if db.is_mutable else page_filters(facet.table, facet.sql, facet.params)
    if found is None:
        return None
    on_topic, filters = found
    if not filters:
        return await _unfiltered_counts(db, "on_topic" if on_topic else "all", columns, limit)
    if on_topic and len(filters) == 1:
        return await _one_filter_counts(db, filters[0], columns, limit)
    return None


async def _unfiltered_counts(db, scope: str, columns: list[str], limit: int) -> dict[str, list[tuple]] | None:
    counted = await _counted_facets(db)
    if not all((scope, column) in counted for column in columns):
        return None
    marks = ", ".join("?" for _ in columns)
    rows = await db.execute(
        "select facet, value, studies from (select facet, value, studies, row_number() over "
        "(partition by facet order by studies desc, value) as n from facet_counts "
        f"where scope = ? and facet in ({marks})) where n <= ? order by facet, n", [scope, *columns, limit])
    return _by_column(columns, rows.rows)


async def _one_filter_counts(db, one: tuple[str, str, str], columns: list[str],
                             limit: int) -> dict[str, list[tuple]] | None:
    how, filter_column, value = one
    counted = await _counted_facets(db)
    kind, top = counted.get(("on_topic", filter_column), ("", 0))
    if (limit > top or how != kind or not all(("on_topic", column) in counted for column in columns)):
        return None
    # ?year=2020 compares as the column's affinity makes it: 2020 for an integer column, '2020' for text
    candidates = [value, int(value)] if how == "value" and _INTEGER.fullmatch(value) else [value]
    marks = ", ".join("?" for _ in candidates)
    found = (await db.execute(f"select filter_value from facet_pair_counts where filter_facet = ? "
                              f"and filter_value in ({marks}) limit 1", [filter_column, *candidates])).first()
    if found is None:  # no study has it, or it is written unlike the stored value: count the rows
        return None
    marks = ", ".join("?" for _ in columns)
    rows = await db.execute(
        "select facet, value, studies from facet_pair_counts where filter_facet = ? and filter_value = ? "
        f"and facet in ({marks}) and rank <= ? order by facet, rank", [filter_column, found[0], *columns, limit])
    return _by_column(columns, rows.rows)


def _by_column(columns: list[str], rows) -> dict[str, list[tuple]]:
    out = {column: [] for column in columns}
    for row in rows:
        out[row["facet"]].append((row["value"], row["studies"]))
    return out


class OneQueryCounts:
    """Counting every column of a page's facets of one type in one query, kept per database (mixed
    into a Datasette facet class, whose ``sql``, ``params`` and configs it reads)."""

    def counts_query(self, columns: list[str], limit: int) -> str:
        raise NotImplementedError

    async def suggest(self):
        return []

    def time_left(self, columns: int) -> int | None:
        """Milliseconds this count may take: Datasette's facet time limit for each column, within
        what is left of the page's, shared by all of its facets (PAGE_FACET_LIMITS facet time limits:
        at a million studies a searched page would otherwise wait seconds for facets that time out)."""
        limit = self.ds.setting("facet_time_limit_ms") or 0
        if not limit:
            return None
        scope = getattr(self.request, "scope", None)
        if not isinstance(scope, dict):
            return limit * columns
        now = time.monotonic()
        deadline = scope.setdefault(_DEADLINE_KEY, now + limit * PAGE_FACET_LIMITS / 1000)
        return min(limit * columns, int((deadline - now) * 1000))

    async def count(self, db, columns: list[str], limit: int) -> dict[str, list[tuple]] | None:
        """Each column's (value, count) rows, or None when the time limit ran out."""
        cache = _cache(db)
        params = self.params if isinstance(self.params, dict) else {str(i): v for i, v in enumerate(self.params)}
        key = (self.type, self.sql, tuple(sorted((str(k), repr(v)) for k, v in params.items())), tuple(columns),
               limit)
        found = _cached(cache, key)
        if found is not None:
            return found
        found = await _precomputed(db, self, columns, limit)  # kb.db's own: not kept in the cache
        if found is not None:
            return found
        budget = self.time_left(len(columns))
        if budget is not None and budget <= 0:
            return None  # the page's facets have had their time: this one is reported timed out
        try:
            rows = await db.execute(self.counts_query(columns, limit), self.params, truncate=False,
                                    custom_time_limit=budget, log_sql_errors=False)
        except QueryInterrupted:
            return None
        except sqlite3.OperationalError:
            # A column that cannot be counted (?_facet_tags=title is not JSON) is left out, the
            # others counted on their own.
            out = {}
            for column in columns if len(columns) > 1 else ():
                found = await self.count(db, [column], limit)
                if found is None:
                    return None
                out.update(found)
            _remember(cache, key, out)
            return out
        out = {column: [] for column in columns}
        for row in rows.rows:
            out[columns[row["facet"]]].append((row["value"], row["count"]))
        _remember(cache, key, out)
        return out

    async def page_counts(self, db) -> tuple[list[tuple[str, str]], dict[str, list[tuple]] | None, int]:
        """(the facets' (column, source), their counts or None when out of time, the facet size)."""
        wanted = await self.wanted_columns(db)
        facet_size = self.get_facet_size()
        counts = await self.count(db, [c for c, _ in wanted], facet_size + 1) if wanted else {}
        return wanted, counts, facet_size

    async def wanted_columns(self, db) -> list[tuple[str, str]]:
        """(column, source) of each configured facet of this type on a column the table has, once each."""
        known = set(await db.table_columns(self.table)) if self.table else None
        wanted = []
        for source_and_config in self.get_configs():
            config = source_and_config["config"]
            column = config.get("column") or config.get("simple")
            if column not in [c for c, _ in wanted] and (known is None or column in known):
                wanted.append((column, source_and_config["source"]))
        return wanted


class TagFacet(OneQueryCounts, Facet):
    """``- tags: column``: the array facet's counts and links, tag labels, one query per page."""

    type = "tags"

    def counts_query(self, columns: list[str], limit: int) -> str:
        return counts_sql(self.sql, columns, limit)

    async def facet_results(self):
        db = self.ds.get_database(self.database)
        wanted, counts, facet_size = await self.page_counts(db)
        if not wanted or counts is None:
            return [], [c for c, _ in wanted]
        labels = await _labels(db)
        pairs = self.get_querystring_pairs()
        results = []
        for column, source in wanted:
            if column not in counts:
                continue
            values = []
            for value, count in counts[column][:facet_size]:
                value = str(value)
                arg = {f"{column}__arraycontains": value}
                selected = (f"{column}__arraycontains", value) in pairs
                toggle = (path_with_removed_args if selected else path_with_added_args)(self.request, arg)
                label = labels.get(value) or value
                values.append({"value": value, "label": label, "count": count,
                               "toggle_url": self.ds.absolute_url(self.request, toggle), "selected": selected})
            results.append({
                "name": column, "type": self.type, "results": values, "hideable": source != "metadata",
                "toggle_url": self.ds.urls.path(path_with_removed_args(self.request, {"_facet_tags": column})),
                "truncated": len(counts[column]) > facet_size,
            })
        return results, []


def values_sql(sql: str, columns: list[str], limit: int) -> str:
    """One query counting each column's values over the rows of ``sql``, as Datasette's column facet
    does (NULLs left out; most frequent first, then by value), reading the filtered rows once rather
    than once per column: rows (facet, value, count), ``facet`` the column's position in ``columns``."""
    picked = ", ".join(f"{escape_sqlite(column)} as c{i}" for i, column in enumerate(columns))
    parts = [
        f"select * from (select {i} as facet, c{i} as value, count(*) as count from f where c{i} is not null "
        f"group by c{i} order by count desc, value limit {int(limit)})"
        for i in range(len(columns))
    ]
    return f"with f as materialized (select {picked} from ({sql}))\n" + "\nunion all\n".join(parts)


class CountedFacet(OneQueryCounts, ColumnFacet):
    """``- counted: column``: Datasette's column facet (the same counts, links and ``?column=value``
    filters), with every such column of one page counted in one query over the filtered rows
    (:func:`values_sql`) instead of one query each, and the counts kept as the tags facet keeps its
    own (kb.db is immutable). Shown as a column facet."""

    type = "counted"
    shown_type = "column"

    def counts_query(self, columns: list[str], limit: int) -> str:
        return values_sql(self.sql, columns, limit)

    def ordered(self, values: list[tuple]) -> list[tuple]:
        return values

    async def facet_results(self):
        db = self.ds.get_database(self.database)
        wanted, counts, facet_size = await self.page_counts(db)
        if not wanted or counts is None:
            return [], [c for c, _ in wanted]
        pairs = self.get_querystring_pairs()
        results = []
        for column, source in wanted:
            column_qs = f"{column}__exact" if column.startswith("_") else column
            values = []
            for value, count in self.ordered(counts[column][:facet_size]):
                selected = (column_qs, str(value)) in pairs
                toggle = (path_with_removed_args(self.request, {column_qs: str(value)}) if selected
                          else path_with_added_args(self.request, {column_qs: value}))
                values.append({"value": value, "label": value, "count": count, "selected": selected,
                               "toggle_url": self.ds.absolute_url(self.request, self.ds.urls.path(toggle))})
            results.append({
                "name": column, "type": self.shown_type, "results": values, "hideable": source != "metadata",
                "toggle_url": self.ds.urls.path(path_with_removed_args(self.request, {f"_facet_{self.type}": column})),
                "truncated": len(counts[column]) > facet_size,
            })
        return results, []


class OrderedFacet(CountedFacet):
    """``- ordered: column``: a counted facet listed in the column's order, not by count (evidence
    levels: 1 first)."""

    type = "ordered"
    shown_type = "ordered"

    def ordered(self, values: list[tuple]) -> list[tuple]:
        return sorted(values, key=lambda pair: (pair[0] is None, str(pair[0])))


@hookimpl
def register_facet_classes():
    return [TagFacet, CountedFacet, OrderedFacet]
