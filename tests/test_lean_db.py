"""kb.db stores each text once (schemas 8 and 9, issue 18 item 3).

Evidence and findings that are one of the study's sentences point at it (sentence_index) instead of
copying it; an abstract section or a sentence that is a stretch of the abstract (or the title) points
at it (text_start, text_length); the *_text views, the {kind}_tags views and sentences_text give the
text back exactly as the rows held it before, and the sentence index stays equal to it through
imports and deletions. An older kb.db keeps its rows as they are and reads the same through the views.
"""

from __future__ import annotations

import asyncio
import html
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner
from datasette.app import Datasette
from test_datasette_pages import METADATA, PLUGINS, TEMPLATES
from test_hardening_db import served_json

from ingest.cli import cli
from ingest.db import build as builder
from ingest.db.schema import PAGE_SIZE, SCHEMA_VERSION, SENTENCE_TRIGGERS, TAG_COLUMNS
from ingest.db.studies import delete_study, read_record, section_rows
from ingest.db.tags import Tagging, sentence_rows
from ingest.records import join_sections
from ingest.tagging.sentences import record_sentences
from ingest.tagging.tagger import tag_record

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STRUCTURED = "39000001"  # six labelled abstract sections


def kb(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def built(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FIXTURES / "pubmed" / "efetch_cases.xml", folder / "a_cases.xml")
    shutil.copy(FIXTURES / "pubmed" / "export.nbib", folder / "b_export.nbib")
    db = tmp_path / "kb.db"
    result = kb("build", "--from-dir", folder, "--db", db, "--no-progress")
    assert result.exit_code == 0, result.output
    return db


def rows(db: Path, sql: str, params=()) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def with_text(db: Path) -> dict[str, list[dict]]:
    """Each study's rows with their text written out, as the rows held it before schema 8: the study
    read back and tagged again without a sentence index (so nothing points at a sentence)."""
    database = sqlite_utils.Database(db)
    tagging = Tagging(sentences=False)
    out: dict[str, list[dict]] = {"study_tags": [], "findings": [], "finding_quantities": [], "abstract_sections": []}
    for (study_id,) in database.execute("select id from studies order by id").fetchall():
        record = read_record(database, study_id)
        _, derived = tagging.derive(study_id, record)
        for name in ("study_tags", "findings", "finding_quantities"):
            out[name] += derived[name]
        out["abstract_sections"] += [{"study_id": study_id, "position": i, "label": s["label"],
                                      "nlm_category": s["nlm_category"], "text": s["text"]}
                                     for i, s in enumerate(record["abstract_sections"])]
    database.close()
    return out


def read_through_views(db: Path) -> dict[str, list[dict]]:
    key = "order by study_id, position"
    return {
        "study_tags": rows(db, "select study_id, tag_id, position, kind, source, evidence, section, negated, "
                              "sentence_index from study_tags_text order by study_id, tag_id, position"),
        "findings": rows(db, f"select * from findings_text {key}"),
        "finding_quantities": rows(db, f"select * from finding_quantities_text {key}"),
        "abstract_sections": rows(db, f"select * from abstract_sections_text {key}"),
    }


def served_page(db: Path, path: str) -> str:
    ds = Datasette(immutables=[str(db)], metadata=METADATA, template_dir=str(TEMPLATES), plugins_dir=str(PLUGINS))
    response = asyncio.run(ds.client.get(path))
    assert response.status_code == 200, response.text[:500]
    return response.text


def normalised(tables: dict[str, list[dict]]) -> dict[str, list[str]]:
    return {name: sorted(repr(sorted(row.items())) for row in table_rows) for name, table_rows in tables.items()}


def test_each_sentence_is_stored_once_and_read_back_through_the_views(built):
    sentence_rows = rows(built, "select count(*) as n from study_tags where source in ('title', 'abstract')")[0]["n"]
    assert sentence_rows > 20
    # No sentence copied into a tag's evidence or a finding: each points at its sentence.
    assert rows(built, "select count(*) as n from study_tags where evidence is not null "
                       "and source in ('title', 'abstract')")[0]["n"] == 0
    assert rows(built, "select count(*) as n from study_tags where evidence is not null")[0]["n"] > 0  # MeSH, types
    for table in ("findings", "finding_quantities"):
        assert rows(built, f"select count(*) as n from {table}")[0]["n"] > 0
        assert rows(built, f"select count(*) as n from {table} where sentence is not null")[0]["n"] == 0
    # The text each view gives back is the sentence at sentence_index, and what the rows held before.
    mismatched = rows(built, "select count(*) as n from study_tags_text v join sentences_text se "
                             "on se.study_id = v.study_id and se.position = v.sentence_index "
                             "where v.source in ('title', 'abstract') and v.evidence is not se.text")
    assert mismatched[0]["n"] == 0
    assert normalised(read_through_views(built)) == normalised(with_text(built))
    # The tag views read the same evidence.
    for kind in TAG_COLUMNS:
        assert rows(built, f"select count(*) as n from {kind}_tags where evidence is null")[0]["n"] == 0
    view = rows(built, "select study_id, tag_id, negated, source, section, evidence from side_effect_tags")
    table = rows(built, "select study_id, tag_id, negated, source, section, evidence from study_tags_text "
                        "where kind = 'side_effect'")
    assert sorted(map(str, view)) == sorted(map(str, table)) and view


def test_abstract_sections_are_stretches_of_the_stored_abstract(built):
    sections = rows(built, "select * from abstract_sections where study_id = ? order by position", [STRUCTURED])
    assert len(sections) == 6 and all(s["text"] is None and s["text_start"] for s in sections)
    texts = [s["text"] for s in rows(built, "select text from abstract_sections_text where study_id = ? "
                                            "order by position", [STRUCTURED])]
    abstract = rows(built, "select abstract from studies where id = ?", [STRUCTURED])[0]["abstract"]
    labels = [s["label"] for s in sections]
    assert join_sections([{"label": label, "text": text} for label, text in zip(labels, texts, strict=True)]) \
        == abstract
    assert rows(built, "select count(*) as n from abstract_sections where text is not null")[0]["n"] == 0


def test_a_section_not_in_the_abstract_keeps_its_text():
    record = {"abstract": "BACKGROUND: Ketamine helps.\n\nRESULTS: Déjà vu 😀 was rare.",
              "abstract_sections": [{"label": "BACKGROUND", "nlm_category": None, "text": "Ketamine helps."},
                                    {"label": "RESULTS", "nlm_category": None, "text": "Déjà vu 😀 was rare."},
                                    {"label": "NOTE", "nlm_category": None, "text": "Elsewhere."}]}
    got = section_rows("1", record)
    assert [(r["text"], r["text_start"], r["text_length"]) for r in got] == [
        (None, 13, 15), (None, 39, 19), ("Elsewhere.", None, None)]
    conn = sqlite3.connect(":memory:")  # SQLite's substr counts characters as Python does
    assert [conn.execute("select substr(?, ?, ?)", [record["abstract"], r["text_start"], r["text_length"]])
            .fetchone()[0] for r in got[:2]] == [s["text"] for s in record["abstract_sections"][:2]]
    with_nul = {**record, "abstract": record["abstract"] + "\x00"}
    assert all(r["text"] is not None for r in section_rows("1", with_nul))


def index_problems(db: Path) -> str | None:
    """FTS5's integrity check of the sentence index against sentences_in_context: None when they agree."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("insert into sentences_fts (sentences_fts, rank) values ('integrity-check', 1)")
        return None
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def test_sentences_are_stretches_of_the_title_or_abstract(built):
    assert rows(built, "select count(*) as n from sentences where text is not null")[0]["n"] == 0
    database = sqlite_utils.Database(built)
    ids = [r[0] for r in database.execute("select id from studies order by id").fetchall()]
    for study_id in ids:  # what sentences_text reads back is what the tagger splits, in every field
        split = record_sentences(read_record(database, study_id))
        expected = [(s.index, s.section, s.section_kind, s.text) for s in split]
        stored = rows(built, "select position, section, section_kind, text from sentences_text "
                             "where study_id = ? order by position", [study_id])
        got = [tuple(r.values()) for r in stored]
        assert got == expected, study_id
    database.close()
    assert len(ids) >= 4 and index_problems(built) is None
    # The index's words are the sentences': a word of one abstract sentence finds it, with its text.
    study_id, text = next((r["study_id"], r["text"]) for r in rows(built, "select * from sentences_text "
                                                                         "where section_kind != 'title'"))
    word = max((w.strip(".,;:()") for w in text.split()), key=len)
    found = rows(built, "select s.study_id, f.text from sentences_fts f join sentences s on s.rowid = f.rowid "
                        "where sentences_fts match ?", [f'"{word}"'])
    assert {"study_id": study_id, "text": text} in found


def test_the_sentence_index_stays_true_through_imports_and_deletions(built):
    assert index_problems(built) is None
    result = kb("import", FIXTURES / "pubmed" / "efetch_cases.xml", "--db", built)  # every study rewritten
    assert result.exit_code == 0, result.output
    assert index_problems(built) is None
    database = sqlite_utils.Database(built)
    with database.conn:
        assert delete_study(database, STRUCTURED)
    assert rows(built, "select count(*) as n from sentences where study_id = ?", [STRUCTURED])[0]["n"] == 0
    assert index_problems(built) is None
    # The check can fail: an abstract changed under its sentences leaves index entries for the old text.
    study_id = rows(built, "select study_id from sentences where text is null and section_kind != 'title'")[0]
    with database.conn:
        database.execute("update studies set abstract = 'Something else entirely.' where id = ?",
                         [study_id["study_id"]])
    database.close()
    assert index_problems(built) is not None


def test_a_sentence_not_found_as_written_keeps_its_text():
    record = {"title": "Ketamine  and  mood", "abstract": "Line one\nbroken here. Déjà vu 😀 was rare.",
              "abstract_sections": [{"label": None, "nlm_category": None,
                                     "text": "Line one\nbroken here. Déjà vu 😀 was rare."}]}
    result = tag_record(record)
    got = sentence_rows("1", result, record)
    # The title is stored as written (a span); the splitter joins the broken line, which is then not found.
    assert [(r["text"], r["text_start"], r["text_length"]) for r in got] == [
        (None, 1, 19), ("Line one broken here.", None, None), (None, 23, 19)]
    conn = sqlite3.connect(":memory:")
    assert conn.execute("select substr(?, 23, 19)", [record["abstract"]]).fetchone()[0] == "Déjà vu 😀 was rare."
    assert all(r["text"] is not None for r in sentence_rows("1", result, None))  # no record: texts kept


def test_a_build_without_the_sentence_index_keeps_the_text(tmp_path):
    db = tmp_path / "kb.db"
    collected = builder.Collected()
    from ingest.sources.formats import parse_bytes

    for record in parse_bytes((FIXTURES / "pubmed" / "efetch_cases.xml").read_bytes(), "efetch_cases.xml").records:
        collected.add(record)
    builder.build(db, collected, "file", "from-dir", derivers=[Tagging(sentences=False)])
    assert rows(db, "select count(*) as n from sentences")[0]["n"] == 0
    assert rows(db, "select count(*) as n from study_tags where evidence is null")[0]["n"] == 0
    assert rows(db, "select count(*) as n from study_tags_text where evidence is null")[0]["n"] == 0


def test_a_new_kb_db_has_large_pages_and_the_current_version(built):
    conn = sqlite3.connect(built)
    try:
        assert conn.execute("pragma page_size").fetchone()[0] == PAGE_SIZE
        assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION == 9
        # Compacted (VACUUM INTO): no free pages, and the copy's temporary files are gone.
        assert conn.execute("pragma freelist_count").fetchone()[0] == 0
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert not [p.name for p in built.parent.iterdir() if ".tmp-" in p.name]
    finally:
        conn.close()


OLD_TAG_VIEW_SQL = """
select st.study_id, s.title, s.year, t.id as tag_id, t.label as {kind}, st.negated,
       st.source, st.section, st.evidence
from study_tags st
join tags t on t.id = st.tag_id
join studies s on s.id = st.study_id
where st.kind = '{kind}'
"""


# Schema 8's sentence view and insert trigger: every sentence's text in its row. (Nothing writes
# between make_schema_7 and the import, which replaces every sentence trigger.)
OLD_SENTENCE_SQL = """
create view sentences_in_context as
select s.rowid as rowid, s.study_id, s.position, s.section, s.section_kind, s.text,
       coalesce(s.context, c.context) as context
from sentences s left join sentence_contexts c on c.study_id = s.study_id;
create trigger sentences_fts_insert after insert on sentences begin
  insert into sentences_fts (rowid, text, context) values (new.rowid, new.text,
    coalesce(new.context, (select context from sentence_contexts where study_id = new.study_id)));
end;
"""


def make_schema_8_sentences(conn: sqlite3.Connection) -> None:
    """Every sentence's text in its row, read by schema 8's views and triggers."""
    for trigger in SENTENCE_TRIGGERS:
        conn.execute(f"drop trigger if exists {trigger}")
    conn.execute("drop view sentences_text")
    conn.execute("drop view sentences_in_context")
    conn.execute("update sentences set text = (select substr(iif(sentences.section_kind = 'title', s.title, "
                 "s.abstract), text_start, text_length) from studies s where s.id = sentences.study_id) "
                 "where text is null")
    conn.execute("alter table sentences drop column text_start")
    conn.execute("alter table sentences drop column text_length")
    conn.executescript(OLD_SENTENCE_SQL)


def make_schema_7(db: Path) -> None:
    """Turn a kb.db into the layout of schema 7: every text in every row that uses it."""
    conn = sqlite3.connect(db)
    with conn:
        for view in ("study_tags_text", "findings_text", "finding_quantities_text", "abstract_sections_text",
                     *(f"{kind}_tags" for kind in TAG_COLUMNS)):
            conn.execute(f"drop view {view}")
        make_schema_8_sentences(conn)
        for table, column in (("study_tags", "evidence"), ("findings", "sentence"), ("finding_quantities", "sentence")):
            conn.execute(f"update {table} set {column} = (select text from sentences se where se.study_id = "
                         f"{table}.study_id and se.position = {table}.sentence_index) where {column} is null")
        conn.execute("update abstract_sections set text = (select substr(s.abstract, text_start, text_length) "
                     "from studies s where s.id = abstract_sections.study_id) where text is null")
        conn.execute("alter table abstract_sections drop column text_start")
        conn.execute("alter table abstract_sections drop column text_length")
        for kind in TAG_COLUMNS:
            conn.execute(f"create view {kind}_tags as {OLD_TAG_VIEW_SQL.format(kind=kind)}")
        conn.execute("create index idx_findings_outcome_direction on findings (outcome, direction)")
        conn.execute("pragma user_version = 7")
    conn.close()


def test_an_import_into_a_schema_7_kb_db_reads_old_and_new_rows_the_same(tmp_path):
    db = tmp_path / "kb.db"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FIXTURES / "pubmed" / "efetch_cases.xml", folder / "a_cases.xml")
    result = kb("build", "--from-dir", folder, "--db", db, "--no-progress")
    assert result.exit_code == 0, result.output
    make_schema_7(db)
    old_evidence = rows(db, "select study_id, tag_id, position, evidence from study_tags order by 1, 2, 3")
    assert old_evidence and all(r["evidence"] for r in old_evidence)

    result = kb("import", FIXTURES / "pubmed" / "export.nbib", "--db", db)
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {r[1] for r in conn.execute("pragma table_info(abstract_sections)")}
        assert {"text_start", "text_length"} <= columns
        tag_view = conn.execute("select sql from sqlite_master where name = 'drug_tags'").fetchone()[0]
        assert "coalesce(st.evidence, coalesce(se.text" in tag_view and "se.text_start" in tag_view
        # Rows the import did not touch keep their own text; the imported study's rows point at it.
        kept = conn.execute("select count(*) from study_tags where evidence is not null "
                            "and source in ('title', 'abstract')").fetchone()[0]
        pointing = conn.execute("select count(*) from study_tags where evidence is null").fetchone()[0]
        assert kept > 0 and pointing > 0
        sections = conn.execute("select count(*) from abstract_sections where text is null").fetchone()[0]
        assert sections > 0
    finally:
        conn.close()
    # Old and new rows read the same through the views, and as the rows held them before.
    assert normalised(read_through_views(db)) == normalised(with_text(db))
    imported = {"39000001", "36000004"}  # export.nbib's studies: rewritten (39000001 merged with its record)
    untouched = {(r["study_id"], r["tag_id"], r["position"]): r["evidence"] for r in old_evidence
                 if r["study_id"] not in imported}
    now = {(r["study_id"], r["tag_id"], r["position"]): r["evidence"]
           for r in rows(db, "select study_id, tag_id, position, evidence from study_tags_text")}
    assert untouched and all(now[key] == text for key, text in untouched.items())
    assert rows(db, "select count(*) as n from study_tags where study_id in ('39000001', '36000004') "
                    "and evidence is not null and source in ('title', 'abstract')")[0]["n"] == 0
    # Served: the views of both kinds of row, and the study pages with their evidence sentences.
    for study_id in sorted({key[0] for key in untouched} | {"36000004"}):
        served = served_json(db, f"/kb/study_tags_text.json?study_id={study_id}&_shape=array")
        assert served and all(r["evidence"] for r in served)
        page = served_page(db, f"/kb/studies/{study_id}")
        sentence = next(r["evidence"] for r in served if r["source"] in ("title", "abstract"))
        assert html.escape(sentence.split()[-1], quote=False) in page
