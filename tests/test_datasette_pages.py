"""The Datasette site as `kb serve` runs it: metadata, canned queries, dashboard, study and trial
pages, escaping, robots, SQLite limits and the SQL time limit."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml
from datasette.app import Datasette
from datasette.utils import escape_fts

from ingest.db import build as builder

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEMPLATES = ROOT / "ingest" / "site" / "templates"
PLUGINS = ROOT / "ingest" / "site" / "plugins"
METADATA = yaml.safe_load((ROOT / "metadata.yml").read_text())

# Two studies written for these tests: one whose every text field carries markup that must never
# run (and a trial registered under it with the same), one comparing ketamine with ECT.
SITE_XML = """<?xml version="1.0" ?>
<PubmedArticleSet>
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">99000001</PMID>
    <Article PubModel="Print">
      <Journal>
        <JournalIssue CitedMedium="Print"><PubDate><Year>2023</Year><Month>Mar</Month></PubDate></JournalIssue>
        <Title>Journal of &lt;b&gt;Bold&lt;/b&gt; Psychiatry</Title>
      </Journal>
      <ArticleTitle>Esketamine &lt;script&gt;alert("title")&lt;/script&gt; for treatment-resistant depression
        &lt;img src=x onerror=alert(1)&gt;</ArticleTitle>
      <Abstract>
        <AbstractText Label="&lt;i&gt;BACKGROUND" NlmCategory="BACKGROUND">Esketamine is an NMDA receptor
          antagonist &lt;script&gt;alert("abstract")&lt;/script&gt;.</AbstractText>
        <AbstractText Label="RESULTS" NlmCategory="RESULTS">In 40 adults with treatment-resistant depression,
          dissociation &lt;script&gt;alert("evidence")&lt;/script&gt; was reported by 12 patients.</AbstractText>
      </Abstract>
      <AuthorList><Author ValidYN="Y"><LastName>&lt;img src=x onerror=alert(3)&gt;</LastName>
        <Initials>X</Initials></Author></AuthorList>
      <DataBankList CompleteYN="Y"><DataBank><DataBankName>ClinicalTrials.gov</DataBankName>
        <AccessionNumberList><AccessionNumber>NCT09999999</AccessionNumber></AccessionNumberList>
      </DataBank></DataBankList>
      <PublicationTypeList><PublicationType UI="D016449">Randomized Controlled Trial</PublicationType>
      </PublicationTypeList>
    </Article>
  </MedlineCitation>
  <PubmedData><ArticleIdList><ArticleId IdType="pubmed">99000001</ArticleId>
    <ArticleId IdType="doi">10.1000/xss"onmouseover="alert(4)</ArticleId></ArticleIdList></PubmedData>
</PubmedArticle>
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">99000002</PMID>
    <Article PubModel="Print">
      <Journal>
        <JournalIssue CitedMedium="Print"><PubDate><Year>2022</Year></PubDate></JournalIssue>
        <Title>Example Journal of Psychiatry</Title>
      </Journal>
      <ArticleTitle>Intravenous ketamine versus electroconvulsive therapy for severe depression: a randomised
        trial.</ArticleTitle>
      <Abstract>
        <AbstractText>We randomised 120 inpatients with treatment-resistant depression to intravenous ketamine or
          electroconvulsive therapy (ECT). Transient dissociation occurred in 20 patients. No hallucinations were
          reported. The trial was registered as NCT04599855.</AbstractText>
      </Abstract>
      <PublicationTypeList><PublicationType UI="D016449">Randomized Controlled Trial</PublicationType>
      </PublicationTypeList>
    </Article>
  </MedlineCitation>
  <PubmedData><ArticleIdList><ArticleId IdType="pubmed">99000002</ArticleId></ArticleIdList></PubmedData>
</PubmedArticle>
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">99000003</PMID>
    <Article PubModel="Print">
      <Journal>
        <JournalIssue CitedMedium="Print"><PubDate><Year>2024</Year></PubDate></JournalIssue>
        <Title>Example Journal of Psychedelics</Title>
      </Journal>
      <ArticleTitle>LSD microdosing in major depressive disorder: an open-label trial.</ArticleTitle>
      <Abstract>
        <AbstractText>Nineteen adults with major depressive disorder took LSD microdoses for six weeks. Depression
          scores fell.</AbstractText>
      </Abstract>
    </Article>
  </MedlineCitation>
  <PubmedData><ArticleIdList><ArticleId IdType="pubmed">99000003</ArticleId></ArticleIdList></PubmedData>
</PubmedArticle>
</PubmedArticleSet>
"""

SITE_TRIALS = {"studies": [{
    "protocolSection": {
        "identificationModule": {"nctId": "NCT09999999",
                                 "briefTitle": 'Ketamine <script>alert("trial")</script> versus ECT'},
        "statusModule": {"overallStatus": "COMPLETED", "startDateStruct": {"date": "2019-05"}},
        "conditionsModule": {"conditions": ["Depression <b>bold</b>"]},
        "designModule": {"studyType": "INTERVENTIONAL", "phases": ["PHASE3"],
                         "enrollmentInfo": {"count": 60, "type": "ACTUAL"}},
        "armsInterventionsModule": {"interventions": [
            {"type": "DRUG", "name": "Ketamine"},
            {"type": "PROCEDURE", "name": "Electroconvulsive therapy <img src=x onerror=alert(2)>"},
        ]},
        "sponsorCollaboratorsModule": {"leadSponsor": {"name": "<script>sponsor</script>", "class": "OTHER"}},
    },
    "hasResults": False,
}]}

STUDY_IDS = {"39000001", "2345678", "17000002", "36000004", "99000001", "99000002", "99000003"}
OFF_TOPIC = "99000003"  # an LSD trial: kept, flagged, hidden by default


def build_site_kb(folder: Path) -> Path:
    """kb.db from the PubMed and ClinicalTrials.gov fixtures plus the two studies above."""
    inputs = folder / "in"
    inputs.mkdir(parents=True)
    for name in ("efetch_cases.xml", "export.nbib"):
        shutil.copy(FIXTURES / "pubmed" / name, inputs)
    for name in ("studies_page1.json", "studies_page2.json"):
        shutil.copy(FIXTURES / "clinicaltrials" / name, inputs)
    (inputs / "site.xml").write_text(SITE_XML, encoding="utf-8")
    (inputs / "site_trials.json").write_text(json.dumps(SITE_TRIALS), encoding="utf-8")
    # Named kb.db: metadata.yml describes the database called "kb".
    target = folder / "kb.db"
    builder.build(target, builder.collect_dir(inputs), "files", "from-dir")
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`kb serve` on a free loopback port, stopped by stop()."""

    def __init__(self, db: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        kb = Path(sys.executable).with_name("kb")
        self.process = subprocess.Popen([str(kb), "serve", "--db", str(db), "--port", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{self.base}/-/versions.json", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kb serve did not start: {self.process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()


# site_kb (build_site_kb's kb.db) and ds (the site on it, as kb serve runs it): tests/conftest.py.


def get(ds: Datasette, path: str, **params):
    return asyncio.run(ds.client.get(path, params=params or None, follow_redirects=True))


def rows(ds: Datasette, path: str, **params) -> list[dict]:
    response = get(ds, path, _shape="objects", **params)
    assert response.status_code == 200, response.text[:500]
    data = response.json()
    assert data.get("ok", True), data.get("error")
    return data["rows"]


def load_plugin(name: str):
    spec = importlib.util.spec_from_file_location(f"kb_test_{name}", PLUGINS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- metadata


def test_fixture_kb_has_studies_trials_and_links(site_kb):
    db = sqlite3.connect(site_kb)
    try:
        assert {r[0] for r in db.execute("select id from studies")} == STUDY_IDS
        links = set(db.execute("select study_id, nct_id from study_trials"))
        assert {("99000001", "NCT09999999"), ("99000002", "NCT04599855")} <= links
    finally:
        db.close()


def test_every_table_and_column_is_described(site_kb):
    tables = METADATA["databases"]["kb"]["tables"]
    db = sqlite3.connect(site_kb)
    try:
        names = [r[0] for r in db.execute(
            "select name from sqlite_master where type = 'table' and name not like '%fts%' "
            "and name not like 'sqlite_%'")]
        views = [r[0] for r in db.execute("select name from sqlite_master where type = 'view'")]
        for table in names:
            assert tables.get(table, {}).get("description"), f"{table}: no description"
            columns = [r[1] for r in db.execute(f"pragma table_info([{table}])")]
            missing = [c for c in columns if c not in (tables[table].get("columns") or {})]
            assert not missing, f"{table}: columns without a description: {missing}"
        for view in views:
            assert tables.get(view, {}).get("description"), f"{view}: no description"
    finally:
        db.close()


def test_site_metadata_attributions_and_defaults():
    html = METADATA["description_html"]
    for url in ("nlm.nih.gov/databases/download/terms_and_conditions", "europepmc.org/Copyright",
                "clinicaltrials.gov/about-site/terms-conditions"):
        assert url in html
    studies = METADATA["databases"]["kb"]["tables"]["studies"]
    arrays = {f.get("tags") or f.get("array") for f in studies["facets"] if isinstance(f, dict)} - {None}
    assert {"designs", "drugs", "indications", "side_effects", "routes"} <= arrays
    assert {"counted": "year"} in studies["facets"]
    assert {"ordered": "evidence_level_label"} in studies["facets"]
    assert studies["fts_table"] == "studies_fts" and studies["label_column"] == "title"
    assert METADATA["databases"]["kb"]["tables"]["trials"]["label_column"] == "title"
    assert METADATA["plugins"]["datasette-block-robots"]["disallow"] == ["/"]


def test_studies_facets_and_search(ds):
    data = get(ds, "/kb/studies.json", _search="dissociation").json()
    assert {r[0] for r in data["rows"]} >= {"39000001", "99000002"}
    facets = data["facet_results"]
    for name in ("year", "designs", "drugs", "indications", "side_effects", "routes"):
        assert name in facets, name
    assert "rct" in {v["value"] for v in facets["designs"]["results"]}
    html = get(ds, "/kb/studies", _search="dissociation").text
    assert "One row per study" in html and 'class="kb-chip"' in html  # tag ids shown as labelled links
    assert "Randomised controlled trial" in html


# --------------------------------------------------------------------------- canned queries

QUERY_PARAMS = {
    "search": {"q": "dissociation"},
    "new_studies": {"q": "dissociation", "indication": "", "design": "rct", "drug": ""},
    "studies_by_indication": {"indication": "trd", "design": "rct", "year_from": "2020", "year_to": ""},
    "indication_design_counts": {"indication": "Treatment-resistant depression"},
    "side_effects_in_rcts": {"drug": "ketamine", "route": "iv"},
    "side_effect_evidence": {"drug": "", "route": "", "side_effect": "hallucinations"},
    "mechanisms_per_year": {"mechanism": "", "drug": ""},
    "head_to_head": {"a": "ketamine", "b": "ect", "design": ""},
    "trials_without_papers": {"status": "", "started_before": "", "drug": ""},
    "retracted_or_corrected": {"kind": ""},
    "reported_rates": {"quantity": "remission_rate", "design": "", "indication": ""},
}


def test_every_canned_query_is_documented_and_runs(ds):
    queries = METADATA["databases"]["kb"]["queries"]
    assert set(queries) == set(QUERY_PARAMS)
    for name, query in queries.items():
        assert query.get("title") and (query.get("description") or query.get("description_html")), name
        assert set(query["params"]) == set(QUERY_PARAMS[name]), name
        rows(ds, f"/kb/{name}.json", **QUERY_PARAMS[name])
        # Empty parameters never error: the form loads before anything is typed.
        assert get(ds, f"/kb/{name}").status_code == 200, name
        empty = get(ds, f"/kb/{name}.json", _shape="objects").json()
        assert empty.get("ok", True), (name, empty.get("error"))


def test_ranked_search_puts_title_matches_first(ds):
    found = rows(ds, "/kb/search.json", q="esketamine")
    ids = [r["study_id"] for r in found]
    assert ids and ids[0] in {"39000001", "99000001"}  # esketamine in the title
    assert [r["score"] for r in found] == sorted(r["score"] for r in found)
    for q in ('"', 'treatment-resistant', 'a OR', "o'brien", ""):
        assert get(ds, "/kb/search.json", q=q).json().get("ok", True), q


def test_studies_by_indication_filters(ds):
    found = rows(ds, "/kb/studies_by_indication.json", **QUERY_PARAMS["studies_by_indication"])
    assert {r["study_id"] for r in found} == {"39000001", "99000001", "99000002"}
    assert all(r["design"] == "Randomised controlled trial" for r in found)
    older = rows(ds, "/kb/studies_by_indication.json", indication="trd", design="", year_from="", year_to="2022")
    assert {r["study_id"] for r in older} == {"99000002"}


def test_side_effects_reported_and_absent(ds):
    found = {r["side_effect"]: r for r in rows(ds, "/kb/side_effects_in_rcts.json", drug="ketamine", route="iv")}
    assert found["Dissociation"]["rcts_reporting_it"] == 1
    assert found["Hallucinations and perceptual changes"]["rcts_reporting_it_absent"] == 1
    evidence = rows(ds, "/kb/side_effect_evidence.json", **QUERY_PARAMS["side_effect_evidence"])
    assert [(r["study_id"], r["finding"]) for r in evidence] == [("99000002", "reported as absent")]


def test_head_to_head_finds_papers_and_registered_trials(ds):
    found = rows(ds, "/kb/head_to_head.json", **QUERY_PARAMS["head_to_head"])
    papers = [r for r in found if r["record"] == "paper"]
    trials = [r for r in found if r["record"] == "registered trial"]
    assert papers[0]["study_id"] == "99000002" and papers[0]["both_in_title"] == 1
    assert [t["nct_id"] for t in trials] == ["NCT09999999"]
    drugs = rows(ds, "/kb/head_to_head.json", a="esketamine", b="Ketamine (racemic)", design="")
    assert drugs == []  # no fixture study gives both forms
    html = get(ds, "/kb/head_to_head", **QUERY_PARAMS["head_to_head"]).text
    assert 'href="/kb/studies/99000002"' in html and 'href="/kb/trials/NCT09999999"' in html


def test_trials_without_papers(ds):
    found = {r["nct_id"] for r in rows(ds, "/kb/trials_without_papers.json", **QUERY_PARAMS["trials_without_papers"])}
    assert found == {"NCT03890419", "NCT05123456"}
    recruiting = rows(ds, "/kb/trials_without_papers.json", status="recruiting", started_before="2020", drug="")
    assert [r["nct_id"] for r in recruiting] == ["NCT03890419"]


def test_retracted_or_corrected(ds):
    found = rows(ds, "/kb/retracted_or_corrected.json", kind="")
    pairs = {(r["study_id"], r["notice"]) for r in found}
    assert pairs == {("39000001", "ErratumIn"), ("2345678", "RetractionIn"), ("36000004", "ErratumIn")}
    retracted = rows(ds, "/kb/retracted_or_corrected.json", kind="retraction")
    assert [(r["study_id"], r["notice_url"]) for r in retracted] == [
        ("2345678", "https://pubmed.ncbi.nlm.nih.gov/1999999/")]


# --------------------------------------------------------------------------- pages


def test_home_page_links(ds):
    html = get(ds, "/").text
    assert 'href="/-/dashboards/overview"' in html
    assert 'href="/-/claim-check"' in html
    assert 'action="/-/search"' in html
    for name in METADATA["databases"]["kb"]["queries"]:
        assert f'href="/kb/{name}"' in html, name
    assert "ClinicalTrials.gov" in html and "Europe PMC" in html


def test_dashboard_page_and_chart_queries(ds):
    page = get(ds, "/-/dashboards/overview")
    assert page.status_code == 200
    assert "vega-lite.min.js" in page.text and "cdn" not in page.text.lower()
    for script in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "dashboards.js"):
        assert get(ds, f"/-/static-plugins/datasette_dashboards/{script}").status_code == 200, script
    dashboard = METADATA["plugins"]["datasette-dashboards"]["overview"]
    chart_names = {"by-indication", "design-mix", "side-effects"}
    assert chart_names <= set(dashboard["charts"])
    for name, chart in dashboard["charts"].items():
        for options in ({}, {"drug": "ketamine", "year_from": "2000", "year_to": "2030"}):
            sql = chart["query"]
            for match in re.findall(r"\[\[.*?\]\]", sql):
                var = re.search(r":(\w+)", match).group(1)
                sql = sql.replace(match, match[2:-2] if options.get(var) else "")
            found = rows(ds, "/kb.json", sql=sql, **{k: v for k, v in options.items() if f":{k}" in sql})
            if name in chart_names and not options:
                assert found, name
            if name == "side-effects" and not options:
                counted = {(r["side_effect"], r["finding"]): r["studies"] for r in found}
                assert counted[("Hallucinations and perceptual changes", "reported as absent")] == 1


def test_study_page(ds):
    response = get(ds, "/kb/studies/39000001")
    assert response.status_code == 200
    html = response.text
    assert "Intranasal esketamine in treatment-resistant depression" in html
    assert "Neuropsychopharmacology" in html and "2024" in html
    assert "Randomised controlled trial" in html  # design
    assert "n = <strong" in html and ">224<" in html  # sample size
    for label in ("BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"):
        assert f"<h3>{label}</h3>" in html
    assert "Dissociation peaked at 40 minutes" in html
    for kind in ("Study design", "Indication", "Drug", "Side effect"):
        assert f">{kind}</h3>" in html, kind
    assert "<mark>Dissociation</mark> peaked" in html  # the matched phrase in its sentence
    assert 'href="https://pubmed.ncbi.nlm.nih.gov/39000001/"' in html
    assert 'href="https://doi.org/10.1038/s41386-024-01855-x"' in html
    assert 'href="https://pmc.ncbi.nlm.nih.gov/articles/PMC11111111/"' in html
    assert 'href="https://clinicaltrials.gov/study/NCT03434041"' in html  # registered, not in kb.db
    assert "ErratumIn" in html and "Dosage error in Methods" in html


def test_study_page_links_trials_and_marks_absent_side_effects(ds):
    html = get(ds, "/kb/studies/99000002").text
    assert 'href="/kb/trials/NCT04599855"' in html
    assert "reported as absent" in html and "No <mark>hallucinations</mark> were reported." in html
    retracted = get(ds, "/kb/studies/2345678").text
    assert "This study has been retracted." in retracted and "https://pubmed.ncbi.nlm.nih.gov/1999999/" in retracted


def test_trial_page_lists_its_papers(ds):
    html = get(ds, "/kb/trials/NCT04599855").text
    assert "Intranasal Esketamine Versus Quetiapine XR" in html
    assert 'href="/kb/studies/99000002"' in html and "Intravenous ketamine versus electroconvulsive" in html
    assert 'href="https://clinicaltrials.gov/study/NCT04599855"' in html
    assert 'href="https://pubmed.ncbi.nlm.nih.gov/31109199/"' in html  # a registry reference not in kb.db
    lonely = get(ds, "/kb/trials/NCT03890419").text
    assert "No study in kb.db is linked to this trial." in lonely


@pytest.mark.parametrize("path", ["/kb/studies/99000001", "/kb/trials/NCT09999999", "/kb/studies",
                                  "/kb/search?q=esketamine", "/kb/head_to_head?a=ketamine&b=ect&design=",
                                  "/kb/trials", "/kb/study_tags?study_id=99000001"])
def test_record_text_is_always_escaped(ds, path):
    html = get(ds, path).text
    assert "<script>alert" not in html and "<script>sponsor" not in html
    assert "<img src=x" not in html and "<b>Bold" not in html and "<b>bold" not in html
    assert "onmouseover=\"alert" not in html


def test_study_page_escapes_then_highlights(ds):
    html = get(ds, "/kb/studies/99000001").text
    assert 'Esketamine &lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;' in html
    assert "&lt;script&gt;alert(&#34;abstract&#34;)&lt;/script&gt;" in html
    assert "<h3>&lt;i&gt;BACKGROUND</h3>" in html
    assert "<mark>dissociation</mark> &lt;script&gt;alert(&#34;evidence&#34;)&lt;/script&gt;" in html
    assert "Journal of &lt;b&gt;Bold&lt;/b&gt; Psychiatry" in html
    trial = get(ds, "/kb/trials/NCT09999999").text
    assert "Ketamine &lt;script&gt;alert(&#34;trial&#34;)&lt;/script&gt; versus ECT" in trial
    assert "Electroconvulsive therapy &lt;img src=x onerror=alert(2)&gt;" in trial


def test_highlight_helpers():
    site = load_plugin("kb_site")
    text = 'No <b>emergence</b> reactions; Dissociation & dissociative "symptoms"'
    spans = site.match_spans(text, "dissociation", "abstract")
    assert [text[a:b].lower() for a, b in spans][:1] == ["dissociation"]
    html = str(site.highlight(text, spans))
    assert html.startswith("No &lt;b&gt;emergence&lt;/b&gt; reactions; <mark>Dissociation</mark> &amp; ")
    assert str(site.highlight("<script>x</script>", [(1, 7)])) == "&lt;<mark>script</mark>&gt;x&lt;/script&gt;"
    assert site.match_spans("Ketamine/adverse effects", "ketamine", "mesh") == [(0, 8)]
    assert site.match_spans("Randomized Controlled Trial", "rct", "publication_type") == [(0, 27)]
    # A tag the vocabulary no longer has falls back to the patterns stored in kb.db.
    assert site.match_spans("a Foo-bar here", "gone", "abstract", json.dumps(["foo-bar"])) == [(2, 9)]
    assert site.match_spans("text", "gone", "abstract", "not json") == []


# --------------------------------------------------------------------------- read-only and safe


def test_robots_blocked(ds):
    robots = get(ds, "/robots.txt")
    assert robots.status_code == 200 and "Disallow: /" in robots.text
    assert get(ds, "/").headers.get("x-robots-tag") == "noindex, nofollow"
    site = load_plugin("kb_site")
    assert site.robots_blocked({}) and site.robots_blocked({"disallow": ["/"]})
    assert not site.robots_blocked({"allow_only_index": True})
    assert not site.robots_blocked({"literal": "User-agent: *\nAllow: /"})


def test_sqlite_limits_plugin():
    limits = load_plugin("sqlite_limits")
    conn = sqlite3.connect(":memory:")
    applied = limits.apply_limits(conn)
    assert applied["SQLITE_LIMIT_LENGTH"] == limits.LIMITS["SQLITE_LIMIT_LENGTH"]
    limits.bound_printf(conn)
    started = time.monotonic()
    with pytest.raises(sqlite3.DataError):
        conn.execute("select randomblob(1000000000)").fetchone()
    with pytest.raises(sqlite3.DataError):
        conn.execute("select zeroblob(100000000)").fetchone()
    for sql in ("select printf('%.*c', 1000000000, 'x')", "select printf('%1000000000d', 1)"):
        with pytest.raises(sqlite3.DataError, match="too big"):
            conn.execute(sql).fetchone()
    assert conn.execute("select printf(null)").fetchone() == (None,)
    assert conn.execute("select printf('%05.1f|%s|%q|%%', 2.5, 'a', 'it''s')").fetchone() == ("002.5|a|it''s|%",)
    assert conn.execute("select format('%.*c', 3, 'x')").fetchone() == ("xxx",)
    assert time.monotonic() - started < 2
    with pytest.raises(sqlite3.DataError, match="too large"):
        conn.execute("select '" + "x" * 150_000 + "'")  # longer than SQLITE_LIMIT_SQL_LENGTH
    with pytest.raises(sqlite3.OperationalError, match="too large"):
        conn.execute("select " + " + ".join(["1"] * 1_000))  # deeper than SQLITE_LIMIT_EXPR_DEPTH


def test_huge_values_fail_fast_through_datasette(ds):
    started = time.monotonic()
    response = get(ds, "/kb.json", sql="select length(randomblob(1000000000)) as n")
    assert response.status_code == 400 and "too big" in response.json()["error"]
    response = get(ds, "/kb.json", sql="select printf('%.*c', 1000000000, 'x') as s")
    assert response.status_code == 400 and "too big" in response.json()["error"]
    assert time.monotonic() - started < 3
    assert get(ds, "/kb.json", sql="attach database ':memory:' as x").status_code == 400


@pytest.fixture(scope="module")
def served(site_kb):
    server = Served(site_kb)
    yield server
    server.stop()


def test_served_read_only_with_limits(served):
    settings = requests.get(f"{served.base}/-/settings.json", timeout=10).json()
    assert settings["sql_time_limit_ms"] <= 2000 and settings["max_returned_rows"] <= 1000
    databases = requests.get(f"{served.base}/-/databases.json", timeout=10).json()
    assert [d["is_mutable"] for d in databases if d["name"] == "kb"] == [False]
    response = requests.get(f"{served.base}/kb.json", params={"sql": "select length(randomblob(1000000000))"},
                            timeout=10)
    assert response.status_code == 400 and "too big" in response.text
    assert requests.get(f"{served.base}/robots.txt", timeout=10).text.startswith("User-agent: *\nDisallow: /")
    assert requests.get(f"{served.base}/kb/studies/99000001", timeout=10).status_code == 200


def test_runaway_query_is_stopped_while_cheap_pages_answer(served):
    runaway = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
    result: dict = {}

    def expensive():
        started = time.monotonic()
        response = requests.get(f"{served.base}/kb.json", params={"sql": runaway}, timeout=60)
        result.update(status=response.status_code, body=response.text, finished=time.monotonic(),
                      elapsed=time.monotonic() - started)

    thread = threading.Thread(target=expensive)
    thread.start()
    time.sleep(0.3)
    cheap = []
    for path in ("/-/versions.json", f"/kb/studies/{quote('39000001')}", "/kb/studies.json?_shape=array"):
        started = time.monotonic()
        response = requests.get(served.base + path, timeout=30)
        cheap.append((path, response.status_code, time.monotonic() - started, time.monotonic()))
    thread.join(timeout=60)
    assert result, "the runaway query never answered"
    assert result["status"] == 400 and "too long" in result["body"]
    assert 1.0 <= result["elapsed"] < 15
    for path, status, elapsed, finished in cheap:
        assert status == 200, path
        assert finished < result["finished"], f"{path} waited for the runaway query ({elapsed:.2f}s)"


def test_ranked_search_scores_only_the_newest_matches_past_its_cap(site_kb):
    # The canned query ranks at most 20,000 matches, the lowest rowids (kb.db stores the newest
    # studies first). The same SQL with a cap of 2 shows what the cap does on a small kb.db.
    sql = METADATA["databases"]["kb"]["queries"]["search"]["sql"]
    assert "offset 19999" in sql
    conn = sqlite3.connect(f"file:{site_kb}?mode=ro", uri=True)
    conn.create_function("escape_fts", 1, escape_fts)
    matching = [r[0] for r in conn.execute(
        "select rowid from studies_fts where studies_fts match 'ketamine' order by rowid")]
    assert len(matching) > 2
    capped = conn.execute(sql.replace("offset 19999", "offset 1"), {"q": "ketamine"}).fetchall()
    ids = {r[0] for r in conn.execute(f"select id from studies where rowid in ({matching[0]}, {matching[1]})")}
    assert {r[0] for r in capped} == ids
    assert len(conn.execute(sql, {"q": "ketamine"}).fetchall()) == len(matching)


# --------------------------------------------------------------------------- what a study is


def test_studies_page_opens_on_the_on_topic_studies(ds):
    first = asyncio.run(ds.client.get("/kb/studies"))
    assert first.status_code == 302 and first.headers["location"] == "/kb/studies?on_topic=1"
    kept = asyncio.run(ds.client.get("/kb/studies?_search=depression"))
    assert kept.headers["location"] == "/kb/studies?_search=depression&on_topic=1"
    html = get(ds, "/kb/studies").text
    assert 'id="kb-offtopic-notice"' in html and "1 off-topic record hidden" in html
    assert f"/kb/studies/{OFF_TOPIC}" not in html
    everything = get(ds, "/kb/studies", _offtopic="1")
    assert everything.status_code == 200 and f"/kb/studies/{OFF_TOPIC}" in everything.text
    # JSON for analysts is never filtered behind their back.
    assert OFF_TOPIC in {r["id"] for r in rows(ds, "/kb/studies.json", _size="max")}


def test_off_topic_study_page_says_so(ds):
    html = get(ds, f"/kb/studies/{OFF_TOPIC}").text
    assert "Off topic." in html
    assert "Off topic." not in get(ds, "/kb/studies/99000002").text


def test_evidence_level_facet_sorts_by_level_and_shows_on_the_study_page(ds):
    facet = get(ds, "/kb/studies.json", _offtopic="1", _facet_ordered="evidence_level_label").json()
    values = [v["value"] for v in facet["facet_results"]["evidence_level_label"]["results"]]
    assert values == sorted(values) and "2 · Randomised controlled trial" in values
    html = get(ds, "/kb/studies/99000002").text
    assert "Evidence level" in html and "2 · Randomised controlled trial" in html
    levels = rows(ds, "/kb/evidence_levels.json")
    assert [r["level"] for r in levels] == [1, 2, 3, 4, 5, 6] and "rct" in levels[1]["designs"]


def test_study_page_shows_its_findings_and_quantities(ds):
    page = get(ds, "/kb/studies/39000001").text
    findings = page[page.index("<h2>Findings</h2>"):page.index("</section>", page.index("<h2>Findings</h2>"))]
    assert "Dissociation peaked at 40 minutes and resolved by 2 hours." in findings
    assert "Dissociation: decreased" in findings and "resolved by 2 hours" in findings and "(2 h)" in findings
    # The same rows through SQL: an analyst's "which studies report a duration, in hours".
    found = rows(ds, "/kb/finding_quantities.json", type="duration", study_id="39000001")
    assert [(r["value"], r["unit"], r["text"]) for r in found] == [(2.0, "h", "resolved by 2 hours")]
    assert rows(ds, "/kb/findings.json", study_id="99000003", outcome="depressive_symptoms")[0]["direction"] \
        == "improved"


def test_a_study_without_result_sentences_has_no_findings_section(ds):
    assert "<h2>Findings</h2>" not in get(ds, "/kb/studies/99000001").text


def test_table_permissions_are_looked_up_once_and_still_enforced(site_kb):
    import copy

    metadata = copy.deepcopy(METADATA)
    metadata["databases"]["kb"]["tables"]["trials"]["allow"] = {"id": "nobody"}
    ds = Datasette(immutables=[str(site_kb)], metadata=metadata, template_dir=str(TEMPLATES),
                   plugins_dir=str(PLUGINS))
    for _ in range(2):  # the second answer comes from the cache, and is the same
        assert get(ds, "/kb/trials").status_code == 403
        assert get(ds, "/kb/studies").status_code == 200
    info = ds._table_permission_allows.cache_info()
    assert info.hits > 0 and info.misses <= 200


def test_the_studies_search_is_planned_on_the_indexes_and_reads_as_datasettes(ds, site_kb):
    """?_search= on the studies page: the same rows, count, facets and search box as Datasette's own
    search, the SQL written so SQLite walks the year index instead of fetching every match."""

    data = get(ds, "/kb/studies.json", _search="dissociation", on_topic="1", _shape="objects").json()
    conn = sqlite3.connect(site_kb)
    expected = [r[0] for r in conn.execute(
        "select id from studies where on_topic = 1 and rowid in (select rowid from studies_fts where studies_fts "
        "match '\"dissociation\"') order by year desc, rowid desc")]
    assert [r["id"] for r in data["rows"]] == expected[:len(data["rows"])] and data["filtered_table_rows_count"] \
        == len(expected)
    assert "+rowid in (select rowid from studies_fts" in data["query"]["sql"]
    assert 'search matches "dissociation"' in data["human_description_en"]
    html = get(ds, "/kb/studies", _search="dissociation", on_topic="1").text
    assert 'value="dissociation"' in html and "search matches" in html
    # Another order has no index to walk: Datasette's own search plans it.
    other = get(ds, "/kb/studies.json", _search="dissociation", on_topic="1", _sort="title").json()
    assert "+rowid" not in other["query"]["sql"] and other["filtered_table_rows_count"] == len(expected)
    # A search typed into the box replaces the one the page's hidden fields carry.
    again = get(ds, "/kb/studies.json?_kb_search=dissociation&_search=cystitis&on_topic=1").json()
    assert again["query"]["params"]["kb_search"] == "cystitis"
    # ... and in another order too, where Datasette's search takes the typed one over.
    mixed = get(ds, "/kb/studies.json?_kb_search=dissociation&_search=cystitis&on_topic=1&_sort=title").json()
    assert "+rowid" not in mixed["query"]["sql"] and mixed["query"]["params"].get("search") == "cystitis"
    # A link Datasette wrote (next page, facet, sort) carries _kb_search: it is the same search.
    carried = get(ds, "/kb/studies.json?_kb_search=dissociation&on_topic=1&_sort=title").json()
    assert carried["filtered_table_rows_count"] == len(expected) and "+rowid" not in carried["query"]["sql"]


def test_the_studies_search_query_is_handed_to_the_planner_for_its_order():
    from ingest.site.plugins.table_search import planned_query

    assert planned_query("on_topic=1") is None
    assert planned_query("_search=x&on_topic=1") == "_kb_search=x&on_topic=1"
    assert planned_query("_search=x&_sort_desc=year") == "_kb_search=x&_sort_desc=year"
    assert planned_query("_search=x&_sort=title") is None
    assert planned_query("_kb_search=x&_sort=title") == "_search=x&_sort=title"
    assert planned_query("_kb_search=old&_search=new") == "_kb_search=new"
    assert planned_query("_kb_search=x") is None
