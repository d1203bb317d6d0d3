"""Recency order survives imports: the tail past kb_order.sorted_upto is ranked, and renumbered away."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import zlib
from pathlib import Path

import pytest
import sqlite_utils
import yaml
from click.testing import CliRunner
from conftest import require_module
from datasette.app import Datasette
from datasette.utils import escape_fts

from ingest.claims import retrieve
from ingest.claims.check import check_claim
from ingest.cli import cli
from ingest.db import build as builder
from ingest.db import collect, order
from ingest.db.schema import create_fts, create_schema, refresh_term_docs
from ingest.site import browse
from ingest.site import search as site_search

ROOT = Path(__file__).resolve().parent.parent
SEARCH_SQL = yaml.safe_load((ROOT / "metadata.yml").read_text())["databases"]["kb"]["queries"]["search"]["sql"]
CLAIM = "esketamine causes dissociation"
NEW_RCT = "41999999"
OLDER = 40  # older studies of the small kb.db, 2000-2015


def article(pmid: str, year: int, title: str, sentences: list[str], rct: bool = False, version: int = 1) -> str:
    kind = ('<PublicationTypeList><PublicationType UI="D016449">Randomized Controlled Trial</PublicationType>'
            "</PublicationTypeList>") if rct else ""
    return (f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="{version}">{pmid}</PMID>'
            f'<Article PubModel="Print"><Journal><JournalIssue CitedMedium="Print"><PubDate><Year>{year}</Year>'
            f"</PubDate></JournalIssue><Title>Example Journal of Psychiatry</Title></Journal>"
            f"<ArticleTitle>{title}</ArticleTitle><Abstract><AbstractText>{' '.join(sentences)}</AbstractText>"
            f"</Abstract>{kind}</Article></MedlineCitation><PubmedData><ArticleIdList>"
            f'<ArticleId IdType="pubmed">{pmid}</ArticleId></ArticleIdList></PubmedData></PubmedArticle>')


def pubmed_file(path: Path, articles: list[str], deleted: tuple[str, ...] = ()) -> Path:
    deletions = "".join(f'<DeleteCitation><PMID Version="1">{p}</PMID></DeleteCitation>' for p in deleted)
    path.write_text(f'<?xml version="1.0" ?>\n<PubmedArticleSet>{"".join(articles)}{deletions}</PubmedArticleSet>\n',
                    encoding="utf-8")
    return path


def older_article(i: int, title: str | None = None, version: int = 1) -> str:
    return article(str(30_000_000 + i), 2015 - i % 16,
                   title or f"Intravenous ketamine for depression: an observational cohort of {20 + i} adults",
                   [f"We followed {20 + i} adults with depression given ketamine infusions.",
                    "Dissociation was mild and brief after each infusion.",
                    f"Mood improved over {i % 5 + 2} weeks."], version=version)


def new_rct() -> str:
    return article(NEW_RCT, 2026, "Esketamine or ketamine for treatment-resistant depression: dissociation "
                                  "after ketamine in a randomised trial",
                   ["We randomised 80 adults with treatment-resistant depression to esketamine, racemic ketamine "
                    "or placebo.",
                    "Esketamine caused transient dissociation in 30 of 40 patients.",
                    "Dissociation after esketamine resolved within two hours."], rct=True)


@pytest.fixture
def small_caps(monkeypatch):
    """Caps far below the small kb.db's matches, as 5,000 are far below a large kb.db's."""
    monkeypatch.setattr(retrieve, "RANKED_SENTENCES_CAP", 10)
    monkeypatch.setattr(retrieve, "RANKED_STUDIES_CAP", 5)


@pytest.fixture
def older_kb(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    pubmed_file(folder / "a_older.xml", [older_article(i) for i in range(OLDER)])
    target = tmp_path / "kb.db"
    builder.build(target, builder.collect_dir(folder), "files", "from-dir")
    return target


def kb_import(target: Path, file: Path) -> None:
    done = CliRunner().invoke(cli, ["import", str(file), "--db", str(target)])
    assert done.exit_code == 0, done.output


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.create_function("escape_fts", 1, escape_fts)  # as Datasette registers it
    return conn


def claim_ids(path: Path, limit: int = 5) -> list[str]:
    with connect(path) as conn:
        return [s.pmid for s in check_claim(conn, CLAIM, limit=limit).results]


def search_rows(path: Path, q: str) -> list[tuple]:
    with connect(path) as conn:
        return conn.execute(SEARCH_SQL, {"q": q}).fetchall()


def rowids_of(path: Path, study_id: str) -> tuple[int, list[int]]:
    with connect(path) as conn:
        study = conn.execute("select rowid from studies where id = ?", [study_id]).fetchone()[0]
        sentences = [r[0] for r in conn.execute("select rowid from sentences where study_id = ?", [study_id])]
    return study, sentences


def assert_in_recency_order(path: Path) -> None:
    """Rowid order is year order (newest first) for studies and their sentences; kb_order says so; FTS agrees."""
    db = sqlite_utils.Database(path)
    years = [r[0] or 0 for r in db.execute("select year from studies order by rowid")]
    assert years == sorted(years, reverse=True)
    sentence_years = [r[0] or 0 for r in db.execute(
        "select st.year from sentences s join studies st on st.id = s.study_id order by s.rowid")]
    assert sentence_years == sorted(sentence_years, reverse=True)
    assert order.tail_sizes(db) == {"studies": 0, "sentences": 0}
    for fts in ("studies_fts", "sentences_fts"):  # rank 1: the index checked against its content too
        db.execute(f"insert into {fts} ({fts}, rank) values ('integrity-check', 1)")


def test_fresh_build_is_sorted_throughout(older_kb):
    assert_in_recency_order(older_kb)
    db = sqlite_utils.Database(older_kb)
    assert dict(db.execute("select table_name, sorted_upto from kb_order").fetchall()) == {
        "studies": OLDER, "sentences": db.execute("select max(rowid) from sentences").fetchone()[0]}


def test_imported_2026_rct_is_ranked_although_past_the_cap(older_kb, tmp_path, small_caps):
    kb_import(older_kb, pubmed_file(tmp_path / "new.xml", [new_rct()]))
    study, sentences = rowids_of(older_kb, NEW_RCT)
    with connect(older_kb) as conn:
        query = check_claim(conn, CLAIM).fts_query
        sentence_range = retrieve.ranked_range(conn, "sentences_fts", query, retrieve.RANKED_SENTENCES_CAP)
        study_range = retrieve.ranked_range(conn, "studies_fts", query, retrieve.RANKED_STUDIES_CAP)
    # The import appended it: past the capped prefix of either ranking, it is found only as the tail.
    assert min(sentences) > sentence_range.tail_after >= sentence_range.last
    assert study > study_range.tail_after >= study_range.last
    assert claim_ids(older_kb)[0] == NEW_RCT
    assert NEW_RCT in [row[0] for row in search_rows(older_kb, "esketamine dissociation")]


def test_unranked_matches_put_the_tail_by_year(older_kb, tmp_path):
    kb_import(older_kb, pubmed_file(tmp_path / "new.xml", [new_rct()]))
    with connect(older_kb) as conn:
        found = retrieve.fts_ranking(conn, '"dissociation"', ranked=False)
        years = dict(conn.execute("select id, coalesce(year, 0) from studies").fetchall())
    assert found[0][0] == NEW_RCT, "the 2026 study's sentences come first, though written last"
    listed = [years[study_id] for study_id, _ in found]
    assert listed == sorted(listed, reverse=True)


def test_renumbered_kb_equals_a_fresh_build_of_the_same_records(older_kb, tmp_path, small_caps, monkeypatch):
    new_file = pubmed_file(tmp_path / "b_new.xml", [new_rct()])
    monkeypatch.setattr(order, "TAIL_LIMITS", {"studies": 0, "sentences": 0})  # any tail: renumber on import
    kb_import(older_kb, new_file)
    assert_in_recency_order(older_kb)
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    pubmed_file(fresh_dir / "a_older.xml", [older_article(i) for i in range(OLDER)])
    (fresh_dir / "b_new.xml").write_bytes(new_file.read_bytes())
    fresh = tmp_path / "fresh.db"
    builder.build(fresh, builder.collect_dir(fresh_dir), "files", "from-dir")

    def order_of(path: Path) -> tuple[list, list]:
        with connect(path) as conn:
            return (conn.execute("select id from studies order by rowid").fetchall(),
                    conn.execute("select study_id, position from sentences order by rowid").fetchall())

    assert order_of(older_kb) == order_of(fresh)
    with connect(older_kb) as conn, connect(fresh) as other:
        checked, expected = check_claim(conn, CLAIM, limit=20), check_claim(other, CLAIM, limit=20)
    assert [(s.pmid, s.score) for s in checked.results] == [(s.pmid, s.score) for s in expected.results]
    assert checked.results[0].pmid == NEW_RCT
    for q in ("esketamine dissociation", "ketamine depression"):
        assert search_rows(older_kb, q) == search_rows(fresh, q)


def test_replaced_study_is_found_before_and_after_renumbering(older_kb, tmp_path, small_caps):
    replaced = "30000000"  # a 2015 study: among the newest, inside the cap before it is replaced
    corrected = older_article(0, title="Esketamine and dissociation in depression: an observational cohort",
                              version=2)
    kb_import(older_kb, pubmed_file(tmp_path / "v2.xml", [corrected]))
    study, _ = rowids_of(older_kb, replaced)
    assert study > order.sorted_upto(sqlite_utils.Database(older_kb), "studies"), "rewritten at the end"
    assert replaced in claim_ids(older_kb)
    done = CliRunner().invoke(cli, ["compact", "--db", str(older_kb)])
    assert done.exit_code == 0, done.output
    assert "renumbered" in done.output
    assert_in_recency_order(older_kb)
    assert replaced in claim_ids(older_kb)
    assert rowids_of(older_kb, replaced)[0] == 3, "back after the other two 2015 studies"


def test_a_row_written_where_deleted_rows_were_is_tail(older_kb, tmp_path, small_caps):
    # Deleting the oldest study frees the top rowids of the sorted prefix; SQLite gives the next new
    # row max(rowid) + 1, inside the prefix, where it would sort as the oldest.
    with connect(older_kb) as conn:
        oldest, last = conn.execute("select id, rowid from studies order by rowid desc limit 1").fetchone()
    kb_import(older_kb, pubmed_file(tmp_path / "delete.xml", [], deleted=(oldest,)))
    kb_import(older_kb, pubmed_file(tmp_path / "new.xml", [new_rct()]))
    study, sentences = rowids_of(older_kb, NEW_RCT)
    assert study == last, "the freed rowid was reused"
    db = sqlite_utils.Database(older_kb)
    assert order.sorted_upto(db, "studies") < study and order.sorted_upto(db, "sentences") < min(sentences)
    assert claim_ids(older_kb)[0] == NEW_RCT


def test_kb_db_without_kb_order_ranks_as_before_and_is_sorted_on_import(older_kb, tmp_path, small_caps):
    db = sqlite_utils.Database(older_kb)
    for name in ("kb_order_studies", "kb_order_sentences"):
        db.execute(f"drop trigger {name}")
    db.execute("drop table kb_order")  # as a kb.db of an older version
    db.conn.commit()
    with connect(older_kb) as conn:
        bounds = retrieve.ranked_range(conn, "sentences_fts", '"dissociation"', 10)
        assert bounds.last == retrieve.last_rowid_ranked(conn, "sentences_fts", '"dissociation"', 10)
        assert bounds.tail_after == retrieve.NO_LIMIT
    assert order.needs_renumbering(db)
    kb_import(older_kb, pubmed_file(tmp_path / "new.xml", [new_rct()]))
    assert_in_recency_order(older_kb)
    assert claim_ids(older_kb)[0] == NEW_RCT


def test_sentence_vectors_follow_their_sentences_through_renumbering(older_kb, tmp_path, monkeypatch):
    np = require_module("numpy")
    from ingest.claims import embeddings

    def vector(text: str):  # a stand-in model: each word adds 1 at a crc32-chosen dimension
        v = np.zeros(16, dtype=np.float32)
        for word in text.lower().split():
            v[zlib.crc32(word.encode()) % 16] += 1
        return v / (np.linalg.norm(v) or 1.0)

    embedder = embeddings.Embedder("test/crc32-words", 16, lambda texts: np.stack([vector(t) for t in texts]), vector)
    monkeypatch.setitem(embeddings.MODELS, embedder.name, lambda: embedder)
    monkeypatch.setitem(embeddings._LOADED, embedder.name, embedder)
    kb_import(older_kb, pubmed_file(tmp_path / "new.xml", [new_rct()]))
    embeddings.build_vectors(older_kb, embedder)

    def nearest() -> list[tuple[str, int, str, float]]:
        index = embeddings.load_index(older_kb)
        assert index.coverage == 1.0
        sql = "select study_id, position, text from sentences_text where rowid = ?"
        with connect(older_kb) as conn:
            return [(*conn.execute(sql, [rowid]).fetchone(), round(cosine, 5))
                    for rowid, cosine in index.search("esketamine dissociation", 20)]

    before = nearest()
    assert CliRunner().invoke(cli, ["compact", "--db", str(older_kb)]).exit_code == 0
    assert rowids_of(older_kb, NEW_RCT)[0] == 1, "the 2026 study moved to the front"
    assert nearest() == before  # the same sentences, read by their new rowids


def test_tail_limits_keep_ranking_under_one_and_a_half_caps():
    assert order.TAIL_LIMITS["sentences"] <= retrieve.RANKED_SENTENCES_CAP // 2
    assert order.TAIL_LIMITS["studies"] <= retrieve.RANKED_STUDIES_CAP // 2


def test_compact_without_a_database_is_one_line_error(tmp_path):
    done = CliRunner().invoke(cli, ["compact", "--db", str(tmp_path / "missing.db")])
    assert done.exit_code == 1
    assert done.output.strip().splitlines() == [f"Error: {tmp_path / 'missing.db'}: no such database "
                                                "(run `kb build` first)"]


# --------------------------------------------------------------------------- at the scale

SCALE = 30_000


def write_older_rows(target: Path, studies: int, seed: int = 15) -> None:
    """``studies`` minimal older studies (1995-2020) by SQL, newest first, with their sentence index.

    Every title says ketamine (the search "ketamine" matches all: past its 20,000 cap); one study
    in three reports dissociation (10,000 sentences and abstracts: past the claim checker's caps,
    below the share of sentences at which the claim checker stops ranking a word).
    """
    rng = random.Random(seed)
    rows = []
    for n in range(studies):
        year = rng.randint(1995, 2020)
        title = f"Intravenous ketamine for depression: an observational cohort of {20 + n % 500} adults"
        middle = "Dissociation was mild and brief after each infusion." if n % 3 == 0 else \
            f"Blood pressure rose by {n % 20 + 2} mmHg during infusions."
        rows.append((str(30_000_000 + n), year, title,
                     [f"We followed {20 + n % 500} adults with depression given infusions.", middle]))
    rows.sort(key=lambda row: -row[1])
    db = sqlite_utils.Database(target)
    create_schema(db, fts=False)
    with db.atomic():
        db.conn.executemany(
            "insert into studies (id, pmid, title, abstract, year, on_topic, designs, sources) "
            "values (?, ?, ?, ?, ?, 1, '[]', '[\"pubmed\"]')",
            [(sid, int(sid), title, " ".join(text), year) for sid, year, title, text in rows])
        db.conn.executemany("insert into sentence_contexts (study_id, context) values (?, ?)",
                            [(sid, f"{title} | {year}") for sid, year, title, _ in rows])
        db.conn.executemany(
            "insert into sentences (study_id, position, section, section_kind, text) values (?, ?, ?, ?, ?)",
            [(sid, i, *(("TITLE", "title") if i == 0 else ("", "abstract")), text)
             for sid, _, title, text in rows for i, text in enumerate([title, *text])])
    create_fts(db)
    refresh_term_docs(db)
    order.mark_sorted(db)
    db.close()


def test_imported_rct_is_in_the_top_200_of_30000_older_studies(tmp_path):
    target = tmp_path / "kb.db"
    write_older_rows(target, SCALE)
    builder.import_into(target, collect_one(pubmed_file(tmp_path / "new.xml", [new_rct()])), "file", ["new.xml"])
    with connect(target) as conn:
        assert conn.execute("select rowid from studies where id = ?", [NEW_RCT]).fetchone()[0] == SCALE + 1
        query = check_claim(conn, CLAIM).fts_query
        ranges = [retrieve.ranked_range(conn, "sentences_fts", query, retrieve.RANKED_SENTENCES_CAP),
                  retrieve.ranked_range(conn, "studies_fts", query, retrieve.RANKED_STUDIES_CAP)]
    assert all(r.last < r.tail_after for r in ranges), "both rankings are capped at this size"
    assert NEW_RCT in claim_ids(target, limit=200)
    assert NEW_RCT in [row[0] for row in search_rows(target, "ketamine")]
    db = sqlite_utils.Database(target)
    order.renumber(db)
    db.close()
    assert_in_recency_order(target)
    assert claim_ids(target, limit=200)[0] == NEW_RCT
    assert NEW_RCT in [row[0] for row in search_rows(target, "ketamine")]


def collect_one(path: Path) -> builder.Collected:
    collected = builder.Collected()
    collect.collect_file(collected, path)
    return collected



@pytest.fixture
def small_page_caps(monkeypatch):
    """The search page's caps far below the small kb.db's matches."""
    monkeypatch.setattr(site_search, "MATCH_CAP", 5)
    monkeypatch.setattr(site_search, "SENTENCE_CAP", 10)


def page_ids(path: Path, **query: str) -> list[str]:
    args = site_search.parse_args({key: [value] for key, value in query.items()})
    with connect(path) as conn:
        page = site_search.search_page(conn, args, labels={})
    if args.tab == "sentences":
        return [row["study_id"] for row in page.sentences]
    return [hit.row["id"] for hit in page.studies.hits]


def test_search_page_ranks_and_lists_the_tail(older_kb, tmp_path, small_page_caps):
    assert NEW_RCT not in page_ids(older_kb, q="dissociation")
    kb_import(older_kb, pubmed_file(tmp_path / "new.xml", [new_rct()]))
    assert order.tail_sizes(sqlite_utils.Database(older_kb))["studies"] == 1, "the import left a tail"
    assert page_ids(older_kb, q="esketamine dissociation")[0] == NEW_RCT
    assert NEW_RCT in page_ids(older_kb, q="dissociation", tab="sentences")
    assert page_ids(older_kb)[0] == NEW_RCT, "with no words: newest first, the tail among them"
    with connect(older_kb) as conn:
        found = site_search.plan(conn, site_search.parse_args({"q": ["dissociation"]}))
    assert found.capped, "the prefix still matched more than the cap"


def test_tag_page_lists_an_imported_study_among_the_newest(older_kb, tmp_path):
    kb_import(older_kb, pubmed_file(tmp_path / "new.xml", [new_rct()]))
    datasette = Datasette([str(older_kb)])
    detail = asyncio.run(browse.tag_detail(datasette, "kb", "dissociation"))
    newest = [row["id"] for row in detail["newest"]]
    assert newest[0] == NEW_RCT, "the 2026 study leads the tag's newest, though written last"
    years = dict(sqlite_utils.Database(older_kb).execute("select id, year from studies").fetchall())
    assert [years[i] for i in newest] == sorted((years[i] for i in newest), reverse=True)
