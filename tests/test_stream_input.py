"""Input files streamed: a PubMed XML file is decompressed and parsed a MiB at a time."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pytest

from ingest.records import ParseError
from ingest.sources.formats import UnreadableInput, parse_bytes, parse_path, read_bytes, source_of


def _streamed(path: Path, **options) -> tuple[list[dict], object]:
    records: list[dict] = []
    _, result = parse_path(path, records.append, **options)
    return records, result


def _input_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".xml", ".gz", ".nbib", ".ris", ".json"))


def test_streamed_files_give_what_whole_files_give(corpus, fixtures):
    paths = _input_files(corpus / "pubmed") + [p for p in _input_files(fixtures / "pubmed")
                                               if p.name != "malformed.xml"]
    assert any(p.suffix == ".xml" for p in paths)
    for path in paths:
        whole = parse_bytes(read_bytes(path))
        records, result = _streamed(path)
        assert records == whole.records, path
        assert result.records == [] and result.count == len(whole.records)
        assert result.deleted == whole.deleted and result.errors == whole.errors, path
        assert parse_path(path)[1].records == whole.records  # without on_record: kept, as parse_bytes
        assert parse_path(path)[0] == source_of(read_bytes(path))


def test_a_gzip_file_streams_the_same(fixtures, tmp_path):
    plain = fixtures / "pubmed" / "efetch_cases.xml"
    packed = tmp_path / "efetch.xml.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert _streamed(packed)[0] == parse_bytes(read_bytes(plain)).records


def test_malformed_xml_keeps_what_came_before_the_fault(fixtures):
    path = fixtures / "pubmed" / "malformed.xml"
    records: list[dict] = []
    with pytest.raises(ParseError, match="malformed XML") as caught:
        parse_path(path, records.append)
    with pytest.raises(ParseError) as whole:
        parse_bytes(read_bytes(path))
    assert records == whole.value.partial.records
    assert caught.value.partial.count == len(records)


def test_an_html_page_and_a_gzip_bomb_are_refused(tmp_path):
    page = tmp_path / "saved.xml"
    page.write_bytes(b"<!DOCTYPE html><html><body>Rate limited</body></html>")
    with pytest.raises(ParseError, match="an HTML page"):
        parse_path(page, lambda record: None)
    bomb = tmp_path / "bomb.xml.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        out.write(b"<PubmedArticleSet>")
        for _ in range(80):
            out.write(b" " * (1 << 20))
    with pytest.raises(UnreadableInput, match="gzip bomb"):
        parse_path(bomb, lambda record: None)
    with pytest.raises(UnreadableInput, match="the most one input may hold"):
        parse_path(bomb, lambda record: None, limit=1 << 20)


def test_memory_stays_flat_while_a_large_file_streams(fixtures, tmp_path):
    # ~30 MB of PubMed XML: kept whole (bytes and records), it would take far more than 30 MB.
    source = (fixtures / "pubmed" / "efetch_cases.xml").read_text(encoding="utf-8")
    start, end = source.index("<PubmedArticle>"), source.index("</PubmedArticle>") + len("</PubmedArticle>")
    article = source[start:end]
    big = tmp_path / "big.xml.gz"
    count, size = 0, 0
    with gzip.open(big, "wt", encoding="utf-8", compresslevel=1) as out:
        out.write('<?xml version="1.0"?>\n<PubmedArticleSet>\n')
        while size < 30_000_000:
            count += 1
            text = article.replace("<PMID", f"<!-- {count} --><PMID", 1)
            out.write(text)
            size += len(text)
        out.write("</PubmedArticleSet>\n")
    seen = 0

    def drop(record: dict) -> None:
        nonlocal seen
        seen += 1

    tracemalloc.start()
    try:
        parse_path(big, drop)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < size / 4, f"peak {peak:,} bytes for {size:,} bytes of XML"  # whole: ~3x the size
