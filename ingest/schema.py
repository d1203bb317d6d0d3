"""The kb.db schema, in one place.

``studies`` holds one row per study (primary key ``id``: the PMID as text for PubMed
records, a source-prefixed id such as ``doi:10.1/x`` for records without one). Child
tables hang off it with foreign keys. JSON-array columns on ``studies`` (``mesh_terms``,
``publication_type_names``, ``keywords``...) give Datasette array facets.
"""

from __future__ import annotations

import sqlite_utils

SCHEMA_VERSION = 1

STUDIES = {
    "id": str,
    "pmid": int,
    "pmid_version": int,
    "doi": str,
    "pmcid": str,
    "title": str,
    "abstract": str,
    "journal": str,
    "iso_abbrev": str,
    "issn": str,
    "volume": str,
    "issue": str,
    "pages": str,
    "year": int,
    "pub_date": str,
    "medline_date": str,
    "languages": str,
    "keywords": str,
    "publication_type_names": str,
    "mesh_terms": str,
    "nct_ids": str,
    "databanks": str,
    "sources": str,
    "first_author": str,
    "author_count": int,
    "is_retracted": int,
    "has_abstract": int,
}

CHILD_TABLES = {
    "abstract_sections": (
        {"study_id": str, "position": int, "label": str, "nlm_category": str, "text": str},
        ("study_id", "position"),
    ),
    "authors": (
        {
            "study_id": str, "position": int, "last_name": str, "fore_name": str,
            "initials": str, "suffix": str, "collective_name": str, "orcid": str,
            "affiliations": str,
        },
        ("study_id", "position"),
    ),
    "mesh_headings": (
        {"study_id": str, "position": int, "descriptor_ui": str, "descriptor": str, "major_topic": int},
        ("study_id", "position"),
    ),
    "mesh_qualifiers": (
        {
            "study_id": str, "heading_position": int, "position": int, "qualifier_ui": str,
            "qualifier": str, "major_topic": int,
        },
        ("study_id", "heading_position", "position"),
    ),
    "publication_types": (
        {"study_id": str, "position": int, "ui": str, "name": str},
        ("study_id", "position"),
    ),
    "chemicals": (
        {"study_id": str, "position": int, "ui": str, "name": str, "registry_number": str},
        ("study_id", "position"),
    ),
    "study_links": (
        {"study_id": str, "position": int, "ref_type": str, "ref_pmid": int, "ref_source": str, "note": str},
        ("study_id", "position"),
    ),
}

INDEXES = [
    ("studies", ["pmid"], True),
    ("studies", ["doi"], False),
    ("studies", ["year"], False),
    ("mesh_headings", ["descriptor"], False),
    ("publication_types", ["name"], False),
    ("study_links", ["ref_pmid"], False),
    ("study_links", ["ref_type"], False),
    ("authors", ["last_name"], False),
]

FTS_COLUMNS = ["title", "abstract"]


def create_schema(db: sqlite_utils.Database) -> None:
    """Create every table, index, FTS table and view. Safe to call on an existing db."""
    db.execute("PRAGMA foreign_keys = ON")
    if "studies" not in db.table_names():
        db["studies"].create(STUDIES, pk="id", not_null={"title"}, defaults={"is_retracted": 0})
    for name, (columns, pk) in CHILD_TABLES.items():
        if name not in db.table_names():
            db[name].create(columns, pk=pk, foreign_keys=[("study_id", "studies", "id")])
    if "ingest_runs" not in db.table_names():
        db["ingest_runs"].create(
            {
                "id": int, "source": str, "mode": str, "query": str, "inputs": str,
                "started": str, "finished": str, "status": str, "records_parsed": int,
                "studies_written": int, "studies_deleted": int, "studies_total": int,
                "errors": str,
            },
            pk="id",
        )
    for table, columns, unique in INDEXES:
        db[table].create_index(columns, unique=unique, if_not_exists=True)
    if not db["studies"].detect_fts():
        db["studies"].enable_fts(FTS_COLUMNS, tokenize="porter", create_triggers=True)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db._kb_dependents = None  # type: ignore[attr-defined]  # tables changed: recompute lazily


def optimise(db: sqlite_utils.Database) -> None:
    """Compact the finished database before it is served read-only."""
    db["studies"].optimize()
    db.execute("ANALYZE")


def dependent_tables(db: sqlite_utils.Database) -> list[str]:
    """Every table with a foreign key to ``studies``: rows to drop when a study is rewritten."""
    return [
        table.name
        for table in db.tables
        if any(fk.other_table == "studies" for fk in table.foreign_keys)
    ]
