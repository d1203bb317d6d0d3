"""`kb update`: only what changed since the last run, merged into kb.db; first_seen and entry dates.

One loopback server plays the three APIs. A first `kb build` from it fetches the initial pages;
`kb update` must then ask each API for changes since the day before that build (PubMed by entry
and modification date, Europe PMC by first-index and update date, ClinicalTrials.gov by
last-update-post date) and get a new 2026 RCT, a revised case series, a deleted citation and a
new trial.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import sqlite_utils
from click.testing import CliRunner
from werkzeug.wrappers import Request, Response

from ingest.cli import cli

NEW_PMID, REVISED_PMID, DELETED_PMID, NEW_TRIAL = "41999001", "17000002", "2345678", "NCT07000001"


def run(*args):
    return CliRunner().invoke(cli, list(args))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ThreeApis:
    """Handlers for E-utilities, Europe PMC and ClinicalTrials.gov; the requests they were sent."""

    def __init__(self, fixtures: Path, changed: bool = True):
        self.fixtures, self.changed, self.requests = fixtures, changed, []

    def page(self, name: str) -> Response:
        kind = "application/json" if name.endswith(".json") else "text/xml"
        return Response((self.fixtures / name).read_bytes(), content_type=kind)

    def __call__(self, request: Request) -> Response:
        args = {k: v[0] for k, v in parse_qs(request.query_string.decode()).items()}
        self.requests.append((request.path, args))
        if request.path.endswith("esearch.fcgi"):
            return self.esearch(args)
        if request.path.endswith("efetch.fcgi"):
            return self.efetch(args)
        if request.path.endswith("/search"):
            return self.europepmc(args)
        return self.clinicaltrials(args)

    def esearch(self, args: dict) -> Response:
        kind = args.get("datetype")
        if kind is None:
            return self.page("eutils/esearch_history.json")
        if not self.changed:
            return Response(json.dumps({"esearchresult": {"count": "0", "webenv": "E", "querykey": "1"}}))
        return self.page({"edat": "update/esearch_entered.json", "mdat": "update/esearch_revised.json"}[kind])

    def efetch(self, args: dict) -> Response:
        if "update_entered" in args["WebEnv"]:
            return self.page("update/efetch_entered.xml")
        if "update_revised" in args["WebEnv"]:
            return self.page("update/efetch_revised.xml")
        return self.page(f"eutils/efetch_page{1 + int(args['retstart']) // 2}.xml")

    def europepmc(self, args: dict) -> Response:
        if "FIRST_IDATE" not in args["query"]:
            return self.page("europepmc/search_page1.json" if args["cursorMark"] == "*"
                             else "europepmc/search_page2.json")
        if self.changed and args.get("cursorMark") == "*" and args.get("resultType") == "core":
            return self.page("update/europepmc_changed.json")
        return Response(json.dumps({"hitCount": 1 if self.changed else 0, "nextCursorMark": args.get("cursorMark"),
                                    "resultList": {"result": []}}))

    def clinicaltrials(self, args: dict) -> Response:
        if "filter.advanced" not in args:
            return self.page("clinicaltrials/studies_page2.json" if args.get("pageToken")
                             else "clinicaltrials/studies_page1.json")
        if not self.changed:
            return Response(json.dumps({"studies": [], "totalCount": 0}))
        return self.page("update/clinicaltrials_updated.json")


def urls(httpserver) -> list[str]:
    return ["--base-url", httpserver.url_for("/eutils/"), "--europepmc-url", httpserver.url_for("/epmc/"),
            "--clinicaltrials-url", httpserver.url_for("/ctgov/"), "--batch-size", "2", "--backoff", "0",
            "--no-progress"]


@pytest.fixture
def apis(httpserver, fixtures) -> ThreeApis:
    handler = ThreeApis(fixtures)
    for prefix in ("/eutils/esearch.fcgi", "/eutils/efetch.fcgi", "/epmc/search", "/ctgov/studies"):
        httpserver.expect_request(prefix).respond_with_handler(handler)
    return handler


@pytest.fixture
def built(apis, httpserver, tmp_path) -> Path:
    db = tmp_path / "kb.db"
    result = run("build", "--db", str(db), *urls(httpserver))
    assert result.exit_code == 0, result.output
    apis.requests.clear()
    return db


def studies(db: Path) -> dict[str, dict]:
    return {row["id"]: row for row in sqlite_utils.Database(db)["studies"].rows}


def test_an_update_fetches_only_changes_and_merges_them(apis, built, httpserver):
    before = studies(built)
    assert DELETED_PMID in before and NEW_PMID not in before
    result = run("update", "--db", str(built), *urls(httpserver))
    assert result.exit_code == 0, result.output
    after = studies(built)

    # New: the 2026 RCT, merged from PubMed and Europe PMC, dated by PubMed's entry date.
    new = after[NEW_PMID]
    assert new["entry_date"] == "2026-11-20" and new["cited_by_count"] == 3 and new["is_open_access"] == 1
    assert "rct" in json.loads(new["designs"]) and new["first_seen"] > before[REVISED_PMID]["first_seen"]
    # Revised: replaced whole (title, abstract, MeSH), retagged, first seen when it was first seen.
    revised = after[REVISED_PMID]
    assert revised["title"] == "Ketamine-associated ulcerative cystitis: a case series of 11 patients."
    assert "cystoscopy" in revised["abstract"] and "Cystitis" in json.loads(revised["mesh_terms"])
    assert revised["first_seen"] == before[REVISED_PMID]["first_seen"]
    # Deleted upstream: gone. Untouched studies keep every column.
    assert DELETED_PMID not in after
    for study_id in set(before) - {REVISED_PMID, DELETED_PMID}:
        assert after[study_id] == before[study_id]

    db = sqlite_utils.Database(built)
    assert db["trials"].get(NEW_TRIAL)["nct_id"] == NEW_TRIAL
    assert (NEW_PMID, NEW_TRIAL) in {(r["study_id"], r["nct_id"]) for r in db["study_trials"].rows}
    run_row = list(db.query("select * from ingest_runs order by id desc limit 1"))[0]
    assert run_row["mode"] == "update" and run_row["status"] == "ok"
    assert json.loads(run_row["source_counts"]) == {"clinicaltrials": 1, "europepmc": 1, "pubmed": 2}
    assert run_row["studies_written"] == 2 and run_row["studies_deleted"] == 1
    assert "1 deleted citations" in result.stderr


def test_each_api_is_asked_for_changes_since_the_day_before_the_last_run(apis, built, httpserver):
    last = dt.datetime.fromisoformat(
        list(sqlite_utils.Database(built).query("select started from ingest_runs order by id desc"))[0]["started"])
    since, today = last.date() - dt.timedelta(days=1), dt.date.today()
    assert run("update", "--db", str(built), *urls(httpserver)).exit_code == 0
    searches = [args for path, args in apis.requests if path.endswith("esearch.fcgi")]
    assert {(a["datetype"], a["mindate"], a["maxdate"]) for a in searches} == {
        (kind, since.strftime("%Y/%m/%d"), today.strftime("%Y/%m/%d")) for kind in ("edat", "mdat")}
    window = f"[{since.isoformat()} TO {today.isoformat()}]"
    europepmc = [args for path, args in apis.requests if path.endswith("/search")]
    assert europepmc[0]["query"].endswith(f"AND (FIRST_IDATE:{window} OR UPDATE_DATE:{window})")
    trials = [args for path, args in apis.requests if path.endswith("/studies")]
    assert trials[0]["filter.advanced"] == f"AREA[LastUpdatePostDate]RANGE[{since.isoformat()},MAX]"


def test_since_overrides_the_last_run(apis, built, httpserver):
    assert run("update", "--db", str(built), "--since", "2026-01-15", "--source", "pubmed",
               *urls(httpserver)).exit_code == 0
    assert {args["mindate"] for path, args in apis.requests if path.endswith("esearch.fcgi")} == {"2026/01/15"}
    assert not [path for path, _ in apis.requests if not path.startswith("/eutils/")]
    row = list(sqlite_utils.Database(built).query("select * from ingest_runs order by id desc limit 1"))[0]
    assert row["since"] == "2026-01-15" and row["source"] == "pubmed"


def test_a_dry_run_prints_counts_and_writes_nothing(apis, built, httpserver):
    before = digest(built)
    result = run("update", "--db", str(built), "--dry-run", *urls(httpserver))
    assert result.exit_code == 0, result.output
    assert "pubmed: 1 entered, 1 revised changed since" in result.output
    assert "europepmc: 1 changed since" in result.output and "clinicaltrials: 1 changed since" in result.output
    assert not [path for path, _ in apis.requests if path.endswith(("efetch.fcgi",))]
    assert digest(built) == before


def test_nothing_changed_is_a_recorded_run_not_an_error(apis, built, httpserver):
    apis.changed = False
    before = studies(built)
    result = run("update", "--db", str(built), *urls(httpserver))
    assert result.exit_code == 0, result.output
    assert studies(built) == before
    row = list(sqlite_utils.Database(built).query("select * from ingest_runs order by id desc limit 1"))[0]
    assert row["mode"] == "update" and row["studies_written"] == 0


def test_without_an_earlier_network_run_update_needs_since(tmp_path, fixtures, httpserver):
    db, saved = tmp_path / "kb.db", tmp_path / "saved"
    saved.mkdir()
    (saved / "page1.xml").write_bytes((fixtures / "eutils" / "efetch_page1.xml").read_bytes())
    assert run("build", "--db", str(db), "--from-dir", str(saved)).exit_code == 0
    before = digest(db)
    result = run("update", "--db", str(db), *urls(httpserver))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pass --since YYYY-MM-DD" in lines[0]
    assert digest(db) == before
    missing = run("update", "--db", str(tmp_path / "none.db"), *urls(httpserver))
    assert missing.exit_code == 1 and "run `kb build` first" in missing.stderr


def test_a_rebuild_keeps_first_seen_and_new_studies_get_the_build_time(apis, built, httpserver, fixtures):
    before = studies(built)
    result = run("build", "--db", str(built), *urls(httpserver))
    assert result.exit_code == 0, result.output
    after = studies(built)
    assert {k: v["first_seen"] for k, v in after.items()} == {k: v["first_seen"] for k, v in before.items()}
    assert run("import", str(fixtures / "update" / "efetch_entered.xml"), "--db", str(built)).exit_code == 0
    imported = studies(built)[NEW_PMID]
    assert imported["first_seen"] >= max(v["first_seen"] for v in before.values())
    assert imported["entry_date"] == "2026-11-20"


def test_the_home_page_says_how_current_the_data_is(apis, built, httpserver):
    from datasette.app import Datasette
    from test_datasette_pages import METADATA, PLUGINS, TEMPLATES, get

    assert run("update", "--db", str(built), *urls(httpserver)).exit_code == 0
    ds = Datasette(immutables=[str(built)], metadata=METADATA, template_dir=str(TEMPLATES),
                   plugins_dir=str(PLUGINS))
    html = get(ds, "/").text
    finished = list(sqlite_utils.Database(built).query(
        "select finished from ingest_runs order by id desc limit 1"))[0]["finished"]
    assert f'Data as of <time datetime="{finished}">{finished[:16].replace("T", " ")} UTC</time>' in html
    since = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    assert f"(update of changes since {since}:" in " ".join(html.split())
    assert "ClinicalTrials.gov 1 record, Europe PMC 1 record, PubMed 2 records" in " ".join(html.split())
    database_page = " ".join(get(ds, "/kb").text.split())
    assert "Data as of" in database_page and "PubMed 2 records" in database_page
