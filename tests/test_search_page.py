"""The search page (/-/search, plugins/search_page.py and ingest/site/search.py), author and journal
links, similar studies (ingest/site/similar.py), the header search box and the studies page's
default facets: through Datasette's client, against SQL, and in headless Chromium at 1400 and 390 px."""

from __future__ import annotations

import csv
import io
import math
import re
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import pytest
import sqlite_utils
from conftest import require_module
from datasette.app import Datasette
from lxml import etree
from test_browser import browser, playwright_api, watched_page  # noqa: F401 (fixtures)
from test_datasette_pages import METADATA, OFF_TOPIC, PLUGINS, TEMPLATES, Served, build_site_kb, get

from ingest.db.aggregates import refresh_facet_counts
from ingest.site import search, similar

HOSTILE = '<script>alert("q")</script>'


def site(db: Path) -> Datasette:
    return Datasette(immutables=[str(db)], metadata=METADATA, template_dir=str(TEMPLATES), plugins_dir=str(PLUGINS),
                     settings={"sql_time_limit_ms": 1500, "max_returned_rows": 1000, "suggest_facets": False})


@pytest.fixture(scope="module")
def rich_kb(tmp_path_factory) -> Path:
    """site_kb with what Europe PMC records add (open access, citations) on two studies, and a side
    database of sentence vectors in which 36000004 lies nearest 39000001."""
    np = require_module("numpy")
    folder = tmp_path_factory.mktemp("rich")
    db = build_site_kb(folder)
    conn = sqlite3.connect(db)
    conn.execute("update studies set is_open_access = 1, cited_by_count = 12 where id in ('39000001', '99000002')")
    conn.execute("update studies set is_open_access = 0, cited_by_count = 0 where is_open_access is null")
    conn.commit()
    ids = [r[0] for r in conn.execute("select id from studies order by id")]
    conn.close()
    refresh_facet_counts(sqlite_utils.Database(db))  # as kb's own writers do after changing studies
    directions = {"39000001": [1, 0, 0, 0], "36000004": [0.95, 0.3, 0, 0], "99000002": [0, 1, 0, 0],
                  "17000002": [0, 0, 1, 0], "2345678": [0, 0, 0, 1], "99000001": [0, 0.7, 0.7, 0],
                  OFF_TOPIC: [0.99, 0.1, 0, 0]}  # nearest of all, but off topic: never offered
    side = sqlite3.connect(folder / "kb-vectors.db")
    side.execute("create table meta (key text primary key, value text)")
    side.execute("create table vectors (study_id text not null, position integer not null, text_hash text not null, "
                 "vector blob not null, primary key (study_id, position))")
    side.executemany("insert into meta values (?, ?)", [("model", "test"), ("dim", "4")])
    for study_id in ids:
        base = np.asarray(directions[study_id], dtype=np.float32)
        for position in range(2):  # two sentences each: the centroid is their mean
            side.execute("insert into vectors values (?, ?, ?, ?)",
                         (study_id, position, "x", (base + position * 0.01).astype(np.float32).tobytes()))
    side.commit()
    side.close()
    return db


@pytest.fixture(scope="module")
def rich(rich_kb) -> Datasette:
    # The study vectors load in the background on first use; here they are loaded before any page asks.
    assert similar.VECTORS.get(rich_kb.with_name("kb-vectors.db"), wait=60) is not None
    return site(rich_kb)


def page(ds: Datasette, path: str = "/-/search", **params):
    response = get(ds, path, **params)
    assert response.status_code == 200, response.text[:800]
    return response


def as_json(ds: Datasette, **params) -> dict:
    return page(ds, "/-/search.json", **params).json()


def hit_ids(html: str) -> list[str]:
    return re.findall(r'<li class="kb-result" data-study-id="([^"]+)"', html)


def matching(db: Path, q: str, on_topic: bool = True) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        sql = ("select s.id from studies s where s.rowid in (select rowid from studies_fts where studies_fts match ?)"
               + (" and s.on_topic = 1" if on_topic else ""))
        return {r[0] for r in conn.execute(sql, (search.escape_fts(q),))}
    finally:
        conn.close()


# --------------------------------------------------------------------------- ranking and results


def test_results_are_ranked_by_bm25_and_read_as_references(ds, site_kb):
    html = page(ds, q="esketamine").text
    conn = sqlite3.connect(site_kb)
    expected = [r[0] for r in conn.execute(
        "select s.id from studies_fts f join studies s on s.rowid = f.rowid where studies_fts match ? "
        "and s.on_topic = 1 order by bm25(studies_fts, 10.0, 1.0), s.rowid", ('"esketamine"',))]
    conn.close()
    assert hit_ids(html) == expected and len(expected) >= 2
    first = html[html.index('data-study-id="39000001"'):]
    first = first[:first.index("</li>")]
    assert 'href="/kb/studies/39000001"' in first
    assert '<mark class="kb-hit">esketamine</mark>' in first.lower()
    assert 'href="/-/search?author=Nguyen+TM"' in first and ">Nguyen TM<" in first
    assert "Randomised controlled trial" in first and "Evidence level 2" in first
    assert re.search(r"n = \d+", first)
    # No raw scores, no Datasette wording.
    assert "bm25" not in html.lower() and "Custom SQL" not in html and "Edit SQL" not in html


def test_sorts_by_newest_and_by_evidence_level(ds, site_kb):
    conn = sqlite3.connect(site_kb)
    meta = {r[0]: (r[1], r[2]) for r in conn.execute("select id, year, evidence_level from studies")}
    conn.close()
    newest = hit_ids(page(ds, q="ketamine", sort="newest").text)
    years = [meta[i][0] for i in newest]
    assert set(newest) == matching(site_kb, "ketamine") and years == sorted(years, reverse=True)
    by_level = hit_ids(page(ds, q="ketamine", sort="level").text)
    levels = [meta[i][1] for i in by_level]
    stated = [lv for lv in levels if lv is not None]
    assert stated == sorted(stated) and levels[:len(stated)] == stated  # unstated levels last
    assert set(by_level) == set(newest)


def test_facet_counts_equal_sql_over_the_matched_set(ds, site_kb):
    data = as_json(ds, q="ketamine")
    ids = matching(site_kb, "ketamine")
    assert data["total"] == len(ids) and not data["capped"]
    conn = sqlite3.connect(site_kb)
    marks = ", ".join("?" for _ in ids)
    for facet in search.FACETS:
        if facet.kind == "array":
            sql = (f"select j.value, count(distinct s.id) from studies s, json_each(s.{facet.column}) j "
                   f"where s.id in ({marks}) group by j.value")
        elif facet.kind == "flag":
            sql = f"select coalesce(is_open_access, 0) = 1, count(*) from studies where id in ({marks}) group by 1"
        else:
            column = "evidence_level" if facet.kind == "level" else "year"
            sql = f"select {column}, count(*) from studies where id in ({marks}) and {column} is not null group by 1"
        expected = {str(int(v)) if isinstance(v, int) else str(v): n for v, n in conn.execute(sql, list(ids))}
        if facet.kind == "flag":
            expected = {k: n for k, n in expected.items() if n}
        got = {v["value"]: v["count"] for v in data["facets"][facet.key]}
        assert got == expected, facet.key
    conn.close()
    levels = [v["value"] for v in data["facets"]["level"]]
    assert levels == sorted(levels, key=int)  # evidence levels listed by level, 1 first
    assert data["facets"]["design"][0]["label"] == "Randomised controlled trial"  # labels, not ids


def test_filters_narrow_and_links_keep_the_query(ds, site_kb):
    html = page(ds, q="ketamine").text
    link = re.search(r'<a href="([^"]+)" data-value="rct">', html).group(1).replace("&amp;", "&")
    assert dict(parse_qsl(urlparse(link).query)) == {"q": "ketamine", "design": "rct"}
    narrowed = page(ds, link).text
    assert set(hit_ids(narrowed)) == {"39000001", "99000002"}
    assert 'id="kb-active-filters"' in narrowed and "Design: Randomised controlled trial" in narrowed
    # Two values of one tag filter must both apply; two years, either.
    assert as_json(ds, q="ketamine", design="rct", indication="trd")["total"] == 2
    assert as_json(ds, q="ketamine", design="rct", indication="chronic_pain")["total"] == 0
    assert as_json(ds, q="ketamine", year=["2022", "2024"])["total"] == 3
    assert as_json(ds, q="ketamine", level="6")["total"] == 1
    # A selected value stays listed (to be removed) and its link removes it.
    data = as_json(ds, q="ketamine", design="rct", drug="arketamine")
    assert data["total"] == 0
    assert {"value": "arketamine", "label": "Arketamine", "count": 0, "selected": True} in data["facets"]["drug"]


def test_browsing_without_words_lists_the_newest_on_topic_studies(ds, site_kb):
    html = page(ds).text
    conn = sqlite3.connect(site_kb)
    expected = [r[0] for r in conn.execute("select id from studies where on_topic = 1 order by rowid")]
    conn.close()
    assert hit_ids(html) == expected
    assert 'id="kb-sort"' in html and ">Best match<" not in html  # nothing to rank by


def test_off_topic_studies_are_left_out_unless_asked_for(ds):
    html = page(ds, q="depressive").text
    assert OFF_TOPIC not in hit_ids(html)
    assert "1 off-topic record" in html and "_offtopic=1" in html
    assert OFF_TOPIC in hit_ids(page(ds, q="depressive", _offtopic="1").text)


def test_pages_of_results_follow_one_another(site_kb):
    conn = sqlite3.connect(f"file:{site_kb}?immutable=1", uri=True)
    labels = dict(conn.execute("select id, label from tags"))
    args = search.parse_args({"q": ["ketamine"]})
    whole = [h.row["id"] for h in search.search_studies(conn, args, labels, page_size=50).hits]
    pages = []
    for number in range(1, 4):
        result = search.search_studies(conn, search.parse_args({"q": ["ketamine"], "page": [str(number)]}), labels,
                                       page_size=2)
        assert result.pages == math.ceil(len(whole) / 2)
        pages += [h.row["id"] for h in result.hits]
    conn.close()
    assert pages == whole and len(whole) == 5  # "ketamine" does not match esketamine


def test_the_match_set_is_bounded(site_kb, monkeypatch):
    # The cap is a constant of the module; a cap of 2 shows what a search past it does.
    monkeypatch.setattr(search, "MATCH_CAP", 2)
    conn = sqlite3.connect(f"file:{site_kb}?immutable=1", uri=True)
    result = search.search_studies(conn, search.parse_args({"q": ["ketamine"]}), {}, page_size=10)
    newest = [r[0] for r in conn.execute("select id from studies where rowid in (select rowid from studies_fts "
                                         "where studies_fts match '\"ketamine\"') order by rowid limit 2")]
    conn.close()
    assert result.capped and {h.row["id"] for h in result.hits} == set(newest) - {OFF_TOPIC}


# --------------------------------------------------------------------------- escaping and bounds


def test_hostile_words_and_stored_markup_are_escaped(ds):
    response = get(ds, "/-/search", q=HOSTILE + " esketamine")
    assert response.status_code == 200
    html = response.text
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>Bold" not in html
    assert 'value="&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt; esketamine"' in html
    stored = page(ds, q="esketamine").text
    assert "<script>alert" not in stored and "<img src=x" not in stored
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in stored
    assert "&lt;script&gt;alert(&#34;abstract&#34;)&lt;/script&gt;" in stored
    assert ">&lt;img src=x onerror=alert(3)&gt; X<" in stored  # an author's name, as text
    for tab in ("trials", "sentences"):
        other = page(ds, q="ketamine", tab=tab).text
        assert "<script>alert" not in other and "<img src=x" not in other, tab
    trials = page(ds, q="ect", tab="trials").text
    assert "Ketamine &lt;script&gt;alert(&#34;trial&#34;)&lt;/script&gt; versus ECT" in trials


def test_marked_escapes_before_marking():
    text = f'<b>x</b> {search.OPEN}ketamine{search.CLOSE} & {search.CLOSE}{search.OPEN}y'
    assert str(search.marked(text)) == '&lt;b&gt;x&lt;/b&gt; <mark class="kb-hit">ketamine</mark> &amp; ' \
                                       '<mark class="kb-hit">y</mark>'


@pytest.mark.parametrize(("params", "message"), [
    ({"q": "ketamine " * 60}, "at most 500 are searched"),
    ({"q": " ".join(f"w{i}" for i in range(40))}, "more than 32 words"),
    ({"q": "x", "sort": "random"}, "unknown sort"),
    ({"q": "x", "level": "strong"}, "not a value of the evidence level filter"),
    ({"q": "x", "page": "0"}, "page must be a number"),
    ({"q": "x", "tab": "<b>"}, "unknown tab"),
])
def test_bad_searches_are_a_400_with_one_line(ds, params, message):
    response = get(ds, "/-/search", **params)
    assert response.status_code == 400 and message in response.text
    assert "<b>" not in response.text.split('id="kb-search-error"', 1)[1][:300]
    text = get(ds, "/-/search.csv", **params)
    assert text.status_code == 400 and text.text.startswith("Error: ") and text.text.count("\n") == 1


def test_a_query_fts5_cannot_read_is_no_error(ds):
    for q in ['"', "* OR -", "NEAR(", "^"]:
        assert get(ds, "/-/search", q=q).status_code == 200, q


# --------------------------------------------------------------------------- tabs, exports, feed


def test_tabs_count_studies_trials_and_sentences(ds, site_kb):
    html = page(ds, q="esketamine").text
    conn = sqlite3.connect(site_kb)
    trials = conn.execute("select count(*) from trials_fts where trials_fts match '\"esketamine\"'").fetchone()[0]
    sentences = conn.execute(
        "select count(*) from sentences_fts f join sentences s on s.rowid = f.rowid join studies st on st.id = "
        "s.study_id where sentences_fts match 'text : (\"esketamine\")' and st.on_topic = 1").fetchone()[0]
    conn.close()
    studies = len(matching(site_kb, "esketamine"))
    for tab, count in (("studies", studies), ("trials", trials), ("sentences", sentences)):
        assert re.search(rf'id="kb-tab-{tab}"[^>]*>\s*{tab.capitalize()} <span class="kb-tab-count">\({count}\)', html)
    trial_page = page(ds, q="esketamine", tab="trials").text
    assert 'href="/kb/trials/NCT04599855"' in trial_page
    assert 'href="/kb/trials?_search=esketamine"' in trial_page
    sentence_page = page(ds, q="esketamine", tab="sentences").text
    assert sentence_page.count('class="kb-result kb-sentence-hit"') == min(sentences, search.PAGE_SIZE)
    assert '<mark class="kb-hit">' in sentence_page.split("<ol", 1)[1]


def test_trial_titles_and_phases_read_as_words():
    assert search.phase_label(["PHASE1", "PHASE2"]) == "Phase 1/2"
    assert search.phase_label(["EARLY_PHASE1"]) == "Early phase 1" and search.phase_label(["NA"]) == "Not applicable"
    assert search.trial_title({"nct_id": "NCT1", "title": "", "official_title": None, "acronym": "ARK",
                               "conditions": "[]"}) == "ARK"
    assert search.trial_title({"nct_id": "NCT1", "conditions": '["Depression"]'}) == "NCT1: Depression"


def test_exports_hold_the_search_filters_and_order(ds):
    html = page(ds, q="ketamine", design="rct", sort="newest").text
    exports = dict(re.findall(r'class="kb-export kb-export-(\w+)" href="([^"]+)"', html))
    assert set(exports) == {"csv", "json", "ris", "bibtex", "csljson", "nbib"}
    for url in exports.values():
        assert dict(parse_qsl(urlparse(url.replace("&amp;", "&")).query)) == {
            "q": "ketamine", "design": "rct", "sort": "newest"}
    order = hit_ids(html)
    rows = list(csv.DictReader(io.StringIO(page(ds, "/-/search.csv", q="ketamine", design="rct", sort="newest").text)))
    assert [r["study_id"] for r in rows] == order and rows[0]["designs"] == "Randomised controlled trial"
    data = as_json(ds, q="ketamine", design="rct", sort="newest")
    assert [s["study_id"] for s in data["studies"]] == order and data["total"] == len(order)
    ris = page(ds, "/-/search.ris", q="ketamine", design="rct")
    assert ris.headers["content-disposition"].endswith('kb-search.ris"')
    assert {m for m in re.findall(r"AN  - (\d+)", ris.text)} == set(order)
    assert "@article" in page(ds, "/-/search.bibtex", q="ketamine").text


def test_csv_cells_are_safe_in_a_spreadsheet(ds):
    body = page(ds, "/-/search.csv", q="esketamine").text
    for row in csv.DictReader(io.StringIO(body)):
        assert not any(str(v).startswith(("=", "+", "@")) for v in row.values())


def test_the_feed_lists_the_newest_matches(ds):
    html = page(ds, q="ketamine", design="rct").text
    feed = re.search(r'<link rel="alternate" type="application/atom\+xml"[^>]*href="([^"]+)"', html).group(1)
    feed = feed.replace("&amp;", "&")
    assert urlparse(feed).path == "/-/search.atom"
    response = page(ds, feed)
    assert response.headers["content-type"].startswith("application/atom+xml")
    root = etree.fromstring(response.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    links = [e.get("href") for e in root.findall("a:entry/a:link[@rel='alternate']", ns)]
    assert [urlparse(u).path for u in links] == ["/kb/studies/39000001", "/kb/studies/99000002"]  # newest first


# --------------------------------------------------------------------------- authors, journals, header


def test_author_and_journal_links_find_their_studies(ds):
    study = page(ds, "/kb/studies/39000001").text
    for name in ("Nguyen TM", "O'Brien S", "ESKETINTRANASAL Study Group"):
        query = re.escape(name.replace(" ", "+").replace("'", "%27"))
        assert re.search(rf'href="/-/search\?author={query}"', study), name
    assert 'href="/-/search?journal=Neuropsychopharmacology' in study
    assert hit_ids(page(ds, author="Nguyen TM").text) == ["39000001"]
    assert hit_ids(page(ds, author="O'Brien S").text) == ["39000001"]
    assert hit_ids(page(ds, author="Hong Kong Urology Collaborative").text) == ["17000002"]
    assert hit_ids(page(ds, author='<img src=x onerror=alert(3)> X').text) == ["99000001"]
    by_journal = page(ds, journal="Pain Medicine").text
    assert hit_ids(by_journal) == ["36000004"] and "Studies in <em>Pain Medicine</em>" in by_journal
    assert hit_ids(page(ds, author="Nguyen TM", q="cystitis").text) == []


def test_every_page_but_home_and_search_has_the_header_search_box(ds):
    box = 'class="kb-header-search" action="/-/search"'
    for path in ("/kb/studies?on_topic=1", "/kb/studies/39000001", "/kb/trials/NCT09999999", "/kb",
                 "/-/claim-check", "/kb/search?q=esketamine", "/-/dashboards/overview"):
        assert box in get(ds, path).text, path
    assert box not in get(ds, "/").text and box not in page(ds, q="x").text
    assert 'action="/-/search"' in get(ds, "/").text  # home has its own box


def test_the_canned_search_query_still_answers(ds):
    assert get(ds, "/kb/search.json", q="esketamine").status_code == 200
    assert 'href="/-/search"' in get(ds, "/kb/search", q="esketamine").text


# --------------------------------------------------------------------------- study page and studies page


def test_study_page_shows_open_access_and_citations(rich):
    html = page(rich, "/kb/studies/39000001").text
    assert 'class="kb-oa"' in html and re.search(r'class="kb-cited"[^>]*>Cited by 12<', html)
    other = page(rich, "/kb/studies/36000004").text
    assert 'class="kb-oa"' not in other and 'class="kb-cited"' not in other
    result = page(rich, "/-/search", q="ketamine").text
    assert result.count('class="kb-flag kb-flag-oa"') == 2 and "cited by 12" in result


def test_open_access_facet_and_filter(rich):
    data = as_json(rich, q="ketamine")
    assert {v["value"]: v["count"] for v in data["facets"]["oa"]} == {"1": 2, "0": 3}
    assert {s["study_id"] for s in as_json(rich, q="ketamine", oa="1")["studies"]} == {"39000001", "99000002"}


def test_similar_studies_by_shared_tags_weighted_by_rarity(rich_kb):
    subject = "99000002"  # an RCT of ketamine in TRD
    conn = sqlite3.connect(f"file:{rich_kb}?immutable=1", uri=True)
    found = similar.by_tags(conn, subject, similar.TagStats())
    total = conn.execute("select count(*) from studies").fetchone()[0]
    columns = list(similar.KIND_COLUMNS.values())
    frequency: dict[str, int] = {}
    for column in columns:
        for tag, n in conn.execute(f"select j.value, count(*) from studies s, json_each(s.{column}) j group by 1"):
            frequency[tag] = frequency.get(tag, 0) + n
    tags: dict[str, set] = {}
    for study, tag in conn.execute("select study_id, tag_id from study_tags where negated = 0 and kind in "
                                   "('indication', 'design', 'drug', 'mechanism')"):
        tags.setdefault(study, set()).add(tag)
    on_topic = {r[0] for r in conn.execute("select id from studies where on_topic = 1")}
    conn.close()
    weight = {t: math.log((total + 1) / (n + 1)) for t, n in frequency.items()}
    expected = sorted((-sum(weight[t] for t in tags[subject] & tags[other]), other) for other in tags
                       if other != subject and other in on_topic and tags[subject] & tags[other])
    assert [(s.study_id, round(s.score, 9)) for s in found] == \
        [(other, round(-score, 9)) for score, other in expected][:similar.SHOWN]
    assert OFF_TOPIC not in [s.study_id for s in found] and len(found) >= 3
    # Sharing TRD (3 of 7 studies) outweighs sharing ketamine (4 of 7), all that the case series shares.
    assert weight["trd"] > weight["ketamine"] > 0
    rank = [s.study_id for s in found]
    assert rank.index("99000001") < rank.index("17000002")


def test_similar_studies_by_vectors(rich_kb):
    vectors = similar.read_study_vectors(rich_kb.with_name("kb-vectors.db"))
    conn = sqlite3.connect(f"file:{rich_kb}?immutable=1", uri=True)
    found = [s.study_id for s in similar.by_vectors(conn, "39000001", vectors)]
    conn.close()
    assert found[0] == "36000004" and OFF_TOPIC not in found and "39000001" not in found


def test_study_page_lists_similar_studies(rich):
    html = page(rich, "/kb/studies/99000002").text
    section = html[html.index('id="kb-similar"'):]
    tags = section[section.index('id="kb-similar-tags"'):section.index('id="kb-similar-vectors"')]
    assert re.findall(r'href="/kb/studies/(\d+)"', tags)[:2] == ["39000001", "99000001"]
    assert "Randomised controlled trial, Treatment-resistant depression" in tags  # the tags shared, labelled
    html = page(rich, "/kb/studies/39000001").text
    vectors = html[html.index('id="kb-similar-vectors"'):]
    assert re.findall(r'href="/kb/studies/(\d+)"', vectors)[0] == "36000004"
    assert f'/kb/studies/{OFF_TOPIC}"' not in html[html.index('id="kb-similar"'):]


def test_studies_page_facets_populations_journal_open_access(rich):
    data = get(rich, "/kb/studies.json", on_topic="1", _size="1").json()
    facets = data["facet_results"]
    for name in ("populations", "journal", "is_open_access"):
        assert name in facets, name
    # Language by hand: a default tags facet on it would read whole rows (it is not in the tag index).
    by_hand = get(rich, "/kb/studies.json", on_topic="1", _size="1", _facet_tags="languages").json()
    assert "languages" in by_hand["facet_results"]
    assert {"Humans"} <= {v["label"] for v in facets["populations"]["results"]}
    assert {v["value"]: v["count"] for v in facets["is_open_access"]["results"]} == {1: 2, 0: 4}


# --------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def served(rich_kb, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    for name in ("kb.db", "kb-vectors.db"):
        shutil.copy(rich_kb.with_name(name), folder / name)
    server = Served(folder / "kb.db")
    yield server
    server.stop()


@pytest.fixture(params=[1400, 390], ids=["desktop", "phone"])
def web(request, browser, served):  # noqa: F811 (browser is test_browser's fixture)
    with watched_page(browser, served.base, request.param) as watched:
        yield watched


def test_search_in_the_browser(web):
    page = web.page
    web.goto("/kb/studies/36000004")
    page.fill(".kb-header-search input[name=q]", "ketamine")
    page.press(".kb-header-search input[name=q]", "Enter")
    page.wait_for_url(re.compile(r"/-/search\?q=ketamine"))
    assert page.locator("li.kb-result").count() == 5
    assert page.locator("#kb-total").inner_text() == "5"
    assert page.locator("mark.kb-hit").first.is_visible()
    web.fits_width()
    web.shot(f"search-{web.width}")
    page.locator('.kb-facet[data-facet=design] a[data-value="rct"]').click()
    page.wait_for_url(re.compile(r"design=rct"))
    assert page.locator("li.kb-result").count() == 2
    assert page.locator('.kb-facet[data-facet=design] li.kb-selected').count() == 1
    page.locator("#kb-sort a", has_text="Newest").click()
    page.wait_for_url(re.compile(r"sort=newest"))
    assert page.locator("li.kb-result").first.get_attribute("data-study-id") == "39000001"
    web.shot(f"search-filtered-{web.width}")
    page.locator("#kb-tab-trials").click()
    page.wait_for_url(re.compile(r"tab=trials"))
    assert page.locator("li.kb-trial-hit").count() >= 1
    web.shot(f"search-trials-{web.width}")
    page.locator("#kb-tab-sentences").click()
    page.wait_for_url(re.compile(r"tab=sentences"))
    assert page.locator("li.kb-sentence-hit mark.kb-hit").count() >= 1
    web.fits_width()
    web.check_clean()


def test_hostile_search_in_the_browser(web):
    web.goto("/-/search?q=" + HOSTILE.replace('"', "%22") + "+esketamine")
    page = web.page
    assert page.locator("#kb-sp-q").input_value() == HOSTILE + " esketamine"
    web.goto("/-/search?q=esketamine")
    assert '<script>alert("title")</script>' in page.locator("li.kb-result", has_text="alert").first.inner_text()
    assert page.locator("section.kb-sp-results script, section.kb-sp-results img").count() == 0
    web.shot(f"search-escaped-{web.width}")
    web.check_clean()


def test_author_links_and_similar_studies_in_the_browser(web):
    page = web.page
    web.goto("/kb/studies/39000001")
    assert page.locator("#kb-similar-tags li").first.is_visible()
    assert page.locator("#kb-similar-vectors li a").first.get_attribute("href") == "/kb/studies/36000004"
    assert page.locator(".kb-meta .kb-oa").inner_text() == "Open access"
    web.shot(f"study-similar-{web.width}")
    page.locator(".kb-authors a.kb-author", has_text="Nguyen").click()
    page.wait_for_url(re.compile(r"author=Nguyen"))
    assert page.locator("h1").inner_text() == "Studies by Nguyen TM"
    assert [e.get_attribute("data-study-id") for e in page.locator("li.kb-result").all()] == ["39000001"]
    web.fits_width()
    web.check_clean()


