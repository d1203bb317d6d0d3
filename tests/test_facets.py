"""The ``tags`` facet (plugins/tag_facets.py) counts and links exactly as Datasette's array facet,
and the ``counted`` facet as its column facet.

Both run on the same fixture kb.db, side by side: the site's metadata as it is, and the same
metadata with the studies table's array facets switched to ``tags`` and its counted facets back to
column facets (the change issue 18 asks of metadata.yml; when metadata.yml has it already, the
patched metadata is the site's own).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from bench_scale import original_metadata, patched_metadata
from datasette.app import Datasette
from datasette.database import Database, QueryInterrupted
from test_datasette_pages import METADATA, PLUGINS, TEMPLATES, build_site_kb, load_plugin

from ingest.site import similar

# The studies page as users reach it: on-topic by default, every record, filtered, searched, both.
VIEWS = [
    "on_topic=1",
    "_offtopic=1",
    "on_topic=1&indications__arraycontains=trd",
    "on_topic=1&designs__arraycontains=rct",
    "on_topic=1&_search=dissociation",
    "_offtopic=1&_search=ketamine&drugs__arraycontains=ketamine",
    "on_topic=1&_search=nosuchwordanywhere",
    "on_topic=1&_facet_size=2",
]



def site(db: Path, metadata: dict, **settings) -> Datasette:
    return Datasette(immutables=[str(db)], metadata=metadata, template_dir=str(TEMPLATES), plugins_dir=str(PLUGINS),
                     settings={"sql_time_limit_ms": 1500, "max_returned_rows": 1000, "suggest_facets": False,
                               **settings})


def get(ds: Datasette, path: str):
    return asyncio.run(ds.client.get(path, follow_redirects=True))


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> Path:
    return build_site_kb(tmp_path_factory.mktemp("facets"))


@pytest.fixture(scope="module")
def array_site(kb) -> Datasette:
    return site(kb, original_metadata(METADATA))


@pytest.fixture(scope="module")
def tags_site(kb) -> Datasette:
    return site(kb, patched_metadata(METADATA))


def facets(ds: Datasette, query: str) -> dict:
    response = get(ds, f"/kb/studies.json?{query}")
    assert response.status_code == 200, response.text[:500]
    return response.json()["facet_results"]  # a facet that ran out of time is left out


def comparable(facet: dict) -> dict:
    """What must be equal between the two facets: values, counts, links, selection, truncation."""
    return {"name": facet["name"], "truncated": facet["truncated"], "hideable": facet["hideable"],
            "results": [(v["value"], v["count"], v["toggle_url"], v["selected"]) for v in facet["results"]]}


def test_metadata_patch_switches_the_array_facets_only():
    patched = patched_metadata(METADATA)["databases"]["kb"]["tables"]["studies"]["facets"]
    assert {"counted": "year"} in patched and {"ordered": "evidence_level_label"} in patched
    names = [f["tags"] for f in patched if isinstance(f, dict) and "tags" in f]
    assert {"designs", "drugs", "indications", "side_effects", "routes"} <= set(names)
    assert not [f for f in patched if isinstance(f, dict) and "array" in f]


@pytest.mark.parametrize("query", VIEWS)
def test_counts_and_links_equal_the_array_facet(array_site, tags_site, query):
    reference, ours = facets(array_site, query), facets(tags_site, query)
    assert set(ours) == set(reference)  # every facet shown, none timed out
    arrays = [name for name, f in reference.items() if f["type"] == "array"]
    assert {"designs", "drugs", "indications", "side_effects", "routes"} <= set(arrays)
    for name in arrays:
        assert ours[name]["type"] == "tags"
        assert comparable(ours[name]) == comparable(reference[name]), name
    for name in set(reference) - set(arrays):  # year, journal, open access: the column facet's counts and links
        assert {**ours[name], "toggle_url": None} == {**reference[name], "toggle_url": None}, name
    assert {"year", "journal", "is_open_access", "evidence_level_label"} <= set(reference) - set(arrays)


def test_counts_are_the_rows_the_filter_selects(tags_site, kb):
    """Each count is the number of rows its link shows: the JSON column, absent side effects not included."""
    shown = facets(tags_site, "on_topic=1")
    checked = 0
    for name in ("designs", "side_effects", "indications"):
        for value in shown[name]["results"]:
            link = urlsplit(value["toggle_url"])
            assert dict(parse_qsl(link.query))[f"{name}__arraycontains"] == value["value"]
            assert link.path == "/kb/studies.json"
            data = get(tags_site, f"{link.path}?{link.query}&_size=0&_nofacet=1").json()
            assert data["filtered_table_rows_count"] == value["count"], (name, value["value"])
            checked += 1
    assert checked >= 5
    conn = sqlite3.connect(kb)
    absent_only = conn.execute(
        "select count(*) from study_tags st join studies s on s.id = st.study_id where st.kind = 'side_effect' "
        "and st.negated = 1 and s.on_topic = 1 and not exists (select 1 from json_each(s.side_effects) "
        "where value = st.tag_id)").fetchone()[0]
    conn.close()
    assert absent_only, "the fixture has a side effect reported absent only"


@pytest.mark.parametrize("column", ["keywords", "mechanisms", "side_effects_absent", "publication_type_names",
                                    "mesh_terms"])
def test_any_array_column_by_hand(array_site, tags_site, column):
    reference = facets(array_site, f"_offtopic=1&_facet_array={column}")[column]
    ours = facets(tags_site, f"_offtopic=1&_facet_tags={column}")[column]
    assert ours["hideable"] and (ours["results"] or column == "mechanisms")
    assert [(v["value"], v["count"], v["selected"]) for v in ours["results"]] == \
           [(v["value"], v["count"], v["selected"]) for v in reference["results"]]
    assert "_facet_tags" not in ours["toggle_url"]


def test_labels_are_the_tag_labels_and_links_the_array_filter(tags_site):
    shown = facets(tags_site, "on_topic=1")
    designs = {v["value"]: v for v in shown["designs"]["results"]}
    assert designs["rct"]["label"] == "Randomised controlled trial"
    assert "designs__arraycontains=rct" in designs["rct"]["toggle_url"]
    html = get(tags_site, "/kb/studies?on_topic=1").text
    facet = html.split('data-column="designs"', 1)[1].split("</div>", 1)[0]
    assert 'designs__arraycontains=rct">Randomised controlled trial</a>' in facet
    # A selected value: its label with a link that removes it.
    selected = get(tags_site, "/kb/studies?on_topic=1&designs__arraycontains=rct").text
    facet = selected.split('data-column="designs"', 1)[1].split("</div>", 1)[0]
    assert "Randomised controlled trial &middot;" in facet and "designs__arraycontains" not in facet.split(
        "Randomised controlled trial &middot;", 1)[1].split("</li>", 1)[0]


def test_values_that_are_not_tags_show_as_themselves_escaped(kb):
    ds = site(kb, patched_metadata(METADATA))
    data = get(ds, "/kb/trials.json?_facet_tags=conditions").json()
    values = {v["value"]: v["label"] for v in data["facet_results"]["conditions"]["results"]}
    assert values["Depression <b>bold</b>"] == "Depression <b>bold</b>"
    html = get(ds, "/kb/trials?_facet_tags=conditions").text
    assert "Depression &lt;b&gt;bold&lt;/b&gt;" in html and "Depression <b>bold</b>" not in html


def test_duplicates_nulls_and_types_count_as_the_array_facet_does(tmp_path):
    path = tmp_path / "odd.db"
    conn = sqlite3.connect(path)
    conn.execute("create table t (id integer primary key, arr text)")
    arrays = [["a", "a", "b"], ["a"], [1, "1", 1], [None, None], [], None, ["b", "c", "a", "c"], [[1, 2], [1, 2]]]
    conn.executemany("insert into t (arr) values (?)", [(None if a is None else json.dumps(a),) for a in arrays])
    conn.commit()
    conn.close()
    ds = Datasette(immutables=[str(path)], plugins_dir=str(PLUGINS), settings={"suggest_facets": False})
    reference = get(ds, "/odd/t.json?_facet_array=arr").json()["facet_results"]["arr"]["results"]
    ours = get(ds, "/odd/t.json?_facet_tags=arr").json()["facet_results"]["arr"]["results"]
    assert [(v["value"], v["count"]) for v in ours] == [(v["value"], v["count"]) for v in reference]
    assert dict((v["value"], v["count"]) for v in ours)["a"] == 3


def test_counts_are_kept_for_an_immutable_database(kb, monkeypatch):
    ds = site(kb, patched_metadata(METADATA))
    # Two filters: counted from the rows (one filter's counts are kb.db's, facet_pair_counts)
    trd, mdd = ("on_topic=1&drugs__arraycontains=ketamine&indications__arraycontains=" + i for i in ("trd", "mdd"))
    first = facets(ds, trd)
    calls = []
    original = Database.execute

    async def counting(self, sql, *args, **kwargs):
        if sql.startswith("with f as materialized") or "count(*) as count from (" in sql:
            calls.append(sql)
        return await original(self, sql, *args, **kwargs)

    monkeypatch.setattr(Database, "execute", counting)
    assert facets(ds, trd) == first
    assert calls == []
    facets(ds, mdd)
    # One query for every tags facet of the page, one for its counted (column) facets, one for the
    # evidence level's ordered facet; none of Datasette's one-query-per-column facet SQL.
    assert len(calls) == 3 and all(sql.startswith("with f as materialized") for sql in calls)
    assert sum("journal as c" in sql and "year as c" in sql for sql in calls) == 1


TAGS = {"designs", "drugs", "indications", "side_effects", "routes"}
COUNTED = {"year", "journal", "is_open_access"}


@pytest.mark.parametrize(("marker", "lost", "kept"), [
    ("json_each", TAGS, COUNTED),  # the tags facets' query
    ("year as c", COUNTED, TAGS),  # the counted (column) facets' query
])
def test_a_count_that_runs_out_of_time_is_reported_timed_out(kb, monkeypatch, marker, lost, kept):
    ds = site(kb, patched_metadata(METADATA))
    original = Database.execute

    async def interrupted(self, sql, *args, **kwargs):
        if sql.startswith("with f as materialized") and marker in sql:
            raise QueryInterrupted(sqlite3.OperationalError("interrupted"), sql, {})
        return await original(self, sql, *args, **kwargs)

    monkeypatch.setattr(Database, "execute", interrupted)
    view = "on_topic=1&_search=ketamine"  # filtered: counted on the page (the unfiltered view's are kb.db's)
    data = get(ds, f"/kb/studies.json?{view}").json()
    assert kept <= set(data["facet_results"]) and not lost & set(data["facet_results"]) and data["rows"]
    page = get(ds, f"/kb/studies?{view}")
    assert page.status_code == 200
    timed_out = page.text.split('class="facets-timed-out">These facets timed out: ', 1)[1].split("</p>", 1)[0]
    assert lost <= set(timed_out.split(", ")) and not kept & set(timed_out.split(", "))


def test_a_pages_facets_share_one_time_limit(kb, monkeypatch):
    """Counts that run out of time use up the page's share (two facet time limits): the next facet
    is reported timed out without running, not given its own."""
    ds = site(kb, patched_metadata(METADATA), facet_time_limit_ms=100)
    original = Database.execute
    budgets = []

    async def slow(self, sql, *args, custom_time_limit=None, **kwargs):
        if sql.startswith("with f as materialized"):
            budgets.append(custom_time_limit)
            await asyncio.sleep(custom_time_limit / 1000)
            raise QueryInterrupted(sqlite3.OperationalError("interrupted"), sql, {})
        return await original(self, sql, *args, custom_time_limit=custom_time_limit, **kwargs)

    monkeypatch.setattr(Database, "execute", slow)
    data = get(ds, "/kb/studies.json?on_topic=1&_search=ketamine").json()
    assert data["rows"] and not {"designs", "year", "evidence_level_label"} & set(data["facet_results"])
    assert len(budgets) == 1 and 150 <= budgets[0] <= 200, budgets  # 7 tag columns: 700 ms alone


def test_counts_sql_reads_each_row_once():
    module = load_plugin("tag_facets")
    sql = module.counts_sql("select * from [studies] where on_topic = :p0", ["designs", "drugs"], 31)
    assert sql.count("from (select * from [studies] where on_topic = :p0)") == 1
    assert "materialized" in sql and "inner.*" not in sql and sql.count("limit 31") == 2


def executed_sql(ds: Datasette, path: str, monkeypatch) -> list[tuple[str, dict]]:
    """Every SQL statement (with its parameters) the page ran."""
    seen = []
    original = Database.execute

    async def recording(self, sql, params=None, *args, **kwargs):
        seen.append((sql, params))
        return await original(self, sql, params, *args, **kwargs)

    monkeypatch.setattr(Database, "execute", recording)
    assert get(ds, path).status_code == 200
    monkeypatch.setattr(Database, "execute", original)
    return seen


def plan(kb: Path, sql: str, params) -> list[str]:
    conn = sqlite3.connect(f"file:{kb}?mode=ro", uri=True)
    try:
        return [row[3] for row in conn.execute(f"explain query plan {sql}", params or {})]
    finally:
        conn.close()


def test_the_default_studies_page_sorts_no_rows_and_counts_from_the_tag_index(kb, monkeypatch):
    ds = site(kb, patched_metadata(METADATA))
    statements = executed_sql(ds, "/kb/studies?on_topic=1", monkeypatch)
    main = [(sql, p) for sql, p in statements if sql.startswith("select ") and " from studies " in sql
            and "order by" in sql and "limit 51" in sql]
    assert len(main) == 1, [s for s, _ in statements]
    steps = plan(kb, *main[0])
    assert not [s for s in steps if "TEMP B-TREE" in s], steps  # year order from an index: no row is sorted
    # Its facets are kb.db's precomputed counts; a view filtered twice has them counted from the tag index.
    assert not [sql for sql, _ in statements if sql.startswith("with f as materialized")]
    statements = executed_sql(ds, "/kb/studies?on_topic=1&designs__arraycontains=rct&drugs__arraycontains=ketamine",
                              monkeypatch)
    counts = [(sql, p) for sql, p in statements if sql.startswith("with f as materialized")]
    assert len(counts) == 3  # the tags facets, the counted (column) facets, the ordered facet
    for count in counts:
        steps = plan(kb, *count)
        assert any("COVERING INDEX idx_studies_tag_columns" in s for s in steps), steps
        assert not [s for s in steps if s.startswith("SCAN studies") and "COVERING" not in s], steps


def test_a_column_that_cannot_be_counted_is_left_out(tags_site):
    for query in ("_facet_tags=nosuchcolumn", "_facet_tags=title", "_facet_tags=title&_facet_tags=mesh_terms"):
        response = get(tags_site, f"/kb/studies.json?on_topic=1&{query}")
        assert response.status_code == 200, response.text[:300]
        shown = response.json()["facet_results"]
        assert {"designs", "drugs", "year"} <= set(shown) and "title" not in shown and "nosuchcolumn" not in shown
        assert ("mesh_terms" in shown) == ("mesh_terms" in query)


# --------------------------------------------------------------------------- precomputed counts


@pytest.fixture(scope="module")
def kb_without_counts(kb, tmp_path_factory) -> Path:
    """The same kb.db without facet_counts: every page counted from the studies."""
    copy = tmp_path_factory.mktemp("no_counts") / "kb.db"
    shutil.copyfile(kb, copy)
    conn = sqlite3.connect(copy)
    with conn:
        conn.execute("drop table facet_counts")
        conn.execute("drop table facet_columns")
        conn.execute("drop table facet_pair_counts")
    conn.close()
    return copy


def common_values(kb: Path) -> dict[str, object]:
    """The fixture's most frequent on-topic design, indication, year, evidence level and language."""
    conn = sqlite3.connect(kb)
    try:
        top = {column: conn.execute(f"select j.value from studies s, json_each(s.{column}) j where s.on_topic = 1 "
                                    "group by j.value order by count(*) desc, j.value limit 1").fetchone()[0]
               for column in ("designs", "indications", "languages")}
        for column in ("year", "evidence_level_label"):
            top[column] = conn.execute(f"select {column} from studies where on_topic = 1 and {column} is not null "
                                       f"group by {column} order by count(*) desc limit 1").fetchone()[0]
        return top
    finally:
        conn.close()


# Where each view's facet counts come from: kb.db's counts of the unfiltered page (facet_counts), of
# the page filtered on one value (facet_pair_counts), or the rows (live).
SOURCES = [
    ("on_topic=1", "facet_counts"),
    ("_offtopic=1", "facet_counts"),
    ("on_topic=1&_facet_size=2", "facet_counts"),
    ("on_topic=1&_sort=title", "facet_counts"),
    ("on_topic=1&designs__arraycontains={designs}", "facet_pair_counts"),
    ("on_topic=1&indications__arraycontains={indications}", "facet_pair_counts"),
    ("on_topic=1&languages__arraycontains={languages}&_facet_size=3", "facet_pair_counts"),
    ("on_topic=1&year={year}", "facet_pair_counts"),
    ("on_topic=1&evidence_level_label={evidence_level_label}&_sort=title", "facet_pair_counts"),
    ("on_topic=1&designs__arraycontains=nosuchdesign", "live"),  # no study has it
    ("on_topic=1&year={year}&designs__arraycontains={designs}", "live"),  # two filters
    ("_offtopic=1&designs__arraycontains={designs}", "live"),  # every study, filtered: not kept
    ("on_topic=1&designs__arraycontains={designs}&_facet_size=60", "live"),  # more values than kept
    ("on_topic=1&year__gte={year}", "live"),
    ("on_topic=1&_search=dissociation", "live"),
]


@pytest.mark.parametrize(("query", "source"), SOURCES)
def test_views_read_the_precomputed_counts_and_equal_counting(kb, kb_without_counts, monkeypatch, query, source):
    query = query.format(**common_values(kb))
    counted = facets(site(kb_without_counts, METADATA), query)
    statements = [sql for sql, _ in executed_sql(site(kb, METADATA), f"/kb/studies.json?{query}", monkeypatch)]
    precomputed = facets(site(kb, METADATA), query)
    assert precomputed == counted and {"designs", "year", "evidence_level_label"} <= set(counted)
    live = [sql for sql in statements if sql.startswith("with f as materialized")]
    assert (live != []) == (source == "live"), live
    read = {table for table in ("facet_counts", "facet_pair_counts")
            if any(f"from {table} " in sql for sql in statements)}
    assert read == {source} or source == "live", read


def test_one_filter_counts_keep_the_top_values_of_each_facet(kb):
    conn = sqlite3.connect(kb)
    kept = conn.execute("select max(rank), count(distinct filter_facet) from facet_pair_counts").fetchone()
    # every value's studies, recounted from the rows: the stored counts and ranks are theirs
    design = common_values(kb)["designs"]
    stored = conn.execute("select value, studies, rank from facet_pair_counts where filter_facet = 'designs' "
                          "and filter_value = ? and facet = 'indications' order by rank", [design]).fetchall()
    direct = conn.execute("select j.value, count(distinct s.rowid) as n from studies s, json_each(s.indications) j "
                          "where s.on_topic = 1 and ? in (select value from json_each(s.designs)) "
                          "group by j.value order by n desc, j.value", [design]).fetchall()
    conn.close()
    assert kept[0] <= 51 and kept[1] >= 8
    assert [(v, n) for v, n, _ in stored] == direct[:51] and [r for *_, r in stored] == list(range(1, len(stored) + 1))


def test_similar_studies_weigh_tags_by_the_precomputed_counts(kb, kb_without_counts):
    results = []
    for db in (kb, kb_without_counts):
        conn = sqlite3.connect(db)
        stats = similar.TagStats()
        ids = [r[0] for r in conn.execute("select id from studies where on_topic = 1 order by id limit 6")]
        found = [s for i in ids for s in similar.by_tags(conn, i, stats)]
        results.append([(s.study_id, round(s.score, 9), s.shared) for s in found])
        results.append(stats.load(conn))
        conn.close()
    assert results[0] == results[2] and results[0]
    assert results[1] == results[3]
