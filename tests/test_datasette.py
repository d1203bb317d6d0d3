"""Datasette serving kb.db immutably with metadata.yml, through its test client."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import yaml
from datasette.app import Datasette

from ingest.db import build as builder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kb_path(tmp_path_factory) -> Path:
    fixtures = Path(__file__).parent / "fixtures" / "pubmed"
    folder = tmp_path_factory.mktemp("in")
    shutil.copy(fixtures / "efetch_cases.xml", folder)
    shutil.copy(fixtures / "export.nbib", folder)
    target = tmp_path_factory.mktemp("db") / "kb.db"
    builder.build(target, builder.collect_dir(folder), "files", "from-dir")
    return target


@pytest.fixture(scope="module")
def datasette(kb_path) -> Datasette:
    metadata = yaml.safe_load((ROOT / "metadata.yml").read_text())
    return Datasette(immutables=[str(kb_path)], metadata=metadata,
                     settings={"sql_time_limit_ms": 1500})


def get(ds: Datasette, path: str, **params):
    return asyncio.run(ds.client.get(path, params=params or None, follow_redirects=True))


def test_home_and_table_page(datasette):
    assert get(datasette, "/").status_code == 200
    page = get(datasette, "/kb/studies")
    assert page.status_code == 200
    assert "Intranasal esketamine in treatment-resistant depression" in page.text
    rows = get(datasette, "/kb/studies.json", _shape="array").json()
    assert {r["id"] for r in rows} == {"39000001", "2345678", "17000002", "36000004"}


def test_metadata_is_applied(datasette):
    data = get(datasette, "/kb/studies.json", _facet_array="publication_type_names").json()
    facet = data["facet_results"]["publication_type_names"]
    assert "Randomized Controlled Trial" in {v["value"] for v in facet["results"]}
    html = get(datasette, "/kb/studies").text
    assert "One row per study" in html


def test_full_text_search(datasette):
    rows = get(datasette, "/kb/studies.json", _search="cystitis", _shape="array").json()
    assert [r["id"] for r in rows] == ["17000002"]
    rows = get(datasette, "/kb/studies.json", _search="dissociation", _shape="array").json()
    assert [r["id"] for r in rows] == ["39000001"]


def test_arbitrary_read_only_sql(datasette):
    sql = ("select h.descriptor, count(*) n from mesh_headings h group by 1 "
           "having n >= 1 order by n desc, 1 limit 3")
    response = get(datasette, "/kb.json", sql=sql, _shape="array")
    assert response.status_code == 200 and response.json()[0]["n"] >= 1
    csv = get(datasette, "/kb/studies.csv", _search="cystitis")
    assert csv.status_code == 200 and "17000002" in csv.text


@pytest.mark.parametrize("sql", [
    "delete from studies",
    "update studies set title = 'x'",
    "insert into studies (id, title) values ('1', 'x')",
    "drop table studies",
])
def test_writes_are_refused(datasette, sql):
    response = get(datasette, "/kb.json", sql=sql)
    assert response.status_code == 400
    count = get(datasette, "/kb.json", sql="select count(*) c from studies", _shape="array").json()
    assert count == [{"c": 4}]


def test_database_is_immutable(datasette):
    databases = get(datasette, "/-/databases.json").json()
    assert [d["is_mutable"] for d in databases if d["name"] == "kb"] == [False]
