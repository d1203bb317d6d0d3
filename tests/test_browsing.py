"""Browsing in words (issue 16): the studies page's default columns, trials and tags as a reader
says them, the database and about pages, the dashboard's drill-through; through Datasette's client
and, at 1400 px and 390 px, in headless Chromium."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from datasette.app import Datasette
from test_browser import SCREENSHOTS, browser, playwright_api, watched_page  # noqa: F401 (fixtures)
from test_datasette_pages import METADATA, PLUGINS, TEMPLATES, Served, build_site_kb

from ingest.db.schema import TAG_COLUMNS
from ingest.site import browse
from ingest.site import display as words

DEFAULT_STUDY_COLUMNS = ["id", "title", "year", "journal", "designs", "evidence_level_label", "sample_size",
                         "drugs", "indications"]
UNTITLED = "NCT08888888"
# A trial registered without any title, with more conditions than a stand-in title shows (one with markup).
UNTITLED_TRIAL = {"studies": [{
    "protocolSection": {
        "identificationModule": {"nctId": UNTITLED},
        "conditionsModule": {"conditions": ["Rett syndrome", "Depression <b>bold</b>", "Anxiety", "Pain"]},
        "designModule": {"phases": ["PHASE2", "PHASE3"]},
        "armsInterventionsModule": {"interventions": [{"type": "DRUG", "name": "Ketamine"}]},
    },
    "hasResults": False,
}]}


@pytest.fixture(scope="module")
def browse_kb(tmp_path_factory) -> Path:
    """The site fixtures' kb.db plus a trial registered without a title (added by `kb import`)."""
    folder = tmp_path_factory.mktemp("browse")
    target = build_site_kb(folder)
    trial_file = folder / "untitled.json"
    trial_file.write_text(json.dumps(UNTITLED_TRIAL), encoding="utf-8")
    kb = Path(sys.executable).with_name("kb")
    done = subprocess.run([str(kb), "import", str(trial_file), "--db", str(target), "--no-progress"],
                          capture_output=True, text=True)
    assert done.returncode in (0, 3), done.stderr
    return target


@pytest.fixture(scope="module")
def site(browse_kb):
    return Datasette(immutables=[str(browse_kb)], metadata=METADATA, template_dir=str(TEMPLATES),
                     plugins_dir=str(PLUGINS), settings={"sql_time_limit_ms": 1500, "max_returned_rows": 1000})


def get(ds: Datasette, path: str, **params):
    return asyncio.run(ds.client.get(path, params=params or None, follow_redirects=True))


def headings(html: str) -> list[str]:
    """The data-column of each heading of the page's rows-and-columns table, in order."""
    table = html[html.index('<table class="rows-and-columns'):]
    table = table[:table.index("</thead>")]
    return re.findall(r'<th [^>]*data-column="([^"]+)"', table)


def heading_labels(html: str) -> list[str]:
    """The words each heading shows (a sort link's text, its arrow left out)."""
    table = html[html.index('<table class="rows-and-columns'):]
    cells = re.findall(r"<th [^>]*>(.*?)</th>", table[:table.index("</thead>")], re.S)
    return [re.sub(r"<[^>]+>|&nbsp;[▼▲]", "", cell).strip() for cell in cells]


def table_columns(db: Path, table: str) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[1] for r in conn.execute(f"pragma table_info([{table}])")]
    finally:
        conn.close()


def filtered_count(ds: Datasette, url: str) -> int:
    path, _, query = url.partition("?")
    return get(ds, f"{path}.json?{query}&_size=0").json()["filtered_table_rows_count"]


# --------------------------------------------------------------------------- words


def test_phases_flags_and_codes_in_words():
    assert words.phase_label(["PHASE1", "PHASE2"]) == "Phase 1/2"
    assert words.phase_label(["PHASE3"]) == "Phase 3"
    assert words.phase_label(["EARLY_PHASE1"]) == "Early phase 1"
    assert words.phase_label(["NA"]) == "Not applicable"
    assert words.phase_label([]) == ""
    assert words.value_label("trials", "phases", '["PHASE2", "PHASE3"]') == "Phase 2/3"
    assert [words.value_label("trials", "has_results", v) for v in (0, 1, None)] == ["no", "yes", None]
    assert words.value_label("studies", "is_open_access", 1) == "yes"
    assert words.value_label("trials", "overall_status", "ACTIVE_NOT_RECRUITING") == "Active, not recruiting"
    assert words.value_label("trials", "sponsor", "NIH") is None  # not a code: left as stored
    assert words.heading("studies", "evidence_level_label") == "Evidence level"
    assert words.heading("studies", "no_such_column") == "no_such_column"


def test_languages_by_name():
    assert words.value_label("studies", "languages", '["eng", "fre"]') == "English, French"
    assert words.value_label("studies", "languages", "ger") == "German"
    assert words.value_label("studies", "languages", '["xx9"]') == "xx9"  # not a code: as stored
    assert words.language_name("chi") == "Chinese" and words.language_name("") is None


def test_default_facets_include_language_journal_and_open_access(site):
    page = get(site, "/kb/studies.json", _size="0", _extra="facet_results").json()
    results = page["facet_results"]
    shown = set(results.get("results", results))
    assert {"populations", "languages", "journal", "is_open_access"} <= shown
    assert not page.get("facets_timed_out")


def test_a_trial_without_a_title_is_called_by_its_id_and_conditions():
    assert words.trial_title({"title": "Brief", "official_title": "Official"}) == ("Brief", False)
    assert words.trial_title({"title": "", "official_title": "Official", "acronym": "OK"}) == ("Official", False)
    assert words.trial_title({"title": None, "acronym": "ARK-1"}) == ("ARK-1", False)
    conditions = json.dumps(["a", "b", "c", "d"])
    assert words.trial_title({"nct_id": "NCT01234567", "conditions": conditions}) == ("NCT01234567: a, b, c …", True)
    assert words.trial_title({"nct_id": "NCT01234567", "conditions": "[]"}) == ("NCT01234567", True)


def test_default_columns_give_way_to_the_page_own_choice():
    every = ["id", "pmid", "title", "abstract", "year", "journal", "designs", "evidence_level_label", "sample_size",
             "drugs", "indications", "pub_date"]
    assert words.selected_columns("studies", every, ["id"], {}) == DEFAULT_STUDY_COLUMNS
    assert words.selected_columns("studies", every, ["id"], {}, keep=["pub_date"]) == DEFAULT_STUDY_COLUMNS + [
        "pub_date"]  # the sort column, which the next-page link reads
    assert words.selected_columns("studies", every, ["id"], {"_allcols": "1"}) == every
    assert words.selected_columns("studies", ["id", "title"], ["id"], {"_col": "title"}) == ["id", "title"]
    without_journal = [c for c in every if c != "journal"]  # Datasette applied _nocol
    assert "journal" not in words.selected_columns("studies", without_journal, ["id"], {"_nocol": "journal"})
    assert words.selected_columns("abstract_sections", ["a", "b"], [], {}) == ["a", "b"]


def test_the_site_knows_the_schema_tag_columns():
    assert browse.KIND_COLUMNS == TAG_COLUMNS


# --------------------------------------------------------------------------- the studies page


def test_studies_page_opens_on_the_columns_a_researcher_scans(site, browse_kb):
    html = get(site, "/kb/studies").text
    assert headings(html) == DEFAULT_STUDY_COLUMNS
    total = len(table_columns(browse_kb, "studies"))
    assert f"Showing {len(DEFAULT_STUDY_COLUMNS)} of {total} columns." in html
    assert heading_labels(html) == ["Study", "Title", "Year", "Journal", "Design", "Evidence level", "n", "Drugs",
                                    "Indications"]
    assert 'class="col-abstract' not in html and 'data-label="Title"' in html
    assert '<a class="kb-title-link" href="/kb/studies/99000002">Intravenous ketamine versus' in html


def test_every_column_is_one_click_away_and_exports_stay_whole(site, browse_kb):
    every = table_columns(browse_kb, "studies")
    html = get(site, "/kb/studies").text
    link = re.search(r'id="kb-all-columns" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert link == "/kb/studies?on_topic=1&_allcols=1"
    shown = get(site, link).text
    assert headings(shown) == every and 'id="kb-default-columns"' in shown
    assert get(site, "/kb/studies.json", on_topic="1").json()["columns"] == every
    csv_header = next(csv.reader(io.StringIO(get(site, "/kb/studies.csv", on_topic="1").text)))
    assert csv_header == every
    assert headings(get(site, "/kb/studies", on_topic="1", _col="title").text) == ["id", "title"]
    assert headings(get(site, "/kb/studies", on_topic="1", _nocol="journal").text) == [
        c for c in DEFAULT_STUDY_COLUMNS if c != "journal"]


def test_sorting_by_a_column_left_out_still_pages_on(site):
    page = get(site, "/kb/studies", on_topic="1", _sort="pub_date", _size="2")
    assert page.status_code == 200 and "pub_date" in headings(page.text)
    next_link = re.search(r'<a href="([^"]+_next=[^"]+)">Next page</a>', page.text).group(1).replace("&amp;", "&")
    following = get(site, next_link.removeprefix("http://localhost"))
    assert following.status_code == 200 and "pub_date" in headings(following.text)


# --------------------------------------------------------------------------- trials


def test_trials_table_in_words(site):
    html = get(site, "/kb/trials").text
    untitled = re.search(r'<a class="kb-title-link kb-untitled"[^>]*href="/kb/trials/NCT08888888">([^<]+)</a>', html)
    assert untitled and untitled.group(1) == "NCT08888888: Rett syndrome, Depression &lt;b&gt;bold&lt;/b&gt;, Anxiety …"
    assert ">Phase 1/2</span>" in html and ">Phase 2/3</span>" in html and '["PHASE' not in html.split("<tbody>")[1]
    assert 'data-label="Results posted"><span class="kb-worded" title="1">yes</span>' in html
    assert 'id="facet-overall_status"' not in html  # no trial in the corpus records a status
    assert 'title="phases (array)">Phase' in html and ">Results posted" in html
    assert re.search(r'has_results=1">yes</a>', html)


def test_trial_page_names_phases_and_links_posted_results(site):
    results = get(site, "/kb/trials/NCT04599855").text
    assert 'href="https://clinicaltrials.gov/study/NCT04599855?tab=results"' in results
    assert "Phase 3" in results
    arketamine = get(site, "/kb/trials/NCT05123456").text
    assert '<span class="kb-phase">Phase 1/2</span>' in arketamine and "Active, not recruiting" in arketamine
    assert "tab=results" not in arketamine  # no results posted
    untitled = get(site, f"/kb/trials/{UNTITLED}").text
    assert '<h1 class="kb-title kb-untitled"' in untitled and "No title in the registry record" in untitled
    assert "Depression &lt;b&gt;bold&lt;/b&gt;" in untitled and "<b>bold" not in untitled


# --------------------------------------------------------------------------- tags


def test_tags_table_links_each_tag_to_its_studies(site):
    html = get(site, "/kb/tags", kind="design").text
    body = html.split("<tbody>")[1]
    assert "randomi[sz]" not in body and '["' not in body  # no raw regexes, no JSON arrays
    link = re.search(r'class="kb-tag-studies" href="([^"]+designs__arraycontains=rct[^"]*)">(\d+)</a>', body)
    url, count = link.group(1).replace("&amp;", "&"), int(link.group(2))
    assert url == "/kb/studies?designs__arraycontains=rct&on_topic=1"
    assert count == filtered_count(site, url) > 0
    assert re.search(r'<a href="/kb/tags\?kind=design">Study design</a>', body)  # the kind in words


def test_a_tag_page_reads_like_a_definition_with_its_studies(site):
    html = get(site, "/kb/tags/rct").text
    assert "<h1" in html and "Randomised controlled trial</h1>" in html
    link = re.search(r'class="kb-tag-studies" href="([^"]+)"><strong>(\d+)</strong>', html)
    assert int(link.group(2)) == filtered_count(site, link.group(1).replace("&amp;", "&"))
    assert 'href="/kb/studies/99000002"' in html  # among the newest studies carrying it
    patterns = html[html.index('<details class="kb-patterns">'):]
    assert "randomi[sz]" in patterns[:patterns.index("</details>")]  # the regexes only behind a disclosure
    assert "Randomized Controlled Trial" in html and '["Randomized' not in html.split('class="kb-record"')[0]
    absent = get(site, "/kb/tags/hallucinations").text
    link = re.search(r'class="kb-tag-absent" href="([^"]+)"><strong>(\d+)</strong>', absent)
    assert int(link.group(2)) == filtered_count(site, link.group(1).replace("&amp;", "&")) >= 1
    drug = get(site, "/kb/tags/ketamine").text
    link = re.search(r'class="kb-tag-trials" href="([^"]+)"><strong>(\d+)</strong>', drug)
    assert link.group(1).startswith("/kb/trials?drugs__arraycontains=ketamine")
    assert int(link.group(2)) == filtered_count(site, link.group(1).replace("&amp;", "&")) >= 1


# --------------------------------------------------------------------------- home, about, database


def test_home_about_and_database_pages(site):
    home = get(site, "/").text
    assert re.search(r'About:\s*<a href="/about">\s*ketamine-kb</a>', home)
    about = get(site, "/about")
    assert about.status_code == 200 and "<h1>About ketamine-kb</h1>" in about.text
    page = get(site, "/kb").text
    assert '<a href="/-/dashboards/overview">the dashboard</a>' in page
    box = re.search(r'<textarea id="sql-editor" name="sql">(.*?)</textarea>', page, re.S).group(1)
    example = words.display()["database"]["example_sql"]
    assert "select * from abstract_sections" not in page
    assert box.replace("&#39;", "'") == example
    assert get(site, "/kb.json", sql=example).json().get("ok", True)
    for url in re.findall(r'<a href="(/kb\?sql=[^"]+)">', page.split('id="kb-examples"')[1].split("</p>")[0]):
        assert get(site, url.replace("&amp;", "&")).status_code == 200, url
    summary = page[page.index('id="kb-schema-table"'):page.index('<h2 id="tables">')]
    assert '<a href="/kb/studies"><code>studies</code></a>' in summary and "One row per study." in summary
    assert "<code>study_id</code> → <code>studies.id</code>" in summary


# --------------------------------------------------------------------------- the dashboard


def charts() -> dict:
    return METADATA["plugins"]["datasette-dashboards"]["overview"]["charts"]


def test_year_axes_are_time_scales_and_side_effects_count_studies():
    for name in ("by-indication", "design-mix", "trials-by-year"):
        x = charts()[name]["display"]["encoding"]["x"]
        assert x["type"] == "temporal" and x["timeUnit"] == "utcyear", name
    design = charts()["design-mix"]["display"]["encoding"]["y"]
    assert "stack" not in design and design["title"] == "Studies"  # counts, not 100% shares
    side = charts()["side-effects"]["display"]["encoding"]["x"]
    assert side["field"] == "studies" and side["title"].startswith("Studies")


@pytest.mark.parametrize("name", ["by-indication", "design-mix", "side-effects", "trials-by-year", "durations"])
def test_every_chart_drills_through_to_the_rows_it_counts(site, name):
    chart = charts()[name]
    assert chart["display"]["encoding"]["href"] == {"field": "url"}
    sql = re.sub(r"\[\[.*?\]\]", "", chart["query"])  # no filter chosen
    found = get(site, "/kb.json", sql=sql, _shape="objects").json()["rows"]
    assert found, name
    for row in found:
        count = row.get("studies", row.get("trials"))
        if count is None:  # a point: one study's page
            assert get(site, row["url"]).status_code == 200
        else:
            assert filtered_count(site, row["url"]) == count, row
    with_drug = re.sub(r"\[\[(.*?)\]\]", r"\1", chart["query"])
    rows = get(site, "/kb.json", sql=with_drug, _shape="objects", **(
        {"drug": "ketamine", "year_from": "1990", "year_to": "2100"})).json()["rows"]
    for row in rows:
        if "studies" in row or "trials" in row:
            assert parse_qs(urlsplit(row["url"]).query)["drugs__arraycontains"] == ["ketamine"]


# --------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def served(browse_kb):
    server = Served(browse_kb)
    yield server
    server.stop()


@pytest.fixture(params=[1400, 390], ids=["desktop", "phone"])
def web(request, browser, served):  # noqa: F811 (browser is test_browser's fixture)
    with watched_page(browser, served.base, request.param) as watched:
        yield watched


def shot(web, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    web.page.screenshot(path=str(SCREENSHOTS / f"browsing-{name}-{web.width}.png"), full_page=True)


def test_studies_page_reads_in_words_at_both_widths(web):
    web.goto("/kb/studies")
    page = web.page
    page.wait_for_selector("table.rows-and-columns")
    assert page.locator("table.rows-and-columns thead th").count() == len(DEFAULT_STUDY_COLUMNS)
    web.fits_width()
    title = page.locator("table.rows-and-columns tbody td.col-title").first
    if web.width < 576:  # each cell labelled by its heading, as the page stacks rows into cards
        label = title.evaluate("td => getComputedStyle(td, '::before').content")
        assert label == '"Title"'
        level = page.locator("table.rows-and-columns tbody td.col-evidence_level_label").first
        assert level.evaluate("td => getComputedStyle(td, '::before').content") == '"Evidence level"'
    else:
        assert page.locator("th.col-evidence_level_label").inner_text().startswith("Evidence level")
    shot(web, "studies")
    page.click("#kb-all-columns")
    page.wait_for_url(re.compile(r"_allcols=1"))
    assert page.locator("table.rows-and-columns thead th.col-abstract").count() == 1
    web.check_clean()


def test_study_and_trial_pages_fit_a_phone(web):
    web.goto("/kb/studies/39000001")
    web.fits_width()
    shot(web, "study")
    web.goto(f"/kb/trials/{UNTITLED}")
    assert web.page.locator("h1.kb-title").inner_text().startswith(f"{UNTITLED}: Rett syndrome")
    web.fits_width()
    web.goto("/kb/tags/rct")
    web.fits_width()
    shot(web, "tag")
    web.check_clean()


def test_a_chart_bar_opens_the_studies_it_counts(web):
    web.goto("/-/dashboards/overview")
    page = web.page
    bars = page.locator("#chart-by-indication svg.marks g.mark-rect path")
    page.wait_for_selector("#chart-by-indication svg.marks g.mark-rect path", timeout=20_000)
    assert bars.count() > 0
    shot(web, "dashboard")
    bars.first.click()
    page.wait_for_url(re.compile(r"/kb/studies\?on_topic=1&year=\d{4}&indications__arraycontains=\w+"))
    assert page.locator("table.rows-and-columns tbody tr").count() >= 1
    web.check_clean()
