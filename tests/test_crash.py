"""Crash safety: a build killed with SIGKILL leaves kb.db intact; a network build resumes."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlite_utils
from werkzeug import Response

KB = str(Path(sys.executable).with_name("kb"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_until_paused(args: list[str], point: str) -> None:
    """Start `kb` paused at ``point`` (KB_PAUSE_AT), wait for it to get there, then SIGKILL it."""
    env = {**os.environ, "KB_PAUSE_AT": point}
    process = subprocess.Popen([KB, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    deadline = time.monotonic() + 60
    try:
        for line in process.stderr:
            if f"paused at {point}" in line:
                break
            assert time.monotonic() < deadline, "build never reached the pause point"
        else:
            pytest.fail(f"build ended without pausing at {point} (exit {process.wait()})")
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture
def two_inputs(tmp_path, fixtures):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    shutil.copy(fixtures / "pubmed" / "export.nbib", old)
    shutil.copy(fixtures / "pubmed" / "efetch_cases.xml", new)
    shutil.copy(fixtures / "pubmed" / "update_v2.xml", new / "z_update.xml")
    return old, new


@pytest.mark.parametrize("point", ["schema", "written", "packed", "before-rename"])
def test_killed_build_leaves_previous_db_intact(two_inputs, tmp_path, point):
    old, new = two_inputs
    db = tmp_path / "kb.db"
    subprocess.run([KB, "build", "--from-dir", str(old), "--db", str(db), "--no-progress"], check=True,
                   capture_output=True)
    before = digest(db)
    run_until_paused(["build", "--from-dir", str(new), "--db", str(db), "--no-progress"], point)
    assert digest(db) == before
    assert {r[0] for r in sqlite_utils.Database(db).execute("select id from studies")} == {"39000001", "36000004"}
    # A re-run completes with exactly the new input's records, and the dead build's temp file is gone.
    subprocess.run([KB, "build", "--from-dir", str(new), "--db", str(db), "--no-progress"], check=True,
                   capture_output=True)
    rows = dict(sqlite_utils.Database(db).execute("select id, pmid_version from studies"))
    assert rows == {"39000001": 1, "17000002": 2}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kb.db.tmp")] == []


def test_interrupted_network_build_resumes_from_checkpoint(httpserver, fixtures, tmp_path):
    eutils = fixtures / "eutils"
    calls: Counter = Counter()

    def eutils_handler(request):
        endpoint = request.path.rsplit("/", 1)[-1]
        key = endpoint if endpoint == "esearch.fcgi" else f"efetch:{request.args['retstart']}"
        calls[key] += 1
        if endpoint == "esearch.fcgi":
            return Response((eutils / "esearch_history.json").read_bytes())
        page = "efetch_page1.xml" if request.args["retstart"] == "0" else "efetch_page2.xml"
        return Response((eutils / page).read_bytes())

    httpserver.expect_request("/esearch.fcgi").respond_with_handler(eutils_handler)
    httpserver.expect_request("/efetch.fcgi").respond_with_handler(eutils_handler)
    db = tmp_path / "kb.db"
    args = ["build", "--source", "pubmed", "--base-url", httpserver.url_for("/"), "--batch-size", "2",
            "--db", str(db), "--no-progress"]
    run_until_paused(args, "page:pubmed:1")
    assert not db.exists()
    checkpoint = tmp_path / ".kb-checkpoint"
    assert len(list(checkpoint.iterdir())) == 1  # the first page (a search is never kept: its WebEnv expires)
    assert calls == {"esearch.fcgi": 1, "efetch:0": 1}
    result = subprocess.run([KB, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Resuming: 1 pages kept" in result.stderr
    # Only a new search and the missing page went over the network the second time.
    assert calls == {"esearch.fcgi": 2, "efetch:0": 1, "efetch:2": 1}
    ids = {r[0] for r in sqlite_utils.Database(db).execute("select id from studies")}
    assert ids == {"39000001", "2345678", "17000002"}
    assert not checkpoint.exists(), "the checkpoint is removed once the build succeeds"


def test_failed_network_build_keeps_checkpoint_and_says_so(httpserver, fixtures, tmp_path):
    eutils = fixtures / "eutils"
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data((eutils / "esearch_history.json").read_bytes())
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data((eutils / "efetch_page1.xml").read_bytes())
    httpserver.expect_request("/efetch.fcgi").respond_with_data("down", status=503)
    db = tmp_path / "kb.db"
    result = subprocess.run([KB, "build", "--source", "pubmed", "--base-url", httpserver.url_for("/"),
                             "--batch-size", "2", "--retries", "1", "--backoff", "0", "--db", str(db),
                             "--no-progress"], capture_output=True, text=True)
    assert result.returncode == 1
    retry, error = [line for line in result.stderr.splitlines() if line.strip()]  # one line per retry
    assert "retrying now (1/1): HTTP 503" in retry
    assert "HTTP 503" in error and "1 pages kept in" in error
    assert not db.exists()
