"""The `kb` command line: help, builds, imports, serving, and bad input."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from ingest.cli import cli

COMMANDS = ["build", "import", "serve"]


def run(*args):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_lists_commands_with_examples():
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
        sub = run(command, "--help")
        assert sub.exit_code == 0 and "Examples:" in sub.output, command


def test_build_from_dir_and_import(tmp_path, fixtures):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(fixtures / "pubmed" / "efetch_cases.xml", folder)
    db = tmp_path / "kb.db"
    result = run("build", "--from-dir", str(folder), "--db", str(db), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "3 studies in kb.db" in result.stderr
    result = run("import", str(fixtures / "pubmed" / "export.nbib"), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "4 studies in kb.db" in result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def existing_db(tmp_path, fixtures) -> Path:
    db = tmp_path / "kb.db"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(fixtures / "pubmed" / "efetch_cases.xml", folder)
    assert run("build", "--from-dir", str(folder), "--db", str(db), "--no-progress").exit_code == 0
    return db


def test_missing_from_dir_is_one_line_error(existing_db, tmp_path):
    before = digest(existing_db)
    result = run("build", "--from-dir", str(tmp_path / "nope"), "--db", str(existing_db))
    assert result.exit_code == 1
    assert one_line_error(result) == f"Error: --from-dir {tmp_path / 'nope'}: no such directory"
    assert digest(existing_db) == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_from_dir_is_one_line_error(existing_db, tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            # root ignores permissions: a file instead of a directory is still refused.
            target = tmp_path / "file.xml"
            target.write_text("x")
            result = run("build", "--from-dir", str(target), "--db", str(existing_db))
            assert "not a directory" in one_line_error(result)
        else:
            result = run("build", "--from-dir", str(locked), "--db", str(existing_db))
            assert "permission denied" in one_line_error(result)
        assert result.exit_code == 1
    finally:
        locked.chmod(0o755)


def test_malformed_file_warns_and_loads_the_rest(existing_db, tmp_path, fixtures):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(fixtures / "pubmed" / "efetch_cases.xml", folder)
    shutil.copy(fixtures / "pubmed" / "malformed.xml", folder)
    result = run("build", "--from-dir", str(folder), "--db", str(existing_db), "--no-progress")
    assert result.exit_code == 3  # built, but an input was rejected
    assert "Warning: malformed.xml: malformed XML" in result.stderr
    assert "4 studies in kb.db" in result.stderr


def test_unknown_option_is_rejected(existing_db):
    before = digest(existing_db)
    result = run("build", "--frm-dir", "x", "--db", str(existing_db))
    assert result.exit_code == 2
    assert one_line_error(result).startswith("Error: No such option '--frm-dir'")
    assert digest(existing_db) == before


def test_import_errors(existing_db, tmp_path, fixtures):
    before = digest(existing_db)
    result = run("import", str(tmp_path / "missing.nbib"), "--db", str(existing_db))
    assert result.exit_code == 1 and "no such file" in one_line_error(result)
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n")
    result = run("import", str(junk), "--db", str(existing_db))
    assert result.exit_code == 1
    assert "not PubMed XML, MEDLINE text, RIS, Europe PMC or ClinicalTrials.gov JSON" in one_line_error(result)
    result = run("import", str(fixtures / "pubmed" / "export.ris"), "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 1 and "run `kb build` first" in one_line_error(result)
    assert digest(existing_db) == before


def test_network_build_against_loopback_server(httpserver, fixtures, tmp_path):
    eutils = fixtures / "eutils"
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(
        (eutils / "esearch_history.json").read_bytes())
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(
        (eutils / "efetch_page1.xml").read_bytes())
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(
        (eutils / "efetch_page2.xml").read_bytes())
    db = tmp_path / "kb.db"
    result = run("build", "--db", str(db), "--source", "pubmed", "--base-url", httpserver.url_for("/"),
                 "--batch-size", "2", "--backoff", "0", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "3 studies in kb.db" in result.stderr


def test_network_failure_leaves_db_untouched(httpserver, existing_db):
    before = digest(existing_db)
    httpserver.expect_request("/esearch.fcgi").respond_with_data("down", status=503)
    result = run("build", "--db", str(existing_db), "--source", "pubmed", "--base-url", httpserver.url_for("/"),
                 "--retries", "1", "--backoff", "0", "--no-progress")
    assert result.exit_code == 1
    retry, error = [line for line in result.stderr.splitlines() if line.strip()]  # one line per retry
    assert "esearch.fcgi: retrying now (1/1): HTTP 503" in retry
    assert error.startswith("Error: ") and "HTTP 503" in error
    assert digest(existing_db) == before


def test_serve_refuses_missing_db(tmp_path):
    result = run("serve", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 1 and "no such database" in one_line_error(result)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.parametrize("workers", [1, 2])
def test_kb_serve_runs_datasette_read_only(existing_db, workers):
    port = free_port()
    kb = Path(sys.executable).with_name("kb")
    process = subprocess.Popen([str(kb), "serve", "--db", str(existing_db), "--port", str(port),
                                "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                response = requests.get(f"{base}/kb/studies.json?_shape=array", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert response.status_code == 200 and len(response.json()) == 3
        databases = requests.get(f"{base}/-/databases.json", timeout=5).json()
        assert databases[0]["is_mutable"] is False
        write = requests.get(f"{base}/kb.json", params={"sql": "delete from studies"}, timeout=5)
        assert write.status_code == 400
        # Every process runs the same site: kb serve's settings, the packaged metadata and plugins.
        settings = requests.get(f"{base}/-/settings.json", timeout=5).json()
        assert settings["facet_time_limit_ms"] == 500 and settings["suggest_facets"] is False
        plugins = {p["name"] for p in requests.get(f"{base}/-/plugins.json", timeout=5).json()}
        assert {"tag_facets.py", "search_page.py", "claim_check.py"} <= plugins
        assert requests.get(f"{base}/-/metadata.json", timeout=5).json()["title"] == "ketamine-kb"
        served_by = [pid for pid in child_pids(process.pid)
                     if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(served_by) == (workers if workers > 1 else 0), "--workers N: N processes under one supervisor"
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.parametrize("command", [["import", "--help"], ["build", "--help"]])
def test_help_names_every_format_the_code_accepts(command):
    from ingest.sources.formats import RECORD_SUFFIXES

    text = " ".join(run(*command).output.split())
    for name in ("PubMed XML", "MEDLINE", "RIS", "Europe PMC", "ClinicalTrials.gov"):
        assert name in text, name
    for suffix in RECORD_SUFFIXES:
        assert suffix in text, suffix
