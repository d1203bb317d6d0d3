"""Which rows of a page name studies, and the URLs of a page's citation exports and feed.

Shared by the site's output renderers (``plugins/citations.py``, ``plugins/feeds.py``) and the
export links the templates show. Pure: no Datasette, no SQL.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence

from ingest.records.citations import FORMATS

FEED = "atom"
# A query's column naming studies, best first, and what it holds: a study id or a PMID.
QUERY_ID_COLUMNS = (("study_id", "id"), ("id", "id"), ("pmid", "pmid"))
# Arguments that say which page of rows or which output, not which rows: left out of export links.
PAGING_ARGS = {"_size", "_next", "_format", "_labels", "_facet", "_facet_array", "_facet_date", "_nocount",
               "_nofacet", "_col", "_nocol", "_shape", "_json"}
SORT_ARGS = {"_sort", "_sort_desc"}
# The canned query a search's feed is: the newest matches of the same words.
FEED_QUERY = "new_studies"


def study_column(columns: Sequence[str] | None, table: str | None) -> tuple[str, str] | None:
    """(column, "id" or "pmid"): the column of these rows that names studies, or None.

    The studies table (and a study's row) by its ``id``; another table or view only by a
    ``study_id``; a query by ``study_id``, else ``id``, else ``pmid``.
    """
    columns = list(columns or [])
    if table == "studies":
        return ("id", "id") if "id" in columns else None
    if table is not None:
        return ("study_id", "id") if "study_id" in columns else None
    return next(((name, by) for name, by in QUERY_ID_COLUMNS if name in columns), None)


def cell(row, column: str, index: int):
    """One cell of a row Datasette hands a renderer (a sqlite3.Row, a dict or a list)."""
    try:
        value = row[column]
    except (KeyError, IndexError, TypeError):
        try:
            value = row[index]
        except (IndexError, KeyError, TypeError):
            return None
    return value.get("value") if isinstance(value, dict) else value


def column_values(rows: Iterable, columns: Sequence[str], column: str) -> list:
    index = list(columns).index(column)
    return [cell(row, column, index) for row in rows]


def download_base(database: str, table: str | None, query_name: str | None, view_name: str | None,
                  rows: Sequence, columns: Sequence[str]) -> str:
    """kb-studies, kb-search, kb-study-39000001, kb-query."""
    if view_name == "row" and table and len(rows) == 1:
        found = study_column(columns, table)
        pk = cell(rows[0], found[0], list(columns).index(found[0])) if found else None
        return f"{database}-{'study' if table == 'studies' else table}-{pk}"
    return f"{database}-{table or query_name or 'query'}"


def format_path(path: str, fmt: str) -> tuple[str, list[tuple[str, str]]]:
    """The path of ``path`` in format ``fmt``, with the ``_format`` argument a dotted path needs."""
    path = re.sub(r"\.(json|csv|" + "|".join(FORMATS) + "|" + FEED + r")$", "", path)
    if "." in path.rsplit("/", 1)[-1]:
        return path, [("_format", fmt)]
    return f"{path}.{fmt}", []


def page_url(path: str, query_string: str, fmt: str, *, drop: Iterable[str] = (),
             add: Sequence[tuple[str, str]] = ()) -> str:
    """The URL of the same rows in another format: paging arguments dropped, ``add`` appended."""
    drop = PAGING_ARGS | set(drop)
    args = [(k, v) for k, v in urllib.parse.parse_qsl(query_string or "", keep_blank_values=True) if k not in drop]
    path, extra = format_path(path, fmt)
    query = urllib.parse.urlencode(args + extra + list(add))
    return f"{path}?{query}" if query else path


def export_links(path: str, query_string: str, *, whole_table: bool) -> list[dict]:
    """One link per citation format for the rows of this page (a table page: up to the row limit)."""
    add = [("_size", "max")] if whole_table else []
    return [{"format": name, "label": f.label, "url": page_url(path, query_string, name, add=add)}
            for name, f in FORMATS.items()]


def table_feed_url(path: str, query_string: str, sort_column: str) -> str:
    """A table page's feed: the same filters and search, newest first."""
    return page_url(path, query_string, FEED, drop=SORT_ARGS, add=[("_sort_desc", sort_column)])


def search_feed_url(database_path: str, q: str) -> str:
    """A ranked search's feed: the newest studies matching the same words."""
    return f"{database_path.rstrip('/')}/{FEED_QUERY}.{FEED}?" + urllib.parse.urlencode({"q": q or ""})


async def has_studies(datasette, database: str) -> bool:
    """Whether the database has a studies table (read once per Database object: kb.db is immutable)."""
    try:
        db = datasette.get_database(database)
    except KeyError:
        return False
    if "_kb_has_studies" not in db.__dict__:
        db.__dict__["_kb_has_studies"] = "studies" in await db.table_names()
    return db.__dict__["_kb_has_studies"]
