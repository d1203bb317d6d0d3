"""Datasette's per-table permission lookup, computed once per table instead of on every check.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. Datasette 0.65.5 answers
"may this actor see table T?" by deep-copying the whole metadata (kb's has every canned query
and column description: ~70 kB) and walking it, on every check. The home page checks each of
kb.db's ~90 tables and views, so a page that does no real work took 200 ms of CPU, and under load
far longer. The answer depends only on the metadata, which a running ``kb serve`` never changes
(``--metadata`` is read at start), so it is kept per (database, table) after the first lookup.
"""

from __future__ import annotations

import functools

from datasette import hookimpl

METHOD = "_table_permission_allows"


def cache_table_permissions(datasette) -> bool:
    """Wrap the instance's lookup in a cache; False when this Datasette has no such method."""
    lookup = getattr(datasette, METHOD, None)
    if lookup is None or getattr(lookup, "cache_info", None) is not None:
        return False
    cached = functools.lru_cache(maxsize=4096)(lookup)

    def table_permission_allows(database, table):
        # The rules are lists of dicts: hand each caller its own copy, as the original does.
        return [dict(rule) if isinstance(rule, dict) else rule for rule in cached(database, table)]

    table_permission_allows.cache_info = cached.cache_info  # type: ignore[attr-defined]
    setattr(datasette, METHOD, table_permission_allows)
    return True


@hookimpl
def startup(datasette):
    cache_table_permissions(datasette)
