"""ClinicalTrials.gov API v2: the parser on hand-written and real pages, the client against 127.0.0.1."""

from __future__ import annotations

import json
import re
import time

import pytest

from ingest.records import ParseError
from ingest.sources.clinicaltrials import DEFAULT_INTERVENTION_QUERY, ClinicalTrialsClient, parse_studies_page
from ingest.sources.http import FetchError

TOKEN = "NF0g5JGBlPMu4A"
TRIAL_KEYS = {
    "nct_id", "title", "official_title", "acronym", "brief_summary", "detailed_description", "study_type",
    "phases", "overall_status", "start_date", "completion_date", "start_year", "enrollment", "enrollment_type",
    "conditions", "keywords", "interventions", "arm_groups", "sponsor", "sponsor_class", "collaborators",
    "allocation", "masking", "intervention_model", "primary_purpose", "has_results", "primary_outcomes",
    "secondary_outcomes", "references", "countries", "source",
}


@pytest.fixture
def ctgov(fixtures):
    folder = fixtures / "clinicaltrials"
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def trials(ctgov):
    pages = [parse_studies_page(ctgov[name]) for name in ("studies_page1.json", "studies_page2.json")]
    return {t["nct_id"]: t for page in pages for t in page.trials}


def make_client(httpserver, **kwargs) -> ClinicalTrialsClient:
    kwargs.setdefault("retries", 3)
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("rate", 1000)
    return ClinicalTrialsClient(base_url=httpserver.url_for("/"), **kwargs)


def nct_ids(pages) -> list[str]:
    return [t["nct_id"] for page in pages for t in parse_studies_page(page).trials]


# --------------------------------------------------------------------------- parser


def test_page_metadata(ctgov):
    first, last = parse_studies_page(ctgov["studies_page1.json"]), parse_studies_page(ctgov["studies_page2.json"])
    assert (first.next_page_token, first.total_count, first.errors) == (TOKEN, 3, [])
    assert (last.next_page_token, last.total_count, last.errors) == (None, None, [])
    assert [t["nct_id"] for t in first.trials + last.trials] == ["NCT04599855", "NCT03890419", "NCT05123456"]


def test_every_trial_has_every_key(trials):
    assert len(trials) == 3
    for trial in trials.values():
        assert set(trial) == TRIAL_KEYS
        assert trial["source"] == "clinicaltrials"


def test_phase3_trial_with_results(trials):
    t = trials["NCT04599855"]
    assert t["title"] == "Intranasal Esketamine Versus Quetiapine XR in Treatment-Resistant Depression"
    assert t["official_title"].startswith("A Randomized, Open-label, Rater-blinded, Active-controlled Study")
    assert t["acronym"] == "ESQUIRE"
    assert t["brief_summary"] == (
        "The purpose of this study is to compare intranasal esketamine with quetiapine extended-release (XR),"
        " both added to an ongoing SSRI or SNRI, in adults with treatment-resistant depression.")
    # Paragraph breaks survive (CRLF normalised); nothing else is rewritten.
    assert t["detailed_description"] == (
        "Participants who have not responded to at least two antidepressants in the current episode are"
        " randomized 1:1.\n\nEsketamine is self-administered intranasally under supervision twice weekly in"
        " weeks 1-4, then weekly or every other week.\n\nQuetiapine XR is taken orally once daily at 150-300 mg.")
    assert (t["study_type"], t["phases"], t["overall_status"]) == ("INTERVENTIONAL", ["PHASE3"], "COMPLETED")
    assert (t["start_date"], t["completion_date"], t["start_year"]) == ("2020-08-24", "2022-12-15", 2020)
    assert (t["enrollment"], t["enrollment_type"]) == (676, "ACTUAL")
    assert t["conditions"] == ["Treatment Resistant Depression", "Major Depressive Disorder"]
    assert t["keywords"] == ["esketamine", "nasal spray", "quetiapine"]
    assert (t["sponsor"], t["sponsor_class"]) == ("Nordic Mood Disorders Research Network", "OTHER")
    assert t["collaborators"] == ["Karolinska Institutet", "Example Pharma AB"]
    assert (t["allocation"], t["masking"]) == ("RANDOMIZED", "SINGLE")
    assert (t["intervention_model"], t["primary_purpose"]) == ("PARALLEL", "TREATMENT")
    assert t["has_results"] is True
    assert t["countries"] == ["Sweden", "Denmark", "Norway"]


def test_interventions_and_arm_groups_keep_routes(trials):
    t = trials["NCT04599855"]
    assert t["interventions"] == [
        {"type": "DRUG", "name": "Esketamine",
         "description": "Intranasal esketamine nasal spray, 56 mg or 84 mg per session.",
         "other_names": ["Spravato", "JNJ-54135419"]},
        {"type": "DRUG", "name": "Quetiapine extended-release", "description": "Oral tablets, 150-300 mg once daily.",
         "other_names": ["Seroquel XR"]},
    ]
    assert t["arm_groups"] == [
        {"label": "Esketamine nasal spray", "type": "EXPERIMENTAL",
         "description": "Intranasal esketamine 56 mg or 84 mg, flexibly dosed, plus the ongoing SSRI/SNRI.",
         "intervention_names": ["Drug: Esketamine"]},
        {"label": "Quetiapine XR", "type": "ACTIVE_COMPARATOR",
         "description": "Oral quetiapine extended-release 150-300 mg/day plus the ongoing SSRI/SNRI.",
         "intervention_names": ["Drug: Quetiapine extended-release"]},
    ]
    iv = trials["NCT03890419"]["interventions"][0]
    assert iv["description"] == "IV ketamine infusion: 0.5 mg/kg bolus at induction, then 0.12 mg/kg/h for 48 hours."
    assert iv["other_names"] == []


def test_outcomes_and_references(trials):
    t = trials["NCT04599855"]
    assert t["primary_outcomes"] == [{
        "measure": "Remission (MADRS total score <= 10)", "time_frame": "Week 8",
        "description": "Montgomery-Asberg Depression Rating Scale total score of 10 or less."}]
    assert t["secondary_outcomes"] == [
        {"measure": "Relapse", "time_frame": "Week 8 to week 32",
         "description": "Relapse through week 32 among participants in remission at week 8."},
        {"measure": "Change in MADRS total score", "time_frame": "Baseline, week 8", "description": None},
    ]
    assert [(r["pmid"], r["type"]) for r in t["references"]] == [(37888888, "RESULT"), (31109199, "BACKGROUND")]
    assert t["references"][0]["citation"].startswith("Lindqvist E, Andersen ML. Esketamine nasal spray")
    assert trials["NCT03890419"]["references"] == [{
        "pmid": None, "type": "BACKGROUND",
        "citation": ("Loftus RW, et al. Intraoperative ketamine reduces perioperative opiate consumption in"
                     " opiate-dependent patients with chronic back pain undergoing back surgery."
                     " Anesthesiology. 2010;113(3):639-46.")}]


def test_recruiting_phase4_trial_with_month_dates(trials):
    t = trials["NCT03890419"]
    assert t["title"] == "IV Ketamine Infusion for Pain After Spinal Fusion Surgery"
    assert (t["acronym"], t["detailed_description"], t["keywords"], t["collaborators"]) == (None, None, [], [])
    assert (t["phases"], t["overall_status"], t["has_results"]) == (["PHASE4"], "RECRUITING", False)
    assert (t["start_date"], t["completion_date"], t["start_year"]) == ("2019-05", "2025-12", 2019)
    assert (t["enrollment"], t["enrollment_type"], t["masking"]) == (120, "ESTIMATED", "QUADRUPLE")
    assert t["arm_groups"][1] == {"label": "Placebo", "type": "PLACEBO_COMPARATOR", "description": None,
                                  "intervention_names": ["Drug: Normal saline"]}
    assert t["secondary_outcomes"] == []
    assert t["countries"] == ["United States"]


def test_phase1_2_trial_without_references(trials):
    t = trials["NCT05123456"]
    assert (t["phases"], t["allocation"], t["intervention_model"]) == (["PHASE1", "PHASE2"], "NON_RANDOMIZED",
                                                                      "SEQUENTIAL")
    assert (t["sponsor"], t["sponsor_class"]) == ("Example Neurotherapeutics Inc.", "INDUSTRY")
    assert t["collaborators"] == ["Chiba University"]
    assert t["interventions"][0]["other_names"] == ["EXN-101", "(R)-ketamine"]
    assert (t["references"], t["countries"], t["has_results"]) == ([], ["Japan"], False)
    assert (t["start_year"], t["enrollment"], t["acronym"]) == (2022, 48, "ARK-1")


def test_sparse_study_and_phase_spellings():
    page = {"studies": [{"protocolSection": {
        "identificationModule": {"nctId": "nct01234567"},
        "designModule": {"phases": ["Not Applicable", "Phase 2", "PHASE2"]},
    }}]}
    (trial,) = parse_studies_page(json.dumps(page).encode()).trials
    assert trial["nct_id"] == "NCT01234567"
    assert trial["phases"] == ["NA", "PHASE2"]
    assert (trial["title"], trial["start_year"], trial["enrollment"], trial["has_results"]) == (None, None, None, False)
    assert (trial["interventions"], trial["conditions"], trial["countries"]) == ([], [], [])


def test_studies_without_an_nct_id_are_reported(ctgov):
    page = json.loads(ctgov["studies_page2.json"])
    page["studies"].insert(0, {"protocolSection": {"identificationModule": {"briefTitle": "Orphan record"}}})
    page["studies"].append({"protocolSection": {"identificationModule": {"nctId": "NCT123"}}})
    page["studies"].append(["not", "an", "object"])
    parsed = parse_studies_page(json.dumps(page).encode())
    assert [t["nct_id"] for t in parsed.trials] == ["NCT05123456"]
    assert len(parsed.errors) == 3
    assert "study 1" in parsed.errors[0] and "Orphan record" in parsed.errors[0]
    assert "'NCT123'" in parsed.errors[1]


@pytest.mark.parametrize("body, message", [
    (None, "not valid JSON"),
    (b"<html><body>502 Bad Gateway</body></html>", "not valid JSON"),
    (b'{"message": "pageToken is invalid"}', "no studies list"),
])
def test_malformed_pages_raise_parse_error(ctgov, body, message):
    with pytest.raises(ParseError, match=message):
        parse_studies_page(body or ctgov["truncated_page.json"])


def test_real_trials_file(corpus):
    data = (corpus / "clinicaltrials" / "ketamine-trials.json").read_bytes()
    studies = json.loads(data)["studies"]
    page = parse_studies_page(data)
    assert page.errors == []
    assert len(page.trials) == len(studies)
    ids = [t["nct_id"] for t in page.trials]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"NCT\d{8}", i) for i in ids)
    assert all(set(t) == TRIAL_KEYS for t in page.trials)
    allowed = {"EARLY_PHASE1", "PHASE1", "PHASE2", "PHASE3", "PHASE4", "NA"}
    assert {p for t in page.trials for p in t["phases"]} <= allowed
    assert all(t["start_year"] == int(t["start_date"][:4]) for t in page.trials if t["start_date"])


# --------------------------------------------------------------------------- client


def test_page_token_paging(httpserver, ctgov):
    httpserver.expect_ordered_request("/studies").respond_with_data(
        ctgov["studies_page1.json"], content_type="application/json")
    httpserver.expect_ordered_request("/studies").respond_with_data(
        ctgov["studies_page2.json"], content_type="application/json")
    pages = list(make_client(httpserver).pages("ketamine", page_size=2, progress=False))
    assert nct_ids(pages) == ["NCT04599855", "NCT03890419", "NCT05123456"]
    first, second = (request for request, _ in httpserver.log)
    for request in (first, second):
        assert request.args["query.intr"] == "ketamine"
        assert (request.args["pageSize"], request.args["format"]) == ("2", "json")
    assert first.args["countTotal"] == "true" and "pageToken" not in first.args
    assert second.args["pageToken"] == TOKEN and "countTotal" not in second.args


def test_default_query_and_page_size(httpserver, ctgov):
    httpserver.expect_request("/studies").respond_with_data(ctgov["studies_page2.json"])
    assert nct_ids(make_client(httpserver).pages(progress=False)) == ["NCT05123456"]
    args = httpserver.log[0][0].args
    assert args["query.intr"] == DEFAULT_INTERVENTION_QUERY and args["pageSize"] == "1000"
    assert all(term in DEFAULT_INTERVENTION_QUERY for term in ("ketamine", "esketamine", "arketamine"))


def test_a_repeated_token_ends_paging(httpserver, ctgov):
    page = json.loads(ctgov["studies_page1.json"])
    httpserver.expect_request("/studies").respond_with_json(page)
    pages = list(make_client(httpserver).pages("k", progress=False))
    assert len(pages) == 2 and len(httpserver.log) == 2


def test_429_is_retried_after_the_retry_after_wait(httpserver, ctgov):
    httpserver.expect_ordered_request("/studies").respond_with_data(
        "Too Many Requests", status=429, headers={"Retry-After": "1"})
    httpserver.expect_ordered_request("/studies").respond_with_data(ctgov["studies_page2.json"])
    started = time.monotonic()
    pages = list(make_client(httpserver).pages("k", progress=False))
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 was not honoured"
    assert nct_ids(pages) == ["NCT05123456"] and len(httpserver.log) == 2


def test_500_then_success(httpserver, ctgov):
    httpserver.expect_ordered_request("/studies").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/studies").respond_with_data(ctgov["studies_page2.json"])
    assert nct_ids(make_client(httpserver).pages("k", progress=False)) == ["NCT05123456"]
    assert len(httpserver.log) == 2


@pytest.mark.parametrize("body", [b"<!DOCTYPE html><html><body>Service Unavailable</body></html>", None])
def test_bad_body_with_http_200_is_refetched(httpserver, ctgov, body):
    httpserver.expect_ordered_request("/studies").respond_with_data(body or ctgov["truncated_page.json"])
    httpserver.expect_ordered_request("/studies").respond_with_data(ctgov["studies_page2.json"])
    assert nct_ids(make_client(httpserver).pages("k", progress=False)) == ["NCT05123456"]
    assert len(httpserver.log) == 2


def test_a_page_that_never_recovers_gives_up_with_a_clear_error(httpserver, ctgov):
    httpserver.expect_request("/studies").respond_with_data(ctgov["truncated_page.json"])
    with pytest.raises(FetchError, match="truncated or invalid JSON.*after 3 attempts"):
        list(make_client(httpserver, retries=2).pages("k", progress=False))
    assert len(httpserver.log) == 3


def test_page_size_is_checked():
    with pytest.raises(ValueError, match="page_size"):
        next(ClinicalTrialsClient().pages("k", page_size=0, progress=False))


def test_default_rate_is_50_per_minute():
    assert ClinicalTrialsClient().limiter.interval == pytest.approx(60 / 50)
