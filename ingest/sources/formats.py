"""Any input file's bytes to records: the format is recognised from the content.

This is where the sources meet: it dispatches to each source's parser and is the only module
that imports more than one of them.
"""

from __future__ import annotations

import codecs
import gzip
import itertools
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..records import ParseError, ParseResult
from . import clinicaltrials, europepmc, files, pubmed

# Every source a build can ingest, and the file names it reads from a directory.
SOURCES = ("pubmed", "europepmc", "clinicaltrials")
RECORD_SUFFIXES = (".xml", ".xml.gz", ".nbib", ".txt", ".ris", ".medline", ".json", ".json.gz")
# Files that travel with exports but hold no records: `--from-dir` skips them by name, quietly.
_NOT_RECORDS = re.compile(
    r"(readme|provenance|licen[cs]e|copying|notice|changelog|checksums?|(md5|sha\d*)sums?)([ ._-]|$)",
    re.IGNORECASE)
# What each format is, humanly: the list `kb import` and `kb build --from-dir` accept.
FORMAT_NAMES = "PubMed XML (.xml, .xml.gz), MEDLINE (.nbib, .txt, .medline), RIS (.ris), " \
    "Europe PMC search JSON and ClinicalTrials.gov v2 /studies JSON (.json, .json.gz)"

FORMAT_SOURCE = {"xml": "pubmed", "medline": "pubmed", "ris": "pubmed", "europepmc": "europepmc",
               "clinicaltrials": "clinicaltrials"}

# The most one input may hold, decompressed: a PubMed baseline file is a few hundred MB.
MAX_INPUT_BYTES = 1 << 30
# Real XML and JSON compress 5-15-fold; deflate can reach about 1000-fold (a gzip bomb: 2 MB
# expanding to 2 GiB). Past GZIP_RATIO_FROM bytes, a file expanding more than this is refused.
MAX_GZIP_RATIO = 100
GZIP_RATIO_FROM = 64 << 20
_CHUNK = 1 << 20
# Byte-order marks of the encodings read besides UTF-8 (UTF-32's first: it starts like UTF-16's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_XML_ENCODING = re.compile(rb"""\A(\s*<\?xml[^>]*?\bencoding\s*=\s*)(["'])[A-Za-z0-9._-]*\2""")


class UnreadableInput(ParseError):
    """The file's bytes cannot be had: too large, a gzip bomb, broken gzip, a false byte-order mark."""


def is_record_file(path: Path) -> bool:
    """Whether ``--from-dir`` reads this file: a record suffix, not hidden, not a README or the like."""
    name = path.name
    return (name.lower().endswith(RECORD_SUFFIXES) and not name.startswith(".")
            and not _NOT_RECORDS.match(name))


def source_of(data: bytes) -> str:
    """The source a file belongs to, by its format (unknown formats count as PubMed's, to be reported)."""
    return FORMAT_SOURCE.get(files.sniff_format(data) or "", "pubmed")


def read_bytes(path: Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A file's content, decompressed if it is .gz, as UTF-8 if it was UTF-16 or UTF-32.

    ParseError when it is (or expands to) more than ``limit`` bytes, is a gzip bomb, or is
    not readable gzip; OSError when it cannot be opened.
    """
    with path.open("rb") as raw:
        if not path.name.endswith(".gz"):
            size = path.stat().st_size
            if size > limit:
                raise UnreadableInput(f"{size:,} bytes: more than the {limit:,} one input may hold (split it)")
            return _utf8_or_unreadable(raw.read())
        try:
            return _utf8_or_unreadable(_gunzip(raw, limit))
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableInput(f"not a readable gzip file ({exc})") from exc


def _utf8_or_unreadable(data: bytes) -> bytes:
    try:
        return as_utf8(data)
    except UnreadableInput:
        raise
    except ParseError as exc:
        raise UnreadableInput(str(exc)) from exc


def _gunzip(raw: BinaryIO, limit: int) -> bytes:
    """Decompress chunk by chunk, refusing as soon as the output grows past a cap."""
    return b"".join(_gunzipped_chunks(raw, limit))


def _gunzipped_chunks(raw: BinaryIO, limit: int) -> Iterator[bytes]:
    total = 0
    with gzip.GzipFile(fileobj=raw) as stream:
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise UnreadableInput(f"expands to more than {limit:,} bytes, the most one input may hold: "
                                 "refused (split it)")
            if total > GZIP_RATIO_FROM and total > MAX_GZIP_RATIO * raw.tell():
                raise UnreadableInput(f"expands more than {MAX_GZIP_RATIO}-fold: refused as a likely gzip bomb")
            yield chunk


def input_chunks(path: Path, limit: int = MAX_INPUT_BYTES) -> Iterator[bytes]:
    """A file's content a MiB at a time, decompressed if it is .gz, with :func:`read_bytes`'s bounds
    and errors (raised when the chunk that breaks them is reached)."""
    with path.open("rb") as raw:
        if not path.name.endswith(".gz"):
            size = path.stat().st_size
            if size > limit:
                raise UnreadableInput(f"{size:,} bytes: more than the {limit:,} one input may hold (split it)")
            while chunk := raw.read(_CHUNK):
                yield chunk
            return
        try:
            yield from _gunzipped_chunks(raw, limit)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableInput(f"not a readable gzip file ({exc})") from exc


def parse_path(path: Path, on_record: Callable[[dict], None] | None = None, limit: int = MAX_INPUT_BYTES,
               sources: Iterable[str] = SOURCES) -> tuple[str, ParseResult | None]:
    """The file's source and its records, or (source, None) when its source is not in ``sources``.

    PubMed XML (plain or .gz) is streamed: decompressed and parsed a MiB at a time, each record
    handed to ``on_record`` (when given) and not kept in the result, so memory does not grow with
    the file. Other formats are read whole (:func:`read_bytes`) and parsed as :func:`parse_bytes`
    does; with ``on_record``, their records too are handed on rather than kept.
    """
    chunks = input_chunks(path, limit)
    first = next(chunks, b"")
    if any(first.startswith(bom) for bom, _ in _BOMS) or files.sniff_format(first) != "xml":
        chunks.close()
        return _parse_whole(path, on_record, limit, sources)
    source = source_of(first)
    if source not in set(sources):
        chunks.close()
        return source, None
    return source, pubmed.parse_pubmed_stream(itertools.chain([first], chunks), on_record, keep=on_record is None)


def _parse_whole(path: Path, on_record: Callable[[dict], None] | None, limit: int,
                 sources: Iterable[str]) -> tuple[str, ParseResult | None]:
    data = read_bytes(path, limit)
    source = source_of(data)
    if source not in set(sources):
        return source, None
    try:
        result = parse_bytes(data)
    except ParseError as exc:
        partial = getattr(exc, "partial", None)
        if partial is not None:
            _hand_on(partial, on_record)
        raise
    return source, _hand_on(result, on_record)


def _hand_on(result: ParseResult, on_record: Callable[[dict], None] | None) -> ParseResult:
    """``result``'s records given to ``on_record`` instead of kept (the streamed formats' behaviour)."""
    result.count = len(result.records)
    if on_record is not None:
        for record in result.records:
            on_record(record)
        result.records = []
    return result


def as_utf8(data: bytes) -> bytes:
    """``data`` re-encoded as UTF-8 if it starts with a UTF-16 or UTF-32 byte-order mark."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(f"starts as {encoding.upper()} but is not ({exc.reason} at byte {exc.start})") \
                    from exc
            # An XML declaration naming the old encoding would make lxml misread the new bytes.
            return _XML_ENCODING.sub(rb'\1"UTF-8"', text.encode("utf-8"), count=1)
    return data


def parse_bytes(data: bytes, on_record: Callable[[dict], None] | None = None) -> ParseResult:
    """Parse one input whose format is recognised from its content.

    ``on_record``: called with each PubMed XML or MEDLINE record as soon as it is parsed.
    """
    data = as_utf8(data)
    kind = files.sniff_format(data)
    if kind == "xml":
        return pubmed.parse_pubmed_xml(data, on_record)
    if kind == "medline":
        return files.parse_medline(data, on_record)
    if kind == "ris":
        return files.parse_ris(data)
    if kind == "europepmc":
        page = europepmc.parse_search_page(data)
        return _capped(page.errors, page.records, [])
    if kind == "clinicaltrials":
        trials = clinicaltrials.parse_studies_page(data)
        return _capped(trials.errors, [], trials.trials)
    if kind == "json":
        raise ParseError("JSON, but neither a Europe PMC search page nor a ClinicalTrials.gov /studies page")
    if data[:4096].count(b"\x00") > len(data[:4096]) // 4:
        raise ParseError("looks like UTF-16 or UTF-32 without a byte-order mark: convert it to UTF-8")
    raise ParseError("not PubMed XML, MEDLINE text, RIS, Europe PMC or ClinicalTrials.gov JSON")


def _capped(errors: list[str], records: list[dict], trials: list[dict]) -> ParseResult:
    """A JSON page's records and trials as a ParseResult, each capped on the way in."""
    result = ParseResult(errors=list(errors))
    for record in records:
        result.add(record)
    for trial in trials:
        result.add_trial(trial)
    return result
