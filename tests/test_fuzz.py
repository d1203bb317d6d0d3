"""Bad input for every parser and the tagger, with hypothesis.

The only acceptable outcomes of a parser are a normal result (bad records reported in
``errors``) or :class:`ingest.records.ParseError` with a message; any other exception is a bug.
Every record a parser returns must also be one the build can store: keyed (PMID, DOI or
source id), integers within SQLite's 64-bit range, text encodable as UTF-8.

Examples are derandomised (the same every run) and modest in number; for a longer random
search run ``HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from ingest.db.collect import Collected
from ingest.db.studies import child_rows, study_row
from ingest.db.trials import trial_row
from ingest.records import MAX_TITLE_CHARS, ParseError, ParseResult
from ingest.sources import clinicaltrials, europepmc
from ingest.sources.files import parse_medline, parse_ris, split_inline_sections
from ingest.sources.formats import parse_bytes
from ingest.sources.pubmed import parse_pubmed_xml
from ingest.tagging import load_vocabulary, tag_record

FIXTURES = Path(__file__).resolve().parent / "fixtures"

settings.register_profile(
    "default", max_examples=120, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz", max_examples=3000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SQLITE_INT = (-(2**63), 2**63 - 1)


def fixture_bytes(*names: str) -> list[bytes]:
    return [(FIXTURES / name).read_bytes() for name in names]


XML_FIXTURES = fixture_bytes(
    "pubmed/efetch_cases.xml", "pubmed/update_v2.xml", "pubmed/malformed.xml", "eutils/efetch_page1.xml",
    "faults/pubmed_page1.xml", "faults/pubmed_page2.xml")
MEDLINE_FIXTURES = fixture_bytes("pubmed/export.nbib")
RIS_FIXTURES = fixture_bytes("pubmed/export.ris")
EPMC_FIXTURES = fixture_bytes("europepmc/search_page1.json", "europepmc/search_page2.json",
                              "faults/europepmc_page1.json")
CT_FIXTURES = fixture_bytes("clinicaltrials/studies_page1.json", "clinicaltrials/studies_page2.json",
                            "faults/clinicaltrials_page1.json")
ALL_FIXTURES = XML_FIXTURES + MEDLINE_FIXTURES + RIS_FIXTURES + EPMC_FIXTURES + CT_FIXTURES


# --------------------------------------------------------------------------- the contract


def _storable(value, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return
    if isinstance(value, int):
        assert SQLITE_INT[0] <= value <= SQLITE_INT[1], f"{where}: {value} does not fit SQLite INTEGER"
    elif isinstance(value, str):
        value.encode("utf-8")  # a lone surrogate cannot be stored
    else:
        raise AssertionError(f"{where}: {type(value).__name__} is not a column value")


def assert_storable(result) -> None:
    """Every record and trial can be merged and written as the build writes them."""
    collected = Collected()
    for record in getattr(result, "records", []):
        collected.add(record)  # keys the record (PMID, DOI, source id) and merges duplicates
    for trial in getattr(result, "trials", []):
        collected.add_trial(trial)
    for study_id, record in collected.records.items():
        for column, value in study_row(study_id, record).items():
            _storable(value, f"studies.{column}")
        for table, rows in child_rows(study_id, record).items():
            for row in rows:
                for column, value in row.items():
                    _storable(value, f"{table}.{column}")
    for trial in collected.trials.values():
        for column, value in trial_row(trial, {}).items():
            _storable(value, f"trials.{column}")


def check(parse, data: bytes):
    """Run ``parse``: a result with well-formed errors, or a ParseError with a message."""
    try:
        result = parse(data)
    except ParseError as exc:
        assert str(exc).strip(), "ParseError without a message"
        partial = getattr(exc, "partial", None)
        if partial is not None:
            assert_storable(partial)
        return None
    assert isinstance(result.errors, list)
    assert all(isinstance(e, str) and e.strip() for e in result.errors), result.errors
    assert isinstance(result, ParseResult) or hasattr(result, "records") or hasattr(result, "trials")
    assert_storable(result)
    return result


PARSERS = {
    "pubmed_xml": parse_pubmed_xml,
    "medline": parse_medline,
    "ris": parse_ris,
    "europepmc": europepmc.parse_search_page,
    "clinicaltrials": clinicaltrials.parse_studies_page,
    "parse_bytes": parse_bytes,
}


# --------------------------------------------------------------------------- strategies

# Characters that have broken parsers before: case mappings that change length, digits int()
# refuses, invisible and line-breaking characters, markup and record separators.
SPECIAL = [
    "İ", "ß", "ﬁ", "ǰ", "ΐ", "Σ", "ς", "\u0307", "²", "٣", "𝟙", "\x00", "\ufeff", "\u2028", "\u200b", "\r", "\r\n",
    "\t", " ", "<", ">", "&", "&amp;", "&#0;", "&#xD800;", "]]>", "<b>", "</b>", "<h4>", "PMID- ", "ER  - ",
    "TY  - ", "AB  - ", "NCT01234567", "NCT 0123456", "10.1000/xyz", "PMC", "0", "-1", "999999999999999999999",
    "2024", "2024 Feb 30", "Spring", "ketamine", "BACKGROUND: ", "RESULTS:", "n = 12", "(n = 40)", ";", ":", "/",
]
TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(SPECIAL),
    st.lists(st.one_of(st.sampled_from(SPECIAL), st.text(max_size=5)), max_size=8).map("".join),
)
XML_TEXT = TEXT.map(lambda s: "".join(c for c in s if c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff")
                                      and not "\ud800" <= c <= "\udfff"))
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(), TEXT,
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw, sources: list[bytes]) -> bytes:
    """A fixture file with a few byte-level mutations: cuts, deletions, insertions, repeats."""
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["truncate", "delete", "insert", "flip", "repeat"]))
        if op == "truncate":
            del data[at:]
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=16),
                                         st.sampled_from(SPECIAL).map(lambda s: s.encode("utf-8", "surrogatepass"))))
        elif op == "flip":
            data[at] = draw(st.integers(0, 255))
        else:
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end] * draw(st.integers(1, 3))
    return bytes(data)


# --------------------------------------------------------------------------- bytes: every parser


@pytest.mark.parametrize("name", PARSERS)
@given(data=st.one_of(
    st.binary(max_size=512),
    st.sampled_from([b"<", b"{", b"[", b"PMID- ", b"TY  - ", b"\xef\xbb\xbf<", b'{"resultList":', b'{"studies":'])
    .flatmap(lambda prefix: st.binary(max_size=256).map(lambda tail: prefix + tail)),
))
@example(data=b"")
@example(data=b"\x00" * 64)
@example(data=b"\xff\xfe<\x00P\x00")
def test_random_bytes(name, data):
    check(PARSERS[name], data)


@pytest.mark.parametrize("name", PARSERS)
@given(data=mutated(ALL_FIXTURES))
def test_mutated_fixture_files(name, data):
    check(PARSERS[name], data)


# --------------------------------------------------------------------------- PubMed XML, structure-aware

XML_NAMES = [
    "PubmedArticle", "MedlineCitation", "PMID", "Article", "Journal", "JournalIssue", "PubDate", "Year", "Month",
    "Day", "MedlineDate", "Season", "Title", "ISOAbbreviation", "ISSN", "Volume", "Issue", "ArticleTitle",
    "VernacularTitle", "Pagination", "MedlinePgn", "ELocationID", "Abstract", "AbstractText", "AuthorList",
    "Author", "LastName", "ForeName", "Initials", "CollectiveName", "Identifier", "AffiliationInfo", "Affiliation",
    "Language", "PublicationTypeList", "PublicationType", "MeshHeadingList", "MeshHeading", "DescriptorName",
    "QualifierName", "ChemicalList", "Chemical", "NameOfSubstance", "RegistryNumber", "KeywordList", "Keyword",
    "DataBankList", "DataBank", "DataBankName", "AccessionNumberList", "AccessionNumber", "CommentsCorrectionsList",
    "CommentsCorrections", "RefSource", "Note", "PubmedData", "ArticleIdList", "ArticleId", "DeleteCitation",
    "ArticleDate", "PubmedBookArticle", "i", "sup",
]
XML_ATTRS = ["Version", "Label", "NlmCategory", "UI", "MajorTopicYN", "IdType", "EIdType", "ValidYN", "RefType",
             "Source"]
ATTR_VALUES = st.one_of(XML_TEXT, st.sampled_from(
    ["0", "-1", "2", "abc", "²", "٣", "99999999999999999999999", "1" * 5000, "doi", "pmc", "Y", "N", "ORCID",
     "RetractionIn", ""]))
PMID_TEXT = st.one_of(st.sampled_from(
    ["0", "00", "1", "-5", "²", "٣٣", "𝟙", " 12 ", "40000001", "9" * 19, "9" * 30, "1" * 5000, "", "12a"]), XML_TEXT)


@st.composite
def mutated_pubmed_tree(draw) -> bytes:
    """A real PubmedArticleSet with elements removed, repeated, moved, retyped and re-texted."""
    root = etree.fromstring(draw(st.sampled_from(XML_FIXTURES[:2] + XML_FIXTURES[3:])),
                            etree.XMLParser(resolve_entities=False, no_network=True))
    for _ in range(draw(st.integers(1, 8))):
        elements = list(root.iter())
        el = draw(st.sampled_from(elements))
        op = draw(st.sampled_from(["remove", "text", "attr", "duplicate", "rename", "move", "child", "pmid"]))
        parent = el.getparent()
        if op == "remove" and parent is not None:
            parent.remove(el)
        elif op == "text":
            el.text = draw(XML_TEXT)
        elif op == "attr":
            el.set(draw(st.sampled_from(XML_ATTRS)), draw(ATTR_VALUES))
        elif op == "duplicate" and parent is not None:
            parent.insert(parent.index(el), copy.deepcopy(el))
        elif op == "rename":
            el.tag = draw(st.sampled_from(XML_NAMES))
        elif op == "move" and parent is not None:
            target = draw(st.sampled_from(elements))
            if el is not target and el not in target.iterancestors():
                target.append(el)
        elif op == "child":
            child = etree.SubElement(el, draw(st.sampled_from(XML_NAMES)))
            child.text = draw(XML_TEXT)
        elif op == "pmid":
            for pmid in root.iter("PMID"):
                pmid.text = draw(PMID_TEXT)
                break
    return etree.tostring(root, encoding="utf-8", xml_declaration=True)


@given(data=mutated_pubmed_tree())
def test_pubmed_xml_with_mutated_structure(data):
    check(parse_pubmed_xml, data)
    check(PARSERS["parse_bytes"], data)


def _article(pmid: str = "1", title: str = "A title", version: str = "1") -> str:
    return (f'<PubmedArticle><MedlineCitation><PMID Version="{version}">{pmid}</PMID><Article>'
            f"<ArticleTitle>{title}</ArticleTitle></Article></MedlineCitation></PubmedArticle>")


def _set(*parts: str, prolog: str = "") -> bytes:
    return (f'<?xml version="1.0"?>{prolog}<PubmedArticleSet>' + "".join(parts) + "</PubmedArticleSet>").encode()


@pytest.mark.parametrize("pmid", ["0", "²", "٣٣", "-1", "9" * 30, "1" * 5000, "", "abc"])
def test_pubmed_bad_pmids_are_record_errors(pmid):
    result = check(parse_pubmed_xml, _set(_article(pmid), _article("40000001"),
                                          f"<DeleteCitation><PMID>{pmid}</PMID></DeleteCitation>"))
    assert [r["pmid"] for r in result.records] == [40000001]
    assert len(result.errors) == 1 and "PMID" in result.errors[0]
    assert result.deleted == []


@pytest.mark.parametrize("version", ["0", "-3", "abc", "²", "9" * 30])
def test_pubmed_bad_versions_never_reach_the_database(version):
    result = check(parse_pubmed_xml, _set(_article("40000001", version=version)))
    for record in result.records:
        assert record["pmid_version"] is None or 1 <= record["pmid_version"] < 2**31


@pytest.mark.parametrize("year", ["²⁰²⁴", "٢٠٢٤", "99999999999999999999", "1" * 5000])
def test_pubmed_bad_dates_are_not_a_crash(year):
    article = _article("40000001").replace(
        "<ArticleTitle>", f"<Journal><JournalIssue><PubDate><Year>{year}</Year><Month>{year}</Month>"
        f"<Day>{year}</Day></PubDate></JournalIssue></Journal><ArticleTitle>")
    check(parse_pubmed_xml, _set(article))


def _timed(parse, data: bytes, limit: float = 5.0):
    started = time.monotonic()
    result = check(parse, data)
    assert time.monotonic() - started < limit
    return result


def test_deeply_nested_xml():
    deep = "<i>" * 5000 + "x" + "</i>" * 5000
    assert _timed(parse_pubmed_xml, _set(_article("40000001", deep))) is None  # libxml2's depth limit: ParseError
    fine = "<i>" * 200 + "x" + "</i>" * 200
    assert _timed(parse_pubmed_xml, _set(_article("40000001", fine))).records[0]["title"] == "x"


def test_huge_text_node():
    title = "ketamine " * 500_000  # 4.5 MB in one text node
    result = _timed(parse_pubmed_xml, _set(_article("40000001", title)))
    # Parsed whole, then capped at ingest (issue 17) with a warning naming the record.
    assert len(result.records[0]["title"]) == MAX_TITLE_CHARS
    assert result.errors == [f"PMID 40000001: title cut to {MAX_TITLE_CHARS:,} characters (was {len(title) - 1:,})"]


def test_entity_expansion_is_refused():
    entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    billion_laughs = _set(_article("40000001", "&j;"), prolog=f"<!DOCTYPE PubmedArticleSet [{entities}]>")
    result = _timed(parse_pubmed_xml, billion_laughs)
    assert result is None or all(len(r["title"]) < 1000 for r in result.records)
    quadratic = _set(_article("40000001", "&a;" * 20000),
                     prolog=f'<!DOCTYPE PubmedArticleSet [<!ENTITY a "{"x" * 50000}">]>')
    result = _timed(parse_pubmed_xml, quadratic)
    assert result is None or all(len(r["title"]) < 1_000_000 for r in result.records)


def test_external_entities_and_dtds_are_never_loaded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    prologs = [
        f'<!DOCTYPE PubmedArticleSet [<!ENTITY e SYSTEM "file://{secret}">]>',
        f'<!DOCTYPE PubmedArticleSet [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>',
        '<!DOCTYPE PubmedArticleSet SYSTEM "http://127.0.0.1:9/never.dtd">',
    ]
    for prolog in prologs:
        result = _timed(parse_pubmed_xml, _set(_article("40000001", "a&e;b"), prolog=prolog))
        assert result is None or all("TOPSECRET" not in json.dumps(r) for r in result.records)


@pytest.mark.parametrize("text", ["&#0;", "&#xD800;", "&#x110000;", "&nbsp;", "&undefined;", "\x01", "]]>"])
def test_bad_characters_and_references(text):
    check(parse_pubmed_xml, _set(_article("40000001", text)))


# --------------------------------------------------------------------------- MEDLINE and RIS, line-aware

MEDLINE_TAGS = ["PMID", "TI", "AB", "DP", "JT", "TA", "IS", "VI", "IP", "PG", "LA", "LID", "AID", "PMC", "FAU", "AU",
                "CN", "AD", "AUID", "PT", "MH", "RN", "OT", "KW", "SI", "CIN", "RIN", "EIN", "UOF", "XX"]
RIS_TAGS = ["TY", "ER", "TI", "T1", "AB", "N2", "AU", "A1", "PY", "Y1", "DA", "JF", "JO", "T2", "JA", "J2", "VL",
            "IS", "SP", "SN", "DO", "UR", "L3", "KW", "LA", "C1", "AN", "PM", "C2", "ID", "M1", "L2", "N1", "M3"]
LINE_VALUES = st.one_of(TEXT, PMID_TEXT, st.sampled_from(
    ["10.1000/abc [doi]", "PMC123 [pmc]", "ClinicalTrials.gov/NCT01234567", "0 (Placebo)", "*Ketamine/*therapeutic use",
     "ORCID: 0000-0001", "PMID: 0", "https://pubmed.ncbi.nlm.nih.gov/0/", "x PMID: 99999999999999999999999"]))


@st.composite
def medline_text(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append("")
        elif kind == 1:
            lines.append("      " + draw(TEXT))  # a continuation line
        else:
            lines.append(f"{draw(st.sampled_from(MEDLINE_TAGS)):<4}- {draw(LINE_VALUES)}")
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-8-sig"]))
    return "\n".join(lines).encode(encoding, "replace")


@st.composite
def ris_text(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(TEXT))
        else:
            lines.append(f"{draw(st.sampled_from(RIS_TAGS))}  - {draw(LINE_VALUES)}")
    return "\r\n".join(lines).encode("utf-8", "surrogatepass")


@given(data=medline_text())
@example(data=b"PMID- 0\nTI  - zero\n")
@example(data=b"PMID- \xc2\xb2\nTI  - superscript two\n")
def test_medline_lines(data):
    check(parse_medline, data)


@given(data=ris_text())
@example(data=b"TY  - JOUR\nAN  - 0\nTI  - zero\nER  - \n")
def test_ris_lines(data):
    check(parse_ris, data)


# --------------------------------------------------------------------------- JSON: wrong types everywhere


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(document, path, new):
    if not path:
        return new
    document = copy.deepcopy(document)
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return document


@st.composite
def mutated_json(draw, sources: list[bytes]) -> bytes:
    document = json.loads(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 5))):
        path = draw(st.sampled_from(list(_paths(document))))
        document = _replace(document, path, draw(JSON_VALUES))
    return json.dumps(document).encode()


@given(data=st.one_of(mutated_json(EPMC_FIXTURES), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                      st.builds(lambda r: json.dumps({"resultList": {"result": r}}).encode(), JSON_VALUES)))
def test_europepmc_json_with_wrong_types(data):
    check(europepmc.parse_search_page, data)
    check(PARSERS["parse_bytes"], data)


@given(data=st.one_of(mutated_json(CT_FIXTURES), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                      st.builds(lambda s: json.dumps({"studies": s}).encode(), JSON_VALUES)))
def test_clinicaltrials_json_with_wrong_types(data):
    check(clinicaltrials.parse_studies_page, data)
    check(PARSERS["parse_bytes"], data)


WRONG_TYPES = [None, True, 0, -1, 1.5, 10**30, "", "x", "²", "\ud800", [], [None], {}, {"a": []}]


@pytest.mark.parametrize("source, parse", [
    ("faults/europepmc_page1.json", europepmc.parse_search_page),
    ("clinicaltrials/studies_page1.json", clinicaltrials.parse_studies_page),
])
def test_every_field_with_every_wrong_type(source, parse):
    """Not sampled: each field of a real page in turn, replaced by each wrong-typed value."""
    document = json.loads((FIXTURES / source).read_bytes())
    # The page's metadata and its first record, field by field (the other records stay valid).
    first = ("resultList", "result", 0) if "resultList" in document else ("studies", 0)
    paths = [p for p in _paths(document) if len(p) <= 1 or p[:len(first)] == first]
    for path in paths:
        for value in WRONG_TYPES:
            check(parse, json.dumps(_replace(document, path, value)).encode())


@pytest.mark.parametrize("parse", [europepmc.parse_search_page, clinicaltrials.parse_studies_page])
def test_deeply_nested_json(parse):
    for data in (b"[" * 100_000, b'{"resultList": {"result": ' + b"[" * 50_000, b'{"studies": ' + b"[" * 50_000,
                 b'{"studies": [' + b'{"a":' * 100_000):
        assert _timed(parse, data) is None


HOSTILE_HTML = {
    "nested <p>": "<p>" * 20_000 + "x",
    "nested <b>": "<b>" * 20_000 + "x",
    "closed nested <div>": "<div>" * 20_000 + "x" + "</div>" * 20_000,
    "many <br>": "x<br>" * 20_000,
    "many headings": "<h4>Methods</h4>text " * 5_000,
    "just under the tag limit, nested": "<p>" * 999 + "x" + "</p>y" * 999,
    "a heading, then deep nesting": "<b>Methods:</b> " + "<p>" * 999 + "x" + "</p>y" * 999,
    "tags never closed": "<p" * 20_000,
    "comments never closed": "<!--" * 20_000,
    "bare brackets": "<" * 50_000 + ">" * 50_000,
}


@pytest.mark.parametrize("name", HOSTILE_HTML)
def test_hostile_html_in_titles_and_abstracts(name):
    """Europe PMC titles and abstracts are HTML: no markup may take more than a moment to read."""
    html = HOSTILE_HTML[name]
    result = {"source": "MED", "id": "1", "pmid": "40000001", "abstractText": html, "title": html,
              "keywordList": {"keyword": [html]}}
    page = _timed(europepmc.parse_search_page, json.dumps({"resultList": {"result": [result]}}).encode(), 3.0)
    assert len(page.records) == 1


def test_huge_numbers_in_json():
    page = {"hitCount": "9" * 5000, "nextCursorMark": 10**30, "resultList": {"result": [
        {"source": "MED", "id": "1", "pmid": "9" * 40, "citedByCount": 10**30, "pubYear": "9" * 30,
         "journalInfo": {"yearOfPublication": 10**25}}]}}
    check(europepmc.parse_search_page, json.dumps(page).encode())
    trials = {"totalCount": "9" * 5000, "studies": [{"protocolSection": {
        "identificationModule": {"nctId": "NCT01234567"},
        "designModule": {"enrollmentInfo": {"count": 10**30}},
        "referencesModule": {"references": [{"pmid": "9" * 40}]}}}]}
    check(clinicaltrials.parse_studies_page, json.dumps(trials).encode())


# --------------------------------------------------------------------------- the tagger

WORDS = st.sampled_from([
    "ketamine", "esketamine", "arketamine", "depression", "treatment-resistant", "no", "not", "without", "neither",
    "dissociation", "randomized", "placebo", "patients", "participants", "n =", "(n = 40)", "twenty", "12", "1,200",
    "intranasal", "mg/kg", "rats", "mice", "NMDA", "reduced", "suicidal ideation", "CONCLUSIONS:", "Objective:",
    "İ", "İSTANBUL", "ß", "ﬁ", "ǰ", "Σ", "\u0307", "²", "٣٣", "e.g.", "et al.", "vs.", "(", ")", ";", ".", "\n",
])
PROSE = st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=40).map(" ".join)
_VOCAB = load_vocabulary()


@given(title=PROSE, abstract=PROSE, labels=st.lists(st.one_of(st.none(), TEXT), max_size=3),
       mesh=st.lists(st.sampled_from(["Ketamine", "Depression", "Humans", "Rats", "Pain", "İ", ""]), max_size=3),
       types=st.lists(st.sampled_from(["Randomized Controlled Trial", "Review", "Case Reports", "İ", ""]),
                      max_size=2))
@example(title="İİİ ketamine", abstract="İ " * 50 + "Forty patients (n = 40) received ketamine.", labels=[],
         mesh=[], types=[])
def test_tagger_never_raises(title, abstract, labels, mesh, types):
    sections = split_inline_sections(abstract)
    for section, label in zip(sections, labels, strict=False):
        section["label"] = label
    record = {
        "title": title, "abstract": abstract, "abstract_sections": sections,
        "mesh": [{"descriptor_ui": None, "descriptor": m, "major": False, "qualifiers": []} for m in mesh],
        "publication_types": [{"ui": None, "name": t} for t in types],
    }
    result = tag_record(record, _VOCAB)
    assert result.sample_size is None or 1 <= result.sample_size <= 5_000_000


def test_tagger_with_a_huge_sample_size():
    text = "We studied patients (n = " + "1" * 5000 + ")."
    tag_record({"title": "t", "abstract": text,
                "abstract_sections": [{"label": "METHODS", "nlm_category": "METHODS", "text": text}]}, _VOCAB)
