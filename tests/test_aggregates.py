"""The dashboard's precomputed counts (db/aggregates.py) equal counting the studies themselves,
under every filter the dashboard offers, and follow imports."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from datasette_dashboards import replace_opts_in_query

from ingest.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CHARTS = yaml.safe_load((ROOT / "metadata.yml").read_text())["plugins"]["datasette-dashboards"]["overview"]["charts"]
FILTERS = [{}, {"drug": "esketamine"}, {"drug": "ketamine"}, {"year_from": "2015"},
           {"drug": "ketamine", "year_from": "2010", "year_to": "2022"}, {"year_to": "2019"}, {"drug": "no_such"}]
ON_TOPIC_DRUG_YEARS = (
    "s.on_topic = 1 [[ and exists (select 1 from json_each(s.drugs) where value = :drug) ]] "
    "[[ and s.year >= cast(:year_from as integer) ]] [[ and s.year <= cast(:year_to as integer) ]]")
TRIAL_DESIGNS = "('rct', 'nonrandomised_trial', 'single_arm_trial')"
# The same charts counted from the studies' own tag columns (the dashboard's queries before the counts
# were precomputed), drill-through links left out.
DIRECT = {
    "count-studies": f"select count(*) from studies s where {ON_TOPIC_DRUG_YEARS}",
    "count-rcts": f"select count(*) from studies s where {ON_TOPIC_DRUG_YEARS} "
                  "and exists (select 1 from json_each(s.designs) where value = 'rct')",
    "by-indication": (
        f"with hits as (select s.id, s.year, s.indications from studies s where {ON_TOPIC_DRUG_YEARS} "
        "and s.year is not null), "
        "top as (select j.value as id from hits h, json_each(h.indications) j group by j.value "
        "order by count(*) desc, j.value limit 8) "
        "select cast(h.year as text), t.label, count(*) from hits h join json_each(h.indications) j "
        "join tags t on t.id = j.value where j.value in (select id from top) group by h.year, j.value"),
    "design-mix": (
        "select cast(s.year as text), coalesce(t.label, 'Unclassified'), count(*) from studies s "
        "left join json_each(case when s.designs in ('', '[]') or s.designs is null then '[null]' "
        "else s.designs end) j left join tags t on t.id = j.value "
        f"where {ON_TOPIC_DRUG_YEARS} and s.year is not null group by s.year, j.value"),
    "side-effects": (
        "with h as (select s.id, s.side_effects, s.side_effects_absent from studies s "
        f"where {ON_TOPIC_DRUG_YEARS} and exists (select 1 from json_each(s.populations) where value = 'human') "
        f"and exists (select 1 from json_each(s.designs) where value in {TRIAL_DESIGNS})), "
        "m as (select j.value as id, 'reported' as finding from h, json_each(h.side_effects) j union all "
        "select j.value, 'reported as absent' from h, json_each(h.side_effects_absent) j), "
        "top as (select id from m group by id order by sum(finding = 'reported') desc, count(*) desc, id limit 12) "
        "select t.label, m.finding, count(*) from m join tags t on t.id = m.id where m.id in (select id from top) "
        "group by m.id, m.finding"),
}
SHOWN = {"count-studies": ["n"], "count-rcts": ["n"], "by-indication": ["year", "indication", "studies"],
         "design-mix": ["year", "design", "studies"], "side-effects": ["side_effect", "finding", "studies"]}


def chart_rows(conn: sqlite3.Connection, sql: str, options: dict, columns: list[str] | None = None) -> list:
    cursor = conn.execute(replace_opts_in_query(sql, options), options)
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if columns:
        rows = [tuple(row[names.index(c)] for c in columns) for row in rows]
    return sorted(rows, key=repr)


def assert_charts_count_the_studies(db: Path) -> int:
    conn = sqlite3.connect(db)
    compared = 0
    try:
        for name, direct in DIRECT.items():
            for options in FILTERS:
                expected = chart_rows(conn, direct, options)
                assert chart_rows(conn, CHARTS[name]["query"], options, SHOWN[name]) == expected, (name, options)
                compared += bool(expected and expected != [(0,)])
    finally:
        conn.close()
    return compared


def run(*args: str) -> None:
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == 0, done.output


@pytest.fixture(scope="module")
def corpus_kb(tmp_path_factory, corpus) -> Path:
    target = tmp_path_factory.mktemp("aggregates") / "kb.db"
    run("build", "--from-dir", str(corpus), "--db", str(target), "--no-progress")
    return target


def test_every_chart_equals_the_direct_count_under_every_filter(corpus_kb):
    assert assert_charts_count_the_studies(corpus_kb) >= 25, "the filters select studies in most charts"


def test_the_counts_follow_an_import(tmp_path, fixtures):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "efetch_cases.xml").write_bytes((fixtures / "pubmed" / "efetch_cases.xml").read_bytes())
    target = tmp_path / "kb.db"
    run("build", "--from-dir", str(inputs), "--db", str(target), "--no-progress")
    before = sqlite3.connect(target).execute("select sum(studies) from dashboard_counts").fetchone()[0]
    run("import", str(fixtures / "pubmed" / "export.nbib"), "--db", str(target), "--no-progress")
    after = sqlite3.connect(target).execute("select sum(studies) from dashboard_counts").fetchone()[0]
    assert after > before
    assert_charts_count_the_studies(target)
