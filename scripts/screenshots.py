"""Full-page screenshots of the site's main pages in headless Chromium, at a desktop and a phone width.

Serves --db with `kb serve`'s settings (or uses --base-url), and writes <page>-<width>.png into --out:

    .venv/bin/python scripts/screenshots.py --db /tmp/kbdev/site/kb.db --out test-output/screenshots/after

The study and trial shown are the first on-topic study and the first trial (by id), so before and
after runs on one database show the same records. A page the served site does not have (404) is
left out.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = (1400, 390)
SEARCH_WORDS = "ketamine depression"


def pages(db: Path) -> dict[str, str]:
    """Page name -> path, with a real study and trial from ``db``."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        pmid = conn.execute("select pmid from studies where on_topic = 1 order by pmid limit 1").fetchone()
        nct = conn.execute("select nct_id from trials order by nct_id limit 1").fetchone()
    finally:
        conn.close()
    found = {
        "home": "/",
        "database": "/kb",
        "studies": "/kb/studies",
        "search": "/kb/search?q=" + SEARCH_WORDS.replace(" ", "+"),
        "search-page": "/-/search?q=" + SEARCH_WORDS.replace(" ", "+"),
        "dashboard": "/-/dashboards/overview",
    }
    if pmid:
        found["study"] = f"/kb/studies/{pmid[0]}"
    if nct:
        found["trial"] = f"/kb/trials/{nct[0]}"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(db: Path) -> tuple[subprocess.Popen, str]:
    """`kb serve` on a free port; returns the process and its base URL once it answers."""
    port = free_port()
    kb = Path(sys.executable).with_name("kb")
    process = subprocess.Popen([str(kb), "serve", "--db", str(db), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urlopen(base + "/-/versions.json", timeout=2).close()
            return process, base
        except (URLError, ConnectionError):
            time.sleep(0.2)
    process.terminate()
    sys.exit(f"error: kb serve did not start on {db}")


def shoot(base: str, paths: dict[str, str], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as api:
        browser = api.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for width in WIDTHS:
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            for name, path in paths.items():
                response = page.goto(base + path, wait_until="networkidle")
                if response is None or response.status == 404:  # a page this version of the site lacks
                    continue
                target = out / f"{name}-{width}.png"
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
            context.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="kb.db to serve (and to pick a study and trial from)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNG files")
    parser.add_argument("--base-url", help="an already running site; otherwise `kb serve --db` is started")
    args = parser.parse_args()
    if not args.db.exists():
        sys.exit(f"error: {args.db}: no such database")
    paths = pages(args.db)
    process = None
    base = args.base_url.rstrip("/") if args.base_url else None
    if base is None:
        process, base = serve(args.db)
    try:
        for path in shoot(base, paths, args.out):
            print(path)
    finally:
        if process:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
