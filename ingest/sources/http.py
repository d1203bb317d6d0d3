"""HTTP plumbing shared by every source: one retry layer, rate limiting, a deadline, body checks.

Every attempt of a request, first or retried, waits for the source's :class:`RateLimiter`, must
deliver its whole answer within the per-request deadline and within :data:`MAX_BODY_BYTES`, and
every retry is announced on stderr with its reason. The session itself never retries:
urllib3's :class:`~urllib3.util.retry.Retry` is kept as the policy object (counting, back-off,
``Retry-After``) and consulted by :func:`get_checked`, so attempts are never multiplied.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, ReadTimeoutError
from urllib3.util.retry import Retry

from ..records.text import clean_ws

USER_AGENT = "ketamine-kb/0.1 (+https://github.com/; research literature knowledge base)"
RETRY_STATUSES = (429, 500, 502, 503, 504)
# Failures worth another try: no connection, no answer in time, or a body cut short (the
# connection dropped mid-body) or garbled in transfer. requests wraps some of these, urllib3
# raises the rest while the body is read.
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.DecodeError,
)
# A server's Retry-After is obeyed up to this many seconds, so no answer can stall a build for hours.
MAX_RETRY_AFTER = 60.0
# No host to talk to (name resolution failed, connection refused, no connection in time) is
# rarely cured by waiting: a short budget, so that a build without network fails within seconds.
CONNECT_RETRIES = 2
CONNECT_RETRY_WAIT = 1.0
# The largest answer accepted; real pages are a few MB (500 PubMed records are about 5 MB).
MAX_BODY_BYTES = 200 * 1024 * 1024
# Of an error answer (4xx/5xx) only the start is read: enough for its message.
ERROR_BODY_BYTES = 4096
READ_CHUNK = 64 * 1024
# The query string of a URL in an error message: it can carry an API key.
_QUERY = re.compile(r"\?[^\s'\")]*")


class TransientBodyError(RuntimeError):
    """A 200 response whose body is an error or incomplete; worth trying again."""

    # False when the same request can never succeed and the caller must change it.
    retry_same_request = True


class FetchError(RuntimeError):
    """A request that still failed after every retry, or whose answer is unacceptable."""


class DeadlineExceeded(ReadTimeoutError):
    """The whole answer did not arrive within the per-request deadline (a read error for Retry)."""

    def __init__(self, url: str, seconds: float):
        super().__init__(None, url, f"answer not complete within {seconds:g} s")


class RetryableStatus(Exception):
    """A 429 or 5xx answer that the retry policy will try again."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class RetryPolicy(Retry):
    """urllib3's Retry, used by :func:`get_checked` rather than inside the session.

    The ``Retry-After`` wait is capped at MAX_RETRY_AFTER seconds.
    """

    def get_retry_after(self, response) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, MAX_RETRY_AFTER)

    def seconds_before_retry(self, response=None) -> float:
        """What :meth:`Retry.sleep` would sleep: ``Retry-After`` when given, else the back-off."""
        if self.respect_retry_after_header and response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after:
                return retry_after
        return self.get_backoff_time()


def make_retry(retries: int = 5, backoff: float = 1.0) -> RetryPolicy:
    """The retry policy of one request: ``retries`` retries of 429/5xx, dropped connections,
    timeouts and bad bodies; at most CONNECT_RETRIES when no connection could be made."""
    return RetryPolicy(
        total=retries,
        connect=min(retries, CONNECT_RETRIES),
        read=retries,
        status=retries,
        other=retries,
        backoff_factor=backoff,
        backoff_max=60,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def make_session() -> requests.Session:
    """A Session that never retries on its own (every retry is :func:`get_checked`'s, rate limited)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0)
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


def say_on_stderr(message: str) -> None:
    """One line on stderr, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


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
    cache_key: dict | None = None,
    max_bytes: int | None = None,
    on_retry: Callable[[str], None] = say_on_stderr,
) -> bytes:
    """GET ``url`` and return the body once ``check`` accepts it.

    ``attempts`` is the number of retries: 429/5xx answers, connection failures, timeouts, bodies
    cut short and bodies ``check`` rejects with :class:`TransientBodyError` are tried again, each
    attempt through ``limiter``, each retry announced through ``on_retry``. ``timeout`` is the
    deadline of one attempt, connection and whole body. ``cache_key`` (default: ``params``) names
    the page in the session's resume cache (``session.kb_cache``).
    """
    cache = getattr(session, "kb_cache", None) if use_cache else None
    key = params if cache_key is None else cache_key
    if cache is not None:
        cached = cache.get(url, key)
        if cached is not None:
            return cached
    policy = make_retry(attempts, backoff)
    while True:
        if limiter:
            limiter.wait()
        try:
            body = fetch_once(session, url, params, timeout, max_bytes or MAX_BODY_BYTES)
            if check:
                check(body)
        except TransientBodyError as exc:
            if not exc.retry_same_request:
                raise
            policy = _retry_or_give_up(policy, url, exc, timeout, on_retry)
        except (RetryableStatus, *TRANSIENT_ERRORS) as exc:
            policy = _retry_or_give_up(policy, url, exc, timeout, on_retry)
        except requests.RequestException as exc:
            # A request that can never be sent (no scheme, an invalid URL, a redirect loop).
            raise FetchError(f"{_clean(url)}: {describe_failure(exc, timeout)}") from exc
        else:
            if cache is not None:
                cache.put(url, key, body)
            return body


def fetch_once(session: requests.Session, url: str, params: dict | None, timeout: float, max_bytes: int) -> bytes:
    """One attempt: the whole body within ``timeout`` seconds and ``max_bytes`` bytes.

    Raises :class:`RetryableStatus` for 429/5xx, FetchError for any other error status or a body
    over the limit, and urllib3/requests errors (or :class:`DeadlineExceeded`) when the answer
    does not arrive whole.
    """
    deadline = time.monotonic() + timeout
    response = session.get(url, params=params, timeout=timeout, stream=True)
    try:
        if response.status_code >= 400:
            if response.status_code in RETRY_STATUSES:
                raise RetryableStatus(response)
            head = b"".join(_body_chunks(response, url, deadline, timeout, ERROR_BODY_BYTES, truncate=True))
            text = head.decode(response.encoding or "utf-8", "replace")
            raise FetchError(f"{_clean(url)}: HTTP {response.status_code}: {clean_ws(text[:200])}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"{_clean(url)}: answer of {int(declared):,} bytes is over the "
                             f"{max_bytes:,}-byte limit")
        body = b"".join(_body_chunks(response, url, deadline, timeout, max_bytes))
        # Read to the end: the connection can serve the next request (close() would drop it).
        response.raw.release_conn()
        return body
    finally:
        response.close()


def _body_chunks(response: requests.Response, url: str, deadline: float, timeout: float, max_bytes: int,
                 truncate: bool = False) -> Iterator[bytes]:
    """The decoded body, chunk by chunk, until the deadline or ``max_bytes`` (an error, or the
    end of the body with ``truncate``).

    read1 returns whatever one socket read brings, so a server trickling a byte at a time is
    caught by the deadline (iter_content would wait for a whole chunk); each socket read may
    wait only until the deadline.
    """
    raw, size = response.raw, 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(url, timeout)
        _limit_socket_wait(raw, min(timeout, remaining))
        try:
            chunk = raw.read1(READ_CHUNK, decode_content=True)
        except ReadTimeoutError:
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(url, timeout) from None
            raise
        if not chunk:
            _limit_socket_wait(raw, timeout)  # the connection goes back to the pool for the next request
            return
        size += len(chunk)
        if size > max_bytes:
            if truncate:
                yield chunk[: len(chunk) - (size - max_bytes)]
                return
            raise FetchError(f"{_clean(url)}: answer over the {max_bytes:,}-byte limit")
        yield chunk


def _limit_socket_wait(raw, seconds: float) -> None:
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _retry_or_give_up(policy: RetryPolicy, url: str, failure: Exception, timeout: float,
                      on_retry: Callable[[str], None]) -> RetryPolicy:
    """The policy after one more failure, having announced the retry and waited; FetchError
    when the policy has no retry left for this kind of failure."""
    reason = describe_failure(failure, timeout)
    response = failure.response.raw if isinstance(failure, RetryableStatus) else None
    error = None if response is not None else _retry_error(failure)
    try:
        policy = policy.increment("GET", url, response=response, error=error)
    except MaxRetryError as exc:
        done = len(policy.history)
        if response is not None:
            raise FetchError(f"{_clean(url)}: {reason} after {done} retries") from failure
        raise FetchError(f"{_clean(url)}: {reason} (after {done + 1} attempts)") from exc
    wait = policy.seconds_before_retry(response)
    # The retry's number out of the budget that applies: the short one when no connection was made.
    number, left = len(policy.history), policy.total
    if isinstance(error, ConnectTimeoutError):
        wait = min(wait, CONNECT_RETRY_WAIT)
        number = sum(1 for h in policy.history if isinstance(h.error, ConnectTimeoutError))
        left = min(left, policy.connect)
    budget = number + left
    when = f"in {wait:.1f} s".replace(".0 s", " s") if wait > 0 else "now"
    on_retry(f"{_clean(url)}: retrying {when} ({number}/{budget}): {reason}")
    time.sleep(wait)
    return policy


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception it wraps (requests and urllib3 nest them several deep)."""
    seen, todo = set(), [error]
    while todo:
        exc = todo.pop(0)
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        todo += [a for a in exc.args if isinstance(a, BaseException)]
        todo += [getattr(exc, "reason", None), exc.__cause__, exc.__context__]


def _retry_error(failure: Exception) -> Exception:
    """The urllib3 error Retry.increment counts: a connection error against the connect budget,
    a read error against the read budget, anything else (a bad body) against ``other``."""
    kinds = (ConnectTimeoutError, ReadTimeoutError, urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError)
    return next((exc for exc in _causes(failure) if isinstance(exc, kinds)), failure)


def describe_failure(error: Exception, timeout: float) -> str:
    """What went wrong, in plain words on one line, without the request's query string."""
    if isinstance(error, (TransientBodyError, RetryableStatus)):
        return clean_ws(str(error))
    timed_out, broken = None, None
    for exc in _causes(error):
        if isinstance(exc, DeadlineExceeded):
            return f"answer not complete within {timeout:g} s"
        if isinstance(exc, (NameResolutionError, socket.gaierror)):
            return "name resolution failed"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, http.client.IncompleteRead):
            return _truncated(exc)
        if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException) and exc.strerror:
            return f"connection failed: {exc.strerror}"
        if isinstance(exc, ConnectTimeoutError) and timed_out is None:
            timed_out = f"no connection within {timeout:g} s"
        elif isinstance(exc, (requests.Timeout, ReadTimeoutError, TimeoutError)) and timed_out is None:
            timed_out = f"no answer within {timeout:g} s"
        if isinstance(exc, urllib3.exceptions.ProtocolError) and exc.args and isinstance(exc.args[0], str):
            broken = broken or exc.args[0]
    return timed_out or clean_ws(_QUERY.sub("", broken or str(error)))


def _truncated(exc: http.client.IncompleteRead) -> str:
    got = exc.partial if isinstance(exc.partial, int) else len(exc.partial)
    return f"truncated body ({got:,} bytes, {exc.expected or 0:,} more expected)"


def _clean(url: str) -> str:
    return _QUERY.sub("", url)


class ApiClient:
    """Shared plumbing of every source's client: a session, a retry policy, a rate limit, checked GETs."""

    default_rate = 1.0  # requests per second, the API's published limit

    def __init__(
        self,
        base_url: str,
        session: requests.Session | None = None,
        retries: int = 5,
        backoff: float = 1.0,
        rate: float | None = None,
        timeout: float = 60.0,
        max_bytes: int | None = None,
        on_retry: Callable[[str], None] = say_on_stderr,
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self.session = session or make_session()
        self.retries = retries
        self.backoff = backoff
        self.limiter = RateLimiter(rate or self.default_rate)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.on_retry = on_retry

    def get(self, endpoint: str, params: dict, check: Callable[[bytes], None], use_cache: bool = True,
            cache_key: dict | None = None) -> bytes:
        return get_checked(
            self.session, self.base_url + endpoint, params=params, check=check, limiter=self.limiter,
            attempts=self.retries, backoff=self.backoff, timeout=self.timeout, use_cache=use_cache,
            cache_key=cache_key, max_bytes=self.max_bytes, on_retry=self.on_retry,
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
