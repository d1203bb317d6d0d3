"""Building kb.db from files, importing into it, and keeping it intact on failure."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from ingest.db import build as builder
from ingest.db import collect, derive
from ingest.db.studies import read_record
from ingest.sources.files import parse_medline
from ingest.sources.pubmed import parse_pubmed_xml


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_dir(directory: Path, target: Path) -> dict:
    return builder.build(target, builder.collect_dir(directory), "files", "from-dir")


@pytest.fixture
def inputs(tmp_path, fixtures):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(fixtures / "pubmed" / "efetch_cases.xml", folder / "a_cases.xml")
    shutil.copy(fixtures / "pubmed" / "export.nbib", folder / "b_export.nbib")
    return folder


def test_build_from_fixture_dir(inputs, tmp_path):
    target = tmp_path / "kb.db"
    stats = build_dir(inputs, target)
    db = sqlite_utils.Database(target)
    ids = {r["id"] for r in db.query("select id from studies")}
    # 38000003 is deleted by the DeleteCitation in the same file.
    assert ids == {"39000001", "2345678", "17000002", "36000004"}
    assert stats["studies_total"] == 4 and stats["records_parsed"] == 6
    row = db["studies"].get("39000001")
    assert json.loads(row["sources"]) == ["pubmed", "medline"]
    assert json.loads(row["nct_ids"]) == ["NCT03434041", "NCT04338321"]
    assert db["studies"].get("2345678")["is_retracted"] == 1
    assert db.execute("select count(*) from abstract_sections where study_id = '39000001'").fetchone()[0] == 6
    quals = db.execute(
        "select q.qualifier, q.major_topic from mesh_qualifiers q join mesh_headings h "
        "on h.study_id = q.study_id and h.position = q.heading_position "
        "where h.descriptor = 'Ketamine' and q.study_id = '39000001' order by q.position").fetchall()
    assert quals == [("adverse effects", 1), ("therapeutic use", 0)]
    links = db.execute("select ref_type, ref_pmid from study_links where study_id = '39000001'").fetchall()
    assert ("ErratumIn", 39000098) in links and ("CommentIn", 39000099) in links
    run = list(db.query("select * from ingest_runs"))[-1]
    assert run["mode"] == "from-dir" and run["studies_total"] == 4
    # Full-text search over title and abstract.
    hits = db.execute(
        "select studies.id from studies_fts join studies on studies.rowid = studies_fts.rowid "
        "where studies_fts match 'cystitis'").fetchall()
    assert hits == [("17000002",)]
    assert db.execute("pragma foreign_key_check").fetchall() == []


def test_stored_record_round_trips(inputs, tmp_path):
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    collected = builder.collect_dir(inputs)
    db = sqlite_utils.Database(target)
    for study_id, record in collected.records.items():
        stored = read_record(db, study_id)
        for key, value in record.items():
            expected = value if value not in ("", None) else stored[key]
            assert stored[key] == expected or (value in ("", None) and stored[key] in ("", None)), key


def test_rebuild_is_idempotent(inputs, tmp_path):
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    first = _dump(target)
    build_dir(inputs, target)
    assert _dump(target) == first
    runs = sqlite_utils.Database(target)["ingest_runs"].count
    assert runs == 2, "run history is carried over a rebuild"


def _dump(path: Path) -> dict:
    """Every row of every table but the run log; ``first_seen`` (the moment of writing) left out."""
    db = sqlite_utils.Database(path)
    return {
        t: sorted(json.dumps({k: v for k, v in r.items() if k != "first_seen"}, sort_keys=True,
                             default=bytes.hex) for r in db[t].rows)  # blobs as hex
        for t in db.table_names()
        if t != "ingest_runs" and "_fts" not in t and not t.startswith("sqlite_")
    }


def test_newer_version_replaces_and_deletion_removes(inputs, tmp_path, fixtures):
    shutil.copy(fixtures / "pubmed" / "update_v2.xml", inputs / "c_update.xml")
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    db = sqlite_utils.Database(target)
    row = db["studies"].get("17000002")
    assert row["pmid_version"] == 2 and "corrected version" in row["title"]
    assert not db.execute("select 1 from studies where id = '2345678'").fetchone()
    assert not db.execute("select 1 from authors where study_id = '2345678'").fetchone()


def test_import_merges_into_existing_db(inputs, tmp_path, fixtures):
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    collected = builder.Collected()
    collect.collect_file(collected, fixtures / "pubmed" / "export.ris")
    stats = builder.import_into(target, collected, "file", ["export.ris"])
    db = sqlite_utils.Database(target)
    assert stats["studies_total"] == 5
    merged = db["studies"].get("36000004")
    assert json.loads(merged["sources"]) == ["medline", "ris"]
    assert merged["volume"] == "23" and merged["pmcid"] == "PMC9876543"
    assert "opioid-sparing" in json.loads(merged["keywords"])
    assert "three patients stopped" in merged["abstract"], "the longer abstract wins"
    authors = db.execute("select last_name from authors where study_id='36000004' order by position").fetchall()
    assert authors == [("Smith",), ("Jones",)]
    doi_only = db["studies"].get("doi:10.1089/jpm.2020.0001")
    assert doi_only["pmid"] is None and json.loads(doi_only["nct_ids"]) == ["NCT01234567"]
    # Importing the same file again changes nothing but the run log.
    before = _dump(target)
    builder.import_into(target, collected, "file", ["export.ris"])
    assert _dump(target) == before


def test_import_applies_versions_and_deletions(inputs, tmp_path, fixtures):
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    collected = builder.Collected()
    collect.collect_file(collected, fixtures / "pubmed" / "update_v2.xml")
    builder.import_into(target, collected, "file", ["update_v2.xml"])
    db = sqlite_utils.Database(target)
    assert db["studies"].get("17000002")["pmid_version"] == 2
    assert not db.execute("select 1 from studies where id = '2345678'").fetchone()


def test_removed_value_really_disappears_on_new_version(tmp_path):
    v1 = (b"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID Version='1'>9</PMID><Article>"
          b"<ArticleTitle>t</ArticleTitle><ELocationID EIdType='doi'>10.1/old</ELocationID>"
          b"<Abstract><AbstractText>gone soon</AbstractText></Abstract></Article></MedlineCitation>"
          b"</PubmedArticle></PubmedArticleSet>")
    v2 = v1.replace(b"Version='1'", b"Version='2'").replace(
        b"<ELocationID EIdType='doi'>10.1/old</ELocationID>", b"").replace(
        b"<Abstract><AbstractText>gone soon</AbstractText></Abstract>", b"")
    (tmp_path / "v1.xml").write_bytes(v1)
    (tmp_path / "v2.xml").write_bytes(v2)
    target = tmp_path / "kb.db"
    builder.build(target, _collect(tmp_path / "v1.xml"), "files", "from-dir")
    builder.import_into(target, _collect(tmp_path / "v2.xml"), "file", ["v2.xml"])
    row = sqlite_utils.Database(target)["studies"].get("9")
    assert row["doi"] is None and row["abstract"] is None and row["pmid_version"] == 2
    assert sqlite_utils.Database(target).execute(
        "select count(*) from abstract_sections where study_id='9'").fetchone()[0] == 0


def _collect(path: Path) -> builder.Collected:
    collected = builder.Collected()
    collect.collect_file(collected, path)
    return collected


def test_malformed_file_reported_rest_loaded(inputs, tmp_path, fixtures):
    shutil.copy(fixtures / "pubmed" / "malformed.xml", inputs / "c_malformed.xml")
    (inputs / "d_garbage.nbib").write_bytes(b"\x00\x01 not a pubmed file")
    collected = builder.collect_dir(inputs)
    assert any(e.startswith("c_malformed.xml: malformed XML") for e in collected.errors)
    assert any(e.startswith("d_garbage.nbib:") for e in collected.errors)
    target = tmp_path / "kb.db"
    stats = builder.build(target, collected, "files", "from-dir")
    assert stats["studies_total"] == 5  # four good studies plus the one record before the fault
    assert stats["status"] == "ok-with-errors"


def test_failed_build_leaves_existing_db_untouched(inputs, tmp_path):
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    before = digest(target)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(builder.BuildError, match="no PubMed XML, MEDLINE, RIS, Europe PMC or ClinicalTrials.gov files"):
        build_dir(empty, target)
    with pytest.raises(builder.BuildError, match="no such directory"):
        build_dir(tmp_path / "missing", target)
    (empty / "bad.xml").write_bytes(b"<PubmedArticleSet><oops")
    with pytest.raises(builder.BuildError, match="no records could be loaded"):
        build_dir(empty, target)
    assert digest(target) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kb.db")] == []


def test_crash_during_write_leaves_existing_db_untouched(inputs, tmp_path):
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    before = digest(target)

    def explode(db, touched):
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        builder.build(target, builder.collect_dir(inputs), "files", "from-dir", after_write=[explode])
    assert digest(target) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kb.db")] == []


# ------------------------------------------------------------------ the real shared corpus


def _corpus_pmids(corpus: Path) -> set[int]:
    """Unique non-deleted PMIDs across the corpus files, computed independently of the builder."""
    seen: set[int] = set()
    deleted: set[int] = set()
    for path in sorted((corpus / "pubmed").rglob("*")):
        if path.suffix == ".xml":
            text = path.read_text(encoding="utf-8")
            for citation in re.findall(r"<MedlineCitation[^>]*>\s*<PMID[^>]*>(\d+)</PMID>", text):
                seen.add(int(citation))
            for block in re.findall(r"<DeleteCitation>(.*?)</DeleteCitation>", text, re.S):
                deleted.update(int(p) for p in re.findall(r"<PMID[^>]*>(\d+)</PMID>", block))
        elif path.suffix in (".nbib", ".txt"):
            seen.update(int(p) for p in re.findall(r"^PMID- *(\d+)", path.read_text(encoding="utf-8"), re.M))
    return seen - deleted


def test_build_from_shared_corpus(corpus, tmp_path):
    target = tmp_path / "kb.db"
    stats = build_dir(corpus / "pubmed", target)
    expected = _corpus_pmids(corpus)
    db = sqlite_utils.Database(target)
    assert db["studies"].count == len(expected) == stats["studies_total"]
    assert {r[0] for r in db.execute("select pmid from studies")} == expected
    assert json.loads(stats["errors"]) == []


def test_shared_corpus_records_in_both_formats_merge_field_by_field(corpus, tmp_path):
    xml_records = {}
    for path in (corpus / "pubmed" / "efetch").glob("*.xml"):
        xml_records.update({r["pmid"]: r for r in parse_pubmed_xml(path.read_bytes()).records})
    nbib_records = {}
    for path in (corpus / "pubmed" / "medline").glob("*.nbib"):
        nbib_records.update({r["pmid"]: r for r in parse_medline(path.read_bytes()).records})
    both = sorted(set(xml_records) & set(nbib_records))
    assert len(both) >= 3
    target = tmp_path / "kb.db"
    build_dir(corpus / "pubmed", target)
    db = sqlite_utils.Database(target)
    for pmid in both[:5]:
        xml, nbib = xml_records[pmid], nbib_records[pmid]
        stored = read_record(db, str(pmid))
        assert set(stored["sources"]) == {"pubmed", "medline"}
        # Structured XML fields survive: authors, affiliations, MeSH UIs, qualifiers.
        assert stored["authors"] == xml["authors"] or len(stored["authors"]) >= len(xml["authors"])
        for heading in xml["mesh"]:
            twin = next(m for m in stored["mesh"] if m["descriptor"] == heading["descriptor"])
            assert twin["descriptor_ui"] == heading["descriptor_ui"]
            assert {q["name"] for q in heading["qualifiers"]} <= {q["name"] for q in twin["qualifiers"]}
        # Everything the MEDLINE export had is there too.
        for heading in nbib["mesh"]:
            assert heading["descriptor"].lower() in {m["descriptor"].lower() for m in stored["mesh"]}
        assert {k.lower() for k in nbib["keywords"]} <= {k.lower() for k in stored["keywords"]}
        assert {p["name"] for p in nbib["publication_types"]} <= {p["name"] for p in stored["publication_types"]}
        assert set(nbib["nct_ids"]) <= set(stored["nct_ids"]) and set(xml["nct_ids"]) <= set(stored["nct_ids"])
        assert stored["doi"] == (xml["doi"] or nbib["doi"])
        assert stored["pmcid"] == xml["pmcid"]
        # Richer values win: the longer title and abstract, the more precise date.
        assert len(stored["title"]) == max(len(xml["title"]), len(nbib["title"]))
        richer_abstract = xml if any(s["nlm_category"] for s in xml["abstract_sections"]) else None
        if richer_abstract:
            assert stored["abstract_sections"] == xml["abstract_sections"]
        assert len(stored["pub_date"] or "") == max(len(xml["pub_date"] or ""), len(nbib["pub_date"] or ""))


def test_unreadable_database_is_refused_by_import(tmp_path, fixtures):
    target = tmp_path / "kb.db"
    target.write_bytes(b"this is not sqlite")
    before = digest(target)
    with pytest.raises(builder.BuildError, match="not a readable SQLite database"):
        builder.import_into(target, _collect(fixtures / "pubmed" / "export.ris"), "file", ["x"])
    assert digest(target) == before
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(target).execute("select 1 from sqlite_master").fetchone()


def _medline(pmid: int, abstract: str) -> str:
    return (f"PMID- {pmid}\nDP  - 2024 Jan\nTI  - Ketamine study number {pmid}\n"
            f"AB  - {abstract}\nPT  - Journal Article\n\n")


def test_tags_computed_while_parsing_are_those_of_the_merged_record(tmp_path, monkeypatch):
    # Enough studies for the worker processes to start while the files are being parsed; study 7
    # comes again in a later file with a longer abstract: the merged record, not the first
    # copy the workers tagged, must decide its tags.
    folder = tmp_path / "in"
    folder.mkdir()
    plain = "We randomized adults with depression to ketamine or placebo. Nausea was common."
    (folder / "a.nbib").write_text("".join(_medline(n, plain) for n in range(1, 130)), encoding="utf-8")
    longer = ("We randomized 40 adults with treatment-resistant depression to intravenous ketamine or placebo. "
              "Hallucinations occurred in five patients given ketamine.")
    (folder / "b.nbib").write_text(_medline(7, longer), encoding="utf-8")
    early = tmp_path / "early.db"
    builder.build_from_dir(early, folder)
    monkeypatch.setattr(derive, "_workers", lambda: 1)  # everything tagged in this process
    inline = tmp_path / "inline.db"
    builder.build_from_dir(inline, folder)
    assert _dump(early) == _dump(inline)
    row = sqlite_utils.Database(early)["studies"].get("7")
    assert "hallucinations" in json.loads(row["side_effects"])
    assert "trd" in json.loads(row["indications"]) and row["sample_size"] == 40


def test_shared_corpus_tagged_in_workers_equals_tagged_in_one_process(corpus, tmp_path, monkeypatch):
    early = tmp_path / "early.db"
    builder.build_from_dir(early, corpus)
    monkeypatch.setattr(derive, "_workers", lambda: 1)
    inline = tmp_path / "inline.db"
    builder.build_from_dir(inline, corpus)
    assert _dump(early) == _dump(inline)


def _term_docs_agree_with_the_index(path: Path) -> None:
    conn = sqlite3.connect(path)
    table = dict(conn.execute("select term, docs from sentences_term_docs"))
    threshold = min(table.values())
    vocab = dict(conn.execute("select term, doc from sentences_fts_vocab where doc >= ?", [threshold]))
    assert table == vocab and table


def test_studies_are_stored_newest_first_and_term_counts_follow_imports(inputs, tmp_path, fixtures):
    # Rowid order is recency: ranked searches that cap how many matches they score keep the newest.
    target = tmp_path / "kb.db"
    build_dir(inputs, target)
    years = [r[0] for r in sqlite3.connect(target).execute("select year from studies order by rowid")]
    assert years == sorted(years, key=lambda y: -(y or 0)) and len(set(years)) > 1
    _term_docs_agree_with_the_index(target)
    builder.import_into(target, _collect(fixtures / "pubmed" / "update_v2.xml"), "file", ["update_v2.xml"])
    _term_docs_agree_with_the_index(target)


def test_tagging_without_the_sentence_index(inputs, tmp_path):
    from ingest.db.tags import Tagging

    target = tmp_path / "kb.db"
    builder.build_from_dir(target, inputs, derivers=[Tagging(sentences=False)])
    db = sqlite_utils.Database(target)
    assert db["study_tags"].count > 0 and db["sentences"].count == 0
