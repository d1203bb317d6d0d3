"""Citation exports of any page of studies, and what a study page needs to be cited.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``.

* **Output renderers** ``.ris``, ``.bibtex``, ``.csljson`` and ``.nbib`` (MEDLINE) on every page
  whose rows name studies: the studies table with any filter, facet or search, a study's row,
  a view or table with a ``study_id``, a canned or hand-written query with a ``study_id``,
  ``id`` or ``pmid`` column. Each study's whole record is read from kb.db by that column
  (``ingest.records.citations``); the answer is a download (``Content-Disposition``) with the
  format's MIME type. A table page exports the rows of that page (``_size=max``: up to
  ``max_returned_rows``), with a ``Link: <…>; rel="next"`` header when there are more.
* **Template functions**: ``kb_cite(database, study_id)`` (Highwire Press ``citation_*`` meta
  tags, a COinS ContextObject, Vancouver and APA references) and ``kb_exports(...)`` (the
  export and feed links of the page being shown).
"""

from __future__ import annotations

from datasette import hookimpl
from datasette.utils import tilde_encode
from markupsafe import Markup, escape

from ingest.records.citations import (
    FORMATS,
    apa_parts,
    coins,
    export,
    file_name,
    highwire_tags,
    read_studies,
    vancouver,
)
from ingest.site.exports import (
    column_values,
    download_base,
    export_links,
    has_studies,
    search_feed_url,
    study_column,
    table_feed_url,
)
from ingest.site.exports import page_url as format_url


async def studies_columns(datasette, database: str) -> set[str]:
    db = datasette.get_database(database)
    if "_kb_studies_columns" not in db.__dict__:
        db.__dict__["_kb_studies_columns"] = {r[1] for r in (await db.execute("pragma table_info(studies)")).rows}
    return db.__dict__["_kb_studies_columns"]


async def records_for(datasette, database: str, columns, rows, table) -> list[dict] | None:
    """The study records the rows name, in their order; None when the rows name no studies."""
    found = study_column(columns, table)
    if found is None:
        return None
    column, by = found
    ids = column_values(rows, columns, column)
    db = datasette.get_database(database)
    return await db.execute_fn(lambda conn: read_studies(conn, ids, by=by))


def can_render_studies(datasette, columns, table, database, view_name):
    async def inner():
        return study_column(columns, table) is not None and await has_studies(datasette, database)

    return inner()


def _text(message: str, status: int) -> dict:
    return {"body": message + "\n", "status_code": status, "content_type": "text/plain; charset=utf-8"}


def renderer(fmt: str):
    async def render(datasette, columns, rows, request, database, table, query_name, view_name, data):
        if not await has_studies(datasette, database) or study_column(columns, table) is None:
            return _text("These rows name no studies (no study_id, id or pmid column).", 400)
        records = await records_for(datasette, database, columns, rows, table)
        if rows and not records:
            return _text("None of these rows is a study in this database.", 404)
        name = file_name(download_base(database, table, query_name, view_name, rows, columns), fmt)
        headers = {"content-disposition": f'attachment; filename="{name}"'}
        next_url = (data or {}).get("next_url")
        if next_url:
            headers["link"] = f'<{next_url}>; rel="next"'
        # A dict, not a Response: Datasette keeps a dict's status (a Response's it sets to the page's own).
        return {"body": export(records, fmt), "content_type": FORMATS[fmt].content_type, "headers": headers,
                "status_code": 200}

    return render


@hookimpl
def register_output_renderer(datasette):
    return [{"extension": name, "render": renderer(name), "can_render": can_render_studies} for name in FORMATS]


# --------------------------------------------------------------------------- templates


def apa_html(record: dict) -> Markup:
    """The APA reference with the journal and volume in italics; every piece of record text escaped."""
    return Markup("").join(Markup("<i>{}</i>").format(text) if italic else escape(text)
                           for text, italic in apa_parts(record))


async def cite_detail(datasette, request, database: str, study_id: str) -> dict | None:
    if not await has_studies(datasette, database):
        return None
    db = datasette.get_database(database)
    found = await db.execute_fn(lambda conn: read_studies(conn, [study_id]))
    if not found:
        return None
    record = found[0]
    path = datasette.urls.row(database, "studies", tilde_encode(str(record["id"])))
    url = datasette.absolute_url(request, path) if request is not None else path
    return {
        "meta": highwire_tags(record, url),
        "coins": coins(record, url),
        "vancouver": vancouver(record),
        "apa": "".join(text for text, _ in apa_parts(record)),
        "apa_html": apa_html(record),
        "exports": export_links(path, "", whole_table=False),
    }


async def page_exports(datasette, request, database: str, table: str | None = None, query: str | None = None,
                       columns=None) -> dict | None:
    """The export and feed links of the table or query page being shown, or None when it has no studies."""
    if request is None or not await has_studies(datasette, database):
        return None
    if table is None and query is None:
        return None
    if study_column(["id"] if table == "studies" else columns, table) is None:
        return None
    path, query_string = request.path, request.query_string
    out = {"formats": export_links(path, query_string, whole_table=table is not None), "feed": None}
    if table == "studies":
        sort = "first_seen" if "first_seen" in await studies_columns(datasette, database) else "pub_date"
        out["feed"] = table_feed_url(path, query_string, sort)
    elif query == "search":
        out["feed"] = search_feed_url(datasette.urls.database(database), request.args.get("q") or "")
    elif query is not None:
        out["feed"] = format_url(path, query_string, "atom")
    return out


@hookimpl
def extra_template_vars(datasette, request):
    cache: dict[tuple, dict | None] = {}

    async def kb_cite(database, study_id):
        key = (database, str(study_id))
        if key not in cache:
            cache[key] = await cite_detail(datasette, request, database, str(study_id))
        return cache[key]

    async def kb_exports(database, table=None, query=None, columns=None):
        return await page_exports(datasette, request, database, table=table, query=query, columns=columns)

    return {"kb_cite": kb_cite, "kb_exports": kb_exports}
