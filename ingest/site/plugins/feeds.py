"""Atom feeds (``.atom``) of any page of studies: a table view, a facet selection, a search, a query.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. Follows datasette-atom's
conventions: rows with ``atom_id``, ``atom_title`` and ``atom_updated`` columns (the canned
query ``new_studies``) become one entry each; any other rows that name studies (the studies
table, ``study_id`` columns) become one entry per study, built from its record. The feed holds
the rows of the page, in their order: the studies page links to its feed sorted newest first.
No record text reaches a reader as markup (``ingest.site.feeds``).
"""

from __future__ import annotations

import urllib.parse

from datasette import hookimpl
from datasette.utils import tilde_encode

from ingest.records.citations import read_studies
from ingest.site.exports import column_values, has_studies, study_column
from ingest.site.feeds import CONTENT_TYPE, atom_column_entry, atom_feed, has_atom_columns, study_entry


async def _tag_labels(db) -> dict[str, str]:
    if "_kb_feed_labels" not in db.__dict__:
        labels = {}
        if "tags" in await db.table_names():
            labels = {r[0]: r[1] for r in (await db.execute("select id, label from tags")).rows}
        db.__dict__["_kb_feed_labels"] = labels
    return db.__dict__["_kb_feed_labels"]


def can_render_atom(datasette, columns, table, database, view_name):
    async def inner():
        if view_name == "row":
            return False
        if has_atom_columns(columns):
            return True
        return study_column(columns, table) is not None and await has_studies(datasette, database)

    return inner()


async def _title(datasette, database, table, query_name, data) -> str:
    if query_name:
        query = await datasette.get_canned_query(database, query_name, None) or {}
        return f"ketamine-kb: {query.get('title') or query_name}"
    if table:
        described = (data or {}).get("human_description_en")
        return f"ketamine-kb: {table}" + (f" {described}" if described else "")
    return "ketamine-kb: query"


async def render_atom(datasette, columns, rows, request, database, table, query_name, view_name, data):
    db = datasette.get_database(database)

    def absolute(path: str) -> str:
        return datasette.absolute_url(request, path)

    if has_atom_columns(columns):
        names = list(columns)
        entries = [atom_column_entry({c: v for c, v in zip(names, (r[c] for c in names), strict=True)}, absolute)
                   for r in rows]
        entries = [e for e in entries if e is not None]
    else:
        found = study_column(columns, table)
        if found is None or not await has_studies(datasette, database):
            return {"body": "These rows name no studies, and have no atom_id, atom_title and atom_updated columns.\n",
                    "status_code": 400, "content_type": "text/plain; charset=utf-8"}
        ids = column_values(rows, columns, found[0])
        records = await db.execute_fn(lambda conn: read_studies(conn, ids, by=found[1]))
        labels = await _tag_labels(db)
        entries = [study_entry(r, absolute(datasette.urls.row(database, "studies", tilde_encode(str(r["id"])))),
                               labels) for r in records]
    self_url = absolute(request.path + (f"?{request.query_string}" if request.query_string else ""))
    html_url = absolute(_html_path(request))
    body = atom_feed(feed_id=self_url, title=await _title(datasette, database, table, query_name, data),
                     self_url=self_url, html_url=html_url, entries=entries)
    return {"body": body, "status_code": 200, "content_type": CONTENT_TYPE}


def _html_path(request) -> str:
    """The page this feed is of: the same path and arguments, as HTML."""
    path = request.path[: -len(".atom")] if request.path.endswith(".atom") else request.path
    args = [(k, v) for k, v in urllib.parse.parse_qsl(request.query_string or "", keep_blank_values=True)
            if k != "_format"]
    return path + (f"?{urllib.parse.urlencode(args)}" if args else "")


@hookimpl
def register_output_renderer(datasette):
    return {"extension": "atom", "render": render_atom, "can_render": can_render_atom}
