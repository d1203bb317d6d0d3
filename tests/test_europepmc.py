"""Europe PMC: the core-JSON parser on hand-written pages, and the client against 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from ingest.records import ParseError
from ingest.sources.europepmc import DEFAULT_QUERY, EuropePMCClient, abstract_sections, parse_search_page
from ingest.sources.http import FetchError
from ingest.sources.pubmed import parse_pubmed_xml

CURSOR = "AoIIQCnAvCgzNzk5OTk5OQ=="
EXTRA_KEYS = {"source_id", "europepmc_source", "is_open_access", "cited_by_count", "is_preprint"}


@pytest.fixture
def epmc(fixtures):
    folder = fixtures / "europepmc"
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def only_page(epmc) -> bytes:
    """Page 2 as the single page of a small search: no nextCursorMark."""
    page = json.loads(epmc["search_page2.json"])
    del page["nextCursorMark"]
    return json.dumps(page).encode()


@pytest.fixture
def records(epmc):
    pages = [parse_search_page(epmc[name]) for name in ("search_page1.json", "search_page2.json")]
    return {r["source_id"]: r for page in pages for r in page.records}


def make_client(httpserver, **kwargs) -> EuropePMCClient:
    kwargs.setdefault("retries", 3)
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("rate", 1000)
    return EuropePMCClient(base_url=httpserver.url_for("/"), **kwargs)


def source_ids(pages) -> list[str]:
    return [r["source_id"] for page in pages for r in parse_search_page(page).records]


# --------------------------------------------------------------------------- parser


def test_page_metadata(epmc):
    first, last = parse_search_page(epmc["search_page1.json"]), parse_search_page(epmc["search_page2.json"])
    assert (first.hit_count, first.next_cursor, first.errors) == (3, CURSOR, [])
    assert (last.hit_count, last.next_cursor, last.errors) == (3, CURSOR, [])
    assert [len(first.records), len(last.records)] == [2, 1]


def test_records_have_the_pubmed_shape_plus_europepmc_keys(records, fixtures):
    pubmed = parse_pubmed_xml((fixtures / "pubmed" / "efetch_cases.xml").read_bytes()).records[0]
    pubmed_keys = set(pubmed)
    assert len(records) == 3
    for record in records.values():
        assert set(record) == pubmed_keys | EXTRA_KEYS
        for author in record["authors"]:
            assert set(author) == {"last_name", "fore_name", "initials", "suffix", "collective_name",
                                   "orcid", "affiliations"}
        for heading in record["mesh"]:
            assert set(heading) == {"descriptor_ui", "descriptor", "major", "qualifiers"}
        for section in record["abstract_sections"]:
            assert set(section) == {"label", "nlm_category", "text"}


def test_medline_record(records):
    r = records["MED:38123456"]
    assert r["pmid"] == 38123456 and r["pmid_version"] is None
    assert r["doi"] == "10.1016/j.jad.2024.01.015"
    assert r["pmcid"] == "PMC10765432"
    assert r["title"] == ("Intravenous ketamine versus electroconvulsive therapy for treatment-resistant depression:"
                          " a randomized non-inferiority trial.")
    assert r["abstract_sections"] == [{"label": None, "nlm_category": None, "text": r["abstract"]}]
    assert r["abstract"].startswith("Ketamine infusions and electroconvulsive therapy (ECT) are both used")
    assert r["abstract"].endswith("Ketamine caused fewer memory complaints.")
    assert (r["journal"], r["iso_abbrev"], r["issn"]) == ("Journal of affective disorders", "J Affect Disord",
                                                          "0165-0327")
    assert (r["volume"], r["issue"], r["pages"]) == ("349", "2", "112-120")
    assert (r["year"], r["pub_date"], r["medline_date"]) == (2024, "2024-03-15", None)
    assert r["languages"] == ["eng"]
    assert r["publication_types"] == [
        {"ui": None, "name": "Randomized Controlled Trial"}, {"ui": None, "name": "Journal Article"},
    ]
    assert r["keywords"] == ["Ketamine", "Electroconvulsive therapy", "Treatment-resistant depression"]
    assert r["chemicals"] == [
        {"ui": None, "name": "Antidepressive Agents", "registry_number": None},
        {"ui": None, "name": "Ketamine", "registry_number": "690G0D6V8H"},
    ]
    assert r["comments_corrections"] == [
        {"ref_type": "CommentIn", "pmid": 38200001, "note": None,
         "source": "J Affect Disord. 2024 May 1;352:10-11. doi: 10.1016/j.jad.2024.02.001."},
        {"ref_type": "ErratumIn", "pmid": 38300002, "note": None,
         "source": "J Affect Disord. 2024 Jun 1;354:1. doi: 10.1016/j.jad.2024.03.100."},
    ]
    assert (r["databanks"], r["nct_ids"]) == ([], [])
    assert r["sources"] == ["europepmc"]
    assert (r["source_id"], r["europepmc_source"]) == ("MED:38123456", "MED")
    assert (r["is_open_access"], r["cited_by_count"], r["is_preprint"]) == (True, 17, False)


def test_medline_record_mesh(records):
    assert records["MED:38123456"]["mesh"] == [
        {"descriptor_ui": None, "descriptor": "Humans", "major": False, "qualifiers": []},
        {"descriptor_ui": None, "descriptor": "Ketamine", "major": False, "qualifiers": [
            {"ui": None, "name": "administration & dosage", "major": True},
            {"ui": None, "name": "adverse effects", "major": False},
        ]},
        {"descriptor_ui": None, "descriptor": "Depressive Disorder, Treatment-Resistant", "major": True,
         "qualifiers": [{"ui": None, "name": "therapy", "major": False}]},
        {"descriptor_ui": None, "descriptor": "Electroconvulsive Therapy", "major": True, "qualifiers": []},
    ]


def test_medline_record_authors(records):
    assert records["MED:38123456"]["authors"] == [
        {"last_name": "Andersen", "fore_name": "Maria Louise", "initials": "ML", "suffix": None,
         "collective_name": None, "orcid": "0000-0002-1825-0097", "affiliations": [
             "Department of Affective Disorders, Aarhus University Hospital - Psychiatry, Aarhus, Denmark.",
             "Department of Clinical Medicine, Aarhus University, Aarhus, Denmark.",
         ]},
        {"last_name": "Okafor", "fore_name": "Chidi", "initials": "C", "suffix": None, "collective_name": None,
         "orcid": None,
         "affiliations": ["Department of Anaesthesiology, Aarhus University Hospital, Aarhus, Denmark."]},
        {"last_name": None, "fore_name": None, "initials": None, "suffix": None,
         "collective_name": "Ketamine Outcomes Study Group", "orcid": None, "affiliations": []},
    ]


def test_preprint_without_pmid(records):
    r = records["PPR:PPR812345"]
    assert (r["pmid"], r["pmcid"], r["doi"]) == (None, None, "10.1101/2024.02.20.24303061")
    assert (r["europepmc_source"], r["is_preprint"]) == ("PPR", True)
    assert (r["is_open_access"], r["cited_by_count"]) == (False, 0)
    assert r["journal"] == "medRxiv"
    assert (r["iso_abbrev"], r["issn"], r["volume"], r["issue"], r["pages"]) == ("", "", "", "", "")
    assert (r["year"], r["pub_date"], r["medline_date"]) == (2024, "2024-02-21", None)
    assert r["publication_types"] == [{"ui": None, "name": "Preprint"}]
    assert (r["mesh"], r["chemicals"], r["keywords"], r["comments_corrections"]) == ([], [], [], [])
    assert [a["last_name"] for a in r["authors"]] == ["Lindqvist", "Moreau"]
    assert r["authors"][1]["affiliations"] == []


def test_bold_headings_become_sections_and_inline_bold_stays_text(records):
    r = records["PPR:PPR812345"]
    assert r["abstract_sections"] == [
        {"label": "BACKGROUND", "nlm_category": None, "text": (
            "Esketamine nasal spray is approved for adults with treatment-resistant depression;"
            " data in adolescents are limited.")},
        {"label": "METHODS", "nlm_category": None,
         "text": "We reviewed 212 adolescents treated at four Swedish centres between 2020 and 2023."},
        {"label": "RESULTS", "nlm_category": None, "text": (
            "Suicidal ideation fell within 24 hours, and esketamine was not associated with more dissociation"
            " than in adults.")},
        {"label": "CONCLUSIONS", "nlm_category": None, "text": "Randomized trials in adolescents are warranted."},
    ]
    assert r["abstract"].startswith("BACKGROUND: Esketamine nasal spray")
    assert "\n\nMETHODS: We reviewed 212" in r["abstract"]


def test_h4_sections_inline_markup_and_nct_id(records):
    r = records["MED:37999999"]
    assert r["title"] == ("Arketamine (R-ketamine) in treatment-resistant depression: a phase 2 randomized,"
                          " placebo-controlled trial of an NMDA+ modulator")
    assert [s["label"] for s in r["abstract_sections"]] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert r["abstract_sections"][0]["text"] == (
        "(R)-ketamine (arketamine) showed longer-lasting antidepressant-like effects than (S)-ketamine in rodents.")
    assert r["abstract_sections"][2]["text"] == (
        "MADRS scores fell more with arketamine at day 7 (P < 0.01); plasma levels explained little of the"
        " variance (R2 = 0.17).")
    assert "<" not in r["abstract"].replace("P < 0.01", "")
    # An NCT id in the abstract is left to the trial linker (linked "by abstract", not as a databank id).
    assert "NCT 04234568" in r["abstract"]
    assert (r["nct_ids"], r["databanks"]) == ([], [])
    assert r["doi"] == "10.1038/s41386-023-01745-2"
    assert (r["year"], r["pub_date"], r["medline_date"]) == (2023, "2023-11", "2023 Nov-Dec")
    assert (r["issn"], r["pmcid"], r["is_open_access"], r["cited_by_count"]) == ("1740-634X", None, False, 3)
    assert r["authors"][0]["orcid"] == "0000-0001-5555-1234"
    assert r["chemicals"] == [{"ui": None, "name": "arketamine", "registry_number": None}]


@pytest.mark.parametrize("html, expected", [
    ("<p>One.</p><p>Two.</p>", [(None, "One. Two.")]),
    ("BACKGROUND: plain text. METHODS: more.", [("BACKGROUND", "plain text."), ("METHODS", "more.")]),
    ("Intro. <b>Results:</b> fine; see <b>Table 2:</b> x", [(None, "Intro."), ("RESULTS", "fine; see Table 2: x")]),
    ("<b>Objective</b><br/>To test. <b>Important</b> words.", [("OBJECTIVE", "To test. Important words.")]),
    ("<h4><b>Aims</b></h4>To see.", [("AIMS", "To see.")]),
    ("", []),
])
def test_abstract_sections(html, expected):
    assert [(s["label"], s["text"]) for s in abstract_sections(html)] == expected


def test_a_bad_result_is_reported_and_the_rest_parse(epmc):
    page = json.loads(epmc["search_page1.json"])
    page["resultList"]["result"].insert(1, {"title": "no source or id"})
    page["resultList"]["result"].append("not an object")
    parsed = parse_search_page(json.dumps(page).encode())
    assert [r["source_id"] for r in parsed.records] == ["MED:38123456", "PPR:PPR812345"]
    assert len(parsed.errors) == 2
    assert "result 2" in parsed.errors[0] and "no source or id" in parsed.errors[0]


@pytest.mark.parametrize("name, message", [
    ("truncated_page.json", "not valid JSON"),
    ("service_unavailable.html", "not valid JSON"),
])
def test_malformed_pages_raise_parse_error(epmc, name, message):
    with pytest.raises(ParseError, match=message):
        parse_search_page(epmc[name])


def test_json_without_result_list_raises_parse_error():
    with pytest.raises(ParseError, match="no resultList"):
        parse_search_page(b'{"version": "6.9", "errMsg": "bad query"}')


# --------------------------------------------------------------------------- client


def test_cursor_paging(httpserver, epmc):
    httpserver.expect_ordered_request("/search").respond_with_data(
        epmc["search_page1.json"], content_type="application/json")
    httpserver.expect_ordered_request("/search").respond_with_data(
        epmc["search_page2.json"], content_type="application/json")
    pages = list(make_client(httpserver).search_pages("ketamine", page_size=2, progress=False))
    assert source_ids(pages) == ["MED:38123456", "PPR:PPR812345", "MED:37999999"]
    first, second = (request for request, _ in httpserver.log)
    assert first.args["cursorMark"] == "*" and second.args["cursorMark"] == CURSOR
    for request in (first, second):
        assert request.args["query"] == "ketamine"
        assert (request.args["resultType"], request.args["format"], request.args["pageSize"]) == ("core", "json", "2")


def test_default_query_and_page_size(httpserver, only_page):
    httpserver.expect_request("/search").respond_with_data(only_page)
    pages = list(make_client(httpserver).search_pages(progress=False))
    assert len(pages) == 1
    args = httpserver.log[0][0].args
    assert args["query"] == DEFAULT_QUERY and args["pageSize"] == "1000"
    for term in ("ketamine", "esketamine", "arketamine", "hydroxynorketamine"):
        assert f"TITLE:{term}" in DEFAULT_QUERY and f"ABSTRACT:{term}" in DEFAULT_QUERY


def test_paging_stops_without_a_cursor_or_on_an_empty_page(httpserver, epmc):
    first = json.loads(epmc["search_page1.json"])
    httpserver.expect_ordered_request("/search").respond_with_json(first)
    httpserver.expect_ordered_request("/search").respond_with_json(
        {"hitCount": 3, "nextCursorMark": "NEXT", "resultList": {"result": []}})
    pages = list(make_client(httpserver).search_pages("k", progress=False))
    assert len(pages) == 1 and len(httpserver.log) == 2
    httpserver.clear()
    del first["nextCursorMark"]
    httpserver.expect_request("/search").respond_with_json(first)
    assert len(list(make_client(httpserver).search_pages("k", progress=False))) == 1
    assert len(httpserver.log) == 1


def test_429_is_retried_after_the_retry_after_wait(httpserver, only_page):
    httpserver.expect_ordered_request("/search").respond_with_data(
        "Too Many Requests", status=429, headers={"Retry-After": "1"})
    httpserver.expect_ordered_request("/search").respond_with_data(only_page)
    started = time.monotonic()
    pages = list(make_client(httpserver).search_pages("k", progress=False))
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 was not honoured"
    assert source_ids(pages) == ["MED:37999999"] and len(httpserver.log) == 2


def test_500_then_success(httpserver, only_page):
    httpserver.expect_ordered_request("/search").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/search").respond_with_data(only_page)
    assert source_ids(make_client(httpserver).search_pages("k", progress=False)) == ["MED:37999999"]
    assert len(httpserver.log) == 2


@pytest.mark.parametrize("body", ["service_unavailable.html", "truncated_page.json"])
def test_bad_body_with_http_200_is_refetched(httpserver, epmc, only_page, body):
    httpserver.expect_ordered_request("/search").respond_with_data(epmc[body], status=200)
    httpserver.expect_ordered_request("/search").respond_with_data(only_page)
    assert source_ids(make_client(httpserver).search_pages("k", progress=False)) == ["MED:37999999"]
    assert len(httpserver.log) == 2


def test_a_page_that_never_recovers_gives_up_with_a_clear_error(httpserver, epmc):
    httpserver.expect_request("/search").respond_with_data(epmc["truncated_page.json"])
    with pytest.raises(FetchError, match="truncated or invalid JSON.*after 3 attempts"):
        list(make_client(httpserver, retries=2).search_pages("k", progress=False))
    assert len(httpserver.log) == 3


def test_page_size_is_checked():
    with pytest.raises(ValueError, match="page_size"):
        next(EuropePMCClient().search_pages("k", page_size=1001, progress=False))


def test_default_rate_is_moderate():
    assert EuropePMCClient().limiter.interval == pytest.approx(1 / 5)
