"""The search page, /-/search: studies ranked by relevance with facets, trials and sentences in tabs.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. The queries are
``ingest.site.search`` (pure SQL, run on Datasette's read-only connection under the SQL time
limit); the page is ``templates/search.html``. The same search in other forms, each holding the
page's words, filters and order: ``/-/search.csv`` and ``.json`` (up to ``EXPORT_LIMIT`` studies,
the JSON with every count and facet), ``.ris``, ``.bibtex``, ``.csljson``, ``.nbib`` (citations)
and ``.atom`` (the newest ``FEED_SIZE``).

Template functions for every page: ``kb_search_url(**args)`` (a search URL: an author's studies,
``author="Zarate CA"``; a journal's, ``journal=...``), ``kb_author_name(author_row)`` and
``kb_similar(database, study_id)`` (similar studies for a study page, ``ingest.site.similar``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import urllib.parse
from dataclasses import replace
from pathlib import Path
from typing import Any

from datasette import hookimpl
from datasette.utils import sqlite_timelimit, tilde_encode
from datasette.utils.asgi import Response

from ingest.records.citations import FORMATS, export, file_name, read_studies
from ingest.records.spreadsheet import spreadsheet_safe
from ingest.site import search, served_database, similar
from ingest.site.exports import page_url
from ingest.site.feeds import CONTENT_TYPE, atom_feed, study_entry

DATABASE = "kb"
PATH = "/-/search"
EXPORTS = ("csv", "json", *FORMATS)
STEM = "kb-search"  # the downloaded file's name: kb-search.csv, kb-search.ris...
CSV_COLUMNS = ("study_id", "title", "authors", "journal", "year", "designs", "evidence_level", "sample_size",
               "open_access", "cited_by_count", "pmid", "doi", "url")
VECTOR_WAIT_SECONDS = 2.0  # a study page waits this long for the study vectors on first use, then goes on


@hookimpl
def register_routes():
    return [(r"^/-/search(?:\.(?P<format>[a-z]+))?$", search_route)]


def _database(datasette) -> Any:
    return served_database(datasette, DATABASE)


def _kept(db, key: str, compute):
    """A value computed once per Database object (kb.db is immutable; a replaced file is a new Database)."""
    if db.is_mutable:
        return compute()
    if key not in db.__dict__:
        db.__dict__[key] = compute()
    return db.__dict__[key]


async def labels(db) -> dict[str, str]:
    if "_kb_search_labels" not in db.__dict__ or db.is_mutable:
        found = {}
        if "tags" in await db.table_names():
            found = {r[0]: r[1] for r in (await db.execute("select id, label from tags")).rows if r[1]}
        db.__dict__["_kb_search_labels"] = found
    return db.__dict__["_kb_search_labels"]


def _timed(datasette, fn):
    """``fn(conn)`` under the SQL time limit (Datasette's own limit applies to db.execute alone)."""
    limit = datasette.setting("sql_time_limit_ms") or 1000

    def run(conn: sqlite3.Connection):
        with sqlite_timelimit(conn, limit):
            return fn(conn)

    return run


def _open_access(db, conn: sqlite3.Connection) -> frozenset[int]:
    return _kept(db, "_kb_open_access", lambda: search.open_access_rowids(conn))


async def search_route(datasette, request) -> Response:
    fmt = request.url_vars.get("format") or "html"
    if fmt not in ("html", "atom", *EXPORTS):
        return Response.text(f"Error: unknown format .{fmt[:20]} (use {', '.join(EXPORTS)} or atom)\n", status=404)
    db = _database(datasette)
    if db is None:
        return Response.text("Error: no database is being served\n", status=404)
    try:
        args = search.parse_args({k: request.args.getlist(k) for k in request.args.keys()})
    except search.SearchError as exc:
        return await _failed(datasette, request, fmt, str(exc), search.SearchArgs(), 400)
    names = await labels(db)
    try:
        if fmt == "html":
            page = await db.execute_fn(_timed(datasette, lambda conn: search.search_page(
                conn, args, names, _open_access(db, conn))))
            return await _html(datasette, request, db, args, page)
        return await _export(datasette, request, db, args, names, fmt)
    except search.SearchError as exc:
        return await _failed(datasette, request, fmt, str(exc), args, 400)
    except sqlite3.OperationalError as exc:
        if "interrupted" not in str(exc):
            raise
        return await _failed(datasette, request, fmt, "the search took too long: add words or filters", args, 503)


async def _failed(datasette, request, fmt: str, message: str, args: search.SearchArgs, status: int) -> Response:
    if fmt != "html":
        return Response.text(f"Error: {message}\n", status=status)
    return await _html(datasette, request, None, args, None, error=message, status=status)


# --------------------------------------------------------------------------- the page


def links(request, args: search.SearchArgs) -> dict:
    """The page's export and feed links: this search in each format (the page number left out)."""
    query = urllib.parse.urlencode(args.pairs())
    exports = [{"format": f, "label": f.upper() if f in ("csv", "json") else FORMATS[f].label,
                "url": page_url(PATH, query, f, drop={"page"})} for f in EXPORTS]
    feed = page_url(PATH, query, "atom", drop={"page", "sort", "tab"})
    return {"exports": exports, "feed": feed}


async def _html(datasette, request, db, args: search.SearchArgs, page, error: str | None = None,
                status: int = 200) -> Response:
    context = {
        "args": args, "page": page, "error": error, "facets": search.FACETS, "sorts": search.SORTS,
        "tabs": search.TABS, "page_size": search.PAGE_SIZE, "match_cap": search.MATCH_CAP,
        "count_cap": search.COUNT_CAP, "export_limit": search.EXPORT_LIMIT, "links": links(request, args),
        "database": db.name if db is not None else DATABASE, "search_path": PATH,
        "active": _active_filters(args, await labels(db) if db is not None else {}),
    }
    html = await datasette.render_template("search.html", context, request=request)
    return Response.html(html, status=status)


def _active_filters(args: search.SearchArgs, names: dict[str, str]) -> list[dict]:
    """The filters in force, each with the link that removes it."""
    out = [{"label": f"Author: {args.author}", "url": args.without("author")}] if args.author else []
    if args.journal:
        out.append({"label": f"Journal: {args.journal}", "url": args.without("journal")})
    for key, value in args.filters:
        facet = search.FACET_BY_KEY[key]
        shown = {"array": names.get(value, value), "flag": search.FLAG_LABELS.get(value, value),
                 "level": f"level {value}"}.get(facet.kind, value)
        out.append({"label": f"{facet.label}: {shown}", "url": args.toggled(key, value)})
    return out


# --------------------------------------------------------------------------- exports


async def _export(datasette, request, db, args: search.SearchArgs, names: dict[str, str], fmt: str) -> Response:
    if fmt == "atom":
        args = replace(args, sort="newest", tab="studies", page=1)
    limit = search.FEED_SIZE if fmt == "atom" else search.EXPORT_LIMIT

    def run(conn):
        ids, selection = search.export_ids(conn, args, limit, _open_access(db, conn))
        facets = search.facet_counts(selection, args, names) if fmt == "json" else []
        found = _rows(conn, ids, names) if fmt in ("csv", "json") else read_studies(conn, ids)
        return found, selection, facets

    found, selection, facets = await db.execute_fn(_timed(datasette, run))
    if fmt == "atom":
        return _atom(datasette, request, db, args, found, names)
    if fmt in FORMATS:
        return Response(export(found, fmt), content_type=FORMATS[fmt].content_type,
                        headers={"content-disposition": f'attachment; filename="{file_name(STEM, fmt)}"'})
    if fmt == "csv":
        return _csv(found)
    return _json(args, selection, facets, found)


def _csv(rows: list[dict]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{STEM}.csv"'})


def _json(args: search.SearchArgs, selection: search.Selection, facets: list, rows: list[dict]) -> Response:
    """The studies exported, with the search's counts and every facet."""
    payload = {"q": args.q, "filters": [list(p) for p in args.filters], "author": args.author or None,
               "journal": args.journal or None, "sort": args.sort, "total": len(selection.rows),
               "capped": selection.capped, "hidden_off_topic": selection.hidden_off_topic,
               "facets": {f.facet.key: [{"value": v.value, "label": v.label, "count": v.count,
                                         "selected": v.selected} for v in f.values] for f in facets},
               "studies": rows}
    return Response(json.dumps(payload, ensure_ascii=False), content_type="application/json; charset=utf-8")


def _rows(conn: sqlite3.Connection, ids: list[str], names: dict[str, str]) -> list[dict]:
    """The exported studies, one flat row each (CSV and JSON)."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    rowids = dict(conn.execute(f"select id, rowid from studies where id in ({marks})", ids).fetchall())
    hits = search.study_hits(conn, [rowids[i] for i in ids if i in rowids], "", names)
    out = []
    for hit in hits:
        row = hit.row
        out.append({
            "study_id": row["id"], "title": row["title"],
            "authors": "; ".join(a.name for a in hit.authors) + ("; et al." if hit.more_authors else ""),
            "journal": row.get("journal"), "year": row.get("year"),
            "designs": "; ".join(d["label"] for d in hit.designs), "evidence_level": row.get("evidence_level"),
            "sample_size": row.get("sample_size"), "open_access": row.get("is_open_access"),
            "cited_by_count": row.get("cited_by_count"), "pmid": row.get("pmid"), "doi": row.get("doi"),
            "url": f"/{DATABASE}/studies/{tilde_encode(str(row['id']))}",
        })
    return out


def _atom(datasette, request, db, args: search.SearchArgs, records: list[dict], names: dict[str, str]) -> Response:
    def absolute(path: str) -> str:
        return datasette.absolute_url(request, path)

    entries = [study_entry(r, absolute(datasette.urls.row(db.name, "studies", tilde_encode(str(r["id"])))), names)
               for r in records]
    query = urllib.parse.urlencode(args.pairs())
    self_url = absolute(request.path + (f"?{request.query_string}" if request.query_string else ""))
    words = f" “{args.q}”" if args.q else ""
    body = atom_feed(feed_id=self_url, title=f"ketamine-kb: new studies{words}", self_url=self_url,
                     html_url=absolute(PATH + (f"?{query}" if query else "")), entries=entries)
    return Response(body, content_type=CONTENT_TYPE)


# --------------------------------------------------------------------------- template functions


def search_url(**changes) -> str:
    """A search URL from scratch: ``kb_search_url(author="Zarate CA")``, ``kb_search_url(journal=...)``."""
    known = {k: v for k, v in changes.items() if k in ("q", "author", "journal", "sort", "tab") and v}
    filters = tuple((k, str(v)) for k, v in changes.items() if k in search.FACET_BY_KEY and v)
    return search.SearchArgs(**known, filters=filters).url(PATH)


def author_name(author) -> str:
    """An author row of the authors table as the search names them ("Zarate CA", or a group's name)."""
    get = author.get if hasattr(author, "get") else (lambda k: author[k])
    return search.author_name(get("last_name"), get("initials"), get("fore_name"), get("collective_name"))


async def similar_studies(datasette, database: str, study_id: str) -> dict:
    db = datasette.get_database(database)
    names = await labels(db)
    stats = _kept(db, "_kb_tag_stats", similar.TagStats)
    side = _vectors_path(db)
    vectors = None
    if side is not None:  # waited for off the event loop
        vectors = await asyncio.get_running_loop().run_in_executor(
            None, similar.VECTORS.get, side, VECTOR_WAIT_SECONDS)

    def run(conn):
        by_tags = similar.described(conn, similar.by_tags(conn, study_id, stats), names)
        by_vectors = similar.described(conn, similar.by_vectors(conn, study_id, vectors), names)
        return {"tags": by_tags, "vectors": by_vectors, "vectors_available": vectors is not None}

    found = await db.execute_fn(_timed(datasette, run))
    for group in ("tags", "vectors"):
        for item in found[group]:
            item["url"] = datasette.urls.row(database, "studies", tilde_encode(str(item["id"])))
    return found


def _vectors_path(db) -> Path | None:
    if not db.path:
        return None
    from ingest.claims.embeddings import vectors_path

    side = vectors_path(Path(db.path).resolve())
    return side if side.exists() else None


@hookimpl
def extra_template_vars(datasette):
    cache: dict[tuple, dict] = {}

    async def kb_similar(database, study_id):
        key = (database, str(study_id))
        if key not in cache:
            cache[key] = await similar_studies(datasette, database, str(study_id))
        return cache[key]

    def kb_row_url(database, table, pk):
        return datasette.urls.row(database, table, tilde_encode(str(pk)))

    return {"kb_search_url": search_url, "kb_author_name": author_name, "kb_similar": kb_similar,
            "kb_row_url": kb_row_url}
