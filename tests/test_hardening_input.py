"""Hardening of input files (issue 17): encodings, field caps, gzip bombs, files that are not
records, and the line-by-line commands (`kb tag-text`, `kb check --file`).

Every input here is a real file with real bytes, read by the real `kb` (CliRunner, or a
subprocess where a terminal or a pipe matters); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import shutil
import sqlite3
import struct
import subprocess
import sys
import termios
import tracemalloc
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.app import Datasette
from hypothesis import given, settings
from hypothesis import strategies as st
from test_datasette_pages import METADATA, PLUGINS, TEMPLATES
from test_faults import digest, existing_db, one_line_error  # noqa: F401 (existing_db: a fixture)

from ingest.cli import EXIT_PROBLEMS, cli
from ingest.records import (
    MAX_ABSTRACT_CHARS,
    MAX_AUTHORS,
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    ParseError,
)
from ingest.records.text import clean_ws
from ingest.sources.formats import MAX_INPUT_BYTES, parse_bytes, read_bytes

KB = str(Path(sys.executable).with_name("kb"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PUBMED = FIXTURES / "pubmed"


def kb(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]


def studies(db: Path) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return {row["id"]: row for row in conn.execute("select * from studies")}
    finally:
        conn.close()


def authors(db: Path, study_id: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("select last_name from authors where study_id = ? order by position", [study_id])
        return [r[0] for r in rows]
    finally:
        conn.close()


@pytest.fixture
def kb_db(existing_db: Path) -> Path:  # noqa: F811
    """A kb.db from an earlier build (tests/fixtures/pubmed/efetch_cases.xml), as test_faults makes it."""
    return existing_db


def medline(*records: str) -> str:
    return "\n\n".join(records) + "\n"


# --------------------------------------------------------------------------- item 4: encodings

UTF8_RECORD = "PMID- 41000001\nTI  - Ketamine in Zürich: a cohort\nFAU - Müller, Jörg\nAU  - Müller J\nDP  - 2021"
STRAY_RECORD = "PMID- 41000002\nTI  - Esketamine in Genève STRAY\nFAU - Dupont, Zoë\nDP  - 2022"
LATIN1_RECORD = "PMID- 41000003\nTI  - Arketamine in Zürich\nFAU - Müller, Jörg\nDP  - 2023"


def mixed_nbib() -> bytes:
    """Three records: UTF-8, UTF-8 with one stray byte (0xFF), and one written in Latin-1."""
    return (medline(UTF8_RECORD, STRAY_RECORD).encode("utf-8").replace(b"STRAY", b"\xff")
            + b"\n" + (LATIN1_RECORD + "\n").encode("latin-1"))


def test_a_bad_byte_spoils_only_its_own_record_in_medline(kb_db, tmp_path):
    path = tmp_path / "mixed.nbib"
    path.write_bytes(mixed_nbib())
    result = kb("import", path, "--db", kb_db)
    assert result.exit_code == EXIT_PROBLEMS, result.output
    rows = studies(kb_db)
    # The clean record and the Latin-1 one read right; only the stray byte is lost (U+FFFD).
    assert rows["41000001"]["title"] == "Ketamine in Zürich: a cohort"
    assert authors(kb_db, "41000001") == ["Müller"]
    assert rows["41000002"]["title"] == "Esketamine in Genève \ufffd"
    assert authors(kb_db, "41000002") == ["Dupont"]
    assert rows["41000003"]["title"] == "Arketamine in Zürich"
    assert authors(kb_db, "41000003") == ["Müller"]
    assert warnings(result) == [
        f"Warning: {path}: record 2 (PMID 41000002): 1 byte not valid UTF-8 replaced with U+FFFD",
        f"Warning: {path}: record 3 (PMID 41000003): not UTF-8: read as Windows-1252",
    ]


def test_a_bad_byte_spoils_only_its_own_record_in_ris():
    good = "TY  - JOUR\nAN  - 41000011\nTI  - Ketamine in Zürich\nAU  - Müller, Jörg\nER  - \n"
    stray = "TY  - JOUR\nAN  - 41000012\nTI  - Ketamine in Genève STRAY\nER  - \n"
    latin = "TY  - JOUR\nDO  - 10.1000/latin\nTI  - Ketamine in Zürich\nAU  - Müller, Jörg\nER  - \n"
    data = (good + stray).encode("utf-8").replace(b"STRAY", b"\xff") + latin.encode("latin-1")
    result = parse_bytes(data)
    titles = [r["title"] for r in result.records]
    assert titles == ["Ketamine in Zürich", "Ketamine in Genève \ufffd", "Ketamine in Zürich"]
    assert [r["authors"][0]["last_name"] for r in result.records if r["authors"]] == ["Müller", "Müller"]
    assert result.errors == ["record 2 (PMID 41000012): 1 byte not valid UTF-8 replaced with U+FFFD",
                             "record 3 (DOI 10.1000/latin): not UTF-8: read as Windows-1252"]


def test_a_file_in_windows_1252_throughout_is_read_as_such_with_one_warning():
    records = [f"PMID- {41000020 + i}\nTI  - \u201cKetamine\u201d in Zürich {i}\nDP  - 2020" for i in range(50)]
    result = parse_bytes(medline(*records).encode("cp1252"))
    assert [r["title"] for r in result.records] == [f"\u201cKetamine\u201d in Zürich {i}" for i in range(50)]
    assert result.errors == ["not UTF-8: read as Windows-1252"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("fixture", ["efetch_cases.xml", "export.nbib", "export.ris"])
def test_utf16_and_utf32_files_with_a_byte_order_mark_are_read(fixture, encoding, tmp_path):
    utf8 = (PUBMED / fixture).read_bytes()
    text = utf8.decode("utf-8")
    if fixture.endswith(".xml"):  # as a UTF-16 editor saves it: the declaration says so
        text = text.replace('<?xml version="1.0" ?>', f'<?xml version="1.0" encoding="{encoding.upper()}"?>')
    bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-32": b""}[encoding]
    path = tmp_path / fixture
    path.write_bytes(bom + text.encode(encoding))
    expected = parse_bytes(utf8)
    result = parse_bytes(read_bytes(path))
    assert result.records == expected.records and result.errors == expected.errors
    assert result.records


def test_utf16_without_a_byte_order_mark_says_so(kb_db, tmp_path):
    path = tmp_path / "export.nbib"
    path.write_bytes((PUBMED / "export.nbib").read_text().encode("utf-16-le"))
    before = digest(kb_db)
    result = kb("import", path, "--db", kb_db)
    assert result.exit_code == 1
    assert "UTF-16 or UTF-32 without a byte-order mark: convert it to UTF-8" in one_line_error(result)
    assert digest(kb_db) == before


# --------------------------------------------------------------------------- item 5: field caps


def huge_abstract_nbib(path: Path, size: int = 50_000_000) -> None:
    """One MEDLINE record whose AB line is ``size`` characters long."""
    sentence = "Ketamine reduced depressive symptoms within hours of the infusion. "
    abstract = (sentence * (size // len(sentence) + 1))[:size]
    path.write_text(f"PMID- 41000100\nTI  - Ketamine infusion for depression\nAB  - {abstract}\nDP  - 2021\n")


def served(db: Path, path: str):
    ds = Datasette(immutables=[str(db)], metadata=METADATA, template_dir=str(TEMPLATES), plugins_dir=str(PLUGINS),
                   settings={"sql_time_limit_ms": 5000})
    return asyncio.run(ds.client.get(path, follow_redirects=True))


def test_a_50_mb_medline_line_is_capped_and_the_site_still_serves(kb_db, tmp_path):
    path = tmp_path / "huge.nbib"
    huge_abstract_nbib(path)
    result = kb("import", path, "--db", kb_db)
    assert result.exit_code == EXIT_PROBLEMS, result.output
    assert warnings(result) == [f"Warning: {path}: PMID 41000100: abstract cut to {MAX_ABSTRACT_CHARS:,} "
                                "characters (was 49,999,999)"]
    row = studies(kb_db)["41000100"]
    assert len(row["abstract"]) == MAX_ABSTRACT_CHARS and row["title"] == "Ketamine infusion for depression"
    conn = sqlite3.connect(kb_db)
    longest = conn.execute("select max(length(text)) from abstract_sections_text").fetchone()[0]
    conn.close()
    assert longest <= MAX_ABSTRACT_CHARS
    # What answered 500 ("string or blob too big") for everyone before the cap.
    for page in ("/kb/studies", "/kb/studies?_search=ketamine", "/kb/studies/41000100", "/kb/sentences",
                 "/kb/studies?_facet=year"):
        assert served(kb_db, page).status_code == 200, page


def test_a_huge_abstract_over_many_continuation_lines_is_joined_and_capped():
    # Joined once per field (the lines were appended one by one before: quadratic copying).
    sentence = "Ketamine reduced depressive symptoms within hours of the infusion. "
    text = sentence * 30_000
    wrapped = "\n      ".join(text[i:i + 74] for i in range(0, len(text), 74))
    result = parse_bytes(f"PMID- 41000105\nAB  - {wrapped}\nDP  - 2020\n".encode())
    joined = " ".join(text[i:i + 74].strip() for i in range(0, len(text), 74))
    assert result.records[0]["abstract"] == joined[:MAX_ABSTRACT_CHARS]
    assert result.errors == [f"PMID 41000105: abstract cut to 100,000 characters (was {len(joined):,})"]


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x3100) | st.sampled_from([" ", "\ud800", "\x85", "\u2028"]),
               max_size=40))
def test_clean_ws_is_still_every_whitespace_run_to_one_space(text):
    # clean_ws has a fast path for printable single-spaced text; it must agree with the definition.
    expected = re.sub("[\ud800-\udfff]", "\ufffd", re.sub(r"\s+", " ", text)).strip()
    assert clean_ws(text) == expected


def test_every_field_of_a_record_is_capped_with_one_warning():
    lines = ["PMID- 41000101", "TI  - " + "Ketamine " * 1000, "JT  - " + "J" * 5000, "DP  - 2020"]
    lines += ["FAU - Author, First", "AD  - " + "Zürich " * 1000]
    lines += [f"FAU - Author{i}, A" for i in range(MAX_AUTHORS + 5)]
    lines += [f"OT  - keyword {i}" for i in range(MAX_LIST_ITEMS + 500)]
    lines += [f"MH  - Heading {i}/drug effects" for i in range(MAX_LIST_ITEMS + 1)]
    (record,) = (result := parse_bytes("\n".join(lines).encode())).records
    assert len(record["title"]) == MAX_TITLE_CHARS and len(record["journal"]) == MAX_TEXT_CHARS
    assert len(record["authors"]) == MAX_AUTHORS
    assert len(record["authors"][0]["affiliations"][0]) == MAX_TEXT_CHARS
    assert len(record["keywords"]) == MAX_LIST_ITEMS and len(record["mesh"]) == MAX_LIST_ITEMS
    assert result.errors == [
        "PMID 41000101: title cut to 2,000 characters (was 8,999); journal cut to 2,000 characters (was 5,000); "
        "authors cut to 10,000 items (was 10,006); authors.affiliations cut to 2,000 characters (was 6,999); "
        "mesh cut to 1,000 items (was 1,001); keywords cut to 1,000 items (was 1,500)"]


def test_a_structured_abstract_keeps_whole_sections_within_the_cap():
    section = "x" * 40_000
    text = f"BACKGROUND: {section}. METHODS: {section}. RESULTS: {section}. CONCLUSIONS: {section}."
    (record,) = parse_bytes(f"PMID- 41000102\nAB  - {text}\n".encode()).records
    labels = [s["label"] for s in record["abstract_sections"]]
    assert labels == ["BACKGROUND", "METHODS", "RESULTS"] and len(record["abstract"]) == MAX_ABSTRACT_CHARS
    assert record["abstract"].startswith("BACKGROUND: x") and record["abstract"] == "\n\n".join(
        f"{s['label']}: {s['text']}" for s in record["abstract_sections"])


def test_trials_and_europe_pmc_records_are_capped_too():
    page = json.loads((FIXTURES / "clinicaltrials" / "studies_page1.json").read_text())
    description = page["studies"][0]["protocolSection"].setdefault("descriptionModule", {})
    description["briefSummary"] = "Ketamine. " * 50_000
    result = parse_bytes(json.dumps(page).encode())
    trial = result.trials[0]
    assert len(trial["brief_summary"]) == MAX_ABSTRACT_CHARS
    assert result.errors == [f"{trial['nct_id']}: brief_summary cut to 100,000 characters (was 499,999)"]
    epmc = json.loads((FIXTURES / "europepmc" / "search_page1.json").read_text())
    epmc["resultList"]["result"][0]["title"] = "Ketamine " * 1000
    result = parse_bytes(json.dumps(epmc).encode())
    assert len(result.records[0]["title"]) == MAX_TITLE_CHARS
    assert result.errors[0].endswith("title cut to 2,000 characters (was 8,999)")


@pytest.mark.parametrize("data, year", [
    (b"PMID- 41000103\nTI  - Ketamine\nDP  - 99999 Jan\n", 99999),
    (b"PMID- 41000103\nTI  - Ketamine\nDP  - 1066\n", 1066),
    (b"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID Version='1'>41000103</PMID><Article><Journal>"
     b"<JournalIssue><PubDate><Year>99999</Year><Month>Jan</Month></PubDate></JournalIssue></Journal>"
     b"<ArticleTitle>Ketamine</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>", 99999),
    (b"TY  - JOUR\nAN  - 41000103\nTI  - Ketamine\nPY  - 1700\nER  - \n", 1700),
], ids=["medline-99999", "medline-1066", "xml-99999", "ris-1700"])
def test_implausible_years_are_dropped_with_a_warning(data, year):
    (record,) = (result := parse_bytes(data)).records
    assert record["year"] is None and record["pub_date"] is None
    assert len(result.errors) == 1 and f"PMID 41000103: year {year} is not between 1800 and" in result.errors[0]


def test_plausible_years_are_kept():
    (record,) = parse_bytes(b"PMID- 41000104\nTI  - Ketamine\nDP  - 2024 May 3\n").records
    assert (record["year"], record["pub_date"]) == (2024, "2024-05-03")


# --------------------------------------------------------------------------- item 7: gzip bombs

BOMB_SIZE = 2 << 30  # 2 GiB, from a 2 MB file


def gzip_bomb(path: Path, size: int = BOMB_SIZE) -> None:
    """A valid single-member .xml.gz expanding to ``size`` bytes of an XML document.

    Built without compressing ``size`` bytes: after a full flush deflate forgets its history, so
    one compressed megabyte of spaces can be repeated as often as wanted.
    """
    prefix, suffix, chunk = b'<?xml version="1.0"?><PubmedArticleSet>', b"</PubmedArticleSet>", b" " * (1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: with a gzip header and trailer
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = (deflate.compress(suffix) + deflate.flush())[:-8]  # the trailer is written below
    count = size // len(chunk)
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    total = len(prefix) + count * len(chunk) + len(suffix)
    path.write_bytes(head + block * count + tail + struct.pack("<II", zlib.crc32(suffix, crc), total & 0xFFFFFFFF))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "pubmed24n9999.xml.gz"
    gzip_bomb(path)
    return path


def test_a_gzip_bomb_is_refused_with_bounded_memory(bomb):
    assert bomb.stat().st_size < 3_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ParseError, match="expands more than 100-fold: refused as a likely gzip bomb"):
            read_bytes(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 128 << 20, f"peak {peak:,} bytes"  # the bomb expands to 2 GiB


def test_kb_import_of_a_gzip_bomb_is_one_line_and_leaves_kb_db(bomb, kb_db):
    before = digest(kb_db)
    result = kb("import", bomb, "--db", kb_db)
    assert result.exit_code == 1
    assert one_line_error(result) == (f"Error: {bomb}: cannot read (expands more than 100-fold: "
                                      "refused as a likely gzip bomb)")
    assert digest(kb_db) == before


def test_a_gzip_file_expanding_past_the_size_cap_is_refused(tmp_path):
    import gzip

    path = tmp_path / "big.json.gz"
    path.write_bytes(gzip.compress(os.urandom(3 << 20)))  # incompressible: no bomb, just too big
    with pytest.raises(ParseError, match=r"expands to more than 2,097,152 bytes, the most one input may hold"):
        read_bytes(path, limit=2 << 20)
    assert len(read_bytes(path, limit=4 << 20)) == 3 << 20
    assert MAX_INPUT_BYTES == 1 << 30


def test_a_plain_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.xml"
    with path.open("wb") as f:
        f.truncate(5 << 20)  # sparse: the size is there, the bytes never are
    with pytest.raises(ParseError, match=r"5,242,880 bytes: more than the 1,048,576 one input may hold"):
        read_bytes(path, limit=1 << 20)


def test_a_truncated_gzip_file_is_a_clear_error(tmp_path):
    import gzip

    path = tmp_path / "cut.xml.gz"
    path.write_bytes(gzip.compress((PUBMED / "efetch_cases.xml").read_bytes())[:-20])
    with pytest.raises(ParseError, match="not a readable gzip file"):
        read_bytes(path)


# --------------------------------------------------------------------------- files that are not records


def test_xml_that_is_not_pubmed_is_a_rejected_input_with_a_warning(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(PUBMED / "efetch_cases.xml", folder / "a_good.xml")
    shutil.copy(FIXTURES / "eutils" / "service_unavailable.html", folder / "b_saved_page.xml")
    shutil.copy(FIXTURES / "faults" / "efetch_error.xml", folder / "c_efetch_error.xml")
    (folder / "d_xhtml.xml").write_text('<html xmlns="http://www.w3.org/1999/xhtml"><body>Hi</body></html>')
    (folder / "e_other.xml").write_text('<?xml version="1.0"?><rss version="2.0"><channel/></rss>')
    db = tmp_path / "kb.db"
    result = kb("build", "--from-dir", folder, "--db", db, "--no-progress")
    assert result.exit_code == EXIT_PROBLEMS, result.output
    assert warnings(result) == [
        "Warning: b_saved_page.xml: an HTML page, not PubMed XML (a saved error or login page?)",
        "Warning: c_efetch_error.xml: an E-utilities error answer, not records: Search Backend failed: "
        "Database is not supported",
        "Warning: d_xhtml.xml: an HTML page, not PubMed XML (a saved error or login page?)",
        "Warning: e_other.xml: not PubMed XML: its root element is <rss>, not <PubmedArticleSet>",
    ]
    conn = sqlite3.connect(db)
    inputs, errors = conn.execute("select inputs, errors from ingest_runs order by id desc limit 1").fetchone()
    conn.close()
    assert json.loads(inputs) == ["a_good.xml"] and len(json.loads(errors)) == 4
    assert set(studies(db)) == {"39000001", "2345678", "17000002"}


def test_an_empty_article_set_is_not_an_error():
    result = parse_bytes(b'<?xml version="1.0"?><PubmedArticleSet></PubmedArticleSet>')
    assert result.records == [] and result.errors == []


def test_readmes_and_provenance_files_in_a_directory_are_ignored_quietly(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(PUBMED / "export.nbib", folder / "export.nbib")
    for name in ("README.txt", "readme.md.txt", "PROVENANCE.json", "LICENSE.txt", "licence.txt", "checksums.txt",
                 "SHA256SUMS.txt", "md5sums.txt", "CHANGELOG.txt", "sub/README.json", "NOTICE.txt"):
        (folder / name).write_text("Not records: who made these files and how.\n")
    db = tmp_path / "kb.db"
    result = kb("build", "--from-dir", folder, "--db", db, "--no-progress")
    assert result.exit_code == 0, result.output
    assert warnings(result) == [] and "0 problems" in result.stderr
    conn = sqlite3.connect(db)
    inputs = json.loads(conn.execute("select inputs from ingest_runs order by id desc limit 1").fetchone()[0])
    conn.close()
    assert inputs == ["export.nbib"]


def test_a_record_file_whose_name_only_starts_like_a_readme_is_still_read(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(PUBMED / "export.nbib", folder / "readmission-after-ketamine.nbib")
    result = kb("build", "--from-dir", folder, "--db", tmp_path / "kb.db", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "readmission-after-ketamine.nbib" in json.loads(
        sqlite3.connect(tmp_path / "kb.db").execute("select inputs from ingest_runs").fetchone()[0])


# --------------------------------------------------------------------------- kb tag-text


def test_tag_text_reports_each_bad_line_with_its_number_and_goes_on():
    good = json.dumps({"id": "a", "title": "Intranasal esketamine for treatment-resistant depression"})
    lines = [
        good.encode(),
        b"[" * 100_000 + b"]" * 100_000,  # nested too deep for json
        json.dumps({"title": "Ketamine", "mesh": "Ketamine"}).encode(),  # not a list
        json.dumps({"title": "Ketamine", "mesh": [{"descriptor": 5}]}).encode(),
        json.dumps({"title": "Ketamine", "publication_types": [["Review"]]}).encode(),
        b'{"title": "Ketamine in Z\xfcrich"}',  # Latin-1, not UTF-8
        b'{"id": "b", "title": "Ketamine \\ud800 in depression", "mesh": ["*Ketamine/therapeutic use"]}',
        json.dumps({"id": "c", "abstract": "Ketamine was given. " * 10_000}).encode(),
        good.replace('"a"', '"d"').encode(),
    ]
    result = subprocess.run([KB, "tag-text"], input=b"\n".join(lines) + b"\n", capture_output=True)
    assert result.returncode == 1
    out = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [item["id"] for item in out] == ["a", "b", "c", "d"]
    assert out[1]["title"] == "Ketamine \ud800 in depression" and "tags" in out[1]
    assert out[0]["tags"]["drug"] == ["esketamine"] and out[2]["tags"]["drug"] == ["ketamine"]
    assert result.stderr.decode().splitlines() == [
        "Error: line 2: nested too deeply",
        "Error: line 3: mesh must be a list of names, not str",
        "Error: line 4: mesh entries must be names or objects with a 'descriptor' string",
        "Error: line 5: publication_types entries must be names or objects with a 'name' string",
        "Error: line 6: not UTF-8 (byte 0xfc at column 25)",
        "Warning: line 8: abstract cut to 100,000 characters (was 200,000) for tagging",
    ]


# --------------------------------------------------------------------------- kb check --file


@pytest.fixture(scope="module")
def check_db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("check-in")
    shutil.copy(PUBMED / "efetch_cases.xml", folder)
    shutil.copy(PUBMED / "export.nbib", folder)
    db = tmp_path_factory.mktemp("check") / "kb.db"
    result = kb("build", "--from-dir", folder, "--db", db, "--no-progress")
    assert result.exit_code == 0, result.output
    return db


def test_check_file_reports_bad_lines_with_their_numbers_and_checks_the_rest(check_db, tmp_path):
    claims = tmp_path / "claims.txt"
    claims.write_bytes(b"# my claims\nketamine relieves depression\nthe of and\n\nketamine in Z\xfcrich\n"
                       b"esketamine nasal spray\n")
    result = kb("check", "--file", claims, "--db", check_db, "--mode", "fts", "--json")
    assert result.exit_code == 1
    assert [c["claim"] for c in json.loads(result.stdout)] == ["ketamine relieves depression",
                                                              "esketamine nasal spray"]
    assert result.stderr.splitlines() == [
        f"Error: {claims} line 3: the claim has no searchable words",
        f"Error: {claims} line 5: not UTF-8 (byte 0xfc at column 14)",
    ]


@pytest.mark.parametrize("fmt", ["--json", "--csv", "--text"])
def test_check_file_writes_each_result_before_reading_the_next_claim(fmt, check_db, tmp_path):
    """The claims come through a pipe (FIFO): the first claim's result must be out while the
    second claim has not even been written. (Before: nothing until the whole file was read.)"""
    fifo = tmp_path / "claims.fifo"
    os.mkfifo(fifo)
    args = [KB, "check", "--file", str(fifo), "--db", str(check_db), "--mode", "fts"]
    process = subprocess.Popen(args + ([fmt] if fmt != "--text" else []), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        with open_writer(fifo, process) as claims:
            claims.write("ketamine relieves depression\n")
            claims.flush()
            first = read_until(process.stdout, b"ketamine relieves depression")
            claims.write("esketamine nasal spray\n")
        rest, errors = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, errors
    output = (first + rest).decode()
    assert "esketamine nasal spray" not in first.decode() and "esketamine nasal spray" in output
    if fmt == "--json":
        assert [c["claim"] for c in json.loads(output)] == ["ketamine relieves depression", "esketamine nasal spray"]


def open_writer(fifo: Path, process: subprocess.Popen):
    """The FIFO's writing end, once ``process`` has opened it to read (never hanging if it died first)."""
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until there is a reader
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"kb check ended first: {process.stderr.read().decode()}") from None
            select.select([], [], [], 0.05)
            continue
        os.set_blocking(fd, True)
        return os.fdopen(fd, "w")


def read_until(stream, needle: bytes, guard: float = 120.0) -> bytes:
    """Bytes from ``stream`` until ``needle`` has been read (``guard``: give up rather than hang)."""
    seen = b""
    while needle not in seen:
        ready, _, _ = select.select([stream], [], [], guard)
        chunk = os.read(stream.fileno(), 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"no {needle!r} in the output before the claims file was complete: {seen[:300]!r}")
        seen += chunk
    return seen


# --------------------------------------------------------------------------- kb import progress


def stderr_on_a_terminal(args: list[str]) -> str:
    """Run ``args`` with stderr on a pseudo-terminal (where progress bars are shown); what it printed."""
    leader, follower = pty.openpty()
    # 24 x 80: a new pseudo-terminal is 0 columns wide, and a bar 0 wide prints nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    printed = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        printed += chunk
    process.wait(timeout=120)
    os.close(leader)
    return printed.decode(errors="replace")


def test_kb_import_shows_progress_on_a_terminal_unless_told_not_to(kb_db):
    shown = stderr_on_a_terminal([KB, "import", str(PUBMED / "export.nbib"), "--db", str(kb_db)])
    assert "Importing studies: 100%" in shown and "2/2" in shown
    hidden = stderr_on_a_terminal([KB, "import", str(PUBMED / "export.nbib"), "--db", str(kb_db),
                                   "--no-progress"])
    assert "Importing studies" not in hidden and "studies in kb.db" in hidden
