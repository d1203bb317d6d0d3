"""The claim-check page: /-/claim-check?claim=... ranks studies as `kb check` does.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. The ranking is the pure
``ingest.claims.check_claim`` run on Datasette's own read-only connection (``db.execute_fn``).
Hybrid ranking is used when the semantic extra and ``kb-vectors.db`` are there, else full-text,
and the page says which. ``?_format=json`` returns the same result as JSON, ``csv`` one row per
study, and ``ris``, ``bibtex``, ``csljson`` or ``nbib`` the studies listed as citations (best first).
Every piece of record text goes through the template's autoescape.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

from datasette import hookimpl
from datasette.utils.asgi import Response

from ingest.claims import ClaimError, check_claim
from ingest.claims.results import CSV_COLUMNS, csv_rows
from ingest.records.citations import FORMATS, export, file_name, read_studies
from ingest.site import served_database

DATABASE = "kb"
MODES = ("auto", "fts", "hybrid")
# What each mode is called on the page: a writer picks how claims are matched, not an algorithm.
MODE_LABELS = {"auto": "best available", "fts": "words only", "hybrid": "words and meaning"}
RESULT_LABELS = {"fts": "matched by words", "hybrid": "matched by words and meaning"}
MAX_LIMIT = 50


@hookimpl
def register_routes():
    return [(r"^/-/claim-check$", claim_check_page)]


def _database(datasette) -> Any:
    return served_database(datasette, DATABASE)


def _limit(value: str | None) -> int:
    try:
        return max(1, min(MAX_LIMIT, int(value or 10)))
    except ValueError:
        return 10


def _load_index(path: str | None) -> Any:
    from ingest.claims.embeddings import SemanticUnavailable, load_index

    if not path:
        raise SemanticUnavailable("the database is not a file")
    return load_index(Path(path))


async def _vectors(db, mode: str) -> tuple[Any, str | None]:
    """The vector index (loaded off the event loop), or None and a one-line reason."""
    if mode == "fts":
        return None, None
    try:
        from ingest.claims.embeddings import SemanticUnavailable
    except ImportError as exc:  # pragma: no cover - the module needs no extra to import
        return None, f"matching by meaning is off ({exc}); claims are matched by words only"
    try:
        return await asyncio.get_running_loop().run_in_executor(None, _load_index, db.path), None
    except SemanticUnavailable as exc:
        return None, f"matching by meaning is off ({exc}); claims are matched by words only."


async def claim_check_page(datasette, request) -> Response:
    claim = (request.args.get("claim") or "").strip()
    mode = request.args.get("mode") or "auto"
    mode = mode if mode in MODES else "auto"
    limit = _limit(request.args.get("limit"))
    db = _database(datasette)
    result, error, note = None, None, None
    if db is None:
        error = "no database is being served"
    elif claim:
        vectors, note = await _vectors(db, mode)
        if mode == "hybrid" and vectors is None:
            error, note = note, None
        else:
            try:
                result = await db.execute_fn(lambda conn: check_claim(conn, claim, limit=limit, vectors=vectors))
            except ClaimError as exc:
                error = str(exc)
    if request.args.get("_format") == "json":
        payload = {"claim": claim, "mode": result.mode if result else None, "note": note, "error": error,
                   "result": result.as_dict() if result else None}
        return Response.json(payload, status=400 if error else 200)
    if request.args.get("_format") == "csv":
        if error or result is None:
            return Response.text(f"Error: {error or 'give a claim'}\n", status=400)
        return _csv_response(result)
    if request.args.get("_format") in FORMATS:
        if error or result is None:
            return Response.text(f"Error: {error or 'give a claim'}\n", status=400)
        return await _citations_response(db, result, request.args.get("_format"))
    html = await datasette.render_template(
        "claim_check.html",
        {"claim": claim, "mode": mode, "modes": [(m, MODE_LABELS[m]) for m in MODES], "mode_labels": RESULT_LABELS,
         "limit": limit, "result": result, "error": error, "citation_formats": FORMATS,
         "note": note, "database": db.name if db is not None else DATABASE},
        request=request,
    )
    return Response.html(html, status=400 if error else 200)


def _csv_response(result) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(csv_rows(result))
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="claim-check.csv"'})


async def _citations_response(db, result, fmt: str) -> Response:
    """The studies listed (not the retracted ones set apart), best first, as RIS, BibTeX, CSL-JSON or MEDLINE."""
    ids = [study.pmid for study in result.results]
    records = await db.execute_fn(lambda conn: read_studies(conn, ids))
    return Response(export(records, fmt), content_type=FORMATS[fmt].content_type,
                    headers={"content-disposition": f'attachment; filename="{file_name("claim-check", fmt)}"'})

