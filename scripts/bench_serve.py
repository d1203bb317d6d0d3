#!/usr/bin/env python3
"""Load benchmark: `kb serve` on loopback under a bounded concurrent load.

Usage: python scripts/bench_serve.py [--db kb.db] [--requests 400] [--concurrency 8] [--workers 1]
       python scripts/bench_serve.py --hostile 6 [--samples 100] [--db kb.db]

Builds a kb.db from the shared corpus unless --db is given, starts `kb serve` on a free
127.0.0.1 port, and drives it with a fixed number of requests per endpoint from a thread
pool (never any other address; every loop is bounded). Prints requests/s and p50/p95/p99
per endpoint, then checks that the server stayed read-only and that a cheap page still
answers quickly while an expensive query is running.

--hostile N: N clients send expensive requests back to back (runaway SQL stopped by the time
limit, a cross join, oversized values and an oversized search) while cheap pages are timed one
after another; prints p50/p95 of each cheap page and what the hostile clients got back.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
KB = str(Path(sys.executable).with_name("kb"))
ENDPOINTS = {
    "table page": "/kb/studies?_size=50",
    "faceted table page": "/kb/studies?_facet_array=designs&_facet_array=drugs&_facet=year",
    "FTS search": "/kb/studies?_search={term}",
    "ranked search with facets": "/-/search?q={term}",
    "ranked search, filtered": "/-/search?q={term}&design=rct&sort=level",
    "study JSON": "/kb/studies/{pmid}.json",
    "claim check": "/-/claim-check?claim={claim}&_format=json",
    # The pages a researcher browses (issue 16): the studies page as it opens (the redirect to the
    # on-topic studies followed), a facet chosen on it, a study, a trial, the tags.
    "default studies page": "/kb/studies",
    "faceted filter": "/kb/studies?on_topic=1&designs__arraycontains=rct",
    "study page": "/kb/studies/{pmid}",
    "trial page": "/kb/trials/{nct}",
    "tags page": "/kb/tags",
}
TERMS = ["dissociation", "esketamine", "suicidal", "cystitis", "bdnf", "remission", "infusion", "anxiety"]
CLAIMS = ["ketamine relief can be permanent", "esketamine causes dissociation", "ketamine increases serotonin"]
EXPENSIVE_SQL = ("with recursive r(i) as (select 1 union all select i + 1 from r) "
                 "select count(*) from r")
# What a hostile client sends, in turn: each is stopped by a limit of kb serve, never answered in full.
HOSTILE = [
    ("/kb.json", {"sql": EXPENSIVE_SQL}),
    ("/kb.json", {"sql": "select count(*) from sentences a, sentences b, sentences c"}),
    ("/kb.json", {"_shape": "array", "sql": "with recursive c(x) as (select 1 union all select x+1 from c "
                                            "limit 100) select printf('%.*c',9999999,'x') from c"}),
    ("/kb/search", {"q": "\"ketamine\" " * 3000}),
]
# Pages timed while the hostile clients run: cheap ones (a few ms when idle), a table page with its
# seven facets (about 130 ms idle on the shared corpus), and a trivial hand-written query, which
# waits its turn behind the hostile ones (kb serve runs only so many hand-written queries at once).
CHEAP = {
    "home page": "/",
    "study page": "/kb/studies/{pmid}",
    "study JSON": "/kb/studies/{pmid}.json",
    "table page": "/kb/studies?_size=10&on_topic=1",
    "select 1": "/kb.json?sql=select+1",
}
CHEAP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(base + "/-/versions.json", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise SystemExit("kb serve did not start")


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def drive(base: str, template: str, count: int, concurrency: int, pmids: list[str],
          ncts: list[str] | None = None) -> dict:
    ncts = ncts or ["NCT00000000"]  # a trial page that is not there is a quick 404
    session = requests.Session()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        path = template.format(term=TERMS[i % len(TERMS)], pmid=pmids[i % len(pmids)],
                               claim=CLAIMS[i % len(CLAIMS)].replace(" ", "+"),
                               nct=ncts[i % len(ncts)])
        started = time.perf_counter()
        response = session.get(base + path, timeout=30)
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"rps": count / wall, "p50": statistics.median(ordered), "p95": percentile(ordered, 0.95),
            "p99": percentile(ordered, 0.99), "statuses": statuses}


def check_read_only(base: str) -> list[str]:
    problems = []
    for sql in ("delete from studies", "update studies set title = 'x'", "drop table studies"):
        response = requests.get(base + "/kb.json", params={"sql": sql}, timeout=10)
        if response.status_code < 400:
            problems.append(f"write accepted: {sql}")
    response = requests.post(base + "/kb/-/create", json={"table": "x", "rows": [{"a": 1}]}, timeout=10)
    if response.status_code < 400:
        problems.append("POST /kb/-/create accepted")
    return problems


def cheap_page_during_expensive_query(base: str) -> tuple[float, float, int]:
    """Latency of a cheap page while a runaway recursive CTE is being stopped by the time limit."""
    result: dict = {}

    def expensive() -> None:
        started = time.perf_counter()
        response = requests.get(base + "/kb.json", params={"sql": EXPENSIVE_SQL}, timeout=60)
        result["expensive"] = (time.perf_counter() - started, response.status_code)

    thread = threading.Thread(target=expensive)
    thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    requests.get(base + "/kb/studies?_size=10", timeout=30).raise_for_status()
    cheap = time.perf_counter() - started
    thread.join(timeout=60)
    seconds, status = result.get("expensive", (float("nan"), 0))
    return cheap, seconds, status


def hostile_client(base: str, stop: threading.Event, outcomes: dict, lock: threading.Lock) -> None:
    """Send the hostile requests in turn until stopped; count what came back (status, bytes)."""
    session = requests.Session()
    turn = 0
    while not stop.is_set():
        path, params = HOSTILE[turn % len(HOSTILE)]
        turn += 1
        try:
            response = session.get(base + path, params=params, timeout=120)
            key = (path, response.status_code)
            size = len(response.content)
        except requests.RequestException as exc:
            key, size = (path, type(exc).__name__), 0
        with lock:
            count, largest = outcomes.get(key, (0, 0))
            outcomes[key] = (count + 1, max(largest, size))


def cheap_pages_under_attack(base: str, clients: int, samples: int, pmids: list[str]) -> None:
    stop, lock = threading.Event(), threading.Lock()
    outcomes: dict = {}
    threads = [threading.Thread(target=hostile_client, args=(base, stop, outcomes, lock), daemon=True)
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # every hostile client has a request in flight
    session = requests.Session()
    latencies: dict[str, list[float]] = {name: [] for name in CHEAP}
    statuses: dict[str, dict] = {name: {} for name in CHEAP}
    try:
        for i in range(samples):
            for name, template in CHEAP.items():
                started = time.perf_counter()
                try:
                    status = session.get(base + template.format(pmid=pmids[i % len(pmids)]),
                                         timeout=CHEAP_TIMEOUT).status_code
                except requests.RequestException as exc:  # counted, at the timeout's latency
                    status = type(exc).__name__
                latencies[name].append(time.perf_counter() - started)
                statuses[name][status] = statuses[name].get(status, 0) + 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    print(f"cheap pages while {clients} hostile clients run ({samples} samples each):")
    for name, values in latencies.items():
        ordered = sorted(values)
        print(f"  {name:<12} p50 {statistics.median(ordered) * 1000:7.1f} ms   "
              f"p95 {percentile(ordered, 0.95) * 1000:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms   "
              f"statuses {statuses[name]}")
    print("hostile requests (path, status: count, largest body):")
    for (path, status), (count, largest) in sorted(outcomes.items(), key=str):
        print(f"  {path} {status}: {count}, {largest:,} bytes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--requests", type=int, default=400, help="requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="kb serve --workers (server processes)")
    parser.add_argument("--hostile", type=int, default=0, metavar="N",
                        help="time cheap pages while N hostile clients run, instead of the load test")
    parser.add_argument("--samples", type=int, default=100, help="cheap-page requests each, with --hostile")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="time only the endpoints whose name contains NAME (repeatable), e.g. --only page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db
        if db is None:
            db = Path(tmp) / "kb.db"
            subprocess.run([KB, "build", "--from-dir", str(args.corpus), "--db", str(db), "--no-progress"],
                           check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([KB, "serve", "--db", str(db), "--port", str(port), "--workers", str(args.workers)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base)
            pmids = [r["id"] for r in requests.get(base + "/kb/studies.json?_shape=array&_col=id&_size=100",
                                                   timeout=10).json()]
            if args.hostile:
                cheap_pages_under_attack(base, args.hostile, args.samples, pmids)
                return 0
            ncts = [r["nct_id"] for r in requests.get(base + "/kb/trials.json?_shape=array&_col=nct_id&_size=100",
                                                      timeout=10).json()]
            print(f"kb serve on {base}, {args.requests} requests per endpoint, concurrency {args.concurrency}, "
                  f"{args.workers} server process(es)")
            for name, template in ENDPOINTS.items():
                if args.only and not any(word in name for word in args.only):
                    continue
                figures = drive(base, template, args.requests, args.concurrency, pmids, ncts)
                print(f"{name:<20} {figures['rps']:7.1f} req/s   p50 {figures['p50'] * 1000:7.1f} ms   "
                      f"p95 {figures['p95'] * 1000:7.1f} ms   p99 {figures['p99'] * 1000:7.1f} ms   "
                      f"statuses {figures['statuses']}")
            problems = check_read_only(base)
            print("read-only under load: " + ("yes" if not problems else "NO: " + "; ".join(problems)))
            cheap, seconds, status = cheap_page_during_expensive_query(base)
            print(f"cheap page during a runaway recursive CTE: {cheap * 1000:.0f} ms "
                  f"(the CTE was stopped after {seconds:.1f} s with HTTP {status})")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
