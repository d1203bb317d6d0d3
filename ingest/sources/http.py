"""HTTP plumbing shared by every source: retrying sessions, rate limiting, body checks."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..records.text import clean_ws

USER_AGENT = "ketamine-kb/0.1 (+https://github.com/; research literature knowledge base)"
RETRY_STATUSES = (429, 500, 502, 503, 504)
# Failures worth another try: no connection, no answer in time, or a body cut short (the
# connection dropped mid-body, which requests reports as ChunkedEncodingError even without
# chunked encoding) or garbled in transfer (ContentDecodingError).
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# A server's Retry-After is obeyed up to this many seconds, so no answer can stall a build for hours.
MAX_RETRY_AFTER = 60.0
# The query string of a URL in an error message: it can carry an API key.
_QUERY = re.compile(r"\?[^\s'\")]*")


class TransientBodyError(RuntimeError):
    """A 200 response whose body is an error or incomplete; worth trying again."""

    # False when the same request can never succeed and the caller must change it.
    retry_same_request = True


class FetchError(RuntimeError):
    """A request that still failed after every retry."""


class _Retry(Retry):
    """urllib3's Retry with the Retry-After wait capped at MAX_RETRY_AFTER seconds."""

    def get_retry_after(self, response) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, MAX_RETRY_AFTER)


def make_session(retries: int = 5, backoff: float = 1.0) -> requests.Session:
    """A Session that retries connection errors, 429 and 5xx with exponential back-off.

    ``Retry-After`` is honoured on 429 and 503 (urllib3 sleeps for it, at most
    MAX_RETRY_AFTER seconds, before retrying).
    """
    retry = _Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        backoff_max=60,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


class RateLimiter:
    """At most ``rate`` calls per second, across threads."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                time.sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


def get_checked(
    session: requests.Session,
    url: str,
    params: dict | None = None,
    check: Callable[[bytes], None] | None = None,
    limiter: RateLimiter | None = None,
    attempts: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    use_cache: bool = True,
) -> bytes:
    """GET ``url`` and return the body once ``check`` accepts it.

    Status-level retries happen inside the session (urllib3.Retry). This loop adds the
    retries urllib3 cannot see: 200 answers whose body is an error, a truncated body, or
    a connection dropped mid-body.
    """
    cache = getattr(session, "kb_cache", None) if use_cache else None
    if cache is not None:
        cached = cache.get(url, params)
        if cached is not None:
            return cached
    last_error: Exception | None = None
    for attempt in range(attempts + 1):
        if attempt:
            time.sleep(min(backoff * (2 ** (attempt - 1)), 60))
        if limiter:
            limiter.wait()
        try:
            response = session.get(url, params=params, timeout=timeout)
        except requests.exceptions.RetryError as exc:
            raise FetchError(f"{url}: gave up after retries ({_QUERY.sub('', str(exc))})") from exc
        except TRANSIENT_ERRORS as exc:
            last_error = exc
            continue
        if response.status_code in RETRY_STATUSES:
            raise FetchError(f"{url}: HTTP {response.status_code} after {attempts} retries")
        if response.status_code >= 400:
            raise FetchError(f"{url}: HTTP {response.status_code}: {clean_ws(response.text[:200])}")
        body = response.content
        try:
            if check:
                check(body)
            if cache is not None:
                cache.put(url, params, body)
            return body
        except TransientBodyError as exc:
            if not exc.retry_same_request:
                raise
            last_error = exc
    raise FetchError(f"{url}: {_reason(last_error, timeout)} (after {attempts + 1} attempts)")


def _reason(error: Exception | None, timeout: float) -> str:
    """What went wrong, in a few words on one line, without the request's query string.

    requests wraps a connection failure several layers deep ("HTTPConnectionPool(...): Max
    retries exceeded with url: /path?query (Caused by ...)"); the cause is the OS error
    ("Connection reset by peer"), a timeout, or urllib3's "Connection broken: ..." message.
    """
    if error is None or isinstance(error, TransientBodyError):
        return clean_ws(str(error))
    timed_out, broken, seen, todo = False, None, set(), [error]
    while todo:
        exc = todo.pop(0)
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException) and exc.strerror:
            return f"connection failed: {exc.strerror}"
        if isinstance(exc, (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            timed_out = True
        if isinstance(exc, urllib3.exceptions.ProtocolError) and exc.args and isinstance(exc.args[0], str):
            broken = broken or exc.args[0]
        todo += [a for a in exc.args if isinstance(a, BaseException)]
        todo += [getattr(exc, "reason", None), exc.__cause__, exc.__context__]
    if timed_out:
        return f"no answer within {timeout:g} s"
    return clean_ws(_QUERY.sub("", broken or str(error)))


class ApiClient:
    """Shared plumbing of every source's client: a retrying session, a rate limit, checked GETs."""

    default_rate = 1.0  # requests per second, the API's published limit

    def __init__(
        self,
        base_url: str,
        session: requests.Session | None = None,
        retries: int = 5,
        backoff: float = 1.0,
        rate: float | None = None,
        timeout: float = 60.0,
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self.session = session or make_session(retries=retries, backoff=backoff)
        self.retries = retries
        self.backoff = backoff
        self.limiter = RateLimiter(rate or self.default_rate)
        self.timeout = timeout

    def get(self, endpoint: str, params: dict, check: Callable[[bytes], None], use_cache: bool = True) -> bytes:
        return get_checked(
            self.session, self.base_url + endpoint, params=params, check=check, limiter=self.limiter,
            attempts=self.retries, backoff=self.backoff, timeout=self.timeout, use_cache=use_cache,
        )


def decode_json_body(content: bytes, source: str) -> object:
    """A JSON answer decoded, or TransientBodyError for an HTML page ("service unavailable") or broken JSON."""
    if content[:1024].lstrip().lower().startswith(b"<"):
        raise TransientBodyError(f"{source} returned an HTML page instead of JSON (service unavailable?)")
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise TransientBodyError(f"{source} returned truncated or invalid JSON: {str(exc)[:200]}") from exc


class JsonApiClient(ApiClient):
    """A JSON source. Subclasses set ``endpoint``, ``default_rate`` and ``check_body`` (decode a
    page, raising TransientBodyError when it is an error page, truncated or malformed)."""

    endpoint = ""

    @staticmethod
    def check_body(content: bytes) -> dict:
        raise NotImplementedError

    def get_page(self, params: dict) -> tuple[bytes, dict]:
        """One page, raw and decoded (decoded once: the check keeps what it parsed)."""
        decoded: dict = {}

        def check(body: bytes) -> None:
            decoded["page"] = self.check_body(body)

        body = self.get(self.endpoint, params, check)
        # A page replayed from a resume checkpoint was checked when it was fetched, not now.
        return body, decoded["page"] if "page" in decoded else self.check_body(body)
