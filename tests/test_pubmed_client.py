"""The E-utilities client against a real HTTP server on 127.0.0.1 replaying recorded answers."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from werkzeug import Response

from ingest.sources.http import FetchError, RateLimiter
from ingest.sources.pubmed import ESEARCH_WINDOW, NCBIError, PubMedClient, parse_pubmed_xml


@pytest.fixture
def eutils(fixtures):
    folder = fixtures / "eutils"
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def make_client(httpserver, **kwargs) -> PubMedClient:
    kwargs.setdefault("retries", 3)
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("rate", 1000)
    return PubMedClient(base_url=httpserver.url_for("/"), email="dev@example.org", **kwargs)


def pmids(pages) -> list[int]:
    return [r["pmid"] for page in pages for r in parse_pubmed_xml(page).records]


def test_search_then_paged_efetch(httpserver, eutils):
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(
        eutils["esearch_history.json"], content_type="application/json")
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(
        eutils["efetch_page1.xml"], content_type="text/xml")
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(
        eutils["efetch_page2.xml"], content_type="text/xml")
    client = make_client(httpserver, api_key="secret-key")
    pages = list(client.fetch_batches("ketamine[tiab]", batch_size=2, progress=False))
    assert pmids(pages) == [39000001, 2345678, 17000002]
    search, first, second = (request for request, _ in httpserver.log)
    assert search.args["usehistory"] == "y" and search.args["term"] == "ketamine[tiab]"
    for request in (search, first, second):
        assert request.args["tool"] == "ketamine-kb"
        assert request.args["email"] == "dev@example.org"
        assert request.args["api_key"] == "secret-key"
        assert request.args["db"] == "pubmed"
    assert (first.args["retstart"], second.args["retstart"]) == ("0", "2")
    assert first.args["WebEnv"] == "MCID_6741c1d0a3b4c5d6e7f80911" and first.args["query_key"] == "1"
    assert first.args["retmode"] == "xml"


def test_429_is_retried_after_the_retry_after_wait(httpserver, eutils):
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(
        eutils["rate_limited.json"], status=429, headers={"Retry-After": "1"})
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(
        eutils["esearch_history.json"], content_type="application/json")
    client = make_client(httpserver)
    started = time.monotonic()
    result = client.search("ketamine")
    assert result.count == 3
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 was not honoured"
    assert len(httpserver.log) == 2


def test_500_then_success(httpserver, eutils):
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data("bad gateway", status=502)
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(
        eutils["esearch_history.json"], content_type="application/json")
    assert make_client(httpserver).search("ketamine").count == 3
    assert len(httpserver.log) == 3


@pytest.mark.parametrize("body", ["service_unavailable.html", "rate_limited.json"])
def test_error_body_with_http_200_is_retried(httpserver, eutils, body):
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(eutils[body], status=200)
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(
        eutils["esearch_history.json"], content_type="application/json")
    assert make_client(httpserver).search("ketamine").count == 3


def test_esearch_error_is_reported_not_retried(httpserver, eutils):
    httpserver.expect_request("/esearch.fcgi").respond_with_data(eutils["esearch_error.json"])
    with pytest.raises(NCBIError, match="unbalanced parentheses"):
        make_client(httpserver).search("(ketamine")
    assert len(httpserver.log) == 1


def test_truncated_and_html_efetch_pages_are_refetched(httpserver, eutils):
    page = eutils["efetch_page1.xml"]
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_json(
        {"esearchresult": {"count": "2", "webenv": "W", "querykey": "1"}})
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(page[: len(page) // 2])
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(eutils["service_unavailable.html"])
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(page)
    pages = list(make_client(httpserver).fetch_batches("k", batch_size=500, progress=False))
    assert pmids(pages) == [39000001, 2345678]


def test_expired_history_session_searches_again(httpserver, eutils):
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_data(eutils["esearch_history.json"])
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(eutils["efetch_page1.xml"])
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(eutils["efetch_session_expired.xml"])
    httpserver.expect_ordered_request("/esearch.fcgi").respond_with_json(
        {"esearchresult": {"count": "3", "webenv": "NEW", "querykey": "1"}})
    httpserver.expect_ordered_request("/efetch.fcgi").respond_with_data(eutils["efetch_page2.xml"])
    pages = list(make_client(httpserver).fetch_batches("k", batch_size=2, progress=False))
    assert pmids(pages) == [39000001, 2345678, 17000002]
    last = httpserver.log[-1][0]
    assert last.args["WebEnv"] == "NEW" and last.args["retstart"] == "2"


def test_persistent_server_error_gives_up_with_clear_error(httpserver):
    httpserver.expect_request("/esearch.fcgi").respond_with_data("down", status=503)
    with pytest.raises(FetchError, match="503"):
        make_client(httpserver, retries=2).search("k")
    assert len(httpserver.log) == 3


def _synthetic_hits_per_day(day: dt.date) -> int:
    # ~16,000 hits spread over 2000-2024; every slice's count is derived, never hard-coded.
    return 2 if day.year >= 2000 and day.year <= 2021 else 0


def test_search_above_9999_hits_is_sliced_by_date(httpserver):
    def esearch(request):
        args = request.args
        if "mindate" not in args:
            total = sum(_synthetic_hits_per_day(dt.date(2000, 1, 1) + dt.timedelta(d)) for d in range(8036))
            return Response(json.dumps({"esearchresult": {"count": str(total), "webenv": "W0", "querykey": "1"}}))
        start = dt.datetime.strptime(args["mindate"], "%Y/%m/%d").date()
        end = dt.datetime.strptime(args["maxdate"], "%Y/%m/%d").date()
        assert args["datetype"] == "pdat"
        count = 0
        day = max(start, dt.date(2000, 1, 1))
        while day <= min(end, dt.date(2021, 12, 31)):
            count += _synthetic_hits_per_day(day)
            day += dt.timedelta(days=1)
        return Response(json.dumps({"esearchresult": {
            "count": str(count), "webenv": f"W-{args['mindate']}", "querykey": "1"}}))

    httpserver.expect_request("/esearch.fcgi").respond_with_handler(esearch)
    client = make_client(httpserver)
    plan = client.plan("ketamine")
    total = sum(piece.result.count for piece in plan)
    assert total > ESEARCH_WINDOW
    assert total == 2 * (dt.date(2021, 12, 31) - dt.date(2000, 1, 1)).days + 2
    assert all(piece.result.count <= ESEARCH_WINDOW for piece in plan)
    assert {piece.datetype for piece in plan} == {"pdat"}
    # Slices are contiguous and never overlap.
    spans = [(dt.datetime.strptime(a, "%Y/%m/%d").date(), dt.datetime.strptime(b, "%Y/%m/%d").date())
             for _, a, b, _ in plan]
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start == end + dt.timedelta(days=1)


def test_rate_limiter_spaces_calls():
    limiter = RateLimiter(rate=20)
    started = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - started >= 4 / 20 * 0.95


def test_default_rate_depends_on_api_key(monkeypatch):
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    assert PubMedClient().limiter.interval == pytest.approx(1 / 3)
    assert PubMedClient(api_key="k").limiter.interval == pytest.approx(1 / 10)
