"""Any input file's bytes to records: the format is recognised from the content.

This is where the sources meet: it dispatches to each source's parser and is the only module
that imports more than one of them.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

from ..records import ParseError, ParseResult
from . import clinicaltrials, europepmc, files, pubmed

# Every source a build can ingest, and the file names it reads from a directory.
SOURCES = ("pubmed", "europepmc", "clinicaltrials")
RECORD_SUFFIXES = (".xml", ".xml.gz", ".nbib", ".txt", ".ris", ".medline", ".json", ".json.gz")
# What each format is, humanly: the list `kb import` and `kb build --from-dir` accept.
FORMAT_NAMES = "PubMed XML (.xml, .xml.gz), MEDLINE (.nbib, .txt, .medline), RIS (.ris), " \
    "Europe PMC search JSON and ClinicalTrials.gov v2 /studies JSON (.json, .json.gz)"

FORMAT_SOURCE = {"xml": "pubmed", "medline": "pubmed", "ris": "pubmed", "europepmc": "europepmc",
               "clinicaltrials": "clinicaltrials"}



def source_of(data: bytes) -> str:
    """The source a file belongs to, by its format (unknown formats count as PubMed's, to be reported)."""
    return FORMAT_SOURCE.get(files.sniff_format(data) or "", "pubmed")


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ParseError(f"not a readable gzip file ({exc})") from exc
    return data


def parse_bytes(data: bytes, on_record: Callable[[dict], None] | None = None) -> ParseResult:
    """Parse one input whose format is recognised from its content.

    ``on_record``: called with each PubMed XML or MEDLINE record as soon as it is parsed.
    """
    kind = files.sniff_format(data)
    if kind == "xml":
        return pubmed.parse_pubmed_xml(data, on_record)
    if kind == "medline":
        return files.parse_medline(data, on_record)
    if kind == "ris":
        return files.parse_ris(data)
    if kind == "europepmc":
        page = europepmc.parse_search_page(data)
        return ParseResult(records=page.records, errors=page.errors)
    if kind == "clinicaltrials":
        trials = clinicaltrials.parse_studies_page(data)
        return ParseResult(trials=trials.trials, errors=trials.errors)
    if kind == "json":
        raise ParseError("JSON, but neither a Europe PMC search page nor a ClinicalTrials.gov /studies page")
    raise ParseError("not PubMed XML, MEDLINE text, RIS, Europe PMC or ClinicalTrials.gov JSON")
