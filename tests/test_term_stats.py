"""Which claim words are too common to rank: read from the index's own vocabulary."""

from __future__ import annotations

import sqlite_utils

from ingest.claims import claim_terms, fts_query
from ingest.claims.term_stats import costly_terms, stems
from ingest.db.schema import create_fts, create_schema, refresh_term_docs


def index(tmp_path, sentences: list[str]) -> sqlite_utils.Database:
    db = sqlite_utils.Database(tmp_path / "kb.db")
    create_schema(db, fts=False)
    db["studies"].insert({"id": "1", "title": "t"})
    db["sentences"].insert_all(
        {"study_id": "1", "position": i, "section_kind": "results", "text": text, "context": ""}
        for i, text in enumerate(sentences))
    create_fts(db)
    return db


def test_stems_are_the_index_tokens():
    assert stems(["effective", "intravenously", "5-ht"]) == {
        "effective": ["effect"], "intravenously": ["intraven"], "5-ht": ["5", "ht"]}


def test_common_words_are_left_out_but_never_all(tmp_path):
    sentences = [f"Ketamine effects were studied in cohort {i}." for i in range(600)]
    sentences += ["Dissociation was frequent.", "Cystitis was rare."]
    db = index(tmp_path, sentences)
    costly = costly_terms(db.conn, claim_terms("ketamine effect on dissociation"))
    # "effect" counts with its stem: "effects" is in every sentence.
    assert set(costly) == {"ketamine", "effect"} and costly["ketamine"] > 0.9
    assert fts_query("ketamine effect on dissociation", costly) == '"dissociation"'
    only_common = costly_terms(db.conn, ["ketamine", "effects"])
    assert fts_query("ketamine effects", only_common).count('"') == 2  # the rarest word is kept


def test_small_index_is_never_pruned(tmp_path):
    db = index(tmp_path, ["Ketamine works."] * 50)
    assert costly_terms(db.conn, ["ketamine"]) == {}


def test_term_docs_table_gives_the_counts_the_index_gives(tmp_path):
    sentences = [f"Ketamine effects were studied in cohort {i}." for i in range(600)]
    sentences += ["Dissociation was frequent."] * 7 + ["Cystitis was rare."]
    db = index(tmp_path, sentences)
    words = claim_terms("ketamine effect on dissociation and cystitis in cohort")
    from_vocab = costly_terms(db.conn, words)
    refresh_term_docs(db)
    docs = dict(db.execute("select term, docs from sentences_term_docs").fetchall())
    # Stems in at least 1% of the 608 sentences (6): "dissoci" (7) is kept, "cystiti" (1) is not.
    assert docs["ketamin"] == 600 and docs["dissoci"] == 7 and "cystiti" not in docs
    assert costly_terms(db.conn, words) == from_vocab and set(from_vocab) == {"ketamine", "effect", "cohort"}
