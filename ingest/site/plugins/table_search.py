"""The studies table's search (``?_search=``) planned for a large kb.db: rows in year order from the
year index, counts and facets from the narrow indexes, never every matched row fetched and sorted.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``.

Why: Datasette adds ``rowid in (select rowid from studies_fts where studies_fts match ...)``, and
SQLite plans any ``in (subquery)`` as if it held 25 rows, so it looks every match up by rowid: at a
million studies "esketamine" matches 380,000, whose whole rows (abstracts in overflow pages) are
read to sort them by year, to count them and to count each facet (1.4 s median, p95 1.8 s,
docs/scaling.md). Written ``+rowid in (...)`` (the unary plus keeps SQLite from looking rows up by
it) the same filter is checked against each index entry instead: the page's 51 rows come from
walking ``idx_studies_year`` newest first (50 ms instead of 550), the count from
``idx_studies_on_topic`` and the facets from ``idx_studies_tag_columns`` (tag_facets.py), with
no row read that is not shown. A search that matches nothing walks the year index once (120 ms).

How: an ASGI wrapper hands Datasette the studies page's ``_search`` as ``_kb_search`` (so
Datasette's own search filter stays out) and this plugin's ``filters_from_request`` adds the
clause, the "search matches" description and the search box's value, as Datasette's does. Only
when the page is in year order (the default, or ``_sort``/``_sort_desc`` on year): in another order
there is no index to walk and Datasette's plan is the better one. ``_searchmode=raw`` is honoured.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from datasette import hookimpl
from datasette.filters import FilterArguments

TABLE = "studies"
PATH = "/kb/studies"
FTS_TABLE = "studies_fts"
ARG = "_kb_search"  # what _search is handed on as
YEAR_ORDERS = {("_sort", "year"), ("_sort_desc", "year")}


def planned_query(query: str) -> str | None:
    """The studies page's query string with its search handed to the planner that fits its order:
    ``_kb_search`` (this plugin) in year order, ``_search`` (Datasette's) in any other; None when
    nothing changes. Links Datasette writes carry ``_kb_search`` on, so it is read back as well."""
    original = parse_qsl(query, keep_blank_values=True)
    pairs, keys = original, {key for key, _ in original}
    if "_search" not in keys and ARG not in keys:
        return None
    if "_search" in keys:
        # A search typed into the page's box replaces the one its hidden fields carry on.
        pairs = [(key, value) for key, value in pairs if key != ARG]
    year_order = not any(
        key in ("_sort", "_sort_desc") and (key, value) not in YEAR_ORDERS for key, value in pairs
    )
    source, target = ("_search", ARG) if year_order else (ARG, "_search")
    kept = [(target if key == source else key, value) for key, value in pairs]
    return urlencode(kept) if kept != original else None


def _planned(scope) -> bool:
    """A studies page (HTML, JSON or CSV) this plugin plans. The HTML page without an on_topic choice
    is first sent to the on-topic studies (kb_site.py), with ``_search`` as the user typed it."""
    path = scope.get("path", "")
    if path in (f"{PATH}.json", f"{PATH}.csv"):
        return True
    if path != PATH:
        return False
    keys = {key for key, _ in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)}
    return "_offtopic" in keys or any(k == "on_topic" or k.startswith("on_topic__") for k in keys)


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def plan_search(scope, receive, send):
            if scope["type"] == "http" and _planned(scope):
                query = planned_query(scope.get("query_string", b"").decode("latin-1"))
                if query is not None:
                    scope = {**scope, "query_string": query.encode("latin-1")}
            await app(scope, receive, send)

        return plan_search

    return wrap


@hookimpl
def filters_from_request(request, database, table, datasette):
    if table != TABLE or not request.args.get(ARG):
        return None
    search = request.args.get(ARG)
    raw = request.args.get("_searchmode") == "raw"
    match = ":kb_search" if raw else "escape_fts(:kb_search)"
    return FilterArguments(
        [f"+rowid in (select rowid from {FTS_TABLE} where {FTS_TABLE} match {match})"],
        {"kb_search": search},
        [f'search matches "{search}"'],
        {"search": search, "supports_search": True},
    )
