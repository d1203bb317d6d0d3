"""Network honesty (issue 17, items 3, 10 and 11), against real servers on 127.0.0.1.

* Expired history: NCBI's "Unable to obtain query #1" is a history expiry (search again, resume at
  the same offset), and a resumed build never replays an esearch (its WebEnv is dead by then).
* One retry layer: exactly ``--retries`` + 1 attempts, each through the rate limiter, each retry
  announced with its reason on stderr; no host (name resolution failed, connection refused) fails
  after a short budget.
* ``--timeout`` is a deadline for the whole answer, and an answer over the size limit is refused.

The httpserver serves the fault suite's pages (``test_faults.REAL``); :class:`SocketServer` plays
answers httpserver cannot give (a trickle, an endless body).
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable

import pytest
from test_faults import (
    REAL,
    LoopbackServer,
    assert_complete,
    kb_build,
    one_line_error,
    page_key,
    read_head,
    retry_lines,
)
from werkzeug import Request, Response

from ingest.sources import http
from ingest.sources.pubmed import SessionExpired, check_ncbi_body

FAST = ("--rate", "1000", "--timeout", "10")  # no rate limit, and patience on a busy machine
# NCBI's answer to an efetch whose WebEnv has expired, as rentrez and pysradb record it.
EXPIRED_EFETCH = (b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch '
                  b'20131226//EN" "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n'
                  b"<eFetchResult>\n\t<ERROR>Unable to obtain query #1</ERROR>\n</eFetchResult>\n")
EXPIRED_ESEARCH = b"<eSearchResult><ERROR>Unable to obtain query #1</ERROR></eSearchResult>"


# --------------------------------------------------------------------------- an E-utilities server with history


class HistoryServer:
    """esearch and efetch with WebEnvs that expire: every esearch opens a new one; an efetch naming
    an expired (or unknown) WebEnv gets NCBI's "Unable to obtain query #1" with HTTP 200."""

    def __init__(self, httpserver):
        self.issued: list[str] = []
        self.expired: set[str] = set()
        self.count = 11
        self.broken: set[str] = set()  # page keys answered 503
        self.asked: list[tuple[str, str | None]] = []  # (page key, WebEnv) of every request
        self.expiry_message = EXPIRED_EFETCH
        httpserver.expect_request("/eutils/esearch.fcgi").respond_with_handler(self.esearch)
        httpserver.expect_request("/eutils/efetch.fcgi").respond_with_handler(self.efetch)
        self.url = httpserver.url_for("").rstrip("/")

    def esearch(self, request: Request) -> Response:
        webenv = f"MCID_{len(self.issued) + 1}"
        self.issued.append(webenv)
        self.asked.append(("esearch", None))
        answer = {"esearchresult": {"count": str(self.count), "querykey": "1", "webenv": webenv}}
        return Response(json.dumps(answer), content_type="application/json")

    def efetch(self, request: Request) -> Response:
        key, webenv = page_key(request.path, request.args), request.args.get("WebEnv")
        self.asked.append((key, webenv))
        if len(self.asked) > 40:
            return Response("asked too often", status=404)  # every loop in a test ends
        if webenv not in self.issued or webenv in self.expired:
            return Response(self.expiry_message, content_type="text/xml")
        if key in self.broken:
            return Response("down", status=503)
        return Response(REAL[key], content_type="text/xml")

    def expire_all(self) -> None:
        self.expired.update(self.issued)

    def requests_for(self, key: str) -> list[str | None]:
        return [webenv for asked, webenv in self.asked if asked == key]


@pytest.fixture
def eutils(httpserver) -> HistoryServer:
    return HistoryServer(httpserver)


@pytest.mark.parametrize("body", [EXPIRED_EFETCH, EXPIRED_ESEARCH], ids=["eFetchResult", "eSearchResult"])
def test_unable_to_obtain_query_means_the_history_expired(body):
    with pytest.raises(SessionExpired, match="Unable to obtain query #1"):
        check_ncbi_body(body, "xml")


@pytest.mark.parametrize("body", [EXPIRED_EFETCH, EXPIRED_ESEARCH], ids=["eFetchResult", "eSearchResult"])
def test_an_expired_history_on_the_first_efetch_is_searched_again(body, eutils, tmp_path):
    eutils.expiry_message = body
    eutils.expired.add("MCID_1")  # expired as soon as it was issued
    db = tmp_path / "kb.db"
    result = kb_build(db, eutils.url, "pubmed", extra=FAST)
    assert result.exit_code == 0, result.output
    assert_complete(db, "pubmed")
    # Refused once with the first WebEnv, then every page at its offset with the new one.
    assert eutils.requests_for("efetch:0") == ["MCID_1", "MCID_2"]
    assert eutils.requests_for("efetch:4") == eutils.requests_for("efetch:8") == ["MCID_2"]
    assert "efetch.fcgi: history session expired: searching again (1/3)" in result.stderr


def test_a_resumed_build_searches_again_and_replays_the_kept_pages(eutils, tmp_path):
    """Run 1 stops at efetch:4 (keeping efetch:0); hours later its WebEnv is gone. Run 2 must not
    replay the old esearch: it searches again and fetches the rest with the new WebEnv."""
    db = tmp_path / "kb.db"
    eutils.broken.add("efetch:4")
    first = kb_build(db, eutils.url, "pubmed", retries=0, extra=FAST)
    assert first.exit_code == 1
    assert "run again to resume" in one_line_error(first)
    eutils.broken.clear()
    eutils.expire_all()
    second = kb_build(db, eutils.url, "pubmed", retries=0, extra=FAST)
    assert second.exit_code == 0, second.output
    assert "Resuming: 1 pages kept" in second.stderr
    assert_complete(db, "pubmed")
    assert eutils.requests_for("esearch") == [None, None]
    assert eutils.requests_for("efetch:0") == ["MCID_1"]  # kept from run 1, still valid
    assert eutils.requests_for("efetch:4") == ["MCID_1", "MCID_2"]
    assert eutils.requests_for("efetch:8") == ["MCID_2"]


def test_a_resumed_build_fetches_again_the_pages_of_a_search_whose_count_changed(eutils, tmp_path):
    db = tmp_path / "kb.db"
    eutils.broken.add("efetch:4")
    assert kb_build(db, eutils.url, "pubmed", retries=0, extra=FAST).exit_code == 1
    eutils.broken.clear()
    eutils.count = 12  # a record more: the offsets of run 1 name other records now
    eutils.expire_all()
    result = kb_build(db, eutils.url, "pubmed", retries=0, extra=FAST)
    assert result.exit_code == 0, result.output
    assert eutils.requests_for("efetch:0") == ["MCID_1", "MCID_2"]


# --------------------------------------------------------------------------- one retry layer


def test_a_server_that_always_answers_503_is_asked_exactly_retries_plus_one_times(httpserver, tmp_path):
    httpserver.expect_request("/eutils/esearch.fcgi").respond_with_data("Service Unavailable", status=503)
    result = kb_build(tmp_path / "kb.db", httpserver.url_for("").rstrip("/"), "pubmed", retries=5, extra=FAST)
    assert result.exit_code == 1
    assert len(httpserver.log) == 6
    lines = retry_lines(result)
    assert [line.split("retrying now ")[1] for line in lines] == [f"({n}/5): HTTP 503" for n in range(1, 6)]
    assert one_line_error(result).endswith("esearch.fcgi: HTTP 503 after 5 retries")


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


def test_connection_refused_fails_after_a_short_budget_with_a_line_per_retry(tmp_path):
    result = kb_build(tmp_path / "kb.db", f"http://127.0.0.1:{closed_port()}", "pubmed", retries=5, backoff="0.05",
                      extra=FAST)
    assert result.exit_code == 1
    lines = retry_lines(result)
    assert len(lines) == 2, result.stderr
    assert lines[0].endswith("(1/2): connection refused") and lines[1].endswith("(2/2): connection refused")
    assert one_line_error(result).endswith("esearch.fcgi: connection refused (after 3 attempts)")


def test_a_name_that_does_not_resolve_fails_after_a_short_budget(tmp_path, monkeypatch):
    """No DNS: the resolver's answer for every name but loopback ones (no query leaves the machine)."""
    resolve = socket.getaddrinfo

    def no_dns(host, *args, **kwargs):
        if host in ("127.0.0.1", "localhost"):
            return resolve(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    result = kb_build(tmp_path / "kb.db", "http://eutils.example.invalid", retries=5, backoff="0.05", extra=FAST)
    assert result.exit_code == 1
    lines = retry_lines(result)
    assert len(lines) == 2 and all(line.endswith("name resolution failed") for line in lines), result.stderr
    assert one_line_error(result).endswith("name resolution failed (after 3 attempts)")


def test_every_attempt_waits_for_the_rate_limit(httpserver, tmp_path):
    """Retries of a 503 are spaced by the rate limit (measured where the server receives them)."""
    arrivals: list[float] = []

    def unavailable(request: Request) -> Response:
        arrivals.append(time.monotonic())
        return Response("busy", status=503)

    httpserver.expect_request("/eutils/esearch.fcgi").respond_with_handler(unavailable)
    rate = 5.0
    result = kb_build(tmp_path / "kb.db", httpserver.url_for("").rstrip("/"), "pubmed", retries=3,
                      extra=("--rate", str(rate), "--timeout", "10"))
    assert result.exit_code == 1
    assert len(arrivals) == 4
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.9 / rate, gaps


def test_retry_after_is_honoured_and_announced(httpserver, tmp_path):
    arrivals: list[float] = []
    answers = iter([Response("slow down", status=429, headers={"Retry-After": "1"})])

    def handler(request: Request) -> Response:
        arrivals.append(time.monotonic())
        return next(answers, None) or Response(REAL["esearch"], content_type="application/json")

    httpserver.expect_request("/eutils/esearch.fcgi").respond_with_handler(handler)
    httpserver.expect_request("/eutils/efetch.fcgi").respond_with_handler(
        lambda request: Response(REAL[page_key(request.path, request.args)], content_type="text/xml"))
    db = tmp_path / "kb.db"
    result = kb_build(db, httpserver.url_for("").rstrip("/"), "pubmed", extra=FAST)
    assert result.exit_code == 0, result.output
    assert_complete(db, "pubmed")
    assert arrivals[1] - arrivals[0] >= 0.95
    assert [line.split(": ", 1)[1] for line in retry_lines(result)] == ["retrying in 1 s (1/3): HTTP 429"]


# --------------------------------------------------------------------------- a deadline and a size limit


class SocketServer(LoopbackServer):
    """Answers every connection with ``answer(conn, server)`` after reading the request head, and
    counts the bytes it managed to send."""

    MAX_SECONDS = 30.0

    def __init__(self, answer: Callable[[socket.socket, SocketServer], None]):
        self.answer = answer
        self.sent = 0
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                if b"\r\n\r\n" in read_head(conn):
                    self.answer(conn, self)
            except OSError:
                pass  # the client hung up: what these tests expect of it

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)


@pytest.fixture
def socket_server():
    servers: list[SocketServer] = []

    def start(answer) -> SocketServer:
        servers.append(SocketServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def trickle(conn: socket.socket, server: SocketServer) -> None:
    """A 200 answer announcing 1,000 bytes and sending one every 0.25 s (each read well within
    the timeout, the whole far beyond it); gives up after 20 s."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    until = time.monotonic() + 20
    while server.running() and time.monotonic() < until:
        server.send(conn, b" ")
        time.sleep(0.25)


def test_timeout_is_a_deadline_for_the_whole_answer(socket_server, tmp_path):
    server = socket_server(trickle)
    timeout, retries = 1.0, 1
    started = time.monotonic()
    result = kb_build(tmp_path / "kb.db", server.url, "pubmed", retries=retries,
                      extra=("--rate", "1000", "--timeout", str(timeout)))
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert one_line_error(result).endswith(f"answer not complete within {timeout:g} s (after 2 attempts)")
    assert server.connections == retries + 1
    # A bound on behaviour, not a benchmark: without a deadline each attempt lasts 20 s.
    assert elapsed < 4 * timeout * (retries + 1), elapsed


def endless(conn: socket.socket, server: SocketServer, declared: bytes = b"") -> None:
    """A 200 answer of zeros until the client hangs up (at most 64 MB), its length declared or not."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + declared + b"\r\n")
    block = b"0" * 65536
    while server.running() and server.sent < 64 * 1024 * 1024:
        server.send(conn, block)


@pytest.mark.parametrize("declared", [b"Content-Length: 10737418240\r\n", b""], ids=["declared", "undeclared"])
def test_an_answer_over_the_size_limit_is_refused(declared, socket_server, tmp_path, monkeypatch):
    limit = 1024 * 1024
    monkeypatch.setattr(http, "MAX_BODY_BYTES", limit, raising=False)
    server = socket_server(lambda conn, srv: endless(conn, srv, declared))
    result = kb_build(tmp_path / "kb.db", server.url, "pubmed", extra=FAST)
    assert result.exit_code == 1
    assert "-byte limit" in one_line_error(result) and f"{limit:,}" in one_line_error(result)
    assert server.connections == 1, "a refused size is not retried"
    # Rejected before reading on: what was sent is the limit plus what socket buffers hold.
    assert server.sent < limit + 16 * 1024 * 1024, server.sent


def test_a_compressed_answer_is_limited_by_its_decoded_size(httpserver, tmp_path, monkeypatch):
    limit = 1024 * 1024
    monkeypatch.setattr(http, "MAX_BODY_BYTES", limit, raising=False)
    bomb = gzip.compress(b" " * (64 * limit))  # 64 kB on the wire, 64 MB decoded
    httpserver.expect_request("/eutils/esearch.fcgi").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/json")
    result = kb_build(tmp_path / "kb.db", httpserver.url_for("").rstrip("/"), "pubmed", extra=FAST)
    assert result.exit_code == 1
    assert one_line_error(result).endswith(f"answer over the {limit:,}-byte limit")
    assert len(httpserver.log) == 1
