"""Fault suite: a real `kb build` against loopback servers that misbehave, asserting the final kb.db.

Every source (PubMed E-utilities, Europe PMC, ClinicalTrials.gov) is served by pytest-httpserver
from the hand-written pages in fixtures/faults/: three pages each, with duplicate and out-of-order
records, a newer PubMed version (and a stale copy of the older one after it), a DeleteCitation and
retractions. Faults are queued in front of one page request:

* HTTP-level ones (429/5xx, truncated or error bodies with HTTP 200) are answered by the httpserver
  handler;
* socket-level ones (a connection reset with RST, no answer at all, a connection cut mid-body) by
  :class:`FaultyFront`, a small TCP relay on 127.0.0.1 between the client and httpserver.

A build that recovers must give exactly the kb.db of a clean run (nothing lost, nothing duplicated);
one that cannot complete must fail with one line on stderr, exit status 1, and leave the previous
kb.db byte for byte.

The client classes are wrapped (see ``fast_clients``) so that, whatever the CLI's --timeout and
--rate defaults, a request that gets no answer times out after ``TIMEOUT`` seconds and nothing is
rate limited: the suite stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from werkzeug import Request, Response

from ingest.cli import cli
from ingest.sources import http

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAULTS = FIXTURES / "faults"
TIMEOUT = 0.5  # seconds before a request without an answer gives up, in tests of unanswered requests
PATIENCE = 10.0  # the same, in every other test: a slow answer on a busy machine is not a fault
BATCH = 4  # --batch-size: three efetch pages at retstart 0, 4, 8
SOURCES = ("pubmed", "europepmc", "clinicaltrials")
MAX_ASKS = 40  # requests for one page before the server answers 404: every loop in a test ends


def fixture(name: str) -> bytes:
    return (FAULTS / name).read_bytes()


# The real answers, by page key (see page_key).
REAL = {
    "esearch": json.dumps({"header": {"type": "esearch"}, "esearchresult": {
        "count": "11", "retmax": "0", "retstart": "0", "querykey": "1", "webenv": "MCID_faults"}}).encode(),
    "efetch:0": fixture("pubmed_page1.xml"),
    "efetch:4": fixture("pubmed_page2.xml"),
    "efetch:8": fixture("pubmed_page3.xml"),
    "search:*": fixture("europepmc_page1.json"),
    "search:CURSOR2": fixture("europepmc_page2.json"),
    "search:CURSOR3": fixture("europepmc_page3.json"),
    "studies:first": fixture("clinicaltrials_page1.json"),
    "studies:TOKEN2": fixture("clinicaltrials_page2.json"),
    "studies:TOKEN3": fixture("clinicaltrials_page3.json"),
}
PAGES = {"pubmed": ("esearch", "efetch"), "europepmc": ("search",), "clinicaltrials": ("studies",)}
# The first request of each source, and one in the middle of its paging.
FIRST = {"pubmed": "esearch", "europepmc": "search:*", "clinicaltrials": "studies:first"}
MIDDLE = {"pubmed": "efetch:4", "europepmc": "search:CURSOR2", "clinicaltrials": "studies:TOKEN2"}


def page_key(path: str, args: dict[str, str]) -> str:
    """Which page a request asks for, whatever its other parameters."""
    if path.endswith("/esearch.fcgi"):
        return "esearch"
    if path.endswith("/efetch.fcgi"):
        return f"efetch:{args.get('retstart')}"
    if path.endswith("/search"):
        return f"search:{args.get('cursorMark')}"
    if path.endswith("/studies"):
        return f"studies:{args.get('pageToken', 'first')}"
    return path


# --------------------------------------------------------------------------- expected kb.db content

# id -> (pmid_version, title, is_retracted, sources, authors, abstract sections, cited_by_count, links)
PUBMED_STUDIES = {
    # Fetched last, lowest PMID: order does not matter.
    "40000100": (1, "Ketamine in status epilepticus: the lowest PMID, fetched last.", 0, ["pubmed"], 1, 0, None, []),
    # Version 2 on page 2 replaces version 1 (page 1) whole; the stale version 1 on page 3 changes nothing.
    "40000101": (2, "Esketamine nasal spray in depression (version 2).", 0, ["pubmed"], 1, 2, None, []),
    "40000102": (1, "Ketamine cures everything: a retracted trial.", 1, ["pubmed"], 1, 0, None,
                 [("RetractionIn", 40000199)]),
    "40000103": (1, "Arketamine in mice: retracted without a notice link.", 1, ["pubmed"], 1, 0, None, []),
    # On pages 1 and 2: one study, one author row.
    "40000104": (1, "Ketamine for postoperative pain: a cohort study.", 0, ["pubmed"], 1, 1, None, []),
    # 40000105 (page 1) is removed by the DeleteCitation on page 2.
}
EUROPEPMC_STUDIES = {
    "40000200": (None, "Ketamine for agitation in the emergency department.", 0, ["europepmc"], 1, 0, 40, []),
    # On pages 1 and 2; the later copy's higher citation count wins.
    "40000201": (None, "Ketamine and sleep architecture.", 0, ["europepmc"], 1, 1, 5, []),
    "40000202": (None, "Ketamine abolishes insomnia: a retracted report.", 1, ["europepmc"], 1, 0, 0,
                 [("RetractionIn", 40000299)]),
    "40000204": (None, "Ketamine-induced dissociation during anaesthesia.", 0, ["europepmc"], 1, 0, 1, []),
    # A preprint without PMID, on pages 1 and 3: one study keyed by DOI.
    "doi:10.1101/2024.05.05.24300203": (None, "Esketamine and dreaming: a preprint.", 0, ["europepmc"], 0, 0, 0, []),
}
# nct_id -> (title, overall_status, enrollment, has_results)
TRIALS = {
    "NCT40000300": ("Ketamine Sedation in Children", "TERMINATED", 12, 0),
    "NCT40000301": ("Esketamine for Late-life Depression", "RECRUITING", 100, 0),
    "NCT40000302": ("Ketamine Infusion for Cancer Pain", "COMPLETED", 240, 1),  # on pages 1 and 2
    "NCT40000303": ("Arketamine Safety in Healthy Volunteers", "NOT_YET_RECRUITING", 24, 0),
    "NCT40000304": ("Oral Ketamine for Chronic Pain", "WITHDRAWN", 0, 0),
}
EXPECTED = {
    "pubmed": (PUBMED_STUDIES, {}),
    "europepmc": (EUROPEPMC_STUDIES, {}),
    "clinicaltrials": ({}, TRIALS),
}


def studies_in(db_path: Path) -> dict:
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute("select id, pmid_version, title, is_retracted, sources, cited_by_count from studies")
        studies = {}
        for study_id, version, title, retracted, sources, cited in rows.fetchall():
            authors = db.execute("select count(*) from authors where study_id = ?", [study_id]).fetchone()[0]
            sections = db.execute("select count(*) from abstract_sections where study_id = ?", [study_id]).fetchone()[0]
            links = db.execute("select ref_type, ref_pmid from study_links where study_id = ? order by position",
                               [study_id]).fetchall()
            studies[study_id] = (version, title, retracted, json.loads(sources), authors, sections, cited, links)
        return studies
    finally:
        db.close()


def trials_in(db_path: Path) -> dict:
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute("select nct_id, title, overall_status, enrollment, has_results from trials").fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}
    finally:
        db.close()


def assert_complete(db_path: Path, *sources: str, problems: int = 0) -> None:
    """kb.db holds exactly the expected studies and trials of ``sources``: none lost, none doubled."""
    studies, trials = {}, {}
    for source in sources:
        studies.update(EXPECTED[source][0])
        trials.update(EXPECTED[source][1])
    assert studies_in(db_path) == studies
    assert trials_in(db_path) == trials
    db = sqlite3.connect(db_path)
    try:
        status, errors, total = db.execute(
            "select status, errors, studies_total from ingest_runs order by id desc limit 1").fetchone()
        # Every child row belongs to a study that exists.
        assert db.execute("pragma foreign_key_check").fetchall() == []
    finally:
        db.close()
    assert (status, len(json.loads(errors)), total) == ("ok-with-errors" if problems else "ok", problems, len(studies))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- fault injection


@dataclass
class Answer:
    """An HTTP answer served instead of the real page."""

    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    def response(self) -> Response:
        return Response(self.body, status=self.status, headers=self.headers)


# Socket-level faults, played by FaultyFront: reset (RST) without answering; never answer; relay half
# the answer then reset; relay half the answer then close normally (fewer bytes than Content-Length).
RESET, HANG, CUT, SHORT = "reset", "hang", "cut", "short"


class Faults:
    """Faults queued per page key; ``forever`` ones never stop. Counts every request per key."""

    def __init__(self):
        self.queued: dict[str, list] = defaultdict(list)
        self.forever: dict[str, object] = {}
        self.requests: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def queue(self, key: str, *faults) -> None:
        self.queued[key].extend(faults)

    def take(self, key: str, socket_level: bool):
        """The next fault for ``key`` if it is of the asked level (socket or HTTP), else None."""
        with self.lock:
            fault = self.forever.get(key) or (self.queued[key][0] if self.queued[key] else None)
            if fault is None or isinstance(fault, str) != socket_level:
                return None
            if key not in self.forever:
                self.queued[key].pop(0)
            return fault


def serve(httpserver, faults: Faults) -> None:
    """Route every endpoint of the three sources through ``faults`` to the real pages."""

    def handler(request: Request) -> Response:
        key = page_key(request.path, request.args)
        with faults.lock:
            faults.requests[key] += 1
            if faults.requests[key] > MAX_ASKS:
                # A client that keeps asking for one page: stop it (404 is never retried), not the test run.
                return Response(f"page {key} asked for {MAX_ASKS} times", status=404)
        fault = faults.take(key, socket_level=False)
        if fault is not None:
            return fault.response()
        if key not in REAL:
            return Response(f"no page {key}", status=404)
        return Response(REAL[key], content_type="text/xml" if key.startswith("efetch") else "application/json")

    for path in ("/eutils/esearch.fcgi", "/eutils/efetch.fcgi", "/epmc/search", "/ct/studies"):
        httpserver.expect_request(path).respond_with_handler(handler)


class LoopbackServer:
    """A TCP server on 127.0.0.1 handing each connection to ``_handle`` in its own thread.

    Bounded in time (``MAX_SECONDS``) and in connections (``MAX_CONNECTIONS``) so a test that goes
    wrong cannot leave it running; ``close`` stops it and joins every thread.
    """

    MAX_CONNECTIONS = 200
    MAX_SECONDS = 60.0

    def __init__(self) -> None:
        self.connections = 0
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.workers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        deadline = time.monotonic() + self.MAX_SECONDS
        while not self.stopping.is_set() and time.monotonic() < deadline and self.connections < self.MAX_CONNECTIONS:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            worker.start()
            self.workers.append(worker)

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        return not self.stopping.is_set()

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=5)
        for worker in self.workers:
            worker.join(timeout=5)


class FaultyFront(LoopbackServer):
    """A TCP relay on 127.0.0.1 that forwards each connection to httpserver, or misbehaves.

    For each connection it reads the request head, asks ``faults`` for a socket-level fault
    for that page, and then: resets the connection (RST, SO_LINGER 0) without answering; keeps
    it open without answering until the client gives up; or forwards the request and relays
    only half of the answer before resetting or closing.
    """

    def __init__(self, backend: tuple[str, int], faults: Faults):
        self.backend = backend
        self.faults = faults
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            head = read_head(conn)
            target = urlsplit(head.split(b" ", 2)[1].decode("latin-1")) if head.count(b" ") >= 2 else None
            if target is None:
                return
            args = {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
            fault = self.faults.take(page_key(target.path, args), socket_level=True)
            if fault == RESET:
                _reset(conn)
            elif fault == HANG:
                self._hang(conn)
            else:
                answer = self._forward(head)
                conn.sendall(answer[: len(answer) // 2] if fault in (CUT, SHORT) else answer)
                if fault == CUT:
                    _reset(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def _hang(self, conn: socket.socket) -> None:
        """Say nothing until the client hangs up (or the test ends): a read timeout for the client."""
        conn.settimeout(0.05)
        deadline = time.monotonic() + 10
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                if conn.recv(4096) == b"":
                    return
            except TimeoutError:
                continue

    def _forward(self, head: bytes) -> bytes:
        with socket.create_connection(self.backend, timeout=5) as backend:
            backend.sendall(head)
            chunks = []
            # httpserver speaks HTTP/1.0 and closes after the answer.
            while sum(map(len, chunks)) < 16 * 1024 * 1024:
                chunk = backend.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)



def read_head(conn: socket.socket) -> bytes:
    """The request line and headers (up to 64 kB), or what came before the client hung up."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


# --------------------------------------------------------------------------- fixtures and helpers


CLIENT_OPTIONS: list[str] = []


@pytest.fixture(autouse=True)
def fast_clients(request):
    """No rate limit, and a short timeout where a test leaves requests unanswered (`kb build`
    --rate and --timeout)."""
    hangs = "timeouts" in request.node.name or "every_source" in request.node.name
    CLIENT_OPTIONS[:] = ["--rate", "1000", "--timeout", str(TIMEOUT if hangs else PATIENCE)]
    yield
    CLIENT_OPTIONS.clear()


@pytest.fixture
def faults(httpserver) -> Faults:
    queued = Faults()
    serve(httpserver, queued)
    return queued


@pytest.fixture
def front(httpserver, faults):
    relay = FaultyFront((httpserver.host, httpserver.port), faults)
    yield relay
    relay.close()


@pytest.fixture
def base_url(httpserver) -> str:
    return httpserver.url_for("").rstrip("/")


def kb_build(db: Path, base: str, *sources: str, retries: int = 3, backoff: str = "0", extra: tuple = ()):
    args = ["build", "--db", str(db), "--no-progress", "--batch-size", str(BATCH),
            "--retries", str(retries), "--backoff", backoff, "--base-url", f"{base}/eutils/",
            "--europepmc-url", f"{base}/epmc/", "--clinicaltrials-url", f"{base}/ct/", *CLIENT_OPTIONS, *extra]
    for source in sources:
        args += ["--source", source]
    return CliRunner().invoke(cli, args)


# The line announcing each retry (ingest.sources.http): progress, not part of the error.
RETRY_LINE = re.compile(r"^\S+: retrying (now|in [0-9.]+ s) \(\d+/\d+\): ")


def retry_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if RETRY_LINE.match(line)]


def one_line_error(result) -> str:
    """The one error line on stderr, besides the lines announcing retries."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not RETRY_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


@pytest.fixture
def existing_db(tmp_path) -> Path:
    """A kb.db from an earlier (offline) build, to be left untouched by a failed one."""
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "cases.xml").write_bytes((FIXTURES / "pubmed" / "efetch_cases.xml").read_bytes())
    db = tmp_path / "kb.db"
    result = CliRunner().invoke(cli, ["build", "--from-dir", str(folder), "--db", str(db), "--no-progress"])
    assert result.exit_code == 0, result.output
    return db


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".kb.db"))


def truncated(key: str) -> Answer:
    return Answer(200, REAL[key][: len(REAL[key]) // 2])


def error_bodies(key: str) -> list[Answer]:
    """HTTP-200 answers that are errors, as each service really sends them."""
    html = Answer(200, (FIXTURES / "eutils" / "service_unavailable.html").read_bytes(), {"Content-Type": "text/html"})
    if key == "esearch":
        return [html, Answer(200, (FIXTURES / "eutils" / "rate_limited.json").read_bytes())]
    if key.startswith("efetch"):
        return [html, Answer(200, (FIXTURES / "eutils" / "rate_limited.json").read_bytes()),
                Answer(200, fixture("efetch_error.xml"))]
    if key.startswith("search"):
        return [Answer(200, (FIXTURES / "europepmc" / "service_unavailable.html").read_bytes()),
                Answer(200, fixture("europepmc_error.json"))]
    return [Answer(200, fixture("clinicaltrials_unavailable.html"))]


def malformed(key: str) -> Answer:
    """A complete-looking answer that is broken inside: XML that is not well-formed, JSON of the wrong shape."""
    if key.startswith("efetch"):
        return Answer(200, REAL[key].replace(b"</ArticleTitle>", b"</ArticleTitel>", 1))
    if key == "esearch":
        return Answer(200, b'{"header": {"type": "esearch"}, "esearchresult": {"count": "many"}}')
    if key.startswith("search"):
        return Answer(200, b'{"hitCount": 7, "resultList": {"result": {"id": "40000201"}}}')
    return Answer(200, b'{"studies": {"protocolSection": {}}}')


def recoverable(kind: str, key: str) -> list:
    """A burst of faults that ``--retries 3`` gets past."""
    return {
        "429 storm": [Answer(429, b"Too Many Requests")] * 3,
        "429 storm with Retry-After": [Answer(429, b"slow down", {"Retry-After": "0"})] * 2
        + [Answer(429, b"slow down", {"Retry-After": "1"})],
        "500, 502, 503": [Answer(500, b"oops"), Answer(502, b"bad gateway"),
                          Answer(503, b"unavailable", {"Retry-After": "0"})],
        "connection resets": [RESET] * 3,
        "timeouts": [HANG] * 2,
        "connection cut mid-body": [CUT, SHORT],
        "truncated body with HTTP 200": [truncated(key)] * 2,
        "error body with HTTP 200": error_bodies(key),
        "malformed body with HTTP 200": [malformed(key)] * 2,
    }[kind]


RECOVERABLE = ["429 storm", "429 storm with Retry-After", "500, 502, 503", "connection resets", "timeouts",
               "connection cut mid-body", "truncated body with HTTP 200", "error body with HTTP 200",
               "malformed body with HTTP 200"]
SOCKET_LEVEL = {"connection resets", "timeouts", "connection cut mid-body", "answers shorter than announced"}


# --------------------------------------------------------------------------- a clean run


@pytest.mark.parametrize("source", SOURCES)
def test_clean_run_holds_exactly_the_expected_records(source, faults, base_url, tmp_path):
    db = tmp_path / "kb.db"
    result = kb_build(db, base_url, source)
    assert result.exit_code == 0, result.output
    assert_complete(db, source)
    # Each page was asked for exactly once.
    assert dict(faults.requests) == {key: 1 for key in REAL if key.split(":")[0] in PAGES[source]}


def test_clean_run_of_all_three_sources(faults, base_url, tmp_path):
    db = tmp_path / "kb.db"
    result = kb_build(db, base_url)
    assert result.exit_code == 0, result.output
    assert_complete(db, *SOURCES)


# --------------------------------------------------------------------------- faults a build gets past


@pytest.mark.parametrize("kind", RECOVERABLE)
@pytest.mark.parametrize("source", SOURCES)
def test_build_recovers_from_faults_mid_paging(source, kind, faults, front, httpserver, tmp_path):
    """Faults in front of a page in the middle of the paging: the retried page is neither lost nor doubled."""
    key = MIDDLE[source]
    faults.queue(key, *recoverable(kind, key))
    db = tmp_path / "kb.db"
    started = time.monotonic()
    base = front.url if kind in SOCKET_LEVEL else httpserver.url_for("").rstrip("/")
    result = kb_build(db, base, source)
    assert result.exit_code == 0, result.output
    assert_complete(db, source)
    assert faults.queued[key] == [], "every queued fault was met"
    injected = recoverable(kind, key)
    if kind in SOCKET_LEVEL:
        # A reset or unanswered connection never reaches httpserver; a cut one does.
        unanswered = sum(1 for fault in injected if fault in (RESET, HANG))
        assert front.connections == sum(faults.requests.values()) + unanswered
    else:
        assert faults.requests[key] == len(injected) + 1
    if kind == "429 storm with Retry-After":
        assert time.monotonic() - started >= 0.95, "Retry-After: 1 was not honoured"


@pytest.mark.parametrize("kind", ["429 storm", "connection resets", "truncated body with HTTP 200",
                                  "error body with HTTP 200", "malformed body with HTTP 200"])
@pytest.mark.parametrize("source", SOURCES)
def test_build_recovers_from_faults_on_the_first_request(source, kind, faults, front, httpserver, tmp_path):
    key = FIRST[source]
    faults.queue(key, *recoverable(kind, key))
    db = tmp_path / "kb.db"
    base = front.url if kind in SOCKET_LEVEL else httpserver.url_for("").rstrip("/")
    result = kb_build(db, base, source)
    assert result.exit_code == 0, result.output
    assert_complete(db, source)
    assert faults.queued[key] == []


def test_faults_in_every_source_of_one_build(faults, front, tmp_path):
    faults.queue("efetch:8", Answer(429, b"", {"Retry-After": "0"}), RESET, truncated("efetch:8"))
    faults.queue("search:CURSOR3", HANG, Answer(502), *error_bodies("search:CURSOR3"))
    faults.queue("studies:TOKEN3", CUT, Answer(503), truncated("studies:TOKEN3"))
    db = tmp_path / "kb.db"
    # Four faults in front of search:CURSOR3: four retries (each attempt counted once).
    result = kb_build(db, front.url, retries=4)
    assert result.exit_code == 0, result.output
    assert_complete(db, *SOURCES)


# --------------------------------------------------------------------------- faults that never end


def never_ending(kind: str, key: str):
    return {
        "429 storm": (Answer(429, b"Too Many Requests"), "HTTP 429 after 1 retries"),
        "429 storm with Retry-After": (Answer(429, b"", {"Retry-After": "0"}), "HTTP 429 after 1 retries"),
        "503": (Answer(503, b"Service Unavailable"), "HTTP 503 after 1 retries"),
        "connection resets": (RESET, "connection failed: Connection reset by peer (after 2 attempts)"),
        "timeouts": (HANG, f"no answer within {TIMEOUT:g} s (after 2 attempts)"),
        "answers shorter than announced": (SHORT, "truncated body"),
        "truncated body with HTTP 200": (truncated(key), "truncated" if key.startswith("efetch") else "invalid JSON"),
        "HTML error page with HTTP 200": (error_bodies(key)[0], "HTML page"),
        "malformed body with HTTP 200": (malformed(key), {"efetch": "malformed XML", "search": "not a list",
                                                          "studies": "no studies list"}[key.split(":")[0]]),
    }[kind]


NEVER_ENDING = ["429 storm", "429 storm with Retry-After", "503", "connection resets", "timeouts",
                "answers shorter than announced",
                "truncated body with HTTP 200", "HTML error page with HTTP 200", "malformed body with HTTP 200"]


@pytest.mark.parametrize("kind", NEVER_ENDING)
@pytest.mark.parametrize("source", SOURCES)
def test_a_fault_that_never_ends_fails_cleanly(source, kind, faults, front, httpserver, existing_db):
    key = MIDDLE[source]
    fault, message = never_ending(kind, key)
    faults.forever[key] = fault
    before = digest(existing_db)
    base = front.url if kind in SOCKET_LEVEL else httpserver.url_for("").rstrip("/")
    result = kb_build(existing_db, base, source, retries=1)
    assert result.exit_code == 1, result.output
    line = one_line_error(result)
    assert message in line, line
    assert page_key_path(key) in line, line
    assert digest(existing_db) == before
    assert leftovers(existing_db.parent) == []
    # One retry layer: --retries 1 is two attempts, each announced retry one line.
    assert len(retry_lines(result)) == 1, result.stderr
    if kind not in SOCKET_LEVEL:
        assert faults.requests[key] == 2
    # Once the service is back, a new run completes with exactly the expected records
    # (pages fetched before the failure may be replayed from the checkpoint: none is lost or doubled).
    faults.forever.clear()
    result = kb_build(existing_db, base, source, retries=1)
    assert result.exit_code == 0, result.output
    assert_complete(existing_db, source)


def page_key_path(key: str) -> str:
    return {"esearch": "esearch.fcgi", "efetch": "efetch.fcgi", "search": "/epmc/search",
            "studies": "/ct/studies"}[key.split(":")[0]]


def test_a_failing_last_source_discards_the_others(faults, httpserver, base_url, existing_db):
    """PubMed and Europe PMC complete, ClinicalTrials.gov never does: nothing is written."""
    faults.forever["studies:TOKEN3"] = Answer(503, b"down")
    before = digest(existing_db)
    result = kb_build(existing_db, base_url, retries=1)
    assert result.exit_code == 1
    assert "HTTP 503" in one_line_error(result)
    assert faults.requests["efetch:8"] == 1 and faults.requests["search:CURSOR3"] == 1
    assert digest(existing_db) == before
    assert leftovers(existing_db.parent) == []


# --------------------------------------------------------------------------- error messages


def test_errors_never_show_the_query_string_or_the_api_key(faults, front, existing_db):
    faults.forever["esearch"] = RESET
    result = kb_build(existing_db, front.url, "pubmed", retries=0, extra=("--api-key", "SECRET-KEY-123"))
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "connection failed: Connection reset by peer" in line, line
    assert "SECRET-KEY-123" not in result.output and "?" not in line, line


@pytest.mark.parametrize("source", SOURCES)
def test_a_client_error_is_one_line_and_not_retried(source, faults, base_url, existing_db):
    key = MIDDLE[source]
    faults.forever[key] = Answer(400, b"<html>\n<body>\n<h1>Bad Request</h1>\n<p>The page token is invalid.</p>\n"
                                      b"</body>\n</html>\n", {"Content-Type": "text/html"})
    before = digest(existing_db)
    result = kb_build(existing_db, base_url, source)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "HTTP 400: <html> <body> <h1>Bad Request</h1>" in line, line
    assert faults.requests[key] == 1
    assert digest(existing_db) == before


# --------------------------------------------------------------------------- answers that would stall or loop


def test_an_absurd_retry_after_is_capped(faults, base_url, tmp_path, monkeypatch):
    """Retry-After: a day (or a date decades away) must not stall the build: the wait is capped."""
    monkeypatch.setattr(http, "MAX_RETRY_AFTER", 0.3)
    faults.queue("efetch:4", Answer(429, b"", {"Retry-After": "86400"}),
                 Answer(503, b"", {"Retry-After": "Wed, 21 Oct 2065 07:28:00 GMT"}))
    db = tmp_path / "kb.db"
    started = time.monotonic()
    result = kb_build(db, base_url, "pubmed")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert_complete(db, "pubmed")
    assert 0.55 <= elapsed < 10, elapsed


WRONG_ESEARCH = [b"[]", b"null", b'"ok"', b'{"esearchresult": []}', b'{"esearchresult": {"count": "\xc2\xb2"}}',
                 b'{"esearchresult": {"webenv": "W"}}', b'{"header": {"type": "esearch"}}', b"[" * 5000]


def test_wrong_shaped_esearch_answers_are_asked_again(faults, base_url, tmp_path):
    faults.queue("esearch", *(Answer(200, body) for body in WRONG_ESEARCH))
    db = tmp_path / "kb.db"
    result = kb_build(db, base_url, "pubmed", retries=len(WRONG_ESEARCH))
    assert result.exit_code == 0, result.output
    assert_complete(db, "pubmed")
    assert faults.requests["esearch"] == len(WRONG_ESEARCH) + 1


@pytest.mark.parametrize("source, key, looping", [
    ("europepmc", "search:CURSOR3", lambda page: {**page, "nextCursorMark": "CURSOR2"}),
    ("clinicaltrials", "studies:TOKEN3", lambda page: {**page, "nextPageToken": "TOKEN2"}),
])
def test_paging_that_leads_back_to_an_earlier_page_fails_cleanly(source, key, looping, faults, base_url,
                                                                 existing_db):
    faults.forever[key] = Answer(200, json.dumps(looping(json.loads(REAL[key]))).encode())
    before = digest(existing_db)
    result = kb_build(existing_db, base_url, source)
    assert result.exit_code == 1
    assert "paging loops" in one_line_error(result)
    assert max(faults.requests.values()) == 1, dict(faults.requests)
    assert digest(existing_db) == before


# --------------------------------------------------------------------------- bad records inside good pages


BAD_RECORDS = {
    "pubmed": (b"</PubmedArticleSet>", b"<PubmedArticle><MedlineCitation><PMID>0</PMID><Article><ArticleTitle>Zero"
                                       b"</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>"),
    "europepmc": (b'"result": [', b'"result": [{"title": "No source, no id", "pubYear": "2024"}, '),
    "clinicaltrials": (b'"studies": [', b'"studies": [{"protocolSection": {"identificationModule": '
                                        b'{"nctId": "NCT123", "briefTitle": "Short NCT id"}}}, '),
}


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_record_is_reported_and_the_rest_of_its_page_kept(source, faults, base_url, tmp_path):
    key = MIDDLE[source]
    old, new = BAD_RECORDS[source]
    faults.forever[key] = Answer(200, REAL[key].replace(old, new, 1))
    db = tmp_path / "kb.db"
    result = kb_build(db, base_url, source)
    assert result.exit_code == 3, result.output  # built, but a record was rejected
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1 and f"{source} page 2" in warnings[0], result.stderr
    assert_complete(db, source, problems=1)


# --------------------------------------------------------------------------- an updated trial


def test_a_newer_copy_of_a_trial_replaces_the_older(faults, base_url, tmp_path):
    faults.forever["studies:TOKEN3"] = Answer(200, fixture("clinicaltrials_updated.json"))
    db = tmp_path / "kb.db"
    result = kb_build(db, base_url, "clinicaltrials")
    assert result.exit_code == 0, result.output
    assert trials_in(db)["NCT40000301"] == ("Esketamine for Late-life Depression", "COMPLETED", 87, 1)


# --------------------------------------------------------------------------- bad command-line arguments


@pytest.fixture
def places(tmp_path) -> dict:
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "a-file").write_text("not a directory\n")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "cases.xml").write_bytes((FIXTURES / "pubmed" / "efetch_cases.xml").read_bytes())
    return {"dir": str(folder), "file": str(tmp_path / "a-file"), "in": str(inputs),
            "xml": str(inputs / "cases.xml")}


@pytest.mark.parametrize("args, code, message", [
    (["build", "--source", "scopus"], 2, "Invalid value for '--source': 'scopus' is not one of"),
    (["build", "--source", "pubmed", "--batch-size", "0"], 2, "Invalid value for '--batch-size': 0 is not in"),
    (["build", "--retries", "-1"], 2, "Invalid value for '--retries'"),
    (["build", "--backoff", "soon"], 2, "Invalid value for '--backoff'"),
    (["import"], 2, "Missing argument 'FILE'"),
    (["import", "{dir}"], 2, "Invalid value for 'FILE': File '{dir}' is a directory"),
    (["build", "--from-dir", "{in}", "--db", "{dir}"], 2, "Invalid value for '--db': File '{dir}' is a directory"),
    (["import", "{xml}", "--db", "{dir}"], 2, "Invalid value for '--db': File '{dir}' is a directory"),
    (["build", "--from-dir", "{file}"], 1, "--from-dir {file}: not a directory"),
    (["import", "{xml}", "--db", "{file}/kb.db"], 1, "{file}/kb.db: no such database"),
])
def test_bad_arguments_are_one_line_errors(args, code, message, places, existing_db):
    before = digest(existing_db)
    args = [a.format(**places) for a in args]
    if "--db" not in args:
        args += ["--db", str(existing_db)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message.format(**places) in one_line_error(result)
    assert digest(existing_db) == before


@pytest.mark.parametrize("where", ["under-a-file", "read-only-directory"])
def test_a_database_path_that_cannot_be_written_is_a_one_line_error(where, places, tmp_path):
    if where == "under-a-file":
        db = Path(places["file"]) / "kb.db"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: directory permissions are not enforced")
        db = locked / "kb.db"
    result = CliRunner().invoke(cli, ["build", "--from-dir", places["in"], "--db", str(db), "--no-progress"])
    assert result.exit_code == 1
    assert str(db.parent) in one_line_error(result)
