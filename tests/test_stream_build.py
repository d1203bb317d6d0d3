"""The streaming build: records staged on disk, derived a bounded number at a time, same kb.db."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_sources import three_sources  # noqa: F401  (a fixture, shared)

from ingest.db import build as builder
from ingest.db import derive
from ingest.db.collect import collect_dir
from ingest.db.staging import StagingFile, staging_path


def _content(path: Path) -> dict[str, list[str]]:
    """Every row of every table in rowid order (recency is rowid order), the run log and the
    moment of writing left out: what two builds of the same inputs must share exactly."""
    conn = sqlite3.connect(path)
    tables = [name for (name,) in conn.execute(
        "select name from sqlite_master where type = 'table' and name not like 'sqlite_%' "
        "and name != 'ingest_runs' and name not like '%_fts%' order by name")]
    content = {}
    for table in tables:
        cursor = conn.execute(f"select * from [{table}]")
        columns = [c[0] for c in cursor.description]
        content[table] = [json.dumps({c: v for c, v in zip(columns, row, strict=True) if c != "first_seen"},
                                     default=bytes.hex) for row in cursor]
    conn.close()
    return content


def test_staged_build_of_the_corpus_equals_the_in_memory_build(corpus, tmp_path):
    streamed = tmp_path / "streamed.db"
    builder.build_from_dir(streamed, corpus)
    in_memory = tmp_path / "in_memory.db"
    collected = collect_dir(corpus)  # plain dicts
    assert isinstance(collected.records, dict)
    builder.build(in_memory, collected, ",".join(builder.SOURCES), "from-dir", inputs=collected.files)
    expected, got = _content(in_memory), _content(streamed)
    assert got.keys() == expected.keys()
    for table in expected:
        assert got[table] == expected[table], table
    assert len(got["studies"]) > 500 and len(got["trials"]) > 500
    assert not list(tmp_path.glob(".*staging*")), "the staging file is removed after the build"
    # Every sentence of the corpus is stored once, as a stretch of its study's title or abstract, and the
    # sentence index read from those stretches agrees with them.
    conn = sqlite3.connect(streamed)
    try:
        assert conn.execute("select count(*), count(text) from sentences").fetchone()[1] == 0
        conn.execute("insert into sentences_fts (sentences_fts, rank) values ('integrity-check', 1)")
    finally:
        conn.close()


def test_staged_map_behaves_as_a_dict(tmp_path):
    staging = StagingFile(staging_path(tmp_path / "kb.db"))
    staged, plain = staging.mapping("records", ordered_by_year=True), {}
    rng = random.Random(7)
    for i in range(3000):  # more than a page of rows, and more writes than a transaction holds
        key = str(rng.randrange(1200))
        value = {"year": rng.choice([None, 1999, 2015, 2024]), "n": i, "blob": bytes([i % 256])}
        staged[key] = plain[key] = value
        if rng.random() < 0.15:
            gone = rng.choice(list(plain))
            del plain[gone], staged[gone]
    assert len(staged) == len(plain)
    assert list(staged) == list(plain)
    assert list(staged.items()) == list(plain.items())
    assert list(staged.newest_first()) == sorted(plain.items(), key=lambda kv: -(kv[1].get("year") or 0))
    key = next(iter(plain))
    assert key in staged and staged.get("missing") is None
    with pytest.raises(KeyError):
        del staged["missing"]
    staging.close()
    assert not staging.path.exists()


def test_a_failed_build_leaves_no_staging_file_and_the_old_database(tmp_path, fixtures):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.xml").write_bytes((fixtures / "pubmed" / "efetch_cases.xml").read_bytes())
    target = tmp_path / "kb.db"
    builder.build_from_dir(target, folder)
    before = target.read_bytes()

    class Exploding:
        def prepare(self, db):
            pass

        def derive(self, study_id, record):
            raise RuntimeError("tagger crashed")

    with pytest.raises(RuntimeError, match="tagger crashed"):
        builder.build_from_dir(target, folder, derivers=[Exploding()])
    assert target.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if "staging" in p.name or "tmp" in p.name]


def test_records_in_flight_are_bounded(monkeypatch):
    # The deriver never reads far ahead of what it has handed back: memory is flat in the corpus size.
    monkeypatch.setattr(derive, "_workers", lambda: 2)

    class Length:
        def derive(self, study_id, record):
            return {"length": len(record["text"])}, {}

    read = 0

    def records():
        nonlocal read
        for n in range(3000):
            read += 1
            yield str(n), {"text": "x" * n}

    most_ahead = 0
    with derive.Deriver([Length()]) as deriver:
        for count, (key, record, derived) in enumerate(deriver.studies(records(), total=3000), 1):
            assert derived == [({"length": int(key)}, {})] and record["text"] == "x" * int(key)
            most_ahead = max(most_ahead, read - count)
    assert count == 3000
    assert most_ahead <= (derive.AHEAD_PER_WORKER * 2 + 1) * derive.CHUNK


def test_doi_merges_across_sources_go_through_the_staging_file(tmp_path, three_sources):  # noqa: F811
    # PubMed, MEDLINE and Europe PMC copies of the same studies (by PMID, and by DOI alone):
    # merged on disk exactly as in memory, each source's own record kept for later merges.
    memory = collect_dir(three_sources)
    assert memory.packed_sources, "the fixture has studies several sources contributed to"
    with builder.staged(tmp_path / "kb.db") as staged:
        collect_dir(three_sources, collected=staged)
        assert list(staged.records.items()) == list(memory.records.items())
        assert dict(staged.by_doi) == dict(memory.by_doi)
        assert dict(staged.packed_sources.items()) == dict(memory.packed_sources)
        assert staged.trials == memory.trials and staged.errors == memory.errors


def test_a_killed_build_s_staging_file_is_removed_by_the_next(tmp_path):
    target = tmp_path / "kb.db"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no process holds now
    stale = tmp_path / f".kb.db.staging-{dead.pid}-abc.db"
    stale.write_bytes(b"left by a killed build")
    ours = tmp_path / f".kb.db.staging-{os.getpid()}-xyz.db"  # a live process's (this one's): kept
    ours.write_bytes(b"in use")
    fresh = staging_path(target)
    assert not stale.exists() and ours.exists() and fresh.exists() and fresh != ours
