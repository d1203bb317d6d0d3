"""Limits in front of every page `kb serve` answers, checked before any SQL runs.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``; one ASGI wrapper, outermost:

* **Parameters**: a query-string value is at most ``MAX_VALUE_CHARS`` characters (``sql`` at
  most ``MAX_SQL_CHARS``), a request at most ``MAX_PARAMETERS`` of them, and no NUL anywhere in
  the URL: each answered 400 with a one-line reason. (A 36 kB ``q`` kept FTS5 busy for seconds
  inside one SQLite step, where the SQL time limit cannot reach.)
* **Hand-written SQL** (``sql=`` that is not one of the dashboards' chart queries, or
  ``_where=``) runs in at most ``num_sql_threads - RESERVED_THREADS`` of Datasette's SQL threads
  at once; the rest wait their turn, and after ``QUEUE_SECONDS`` get 503. The reserved threads
  keep table, study, search and claim-check pages answering while runaway queries are stopped.
  While every slot is taken, a hand-written query first runs in a quick lane (one at a time) with
  a ``QUICK_LANE_MS`` time limit: a cheap one (``select 1``, a count) is answered at once, and
  only one that needs longer waits for a slot, where it runs again with the full limit.
* **Responses** stop at ``MAX_RESPONSE_BYTES``: one that would be longer is answered 400 (or,
  once streaming, cut with a last line saying so). A database download and a streamed CSV
  (``_stream=1``, capped by Datasette's own ``max_csv_mb``) are bounded by kb.db itself.
* **Security headers** on every answer: a Content-Security-Policy that allows only this site's
  own scripts, styles, images and fetches (inline ones too: Datasette's pages have them; the
  dashboards' vega compiles chart expressions with ``new Function``, so ``/-/dashboards`` also
  allows eval), no framing, no MIME sniffing, no referrer to other sites.

Datasette's 500 for a ``_sort`` by a column it cannot sort by becomes a 400 (``handle_exception``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import weakref
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode

from datasette import hookimpl
from datasette.handle_exception import handle_exception as datasette_error_page
from datasette.utils.asgi import Base400, Request
from datasette.views.base import DatasetteError
from markupsafe import escape

MAX_SQL_CHARS = 10_000  # the longest canned query is 4,250 characters: editing it stays possible
MAX_VALUE_CHARS = 2_000  # a claim is at most 2,000 characters too (ingest.claims.MAX_CLAIM_CHARS)
MAX_PARAMETERS = 100
MAX_PATH_CHARS = 2_000
MAX_RESPONSE_BYTES = 50_000_000
RESERVED_THREADS = 2
QUEUE_SECONDS = 10.0
# While every slot is taken, a hand-written query first runs in a quick lane of its own with this
# time limit: `select 1` or a count answers at once instead of queueing behind runaway queries,
# and only a query that needs longer waits for a slot (where it runs with the full limit).
QUICK_LANE_MS = 50
QUICK_LANE_WAIT = 2.0
TIME_LIMIT_MARK = b"took too long"  # Datasette's answer when a query hits its time limit
RETRY_AFTER_SECONDS = 5
SQL_PARAMETERS = {"sql"}
HAND_WRITTEN_SQL = {"sql", "_where"}
MAX_CHART_FILTERS = 8  # a chart's optional filters: 2**8 forms of its SQL at most
# Datasette raises these as 500s; each is a request it cannot answer, not a fault of the server.
CLIENT_ERRORS = ("Cannot sort table by ", "Cannot use _sort and _sort_desc at the same time")

_CSP_BASE = ("default-src 'self'; script-src 'self' 'unsafe-inline'{eval}; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
             "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
CSP = _CSP_BASE.format(eval="")
CSP_DASHBOARDS = _CSP_BASE.format(eval=" 'unsafe-eval'")
DASHBOARDS_PATH = "/-/dashboards"


class RequestRefused(Exception):
    """A request answered with ``status`` and a one-line ``message`` before it reaches Datasette."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


class ResponseTooBig(Base400):
    """Raised into Datasette when it sends more than MAX_RESPONSE_BYTES, so it stops producing more.

    A Base400: Datasette's error handler prints no traceback for it (the client has its answer).
    """


# --------------------------------------------------------------------------- request checks


def query_parameters(scope: dict) -> list[tuple[str, str]]:
    """The request's query-string pairs, refused (RequestRefused) when any breaks a limit."""
    raw = scope.get("query_string", b"")
    if b"\x00" in raw or b"%00" in raw.lower() or "\x00" in scope.get("path", ""):
        raise RequestRefused(400, "NUL characters are not allowed in a URL")
    if len(scope.get("path", "")) > MAX_PATH_CHARS:
        raise RequestRefused(400, f"the URL path is longer than {MAX_PATH_CHARS:,} characters")
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace",
                          max_num_fields=MAX_PARAMETERS)
    except ValueError:
        raise RequestRefused(400, f"more than {MAX_PARAMETERS} query parameters") from None
    for name, value in pairs:
        limit = MAX_SQL_CHARS if name in SQL_PARAMETERS else MAX_VALUE_CHARS
        if len(name) > MAX_VALUE_CHARS or len(value) > limit:
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise RequestRefused(400, f"parameter {shown!r} is {max(len(name), len(value)):,} characters long; "
                                      f"at most {limit:,} are accepted")
    return pairs


def chart_queries(datasette) -> frozenset[str]:
    """The SQL of every dashboard chart: fetched by the dashboard page itself, so not hand-written."""
    dashboards = datasette.plugin_config("datasette-dashboards") or {}
    return frozenset(sql for dashboard in dashboards.values() if isinstance(dashboard, dict)
                     for chart in (dashboard.get("charts") or {}).values()
                     if isinstance(chart, dict) and chart.get("query") for sql in chart_variants(chart["query"]))


def chart_variants(query: str) -> set[str]:
    """``query`` as the dashboard page fetches it: each ``[[ ... :filter ... ]]`` part kept or left out.

    datasette-dashboards resolves those parts before the page's script sends the SQL, so the
    query as written in metadata.yml is never what arrives.
    """
    try:
        from datasette_dashboards import replace_opts_in_query
    except ImportError:  # no dashboards: nothing sends them
        return {query}
    filters = sorted({name for part in re.findall(r"\[\[.*?\]\]", query)
                      for name in re.findall(r":([a-zA-Z0-9_]+)", part)})[:MAX_CHART_FILTERS]
    return {query} | {replace_opts_in_query(query, dict.fromkeys(kept, "x"))
                       for count in range(len(filters) + 1) for kept in itertools.combinations(filters, count)}


def hand_written_sql(pairs: list[tuple[str, str]], trusted: frozenset[str]) -> bool:
    return any(name in HAND_WRITTEN_SQL and not (name == "sql" and value in trusted) for name, value in pairs)


def exempt_from_size_cap(scope: dict, pairs: list[tuple[str, str]], routes: set[str]) -> bool:
    """A database download or a streamed CSV: bounded by kb.db itself (and Datasette's max_csv_mb)."""
    path = scope.get("path", "")
    if path.endswith(".db") and path[1:-3] in routes:
        return True
    is_csv = path.endswith(".csv") or ("_format", "csv") in pairs
    return is_csv and any(name == "_stream" and value not in ("", "0") for name, value in pairs)


# --------------------------------------------------------------------------- SQL threads for hand-written SQL


class SqlSlots:
    """At most ``slots`` hand-written queries at once; the others wait (503 after ``wait`` seconds)."""

    def __init__(self, slots: int, wait: float):
        self.slots, self.wait = slots, wait
        # One semaphore per event loop: an asyncio semaphore belongs to the loop it first waits on.
        self._by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._by_loop:
            self._by_loop[loop] = asyncio.Semaphore(self.slots)
        return self._by_loop[loop]

    def busy(self) -> bool:
        """Every slot is taken: a new query would wait."""
        return self._semaphore().locked()

    @asynccontextmanager
    async def slot(self):
        semaphore = self._semaphore()
        try:
            await asyncio.wait_for(semaphore.acquire(), self.wait)
        except TimeoutError:
            raise RequestRefused(503, f"busy: {self.slots} hand-written SQL queries are running; try again "
                                      "in a few seconds", [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
                                 ) from None
        try:
            yield
        finally:
            semaphore.release()


def with_time_limit(scope: dict, ms: int) -> dict:
    """The request with Datasette's own ``_timelimit`` set to ``ms`` (any the client sent replaced)."""
    # Latin-1 both ways: every byte of the client's query string comes back as it was sent.
    pairs = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True,
                                          encoding="latin-1") if k != "_timelimit"]
    query = urlencode([*pairs, ("_timelimit", str(ms))], encoding="latin-1")
    return {**scope, "query_string": query.encode("ascii")}


async def answered_quickly(app, scope, receive, send) -> bool:
    """Run the request with a QUICK_LANE_MS time limit; True when that answered it (the answer is
    sent), False when the query needs longer (nothing is sent: run it again in a full slot)."""
    held: list[dict] = []
    passing = False

    async def hold_a_refusal(event):
        nonlocal passing
        if not passing and event["type"] == "http.response.start" and event["status"] != 400:
            passing = True  # any answer but a 400 is the answer: pass it on as it comes
        if passing:
            await send(event)
        else:
            held.append(event)

    await app(with_time_limit(scope, QUICK_LANE_MS), receive, hold_a_refusal)
    if passing:
        return True
    body = b"".join(event.get("body", b"") for event in held if event["type"] == "http.response.body")
    if TIME_LIMIT_MARK in body:
        return False
    for event in held:  # another 400 (bad SQL, too big): the answer stands
        await send(event)
    return True


def sql_slots(datasette, cpus: int | None = None) -> SqlSlots:
    """Hand-written queries at once: one CPU and two SQL threads are always left for the pages.

    A runaway query keeps a CPU busy until the time limit stops it; with every CPU busy, a page's
    own queries wait for the scheduler at each hop between the event loop and its SQL thread.
    """
    threads = datasette.setting("num_sql_threads") or 0
    cpus = cpus or os.cpu_count() or 1
    return SqlSlots(max(1, min(cpus - 1, threads - RESERVED_THREADS)), QUEUE_SECONDS)


# --------------------------------------------------------------------------- responses


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    csp = CSP_DASHBOARDS if path.startswith(DASHBOARDS_PATH) else CSP
    return [(b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def with_headers(send, extra: list[tuple[bytes, bytes]]):
    names = {name for name, _ in extra}

    async def send_with_headers(event):
        if event["type"] == "http.response.start":
            kept = [(k, v) for k, v in event.get("headers", []) if k.lower() not in names]
            event = {**event, "headers": kept + extra}
        await send(event)

    return send_with_headers


class CappedSend:
    """Passes a response on until it grows past ``limit`` bytes; then answers 400, or ends it early."""

    def __init__(self, send, limit: int, refuse):
        self.send, self.limit, self.refuse = send, limit, refuse
        self.start: dict | None = None
        self.sent = 0
        self.finished = False

    async def __call__(self, event):
        if self.finished:  # Datasette's answer to the exception raised below: already answered
            return
        if event["type"] == "http.response.start":
            self.start = event  # held until the first body part shows how big the answer is
            return
        if event["type"] != "http.response.body":
            await self.send(event)
            return
        self.sent += len(event.get("body", b""))
        if self.sent > self.limit:
            await self._stop()
        if self.start is not None:
            await self.send(self.start)
            self.start = None
        await self.send(event)

    async def _stop(self):
        self.finished = True
        message = (f"response too big: more than {self.limit:,} bytes (ask for fewer rows or columns, "
                   "or download the database)")
        if self.start is not None:  # nothing sent yet: the client gets the reason instead
            await self.refuse(RequestRefused(400, message))
        else:
            await self.send({"type": "http.response.body", "body": f"\n{message}\n".encode(), "more_body": False})
        raise ResponseTooBig(message)


async def error_response(datasette, scope, receive, send, refused: RequestRefused) -> None:
    """The refusal as JSON for .json requests, else as Datasette's error page (plain text if that fails)."""
    path = scope.get("path", "")
    wants_json = path.endswith(".json") or b"_format=json" in scope.get("query_string", b"")
    info = {"ok": False, "error": refused.message, "status": refused.status, "title": "Request refused"}
    if wants_json:
        body, content_type = json.dumps(info).encode(), b"application/json; charset=utf-8"
    else:
        try:
            # Refused before asgi-csrf ran: the page has no form, so no token is needed.
            request = Request({**scope, "csrftoken": lambda: ""}, receive)
            html = await datasette.render_template("error.html", info, request=request)
        except Exception:  # the page is a courtesy: the reason is what matters
            html = f"<!DOCTYPE html><title>Error {refused.status}</title><p>{escape(refused.message)}</p>"
        body, content_type = html.encode(), b"text/html; charset=utf-8"
    headers = [(b"content-type", content_type), *refused.headers]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _quick_lane(quick: SqlSlots, app, scope, receive, send) -> bool:
    try:
        async with quick.slot():
            return await answered_quickly(app, scope, receive, send)
    except RequestRefused:  # the quick lane is busy too: wait for a full slot
        return False


def guarded(app, datasette):
    slots = sql_slots(datasette)
    quick = SqlSlots(1, QUICK_LANE_WAIT)
    trusted: list[frozenset[str]] = []  # read on the first request: metadata is loaded by then

    async def guard(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        send = respond = with_headers(send, security_headers(scope.get("path", "")))

        async def refuse(refused: RequestRefused) -> None:
            # `respond`, not `send`: once `send` is the CappedSend, a refusal sent through it was dropped.
            await error_response(datasette, scope, receive, respond, refused)

        try:
            pairs = query_parameters(scope)
            if not trusted:
                trusted.append(chart_queries(datasette))
            routes = {db.route for db in datasette.databases.values()}
            if not exempt_from_size_cap(scope, pairs, routes):
                send = CappedSend(send, MAX_RESPONSE_BYTES, refuse)
            if hand_written_sql(pairs, trusted[0]):
                if slots.busy() and scope.get("method", "GET") in ("GET", "HEAD") \
                        and await _quick_lane(quick, app, scope, receive, send):
                    return
                async with slots.slot():
                    await app(scope, receive, send)
            else:
                await app(scope, receive, send)
        except RequestRefused as refused:
            await refuse(refused)
        except ResponseTooBig:
            pass  # already answered

    return guard


@hookimpl(trylast=True)
def asgi_wrapper(datasette):
    # trylast: applied after the other wrappers, so outermost: nothing runs before these checks.
    return lambda app: guarded(app, datasette)


@hookimpl
def handle_exception(datasette, request, exception):
    if isinstance(exception, DatasetteError) and exception.status == 500 and \
            str(exception.message).startswith(CLIENT_ERRORS):
        error = DatasetteError(exception.message, title="Invalid request", status=400)
        return datasette_error_page(datasette, request, error)
    return None
