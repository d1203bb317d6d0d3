"""The kb.db schema, in one place.

``studies`` holds one row per study (primary key ``id``: the PMID as text for PubMed
records, a source-prefixed id such as ``doi:10.1/x`` for records without one). Child
tables hang off it with foreign keys. JSON-array columns on ``studies`` (``mesh_terms``,
``publication_type_names``, ``keywords``...) give Datasette array facets.
"""

from __future__ import annotations

import sqlite_utils

SCHEMA_VERSION = 9  # 2: evidence levels, synthesis counts, on_topic; 3: sentence_contexts, source_records;
#                     4: findings, finding_quantities; 5: entry_date, first_seen, ingest_runs.source_counts
#                     6: kb_order; 7: idx_studies_tag_columns holds languages, is_open_access, journal
#                     8: text stored once: study_tags.evidence, findings.sentence, finding_quantities.sentence
#                        NULL where they are the study's sentence at sentence_index, abstract_sections.text
#                        NULL where it is studies.abstract from text_start for text_length characters; the
#                        *_text views (and the {kind}_tags views) give the text back. Older rows keep their
#                        text and read the same through the views, so an older kb.db needs no rewrite.
#                     9: sentences.text NULL where the sentence is the title or a stretch of the abstract
#                        (text_start, text_length); sentences_text and sentences_in_context give it back.
#                        No study_tags (kind) index; a fresh build is compacted (VACUUM INTO);
#                        facet_counts, facet_columns and facet_pair_counts.

# A studies row (about 3 kB with its abstract) fills most of a 4 kB page and leaves the rest unused:
# larger pages hold several rows each (measured in docs/scaling.md, "kb.db size").
PAGE_SIZE = 16384

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
    # When the study entered PubMed (or Europe PMC), and when this kb.db first held it: kept
    # across rebuilds and updates (the feeds and "new since" queries read it).
    "entry_date": str,
    "first_seen": str,
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
    # From Europe PMC, when it contributed.
    "europepmc_id": str,
    "is_open_access": int,
    "cited_by_count": int,
    "is_preprint": int,
    # Tags, one JSON array per kind (Datasette array facets), filled by the tagger.
    "indications": str,
    "mechanisms": str,
    "side_effects": str,
    "side_effects_absent": str,
    "designs": str,
    "drugs": str,
    "routes": str,
    "populations": str,
    "sample_size": int,
    "sample_size_evidence": str,
    # What the study is: its design's evidence level, a secondary analysis's parent design,
    # a synthesis's counts, and whether it is about ketamine at all.
    "evidence_level": int,
    "evidence_level_label": str,
    "parent_design": str,
    "studies_included": int,
    "studies_included_evidence": str,
    "participants_pooled": int,
    "participants_pooled_evidence": str,
    "on_topic": int,
    "on_topic_evidence": str,
}

TAGS = {"id": str, "kind": str, "label": str, "definition": str, "mesh_ids": str, "mesh_names": str,
        "publication_types": str, "patterns": str, "evidence_level": int}

TAG_COLUMNS = {
    "indication": "indications", "mechanism": "mechanisms", "side_effect": "side_effects",
    "design": "designs", "drug": "drugs", "route": "routes", "population": "populations",
}

CHILD_TABLES = {
    # text: NULL where the section is studies.abstract from text_start (1-based, in characters) for
    # text_length characters, as it is when the abstract is the sections joined (records.join_sections);
    # abstract_sections_text reads it back.
    "abstract_sections": (
        {"study_id": str, "position": int, "label": str, "nlm_category": str, "text": str,
         "text_start": int, "text_length": int},
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
    # What each study found (tagging/findings.py): one row per outcome a result sentence reports on,
    # with the way it went, and one row per quantity (a rate in %, a time in hours). sentence: NULL where
    # it is the study's sentence at sentence_index (findings_text / finding_quantities_text read it back).
    "findings": (
        {"study_id": str, "position": int, "sentence_index": int, "section": str, "outcome": str,
         "outcome_label": str, "direction": str, "hedged": int, "comparison": int, "tag_id": str, "sentence": str},
        ("study_id", "position"),
    ),
    "finding_quantities": (
        {"study_id": str, "position": int, "sentence_index": int, "section": str, "type": str, "value": float,
         "unit": str, "text": str, "denominator": int, "sentence": str},
        ("study_id", "position"),
    ),
    # A study that several sources contributed to: each source's own record (zlib-compressed
    # JSON, see studies.pack_record), in arrival order, so that a later record of one source
    # replaces that source's alone (records.merge).
    "source_records": (
        {"study_id": str, "position": int, "source": str, "record": bytes},
        ("study_id", "position"),
    ),
}

INDEXES = [
    ("studies", ["pmid"], True),
    ("studies", ["doi"], False),
    ("studies", ["year"], False),
    ("studies", ["evidence_level"], False),
    ("studies", ["on_topic"], False),
    ("mesh_headings", ["descriptor"], False),
    ("publication_types", ["name"], False),
    ("study_links", ["ref_pmid"], False),
    ("study_links", ["ref_type"], False),
    ("authors", ["last_name"], False),
    ("study_tags", ["tag_id", "negated"], False),
    # No index on study_tags (kind) since schema 9: a kind's rows are found by its tags' ids
    # (tag_id in (select id from tags where kind = ...), idx_study_tags_tag_id_negated), at 250 bytes
    # a study less. An older kb.db keeps its own.
    # No index on findings (outcome, direction) since schema 8: nothing selects findings by outcome (the study
    # page reads them by study), and it cost 126 bytes a study. An older kb.db keeps its own.
    ("finding_quantities", ["type"], False),
    # A narrow copy of the studies' year and tag columns, in year order: the studies page in year order
    # without sorting whole rows (abstracts and all), its year and array facets,
    # ?designs__arraycontains= filters and the dashboard's charts read this (about 150 bytes a study)
    # instead of the rows (about 5 kB with the abstract, the tag columns behind it in overflow pages).
    # Languages, open access and journal too: the studies page's other default facets.
    ("studies", ["on_topic", "year", "designs", "drugs", "indications", "side_effects", "routes", "populations",
                 "mechanisms", "side_effects_absent", "evidence_level_label", "languages", "is_open_access",
                 "journal", "id"], False,
     "idx_studies_tag_columns"),
]

# Text stored once (schema 8): a row whose text is a sentence of the study, or a stretch of its abstract,
# stores NULL and points at it (sentence_index, text_start/text_length). These views give the text back,
# as the rows held it before; a row that keeps its own text (older kb.db, evidence that is a MeSH heading,
# a build without the sentence index) is read as it is. What reads the text reads these views.
_SENTENCE_OF = ("left join sentences se on {alias}.{column} is null and se.study_id = {alias}.study_id "
                "and se.position = {alias}.sentence_index "
                "left join studies sx on se.text is null and sx.id = se.study_id")


def sentence_text_sql(sentence: str, study: str) -> str:
    """The text of sentence row ``sentence``: its own, or (schema 9) the stretch of its study's
    title or abstract it points at, ``study`` being that study's row."""
    return (f"coalesce({sentence}.text, substr(iif({sentence}.section_kind = 'title', {study}.title, "
            f"{study}.abstract), {sentence}.text_start, {sentence}.text_length))")


_SE_TEXT = sentence_text_sql("se", "sx")
TEXT_VIEWS = {
    "study_tags_text": f"""
select st.study_id, st.tag_id, st.position, st.kind, st.source, coalesce(st.evidence, {_SE_TEXT}) as evidence,
       st.section, st.negated, st.sentence_index
from study_tags st
{_SENTENCE_OF.format(alias="st", column="evidence")}
""",
    "findings_text": f"""
select f.study_id, f.position, f.sentence_index, f.section, f.outcome, f.outcome_label, f.direction, f.hedged,
       f.comparison, f.tag_id, coalesce(f.sentence, {_SE_TEXT}) as sentence
from findings f
{_SENTENCE_OF.format(alias="f", column="sentence")}
""",
    "finding_quantities_text": f"""
select q.study_id, q.position, q.sentence_index, q.section, q.type, q.value, q.unit, q.text, q.denominator,
       coalesce(q.sentence, {_SE_TEXT}) as sentence
from finding_quantities q
{_SENTENCE_OF.format(alias="q", column="sentence")}
""",
    "abstract_sections_text": """
select a.study_id, a.position, a.label, a.nlm_category,
       coalesce(a.text, substr(s.abstract, a.text_start, a.text_length)) as text
from abstract_sections a
left join studies s on a.text is null and s.id = a.study_id
""",
}

# One view per tag kind: each tagged study with its tag, source and evidence sentence.
TAG_VIEW_SQL = f"""
select st.study_id, s.title, s.year, t.id as tag_id, t.label as {{kind}}, st.negated,
       st.source, st.section, coalesce(st.evidence, {_SE_TEXT}) as evidence
from study_tags st
join tags t on t.id = st.tag_id
join studies s on s.id = st.study_id
{_SENTENCE_OF.format(alias="st", column="evidence")}
where st.tag_id in (select id from tags where kind = '{{kind}}')
"""

FTS_COLUMNS = ["title", "abstract"]


FTS_TABLES = {
    "studies": FTS_COLUMNS,
    "trials": ["title", "official_title", "brief_summary", "conditions", "intervention_names"],
}

# The sentence index: each sentence with its study's context (stored once per study, in
# sentence_contexts), read through a view. A sentence's text is stored once too (schema 9): the
# sentence row points at the stretch of its study's title or abstract (sentence_text_sql), so its
# index entry is deleted while that study row still holds the text (db/studies.delete_children runs
# before the study row is replaced or deleted). Triggers keep the index equal to the view whichever
# table changes; a study's context row is never replaced in place (INSERT OR REPLACE would skip
# the delete triggers), so that is refused.
_NEW_TEXT, _OLD_TEXT = (
    f"coalesce({row}.text, (select substr(iif({row}.section_kind = 'title', title, abstract), {row}.text_start, "
    f"{row}.text_length) from studies where id = {row}.study_id))" for row in ("new", "old"))
SENTENCE_VIEWS_SQL = f"""
create view sentences_text as
select s.rowid as rowid, s.study_id, s.position, s.section, s.section_kind, {sentence_text_sql("s", "st")} as text,
       s.context
from sentences s left join studies st on s.text is null and st.id = s.study_id;

create view sentences_in_context as
select s.rowid as rowid, s.study_id, s.position, s.section, s.section_kind, {sentence_text_sql("s", "st")} as text,
       coalesce(s.context, c.context) as context
from sentences s left join studies st on s.text is null and st.id = s.study_id
left join sentence_contexts c on c.study_id = s.study_id;
"""
SENTENCES_FTS_TABLE_SQL = """
create virtual table sentences_fts using fts5(text, context, tokenize='porter', content='sentences_in_context');
insert into sentences_fts (sentences_fts) values ('rebuild');
"""
SENTENCE_TRIGGERS_SQL = f"""
create trigger sentences_fts_insert after insert on sentences begin
  insert into sentences_fts (rowid, text, context) values (new.rowid, {_NEW_TEXT},
    coalesce(new.context, (select context from sentence_contexts where study_id = new.study_id)));
end;
create trigger sentences_fts_delete after delete on sentences begin
  insert into sentences_fts (sentences_fts, rowid, text, context) values ('delete', old.rowid, {_OLD_TEXT},
    coalesce(old.context, (select context from sentence_contexts where study_id = old.study_id)));
end;
create trigger sentences_fts_update after update on sentences begin
  insert into sentences_fts (sentences_fts, rowid, text, context) values ('delete', old.rowid, {_OLD_TEXT},
    coalesce(old.context, (select context from sentence_contexts where study_id = old.study_id)));
  insert into sentences_fts (rowid, text, context) values (new.rowid, {_NEW_TEXT},
    coalesce(new.context, (select context from sentence_contexts where study_id = new.study_id)));
end;

create trigger sentence_contexts_no_replace before insert on sentence_contexts
when exists (select 1 from sentence_contexts where study_id = new.study_id) begin
  select raise(abort, 'a study context is deleted before it is written again');
end;
create trigger sentence_contexts_fts_insert after insert on sentence_contexts begin
  insert into sentences_fts (sentences_fts, rowid, text, context)
    select 'delete', rowid, text, null from sentences_text where study_id = new.study_id and context is null;
  insert into sentences_fts (rowid, text, context)
    select rowid, text, new.context from sentences_text where study_id = new.study_id and context is null;
end;
create trigger sentence_contexts_fts_delete after delete on sentence_contexts begin
  insert into sentences_fts (sentences_fts, rowid, text, context)
    select 'delete', rowid, text, old.context from sentences_text where study_id = old.study_id and context is null;
  insert into sentences_fts (rowid, text, context)
    select rowid, text, null from sentences_text where study_id = old.study_id and context is null;
end;
create trigger sentence_contexts_fts_update after update on sentence_contexts begin
  insert into sentences_fts (sentences_fts, rowid, text, context)
    select 'delete', rowid, text, old.context from sentences_text where study_id = old.study_id and context is null;
  insert into sentences_fts (rowid, text, context)
    select rowid, text, new.context from sentences_text where study_id = new.study_id and context is null;
end;
"""
SENTENCE_TRIGGERS = ("sentences_fts_insert", "sentences_fts_delete", "sentences_fts_update",
                     "sentence_contexts_no_replace", "sentence_contexts_fts_insert", "sentence_contexts_fts_delete",
                     "sentence_contexts_fts_update")


def create_fts(db: sqlite_utils.Database) -> None:
    """FTS5 (porter) for every searchable table, kept in sync by triggers.

    A fresh build calls this after bulk loading: indexing once is far faster than
    updating the index row by row through the triggers.
    """
    for table, columns in FTS_TABLES.items():
        if not db[table].detect_fts():
            db[table].enable_fts(columns, tokenize="porter", create_triggers=True)
    _create_sentences_fts(db)
    # Per-stem document counts of the sentence index, for the claim checker (ingest.term_stats).
    db.execute("create virtual table if not exists sentences_fts_vocab using fts5vocab(sentences_fts, 'row')")


TERM_DOCS_SHARE = 0.01  # sentences_term_docs keeps the stems in at least this share of sentences...
TERM_DOCS_ROWS = 1000  # ...or in at least this many


def refresh_term_docs(db: sqlite_utils.Database) -> None:
    """Copy the counts of the sentence index's common stems into a plain table.

    fts5vocab counts a stem's sentences by walking its whole posting list (a tenth of a second
    for a common stem in a million-study index); the claim checker asks for several per claim.
    A stem missing from the table is in fewer sentences than the threshold it records.
    """
    total = db.execute("select count(*) from sentences").fetchone()[0]
    threshold = max(1, min(TERM_DOCS_ROWS, int(total * TERM_DOCS_SHARE)))
    with db.atomic():
        db.execute("drop table if exists sentences_term_docs")
        db.execute("create table sentences_term_docs (term text primary key, docs integer not null) without rowid")
        db.execute("insert into sentences_term_docs select term, doc from sentences_fts_vocab where doc >= ?",
                   [threshold])


def create_schema(db: sqlite_utils.Database, fts: bool = True) -> None:
    """Create every table, index, FTS table and view. Safe to call on an existing db."""
    db.execute("PRAGMA foreign_keys = ON")
    if not db.execute("select 1 from sqlite_master limit 1").fetchone():
        # A new file: pages of PAGE_SIZE bytes (set before the first table; an existing kb.db keeps its own).
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    if "studies" not in db.table_names():
        db["studies"].create(STUDIES, pk="id", not_null={"title"}, defaults={"is_retracted": 0})
    else:
        _add_missing_columns(db, "studies", STUDIES)  # a kb.db from an older version, being imported into
    for name, (columns, pk) in CHILD_TABLES.items():
        if name not in db.table_names():
            db[name].create(columns, pk=pk, foreign_keys=[("study_id", "studies", "id")])
        else:
            _add_missing_columns(db, name, columns)
    if "ingest_runs" not in db.table_names():
        db["ingest_runs"].create(
            {
                "id": int, "source": str, "mode": str, "query": str, "inputs": str,
                "started": str, "finished": str, "status": str, "records_parsed": int,
                "studies_written": int, "studies_deleted": int, "studies_total": int,
                "errors": str, "source_counts": str, "since": str,
            },
            pk="id",
        )
    else:
        _add_missing_columns(db, "ingest_runs", {"source_counts": str, "since": str})
    if "tag_kinds" not in db.table_names():
        db["tag_kinds"].create({"id": str, "label": str, "description": str}, pk="id")
    if "tags" not in db.table_names():
        db["tags"].create(TAGS, pk="id", foreign_keys=[("kind", "tag_kinds", "id")])
    else:
        _add_missing_columns(db, "tags", TAGS)
    if "evidence_levels" not in db.table_names():
        db["evidence_levels"].create({"level": int, "label": str, "designs": str}, pk="level")
    if "study_tags" not in db.table_names():
        db["study_tags"].create(
            {"study_id": str, "tag_id": str, "position": int, "kind": str, "source": str,
             "evidence": str, "section": str, "negated": int, "sentence_index": int},
            pk=("study_id", "tag_id", "position"),
            foreign_keys=[("study_id", "studies", "id"), ("tag_id", "tags", "id")],
        )
    for table, columns, unique, *name in INDEXES:
        if name:
            _drop_index_if_changed(db, name[0], columns)
        db[table].create_index(columns, index_name=name[0] if name else None, unique=unique, if_not_exists=True)
    _create_trials(db)
    _create_sentences(db)
    db.execute(KB_ORDER_SQL)
    db.execute(DASHBOARD_COUNTS_SQL)
    db.execute(FACET_COUNTS_SQL)
    db.execute(FACET_COLUMNS_SQL)
    db.execute(FACET_PAIR_COUNTS_SQL)

    # replace: an older kb.db's views are made again where their SQL changed (schema 8)
    for kind in TAG_COLUMNS:
        db.create_view(f"{kind}_tags", TAG_VIEW_SQL.format(kind=kind), replace=True)
    for name, sql in TEXT_VIEWS.items():
        db.create_view(name, sql, replace=True)
    if fts:
        create_fts(db)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db._kb_dependents = None  # type: ignore[attr-defined]  # tables changed: recompute lazily


def _drop_index_if_changed(db: sqlite_utils.Database, name: str, columns: list[str]) -> None:
    """Drop a named index whose columns are not (any longer) ``columns``, so that it is made again."""
    have = [row[2] for row in db.execute(f"select * from pragma_index_info('{name}')")]
    if have and have != columns:
        db.execute(f"drop index [{name}]")


def _add_missing_columns(db: sqlite_utils.Database, table: str, columns: dict) -> None:
    have = set(db[table].columns_dict)
    for name, kind in columns.items():
        if name not in have:
            db[table].add_column(name, kind)


def optimise(db: sqlite_utils.Database) -> None:
    """Compact the finished database before it is served read-only."""
    db["studies"].optimize()
    db.execute("ANALYZE")


def dependent_tables(db: sqlite_utils.Database) -> list[str]:
    """Every table with a foreign key to ``studies``: rows to drop when a study is rewritten.

    Sentences first: their index entries are removed with the study context still there to
    read (deleting the context first would re-index the sentences only to delete them).
    """
    names = [table.name for table in db.tables if any(fk.other_table == "studies" for fk in table.foreign_keys)]
    return sorted(names, key=lambda name: name != "sentences")


TRIALS = {
    "nct_id": str, "title": str, "official_title": str, "acronym": str, "brief_summary": str,
    "detailed_description": str, "study_type": str, "phases": str, "overall_status": str,
    "start_date": str, "start_year": int, "completion_date": str, "enrollment": int,
    "enrollment_type": str, "conditions": str, "keywords": str, "interventions": str,
    "intervention_names": str, "sponsor": str, "sponsor_class": str, "collaborators": str,
    "allocation": str, "masking": str, "intervention_model": str, "primary_purpose": str,
    "has_results": int, "primary_outcomes": str, "secondary_outcomes": str, "countries": str,
    "reference_pmids": str, "indications": str, "drugs": str, "routes": str, "sources": str,
}


def _create_trials(db: sqlite_utils.Database) -> None:
    if "trials" not in db.table_names():
        db["trials"].create(TRIALS, pk="nct_id", not_null={"nct_id"})
        db["trials"].create_index(["start_year"], if_not_exists=True)
    if "study_trials" not in db.table_names():
        # A link only where both ends are in kb.db; `how` says where the link was found
        # (databank: PubMed DataBank list; abstract: NCT id in the text; trial_reference:
        # the trial's own reference list).
        db["study_trials"].create(
            {"study_id": str, "nct_id": str, "how": str},
            pk=("study_id", "nct_id", "how"),
            foreign_keys=[("study_id", "studies", "id"), ("nct_id", "trials", "nct_id")],
        )
        db["study_trials"].create_index(["nct_id"], if_not_exists=True)


# text NULL where the sentence is its study's title or the abstract from text_start (1-based) for
# text_length characters, as SQLite's substr counts them (sentence_text_sql).
SENTENCES = {"study_id": str, "position": int, "section": str, "section_kind": str, "text": str, "context": str,
             "text_start": int, "text_length": int}


def _create_sentences(db: sqlite_utils.Database) -> None:
    """Every title and abstract sentence with its section, and each study's context, for claim checking.

    ``sentences.context`` is NULL for a sentence that reads in its study's context (every
    sentence kb writes): the context is stored once per study, in ``sentence_contexts``.
    """
    if "sentences" not in db.table_names():
        db["sentences"].create(
            SENTENCES, pk=("study_id", "position"), foreign_keys=[("study_id", "studies", "id")],
        )
    else:
        _add_missing_columns(db, "sentences", SENTENCES)
    if "sentence_contexts" not in db.table_names():
        db["sentence_contexts"].create({"study_id": str, "context": str}, pk="study_id",
                                       foreign_keys=[("study_id", "studies", "id")])


# Recency order (db/order.py). A fresh build writes the newest studies first, so that rankings which
# cap their work by rowid keep the newest matches; imports and updates append rows after them. For
# studies and sentences, kb_order.sorted_upto is the highest rowid up to which rowid order is newest
# first; the rows above it (the tail) are ranked whole besides the capped prefix (claims/retrieve.py,
# the `search` canned query), until renumbering sorts them in. No row (an older kb.db): read as sorted
# throughout, and renumbered by its next import.
ORDERED_TABLES = ("studies", "sentences")
KB_ORDER_SQL = "create table if not exists kb_order (table_name text primary key, sorted_upto integer not null)"
# The overview dashboard's counts by chart, publication year (0: none) and drug ('' for all), filled
# by db/aggregates.py whenever studies are written.
DASHBOARD_COUNTS_SQL = """
create table if not exists dashboard_counts (
  chart text not null, year integer not null, drug text not null, value text not null,
  finding text not null, studies integer not null,
  primary key (chart, year, drug, value, finding)
) without rowid
"""
# The studies page's facet counts with no filter (scope 'on_topic': the on-topic studies, the page's
# default; 'all': every study), by facet (a studies column) and value, filled by db/aggregates.py
# whenever studies are written: the facets of those two views, and the similar-studies tag weights,
# read these rows instead of counting every study. value: as the column holds it (no type affinity).
FACET_COUNTS_SQL = """
create table if not exists facet_counts (
  scope text not null, facet text not null, value not null, studies integer not null,
  primary key (scope, facet, value)
) without rowid
"""
# Which facets facet_counts holds, per scope, with their distinct values: a facet counted with no
# values at all (no study has one) is known counted, not missing. is_array: a JSON array column,
# counted by its values. filtered_top: when set, facet_pair_counts holds the on-topic studies page
# filtered on one value of this facet, with the top filtered_top values of every facet.
FACET_COLUMNS_SQL = """
create table if not exists facet_columns (
  scope text not null, facet text not null, is_array integer not null, distinct_values integer not null,
  filtered_top integer,
  primary key (scope, facet)
) without rowid
"""
# The on-topic studies page filtered on one value (?designs__arraycontains=rct, ?year=2020): each
# other facet's top values (rank 1 = the most studies, ties by value) within the studies having it.
FACET_PAIR_COUNTS_SQL = """
create table if not exists facet_pair_counts (
  filter_facet text not null, filter_value not null, facet text not null, rank integer not null,
  value not null, studies integer not null,
  primary key (filter_facet, filter_value, facet, rank)
) without rowid
"""
# SQLite gives a new row max(rowid) + 1: inside the sorted prefix only once the rows at its top were
# deleted. Such a row is not in order, so the prefix ends below it.
KB_ORDER_TRIGGER_SQL = """
create trigger if not exists kb_order_{table} after insert on {table}
when new.rowid <= (select sorted_upto from kb_order where table_name = '{table}') begin
  update kb_order set sorted_upto = new.rowid - 1 where table_name = '{table}';
end
"""


def create_order_triggers(db: sqlite_utils.Database) -> None:
    """Keep kb_order true as rows are inserted (created once kb_order holds bounds, not during a bulk write)."""
    for table in ORDERED_TABLES:
        db.execute(KB_ORDER_TRIGGER_SQL.format(table=table))


def _create_sentences_fts(db: sqlite_utils.Database) -> None:
    """The sentence index over sentences_in_context. An older kb.db's index (context copied into every
    sentence row, read from the sentences table) is replaced; one whose views and triggers predate
    schema 9 (every sentence's text in its row) keeps its index, whose entries are the same, and gets
    the views and triggers that read text stored once."""
    existing = db.execute("select sql from sqlite_master where name = 'sentences_fts'").fetchone()
    if existing and "sentences_in_context" not in existing[0]:
        for trigger in ("sentences_ai", "sentences_ad", "sentences_au"):  # sqlite-utils' names
            db.execute(f"drop trigger if exists [{trigger}]")
        db.execute("drop table sentences_fts")
        existing = None
    current = db.execute("select sql from sqlite_master where name = 'sentences_fts_insert'").fetchone()
    if existing and current and "text_start" in current[0]:
        return
    for trigger in SENTENCE_TRIGGERS:
        db.execute(f"drop trigger if exists [{trigger}]")
    for view in ("sentences_text", "sentences_in_context"):
        db.execute(f"drop view if exists [{view}]")
    db.conn.executescript(SENTENCE_VIEWS_SQL + ("" if existing else SENTENCES_FTS_TABLE_SQL) + SENTENCE_TRIGGERS_SQL)
