"""Reading and writing whole study records in kb.db.

A record is always written whole: the ``studies`` row is replaced and every child row
deleted and re-inserted, so a value removed upstream (an abstract, a DOI, a MeSH term)
really disappears. Reading reconstructs the same dict, so a later import can merge with it.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib

import sqlite_utils

from ..records.merge import merge_sources, source_key, with_source_record
from .schema import CHILD_TABLES, dependent_tables

RETRACTION_TYPES = {"retracted publication"}


def study_id_for(record: dict) -> str:
    if record.get("pmid"):
        return str(record["pmid"])
    if record.get("doi"):
        return f"doi:{record['doi']}"
    if record.get("source_id"):
        return str(record["source_id"])
    raise ValueError("record has neither a PMID nor a DOI")


def resolve_study_id(db: sqlite_utils.Database, record: dict) -> str:
    """The id the record should live under: an existing study with its PMID or DOI, else a new id."""
    if record.get("pmid"):
        return str(record["pmid"])
    if record.get("doi"):
        row = db.execute("select id from studies where doi = ? limit 1", [record["doi"]]).fetchone()
        if row:
            return row[0]
    return study_id_for(record)


def is_retracted(record: dict) -> bool:
    if any(c.get("ref_type") == "RetractionIn" for c in record.get("comments_corrections") or []):
        return True
    return any(
        (p.get("name") or "").lower() in RETRACTION_TYPES for p in record.get("publication_types") or []
    )


def _flag(value) -> int | None:
    return None if value is None else int(bool(value))


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def first_seen_now() -> str:
    """A study's ``first_seen`` stamp: this moment, UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def study_row(study_id: str, record: dict) -> dict:
    authors = record.get("authors") or []
    first = authors[0] if authors else {}
    row = {
        "id": study_id,
        "pmid": record.get("pmid"),
        "pmid_version": record.get("pmid_version"),
        "doi": record.get("doi"),
        "pmcid": record.get("pmcid"),
        "title": record.get("title") or "",
        "abstract": record.get("abstract") or None,
        "journal": record.get("journal") or None,
        "iso_abbrev": record.get("iso_abbrev") or None,
        "issn": record.get("issn") or None,
        "volume": record.get("volume") or None,
        "issue": record.get("issue") or None,
        "pages": record.get("pages") or None,
        "year": record.get("year"),
        "pub_date": record.get("pub_date"),
        "medline_date": record.get("medline_date"),
        "entry_date": record.get("entry_date"),
        "languages": _json(record.get("languages") or []),
        "keywords": _json(record.get("keywords") or []),
        "publication_type_names": _json([p["name"] for p in record.get("publication_types") or []]),
        "mesh_terms": _json([m["descriptor"] for m in record.get("mesh") or []]),
        "nct_ids": _json(record.get("nct_ids") or []),
        "databanks": _json(record.get("databanks") or []),
        "sources": _json(record.get("sources") or []),
        "first_author": first.get("collective_name")
        or " ".join(x for x in (first.get("last_name"), first.get("initials")) if x)
        or None,
        "author_count": len(authors),
        "is_retracted": int(is_retracted(record)),
        "has_abstract": int(bool(record.get("abstract"))),
        "europepmc_id": record.get("source_id"),
        "is_open_access": _flag(record.get("is_open_access")),
        "cited_by_count": record.get("cited_by_count"),
        "is_preprint": _flag(record.get("is_preprint")),
    }
    return row


def section_rows(study_id: str, record: dict) -> list[dict]:
    """abstract_sections rows. A section found in the stored abstract (in order, as records.join_sections
    writes it) is stored as where it is there (text_start, 1-based, and text_length, in characters, as
    SQLite's substr counts them) and its text NULL: abstract_sections_text reads it back."""
    abstract = record.get("abstract") or ""
    searchable = "\x00" not in abstract  # SQLite's text functions stop at a NUL
    rows, cursor = [], 0
    for i, s in enumerate(record.get("abstract_sections") or []):
        text = s["text"]
        row = {"study_id": study_id, "position": i, "label": s.get("label"), "nlm_category": s.get("nlm_category"),
               "text": text, "text_start": None, "text_length": None}
        at = abstract.find(text, cursor) if searchable and text else -1
        if at >= 0:
            row.update(text=None, text_start=at + 1, text_length=len(text))
            cursor = at + len(text)
        rows.append(row)
    return rows


def child_rows(study_id: str, record: dict) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {name: [] for name in CHILD_TABLES}
    rows["abstract_sections"] = section_rows(study_id, record)
    for i, a in enumerate(record.get("authors") or []):
        rows["authors"].append(
            {"study_id": study_id, "position": i, **{k: a.get(k) for k in (
                "last_name", "fore_name", "initials", "suffix", "collective_name", "orcid")},
             "affiliations": _json(a.get("affiliations") or [])}
        )
    for i, m in enumerate(record.get("mesh") or []):
        rows["mesh_headings"].append(
            {"study_id": study_id, "position": i, "descriptor_ui": m.get("descriptor_ui"),
             "descriptor": m["descriptor"], "major_topic": int(bool(m.get("major")))}
        )
        for j, q in enumerate(m.get("qualifiers") or []):
            rows["mesh_qualifiers"].append(
                {"study_id": study_id, "heading_position": i, "position": j,
                 "qualifier_ui": q.get("ui"), "qualifier": q["name"],
                 "major_topic": int(bool(q.get("major")))}
            )
    for i, p in enumerate(record.get("publication_types") or []):
        rows["publication_types"].append(
            {"study_id": study_id, "position": i, "ui": p.get("ui"), "name": p["name"]}
        )
    for i, c in enumerate(record.get("chemicals") or []):
        rows["chemicals"].append(
            {"study_id": study_id, "position": i, "ui": c.get("ui"), "name": c["name"],
             "registry_number": c.get("registry_number")}
        )
    for i, c in enumerate(record.get("comments_corrections") or []):
        rows["study_links"].append(
            {"study_id": study_id, "position": i, "ref_type": c.get("ref_type"),
             "ref_pmid": c.get("pmid"), "ref_source": c.get("source"), "note": c.get("note")}
        )
    return rows


def delete_children(db: sqlite_utils.Database, study_id: str) -> None:
    """Drop every row that hangs off a study (derived rows such as tags are rebuilt after)."""
    names = getattr(db, "_kb_dependents", None)
    if names is None:
        names = db._kb_dependents = dependent_tables(db)  # type: ignore[attr-defined]
    for name in names:
        db.execute(f"delete from [{name}] where study_id = ?", [study_id])


def pack_record(record: dict) -> bytes:
    """A record as source_records keeps it: compact JSON, compressed (a quarter of the size)."""
    return zlib.compress(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode())


def unpack_record(blob: bytes) -> dict:
    return json.loads(zlib.decompress(blob))


def source_record_rows(study_id: str, packed: dict[str, bytes] | None) -> list[dict]:
    """source_records rows of a study several sources contributed to (none for a single source:
    its record is the study's own, read back by :func:`read_record`)."""
    if not packed or len(packed) < 2:
        return []
    return [{"study_id": study_id, "position": i, "source": source, "record": blob}
            for i, (source, blob) in enumerate(packed.items())]


def read_source_records(db: sqlite_utils.Database, study_id: str) -> dict[str, dict]:
    """The study's records by source, as kb.db holds them (see :func:`source_record_rows`)."""
    stored = db.execute("select source, record from source_records where study_id = ? order by position",
                        [study_id]).fetchall()
    if stored:
        return {source: unpack_record(blob) for source, blob in stored}
    existing = read_record(db, study_id)
    # One source, or a kb.db written before source_records: the stored study as one record.
    return {source_key(existing): existing} if existing else {}


def write_record(db: sqlite_utils.Database, study_id: str, record: dict, derivers: list = (),
                 by_source: dict[str, dict] | None = None) -> None:
    """Replace the study, its child rows and its derived rows. Call inside a transaction.

    ``by_source``: the records by source ``record`` was merged from, kept for later imports.
    """
    first_seen = db.execute("select first_seen from studies where id = ?", [study_id]).fetchone()
    delete_children(db, study_id)
    row = study_row(study_id, record)
    row["first_seen"] = (first_seen[0] if first_seen else None) or first_seen_now()
    tables = child_rows(study_id, record)
    if by_source and len(by_source) > 1:
        tables["source_records"] = source_record_rows(study_id, {s: pack_record(r) for s, r in by_source.items()})
    for deriver in derivers:
        columns, extra = deriver.derive(study_id, record)
        row.update(columns)
        for name, rows in extra.items():
            tables.setdefault(name, []).extend(rows)
    db["studies"].insert(row, replace=True)
    for name, rows in tables.items():
        if rows:
            db[name].insert_all(rows)


def delete_study(db: sqlite_utils.Database, study_id: str) -> bool:
    exists = db.execute("select 1 from studies where id = ?", [study_id]).fetchone()
    if not exists:
        return False
    delete_children(db, study_id)
    db.execute("delete from studies where id = ?", [study_id])
    return True


def read_record(db: sqlite_utils.Database, study_id: str) -> dict | None:
    """The stored record of one study, in the same shape the parsers produce."""
    rows = list(db.query("select * from studies where id = ?", [study_id]))
    if not rows:
        return None
    row = rows[0]

    def children(table: str, order: str = "position") -> list[dict]:
        return list(db.query(f"select * from [{table}] where study_id = ? order by {order}", [study_id]))

    qualifiers: dict[int, list[dict]] = {}
    for q in children("mesh_qualifiers", "heading_position, position"):
        qualifiers.setdefault(q["heading_position"], []).append(
            {"ui": q["qualifier_ui"], "name": q["qualifier"], "major": bool(q["major_topic"])}
        )
    return {
        "pmid": row["pmid"],
        "pmid_version": row["pmid_version"],
        "doi": row["doi"],
        "pmcid": row["pmcid"],
        "title": row["title"] or "",
        "abstract": row["abstract"] or "",
        "abstract_sections": [
            {"label": s["label"], "nlm_category": s["nlm_category"], "text": s["text"]}
            for s in children("abstract_sections_text")
        ],
        **{k: row[k] or "" for k in ("journal", "iso_abbrev", "issn", "volume", "issue", "pages")},
        "year": row["year"],
        "source_id": row["europepmc_id"],
        "is_open_access": None if row["is_open_access"] is None else bool(row["is_open_access"]),
        "cited_by_count": row["cited_by_count"],
        "is_preprint": None if row["is_preprint"] is None else bool(row["is_preprint"]),
        "pub_date": row["pub_date"],
        "medline_date": row["medline_date"],
        "entry_date": row.get("entry_date"),
        "languages": json.loads(row["languages"] or "[]"),
        "keywords": json.loads(row["keywords"] or "[]"),
        "nct_ids": json.loads(row["nct_ids"] or "[]"),
        "databanks": json.loads(row["databanks"] or "[]"),
        "sources": json.loads(row["sources"] or "[]"),
        "authors": [
            {**{k: a[k] for k in ("last_name", "fore_name", "initials", "suffix", "collective_name", "orcid")},
             "affiliations": json.loads(a["affiliations"] or "[]")}
            for a in children("authors")
        ],
        "mesh": [
            {"descriptor_ui": m["descriptor_ui"], "descriptor": m["descriptor"],
             "major": bool(m["major_topic"]), "qualifiers": qualifiers.get(m["position"], [])}
            for m in children("mesh_headings")
        ],
        "publication_types": [{"ui": p["ui"], "name": p["name"]} for p in children("publication_types")],
        "chemicals": [
            {"ui": c["ui"], "name": c["name"], "registry_number": c["registry_number"]}
            for c in children("chemicals")
        ],
        "comments_corrections": [
            {"ref_type": c["ref_type"], "pmid": c["ref_pmid"], "source": c["ref_source"], "note": c["note"]}
            for c in children("study_links")
        ],
    }


def upsert_merged(db: sqlite_utils.Database, record: dict, derivers: list = (),
                  incoming: dict[str, dict] | None = None) -> tuple[str, dict]:
    """Merge ``record`` into whatever kb.db already holds for that study, then write it whole.

    ``incoming``: the records by source ``record`` was merged from (default: ``record`` alone).
    Each replaces its own source's earlier record of the study whole (a corrected record drops
    what it no longer says); records of different sources are merged field by field.
    """
    study_id = resolve_study_id(db, record)
    by_source = read_source_records(db, study_id)
    for source_record in (incoming or {source_key(record): record}).values():
        by_source = with_source_record(by_source, source_record)
    merged = merge_sources(by_source)
    write_record(db, study_id, merged, derivers, by_source)
    return study_id, merged
