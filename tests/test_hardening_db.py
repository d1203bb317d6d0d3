"""Hardening of kb.db writes (issue 17): concurrent writers, corrected records, amplification,
foreign files, file modes, disk full, Ctrl-C, exit statuses and serving a damaged file.

Every writer here is the real `kb` (CliRunner, or a subprocess where signals, locks or resource
limits are involved), against real files; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner
from datasette.app import Datasette
from test_datasette_pages import METADATA, PLUGINS, TEMPLATES
from test_faults import digest, existing_db, leftovers, one_line_error  # noqa: F401 (existing_db: a fixture)

from ingest.cli import cli
from ingest.db import build as builder
from ingest.db.atomic import writer_lock
from ingest.db.derive import PARALLEL_THRESHOLD
from ingest.db.schema import SCHEMA_VERSION
from ingest.records import empty_record

KB = str(Path(sys.executable).with_name("kb"))
HERE = Path(__file__).resolve().parent / "fixtures"
HARDENING = HERE / "hardening"
STUDY = "41000010"


def kb(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def build_from(tmp_path: Path, *files: Path, db: Path | None = None) -> Path:
    """kb build --from-dir over copies of ``files`` (loaded in the order given)."""
    folder = tmp_path / f"in-{len(list(tmp_path.glob('in-*')))}"
    folder.mkdir()
    for number, path in enumerate(files):
        shutil.copy(path, folder / f"{number:02d}_{path.name}")
    db = db or tmp_path / "kb.db"
    result = kb("build", "--from-dir", folder, "--db", db, "--no-progress")
    assert result.exit_code == 0, result.output
    return db


def study(db: Path, study_id: str = STUDY) -> dict:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        row = dict(conn.execute("select * from studies where id = ?", [study_id]).fetchone())
        for table, column in (("mesh_headings", "descriptor"), ("publication_types", "name"),
                              ("study_links", "ref_type"), ("abstract_sections_text", "text"),
                              ("study_tags", "tag_id")):
            rows = conn.execute(f"select {column} from {table} where study_id = ?", [study_id])
            row[table.removesuffix("_text")] = [r[0] for r in rows]
        sentences = conn.execute("select text from sentences_text where study_id = ?", [study_id])
        row["sentences"] = [r[0] for r in sentences]
        return row
    finally:
        conn.close()


def sentences_matching(db: Path, query: str) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute(
            "select s.study_id from sentences_fts join sentences s on s.rowid = sentences_fts.rowid "
            "where sentences_fts match ?", [query])}
    finally:
        conn.close()


def assert_sentence_index_matches_its_content(db: Path) -> None:
    """sentences_fts holds exactly the tokens of sentences_in_context, position by position.

    The index is external-content: a trigger that deleted an entry with other values than it
    was indexed with would leave it silently wrong (SQLite 3.40's integrity-check does not compare).
    """
    conn = sqlite3.connect(db)
    try:
        conn.executescript("""
            create virtual table temp.fresh using fts5(text, context, tokenize='porter');
            insert into temp.fresh (rowid, text, context) select rowid, text, context from sentences_in_context;
            create virtual table temp.fresh_terms using fts5vocab(temp, fresh, 'instance');
            create virtual table temp.kb_terms using fts5vocab(main, sentences_fts, 'instance');
        """)
        query = "select term, doc, col, offset from temp.{} order by 1, 2, 3, 4"
        indexed = conn.execute(query.format("kb_terms")).fetchall()
        assert indexed and indexed == conn.execute(query.format("fresh_terms")).fetchall()
    finally:
        conn.close()


def stderr_lines(text: str) -> list[str]:
    """stderr without blank lines and without the debug lines of KB_PAUSE_AT."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("kb: paused at")]


# --------------------------------------------------------------------------- 1. concurrent writers


def start_paused(args: list[str], release: Path, point: str = "before-rename") -> subprocess.Popen:
    """`kb ARGS` stopped at ``point`` (holding the writer lock) until ``release`` exists."""
    env = {**os.environ, "KB_PAUSE_AT": point, "KB_PAUSE_UNTIL": str(release)}
    process = subprocess.Popen([KB, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    line = process.stderr.readline()
    assert f"paused at {point}" in line, line
    return process


def test_two_imports_at_once_both_land(existing_db, tmp_path):  # noqa: F811
    """The first import holds kb.db while the second starts: the second waits, then merges into the
    first one's result; neither study is lost (before: both exited 0 and the later rename won)."""
    release = tmp_path / "release"
    first = start_paused(["import", str(HARDENING / "retracted_original.xml"), "--db", str(existing_db)], release)
    second = subprocess.Popen([KB, "import", str(HERE / "pubmed" / "export.nbib"), "--db", str(existing_db)],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        waiting = second.stderr.readline()
        assert waiting.strip() == f"waiting for another kb writer on kb.db (pid {first.pid})…", waiting
        release.touch()
        assert first.wait(timeout=60) == 0, first.stderr.read()
        assert second.wait(timeout=60) == 0, second.stderr.read()
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
    ids = {r[0] for r in sqlite_utils.Database(existing_db).execute("select id from studies")}
    assert {STUDY, "36000004"} <= ids  # one from each import
    assert leftovers(existing_db.parent) == []
    assert_sentence_index_matches_its_content(existing_db)


@pytest.mark.parametrize("command", ["import", "build"])
@pytest.mark.parametrize("how, message", [
    (("--no-wait",), "another kb writer (pid {pid}) is changing it; try again once it has finished"),
    (("--lock-timeout", "0.3"), "another kb writer (pid {pid}) still holds it after 0.3 s; try again"),
])
def test_a_writer_that_cannot_wait_refuses_and_changes_nothing(command, how, message, existing_db, tmp_path):  # noqa: F811
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(HARDENING / "retracted_original.xml", inputs)
    args = (["import", inputs / "retracted_original.xml"] if command == "import"
            else ["build", "--from-dir", inputs, "--no-progress"])
    before = digest(existing_db)
    with writer_lock(existing_db.resolve()):  # this test process is the other writer
        result = kb(*args, "--db", existing_db, *how)
    assert result.exit_code == 1, result.output
    lines = stderr_lines(result.stderr)
    if "--lock-timeout" in how:
        assert lines.pop(0) == f"waiting for another kb writer on kb.db (pid {os.getpid()})…"
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message.format(pid=os.getpid()) in lines[0]
    assert digest(existing_db) == before
    assert leftovers(existing_db.parent) == []


# --------------------------------------------------------------------------- 2. corrected records


def test_a_corrected_record_with_the_same_version_replaces_the_old_one_whole(tmp_path):
    db = build_from(tmp_path, HARDENING / "retracted_original.xml")
    old = study(db)
    assert old["is_retracted"] == 1 and "Rats" in old["mesh_headings"] and "cystitis" in old["study_tags"]
    result = kb("import", HARDENING / "corrected_reissue.xml", "--db", db)
    assert result.exit_code == 0, result.output
    new = study(db)
    assert new["pmid_version"] == 1
    assert new["title"] == "Repeated intravenous ketamine infusions for treatment-resistant depression: " \
                           "a randomized controlled trial."  # shorter, and yet it wins
    assert "cystitis" not in new["abstract"] and not any("cystitis" in s for s in new["abstract_sections"])
    assert "Rats" not in new["mesh_headings"] and len(new["mesh_headings"]) == 4
    assert new["publication_types"] == ["Randomized Controlled Trial", "Journal Article"]
    assert new["study_links"] == [] and new["is_retracted"] == 0
    assert json.loads(new["sources"]) == ["pubmed"]
    # What was derived from the old text is gone with it: its tag, its sentences, its index entries.
    assert "cystitis" not in new["study_tags"] and not any("cystitis" in s for s in new["sentences"])
    assert sentences_matching(db, "cystitis") == set() and sentences_matching(db, "adolescents") == set()
    assert_sentence_index_matches_its_content(db)


def test_a_corrected_record_later_in_the_same_build_replaces_the_earlier(tmp_path):
    db = build_from(tmp_path, HARDENING / "retracted_original.xml", HARDENING / "corrected_reissue.xml")
    row = study(db)
    assert row["is_retracted"] == 0 and "Rats" not in row["mesh_headings"] and "adolescents" not in row["title"]


def test_records_of_other_sources_still_merge_field_by_field(tmp_path):
    """PubMed and Europe PMC both have the study; the corrected PubMed record replaces PubMed's
    alone: the retraction and Rats go, Europe PMC's citation count stays."""
    db = build_from(tmp_path, HARDENING / "retracted_original.xml", HARDENING / "europepmc_same_study.json")
    old = study(db)
    assert old["is_retracted"] == 1 and old["cited_by_count"] == 12
    assert json.loads(old["sources"]) == ["pubmed", "europepmc"]
    result = kb("import", HARDENING / "corrected_reissue.xml", "--db", db)
    assert result.exit_code == 0, result.output
    new = study(db)
    assert new["is_retracted"] == 0 and new["study_links"] == []
    assert "Rats" not in new["mesh_headings"] and "adolescents" not in new["title"]
    assert new["cited_by_count"] == 12 and json.loads(new["sources"]) == ["pubmed", "europepmc"]
    # Field by field: the structured PubMed abstract still beats Europe PMC's flat one.
    assert len(new["abstract_sections"]) == 4
    # Importing the same correction again changes nothing.
    before = {k: v for k, v in study(db).items()}
    assert kb("import", HARDENING / "corrected_reissue.xml", "--db", db).exit_code == 0
    assert study(db) == before
    assert_sentence_index_matches_its_content(db)


REJECTED_VERSION = "PMID 41000010: Version 999 is not a plausible PubMed version (1-50): record skipped"


def test_an_absurd_version_is_rejected(tmp_path):
    """Version="999" would outrank every genuine record of the PMID: it is skipped, with a warning."""
    db = build_from(tmp_path, HARDENING / "retracted_original.xml")
    before = digest(db)
    result = kb("import", HARDENING / "version_999.xml", "--db", db)
    assert result.exit_code == 1, result.output  # nothing left to import
    assert REJECTED_VERSION in one_line_error(result)
    assert digest(db) == before
    # In a build beside the genuine record (loaded after it): the genuine one is kept, exit status 3.
    folder = tmp_path / "both"
    folder.mkdir()
    shutil.copy(HARDENING / "retracted_original.xml", folder / "a.xml")
    shutil.copy(HARDENING / "version_999.xml", folder / "b.xml")
    result = kb("build", "--from-dir", folder, "--db", db, "--no-progress")
    assert result.exit_code == 3, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert warnings == [f"Warning: b.xml: {REJECTED_VERSION}"]
    row = study(db)
    assert row["pmid_version"] == 1 and not row["title"].startswith("HIJACKED")


def test_an_absurd_version_already_in_kb_db_does_not_block_the_genuine_record(tmp_path):
    """A kb.db written before versions were checked holds Version 999: the genuine file replaces it."""
    from ingest.sources.formats import parse_bytes

    hijacked = parse_bytes((HARDENING / "version_999.xml").read_bytes()).records[0]
    collected = builder.Collected()
    collected.add(hijacked)  # straight in, as an older kb did
    db = tmp_path / "kb.db"
    builder.build(db, collected, "pubmed", "from-dir")
    assert study(db)["pmid_version"] == 999
    result = kb("import", HARDENING / "corrected_reissue.xml", "--db", db)
    assert result.exit_code == 0, result.output
    row = study(db)
    assert row["pmid_version"] == 1 and not row["title"].startswith("HIJACKED") and row["is_retracted"] == 0


# --------------------------------------------------------------------------- 6. amplification


def long_record(title_chars: int, sentences: int) -> dict:
    """A PubMed-shaped record with a title of ``title_chars`` characters and an abstract of
    ``sentences`` sentences (the shape of the 582 kB file that grew kb.db by 627 MB)."""
    rng = random.Random(17)
    words = "ketamine esketamine infusion depression remission relapse dose placebo response".split()
    title = ""
    while len(title) < title_chars:
        title += f"{rng.choice(words)}{rng.randrange(100_000)} "
    abstract = " ".join(f"In cohort {i} the {rng.choice(words)} rate was {rng.randrange(100)}% in "
                        f"{rng.randrange(10, 900)} patients." for i in range(sentences))
    record = empty_record(41000077, "pubmed")
    record.update(pmid_version=1, title=title.strip(), abstract=abstract, year=2024,
                  abstract_sections=[{"label": None, "nlm_category": None, "text": abstract}])
    return record


def import_record(db: Path, record: dict) -> int:
    """kb.db's growth in bytes when ``record`` is imported (past the parser's field caps)."""
    before = db.stat().st_size
    collected = builder.Collected()
    collected.add(record)
    builder.import_into(db, collected, "file", ["long.xml"])
    return db.stat().st_size - before


def test_a_long_title_is_stored_once_not_with_every_sentence(existing_db):  # noqa: F811
    title_chars, sentences = 100_000, 300
    growth = import_record(existing_db, long_record(title_chars, sentences))
    # The title's own copies (the study, its full-text index, the title sentence and its index
    # entry: 1.2 MB with free pages) and no copy per sentence: before, kb.db grew by 46 MB.
    assert growth < sentences * title_chars / 10, growth
    conn = sqlite3.connect(existing_db)
    try:
        assert conn.execute("select count(*) from sentences where study_id = '41000077'").fetchone()[0] > sentences
        assert conn.execute("select count(*) from sentences where context is not null").fetchone()[0] == 0
        context = conn.execute("select context from sentence_contexts where study_id = '41000077'").fetchone()[0]
        assert len(context) < 600 and context.startswith(long_record(100, 1)["title"].split()[0])
        assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert_sentence_index_matches_its_content(existing_db)


def test_sentences_are_still_searched_and_served_with_their_context(tmp_path):
    """The claim checker reads a sentence with its study's context (ranking, the passages it
    embeds), and /kb/sentences serves and searches the sentences."""
    from ingest.claims import check_claim
    from ingest.claims.embeddings import _kb_sentences
    from ingest.claims.retrieve import fts_ranking

    db = build_from(tmp_path, HARDENING / "corrected_reissue.xml")
    title = "Repeated intravenous ketamine infusions for treatment-resistant depression: a randomized controlled trial."
    # "randomized" is only in the title, "midazolam" only in abstract sentences: together only
    # through the context.
    assert sentences_matching(db, "midazolam AND randomized") == {STUDY}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ranked = fts_ranking(conn, '"midazolam"')
        assert [s.position for _, s in ranked] == [3, 2]
        assert all(s.context == f"{title} | ketamine iv rct trd | 2024" for _, s in ranked)
        assert [r.pmid for r in check_claim(conn, "intravenous midazolam").results] == [STUDY]
    finally:
        conn.close()
    embedded = [passage for _, position, passage, _ in _kb_sentences(db) if position == 2]
    assert embedded == [f"{title} We randomly assigned 120 adults to six infusions of ketamine (0.5 mg/kg) "
                        "or midazolam over two weeks."]
    rows = served_json(db, "/kb/sentences.json?_search=midazolam&_shape=array")
    assert [r["study_id"] for r in rows] == [STUDY, STUDY]
    rows = served_json(db, "/kb/sentences_in_context.json?_search=randomized+midazolam&_shape=array")
    assert [r["position"] for r in rows] == [2, 3] and rows[0]["context"].startswith(title)


def served_json(db: Path, path: str):
    """``path`` as `kb serve` answers it (the packaged metadata, plugins and templates), in process."""
    ds = Datasette(immutables=[str(db)], metadata=METADATA, template_dir=str(TEMPLATES), plugins_dir=str(PLUGINS))
    response = asyncio.run(ds.client.get(path))
    assert response.status_code == 200, response.text[:500]
    return response.json()


def test_an_older_kb_db_gets_the_new_sentence_index_on_import(tmp_path):
    """A kb.db of schema 2 (the context copied into every sentence row, indexed from there):
    an import moves it to the new index, and the old rows still read in their context."""
    db = build_from(tmp_path, HARDENING / "retracted_original.xml")
    make_schema_2(db)
    assert STUDY in sentences_matching(db, "midazolam AND adolescents")
    result = kb("import", HERE / "pubmed" / "export.nbib", "--db", db)
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(db)
    try:
        fts = conn.execute("select sql from sqlite_master where name = 'sentences_fts'").fetchone()[0]
        assert "sentences_in_context" in fts
        assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert STUDY in sentences_matching(db, "midazolam AND adolescents")  # an old row, its own context
    assert "36000004" in sentences_matching(db, "nausea AND neuropathic")  # a new row, its study's
    # Re-importing the old study rewrites it in the new layout, index and all.
    assert kb("import", HARDENING / "corrected_reissue.xml", "--db", db).exit_code == 0
    assert sentences_matching(db, "adolescents") == set()
    assert STUDY in sentences_matching(db, "midazolam AND randomized")
    assert_sentence_index_matches_its_content(db)


def make_schema_2(db: Path) -> None:
    """Turn a kb.db into the layout of schema 2, as earlier versions wrote it."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("update sentences set context = "
                     "(select context from sentence_contexts c where c.study_id = sentences.study_id)")
        # Each sentence's text in its row (the columns pointing into the abstract are left empty).
        conn.execute("update sentences set text = (select substr(iif(sentences.section_kind = 'title', s.title, "
                     "s.abstract), text_start, text_length) from studies s where s.id = sentences.study_id), "
                     "text_start = null, text_length = null where text is null")
        conn.execute("drop view sentences_text")
        for name in ("sentences_fts_insert", "sentences_fts_delete", "sentences_fts_update",
                     "sentence_contexts_no_replace", "sentence_contexts_fts_insert",
                     "sentence_contexts_fts_delete", "sentence_contexts_fts_update"):
            conn.execute(f"drop trigger {name}")
        conn.execute("drop table sentences_fts")
        conn.execute("drop view sentences_in_context")
        conn.execute("drop table sentence_contexts")
        conn.execute("drop table source_records")
        conn.execute("pragma user_version = 2")
    conn.close()
    sqlite_utils.Database(db)["sentences"].enable_fts(["text", "context"], tokenize="porter", create_triggers=True)


# --------------------------------------------------------------------------- smaller items


def test_import_refuses_a_foreign_sqlite_file(tmp_path):
    foreign = tmp_path / "unrelated.db"
    conn = sqlite3.connect(foreign)
    with conn:
        conn.execute("create table notes (id integer primary key, body text)")
        conn.execute("insert into notes (body) values ('my own data')")
    conn.close()
    before = digest(foreign)
    for args in (["import", HARDENING / "retracted_original.xml"], ["build", "--from-dir", HARDENING, "--no-progress"]):
        result = kb(*args, "--db", foreign)
        assert result.exit_code == 1, result.output
        line = one_line_error(result)
        assert "unrelated.db: not a kb database (its tables are notes); refusing to" in line, line
        assert digest(foreign) == before


def test_the_database_file_mode_is_kept(tmp_path):
    db = build_from(tmp_path, HARDENING / "retracted_original.xml")
    db.chmod(0o600)
    assert kb("import", HERE / "pubmed" / "export.nbib", "--db", db).exit_code == 0
    assert db.stat().st_mode & 0o777 == 0o600
    build_from(tmp_path, HARDENING / "corrected_reissue.xml", db=db)
    assert db.stat().st_mode & 0o777 == 0o600


def dead_pid() -> int:
    """A process id no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_temporaries_of_killed_writers_are_removed_with_their_journals(existing_db):  # noqa: F811
    pid = dead_pid()
    names = [f".kb.db.tmp-{pid}{suffix}" for suffix in ("", "-journal", "-wal", "-shm")]
    for name in names:
        (existing_db.parent / name).write_bytes(b"left by a killed build")
    result = kb("import", HARDENING / "retracted_original.xml", "--db", existing_db)
    assert result.exit_code == 0, result.output
    assert leftovers(existing_db.parent) == []


def run_with_file_size_limit(args: list, limit: int) -> subprocess.CompletedProcess:
    """`kb ARGS` unable to write any file past ``limit`` bytes: a full disk, as the process sees it."""
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG), do not kill the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([KB, *map(str, args)], capture_output=True, text=True, timeout=120, preexec_fn=limit_files)


def many_records_nbib(path: Path, count: int) -> Path:
    """A MEDLINE file of ``count`` short, realistic records."""
    template = (HERE / "pubmed" / "export.nbib").read_text().split("\n\n")[0]
    records = [template.replace("PMID- 39000001", f"PMID- {42000000 + i}").replace(
        "LID - 10.1038/s41386-024-01855-x [doi]", f"LID - 10.1038/s41386-024-{i:05d} [doi]") for i in range(count)]
    path.write_text("\n\n".join(records) + "\n")
    return path


@pytest.mark.parametrize("command", ["import", "build"])
def test_a_full_disk_is_one_line_and_leaves_nothing_behind(command, existing_db, tmp_path):  # noqa: F811
    inputs = tmp_path / "big"
    inputs.mkdir()
    many_records_nbib(inputs / "many.nbib", 300)
    before = digest(existing_db)
    if command == "import":
        args, limit = ["import", inputs / "many.nbib", "--db", existing_db], existing_db.stat().st_size + 64_000
    else:
        args, limit = ["build", "--from-dir", inputs, "--db", existing_db, "--no-progress"], 200_000
    result = run_with_file_size_limit(args, limit)
    assert result.returncode == 1, result.stderr
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "kb.db is unchanged" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert digest(existing_db) == before
    assert leftovers(existing_db.parent) == []


@pytest.mark.parametrize("command, point", [("build", "written"), ("import", "before-rename")])
def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing_behind(command, point, existing_db, tmp_path):  # noqa: F811
    """Ctrl-C reaches the whole foreground process group, the build's tagging workers too."""
    inputs = tmp_path / "big"
    inputs.mkdir()
    many_records_nbib(inputs / "many.nbib", PARALLEL_THRESHOLD + 100)  # enough for the build to start its workers
    args = (["build", "--from-dir", inputs, "--no-progress"] if command == "build"
            else ["import", inputs / "many.nbib"])
    before = digest(existing_db)
    env = {**os.environ, "KB_PAUSE_AT": point}
    process = subprocess.Popen([KB, *map(str, args), "--db", str(existing_db)], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, env=env, text=True, start_new_session=True)
    try:
        assert f"paused at {point}" in process.stderr.readline()
        if command == "build":
            assert worker_count(process.pid) >= 2
        os.killpg(process.pid, signal.SIGINT)  # as the terminal does
        assert process.wait(timeout=60) == 130
        stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert stderr_lines(stderr) == [f"Error: interrupted; {existing_db} is left as it was"], stderr
    assert digest(existing_db) == before
    assert leftovers(existing_db.parent) == []


def worker_count(pid: int) -> int:
    """How many child processes ``pid`` has (its tagging workers), from /proc."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        count += int(fields[1]) == pid  # the field after the state is the parent's pid
    return count


def test_builds_and_imports_exit_3_when_an_input_was_rejected(existing_db, tmp_path, fixtures):  # noqa: F811
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(HARDENING / "retracted_original.xml", folder)
    shutil.copy(fixtures / "pubmed" / "malformed.xml", folder)
    result = kb("build", "--from-dir", folder, "--db", existing_db, "--no-progress")
    assert result.exit_code == 3, result.output
    assert "Warning: malformed.xml: malformed XML" in result.stderr
    result = kb("import", fixtures / "pubmed" / "malformed.xml", "--db", existing_db)
    assert result.exit_code == 3, result.output
    conn = sqlite3.connect(existing_db)
    statuses = [r[0] for r in conn.execute("select status from ingest_runs order by id")]
    conn.close()
    assert statuses[-2:] == ["ok-with-errors", "ok-with-errors"]
    # A clean import is 0.
    assert kb("import", HARDENING / "corrected_reissue.xml", "--db", existing_db).exit_code == 0


@pytest.mark.parametrize("damage", ["not-sqlite", "cut-short", "foreign"])
def test_kb_serve_on_a_damaged_file_is_one_line(damage, existing_db, tmp_path):  # noqa: F811
    bad = tmp_path / "bad.db"
    if damage == "not-sqlite":
        bad.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    elif damage == "cut-short":
        data = existing_db.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        sqlite3.connect(bad).execute("create table notes (x)").connection.close()
    result = subprocess.run([KB, "serve", "--db", str(bad), "--port", "0"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"Error: {bad}: "), result.stderr
    assert "Traceback" not in result.stderr
