"""Three sources in one kb.db: Europe PMC merged into PubMed records, trials linked to papers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from ingest.cli import cli
from ingest.db import build as builder
from ingest.db import collect


def epmc_result(**fields) -> dict:
    base = {"source": "MED", "title": "A title.", "abstractText": "An abstract.", "pubYear": "2024",
            "isOpenAccess": "N", "citedByCount": 0}
    base.update(fields)
    return base


def epmc_page(results: list[dict]) -> bytes:
    return json.dumps({"version": "6.9", "hitCount": len(results), "nextCursorMark": "END",
                       "resultList": {"result": results}}).encode()


def ct_study(nct: str, title: str, summary: str = "", refs: list[dict] | None = None, **extra) -> dict:
    protocol = {
        "identificationModule": {"nctId": nct, "briefTitle": title},
        "descriptionModule": {"briefSummary": summary},
        "armsInterventionsModule": {"interventions": extra.get("interventions", [])},
        "conditionsModule": {"conditions": extra.get("conditions", [])},
    }
    if refs:
        protocol["referencesModule"] = {"references": refs}
    return {"protocolSection": protocol, "hasResults": extra.get("has_results", False)}


@pytest.fixture
def three_sources(tmp_path, fixtures) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(fixtures / "pubmed" / "efetch_cases.xml", folder / "a.xml")
    shutil.copy(fixtures / "pubmed" / "export.nbib", folder / "b.nbib")
    (folder / "c_epmc.json").write_bytes(epmc_page([
        # Same PMID as a PubMed record: merged, adds citations and open access.
        epmc_result(id="39000001", pmid="39000001", doi="10.1038/s41386-024-01855-x",
                    isOpenAccess="Y", citedByCount=42, title="Intranasal esketamine in <i>TRD</i>."),
        # No PMID, same DOI as a PubMed record: merged by DOI, never duplicated.
        epmc_result(source="PPR", id="PPR900001", doi="10.1093/pm/pnac999",
                    title="Oral ketamine for chronic neuropathic pain (preprint)."),
        # A preprint PubMed lacks: a new study keyed by DOI.
        epmc_result(source="PPR", id="PPR900002", doi="10.1101/2025.01.01.25300001",
                    title="Arketamine in treatment-resistant depression: a pilot trial",
                    abstractText="<p>Twenty adults received <b>arketamine</b> (NCT05999999).</p>"),
    ]))
    (folder / "d_trials.json").write_bytes(json.dumps({"studies": [
        ct_study("NCT03434041", "Esketamine nasal spray in TRD", "Intranasal esketamine 56 mg in adults with "
                 "treatment-resistant depression.", interventions=[{"type": "DRUG", "name": "Esketamine nasal spray"}],
                 conditions=["Treatment Resistant Depression"], has_results=True),
        ct_study("NCT05999999", "Arketamine pilot", "Oral arketamine in depression."),
        ct_study("NCT07000001", "IV ketamine for neuropathic pain", "Intravenous ketamine infusion.",
                 refs=[{"pmid": "36000004", "type": "RESULT", "citation": "Smith AB. Pain Med. 2022."}],
                 conditions=["Neuropathic Pain"]),
        ct_study("NCT07000002", "Ketamine for alcohol use disorder", "Never published.",
                 conditions=["Alcohol Use Disorder"]),
    ]}).encode())
    return folder


def test_build_merges_sources_and_links_trials(three_sources, tmp_path):
    target = tmp_path / "kb.db"
    stats = builder.build(target, builder.collect_dir(three_sources), "all", "from-dir")
    db = sqlite_utils.Database(target)
    assert json.loads(stats["errors"]) == []
    # 4 PubMed studies (one deleted) + 36000004 from MEDLINE + one new preprint.
    ids = {r[0] for r in db.execute("select id from studies")}
    assert ids == {"39000001", "2345678", "17000002", "36000004", "doi:10.1101/2025.01.01.25300001"}
    merged = db["studies"].get("39000001")
    assert json.loads(merged["sources"]) == ["pubmed", "medline", "europepmc"]
    assert merged["cited_by_count"] == 42 and merged["is_open_access"] == 1
    assert merged["title"].startswith("Intranasal esketamine in treatment-resistant depression")
    by_doi = db["studies"].get("36000004")
    assert "europepmc" in json.loads(by_doi["sources"]) and by_doi["europepmc_id"] == "PPR:PPR900001"
    preprint = db["studies"].get("doi:10.1101/2025.01.01.25300001")
    assert preprint["is_preprint"] == 1 and preprint["pmid"] is None
    assert "arketamine" in json.loads(preprint["drugs"])
    # Trials, tagged through the same vocabulary.
    assert db["trials"].count == 4
    trial = db["trials"].get("NCT03434041")
    assert json.loads(trial["drugs"]) == ["esketamine"] and json.loads(trial["routes"]) == ["intranasal"]
    assert "trd" in json.loads(trial["indications"]) and trial["has_results"] == 1
    assert "chronic_pain" in json.loads(db["trials"].get("NCT07000001")["indications"])
    # Links, each with how it was found.
    links = set(db.execute("select study_id, nct_id, how from study_trials"))
    assert links == {
        ("39000001", "NCT03434041", "databank"),
        ("doi:10.1101/2025.01.01.25300001", "NCT05999999", "abstract"),
        ("36000004", "NCT07000001", "trial_reference"),
    }
    # NCT04338321 is cited by 39000001 but not in the trials data: no dangling link.
    assert db.execute("pragma foreign_key_check").fetchall() == []
    unpublished = db.execute(
        "select nct_id from trials where nct_id not in (select nct_id from study_trials) order by 1").fetchall()
    assert unpublished == [("NCT07000002",)]


def test_source_filter_and_idempotent_rebuild(three_sources, tmp_path):
    target = tmp_path / "kb.db"
    builder.build(target, builder.collect_dir(three_sources, sources=["pubmed"]), "pubmed", "from-dir")
    db = sqlite_utils.Database(target)
    assert db["trials"].count == 0 and db["studies"].count == 4
    builder.build(target, builder.collect_dir(three_sources), "all", "from-dir")
    # A build replaces the file: open it again to see the new one.
    first = sorted(map(tuple, sqlite_utils.Database(target).execute("select id, sources, cited_by_count from studies")))
    builder.build(target, builder.collect_dir(three_sources), "all", "from-dir")
    assert sorted(map(tuple, sqlite_utils.Database(target).execute(
        "select id, sources, cited_by_count from studies"))) == first


def test_malformed_json_page_reported(three_sources, tmp_path, fixtures):
    shutil.copy(fixtures / "clinicaltrials" / "truncated_page.json", three_sources / "e_truncated.json")
    (three_sources / "f_other.json").write_text('{"hello": "world"}')
    collected = builder.collect_dir(three_sources)
    assert any(e.startswith("e_truncated.json:") for e in collected.errors)
    assert any(e.startswith("f_other.json: JSON, but neither") for e in collected.errors)
    assert len(collected.trials) == 4


def test_import_trials_page_links_existing_studies(three_sources, tmp_path):
    target = tmp_path / "kb.db"
    builder.build(target, builder.collect_dir(three_sources, sources=["pubmed"]), "pubmed", "from-dir")
    collected = builder.Collected()
    collect.collect_file(collected, three_sources / "d_trials.json")
    builder.import_into(target, collected, "file", ["d_trials.json"])
    db = sqlite_utils.Database(target)
    assert db["trials"].count == 4
    assert set(db.execute("select how from study_trials")) == {("databank",), ("trial_reference",)}


def test_network_build_of_all_three_sources(httpserver, fixtures, tmp_path):
    eutils, epmc, ct = fixtures / "eutils", fixtures / "europepmc", fixtures / "clinicaltrials"
    httpserver.expect_ordered_request("/eutils/esearch.fcgi").respond_with_data(
        (eutils / "esearch_history.json").read_bytes())
    for page in ("efetch_page1.xml", "efetch_page2.xml"):
        httpserver.expect_ordered_request("/eutils/efetch.fcgi").respond_with_data((eutils / page).read_bytes())
    httpserver.expect_ordered_request("/epmc/search").respond_with_data((epmc / "search_page1.json").read_bytes())
    httpserver.expect_ordered_request("/epmc/search").respond_with_data((epmc / "search_page2.json").read_bytes())
    httpserver.expect_ordered_request("/ct/studies").respond_with_data((ct / "studies_page1.json").read_bytes())
    httpserver.expect_ordered_request("/ct/studies").respond_with_data((ct / "studies_page2.json").read_bytes())
    db = tmp_path / "kb.db"
    result = CliRunner().invoke(cli, [
        "build", "--db", str(db), "--base-url", httpserver.url_for("/eutils/"),
        "--europepmc-url", httpserver.url_for("/epmc/"), "--clinicaltrials-url", httpserver.url_for("/ct/"),
        "--batch-size", "2", "--backoff", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    kb = sqlite_utils.Database(db)
    sources = {s for (row,) in kb.execute("select sources from studies") for s in json.loads(row)}
    assert sources == {"pubmed", "europepmc"}
    assert kb["studies"].count == 3 + 3  # three PubMed records, three Europe PMC ones (no overlap)
    assert kb["trials"].count == 3
    run = list(kb.query("select * from ingest_runs"))[-1]
    assert run["source"] == "pubmed,europepmc,clinicaltrials" and run["mode"] == "network"
