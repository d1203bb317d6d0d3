"""The site in a real browser: `kb serve` on a free loopback port, driven by headless Chromium.

Debian's chromium (installed by .ci/run) driven by Playwright; Playwright's own browser
download is never used. Screenshots go to test-output/screenshots/. Without /usr/bin/chromium
or the playwright package the tests are skipped locally and fail when CI=true.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
from test_datasette_pages import Served, build_site_kb

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = ROOT / "test-output" / "screenshots"


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    api = sync_playwright().start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def browser(playwright_api):
    browser = playwright_api.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    server = Served(build_site_kb(tmp_path_factory.mktemp("browser")))
    yield server
    server.stop()


class Watched:
    """A page plus what went wrong on it: script errors, dialogs, requests leaving the machine."""

    def __init__(self, context, base: str, width: int = 1280):
        self.page = context.new_page()
        self.base = base
        self.width = width
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.outside: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", self._dialog)
        context.route("**/*", self._route)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _route(self, route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:  # The browser has no internet: nothing may depend on a CDN.
            self.outside.append(route.request.url)
            route.abort()

    def goto(self, path: str):
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, path
        return response

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        return path

    def fits_width(self) -> None:
        """Nothing wider than the window: no sideways scrolling (at a phone's width above all)."""
        width = self.page.evaluate("document.documentElement.scrollWidth")
        assert width <= self.width + 1, f"{self.page.url} is {width} px wide at {self.width} px"

    def check_clean(self) -> None:
        assert not self.errors, self.errors
        assert not self.dialogs, f"record text ran as script: {self.dialogs}"
        assert not self.outside, f"requests outside the machine: {self.outside}"


@contextmanager
def watched_page(browser, base: str, width: int = 1280):
    """A fresh browser context of ``width`` px on the site at ``base``, its page watched."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        yield Watched(context, base, width)
    finally:
        context.close()


@pytest.fixture
def web(browser, site):
    with watched_page(browser, site.base) as watched:
        yield watched


def test_home_page(web):
    web.goto("/")
    page = web.page
    assert page.locator("h1").first.inner_text() == "ketamine-kb"
    assert page.locator("#kb-dashboard-link").get_attribute("href") == "/-/dashboards/overview"
    assert page.locator("#kb-claim-check-link").get_attribute("href") == "/-/claim-check"
    assert page.get_by_role("link", name="Studies of an indication, by design and year").is_visible()
    assert "ClinicalTrials.gov" in page.locator(".kb-sources").inner_text()
    web.shot("home")
    # The home page's search box runs the ranked search (the search page: tests/test_search_page.py).
    page.fill("#kb-q", "esketamine")
    page.click(".kb-search input[type=submit]")
    page.wait_for_url(re.compile(r"/-/search\?q=esketamine"))
    assert page.locator("li.kb-result").count() >= 2
    web.check_clean()


def test_faceted_search(web):
    web.goto("/kb/studies")
    page = web.page
    page.fill("#_search", "dissociation")
    page.press("#_search", "Enter")
    page.wait_for_url(re.compile(r"_search=dissociation"))
    facet = page.locator('.facet-info[data-column=designs] a[href*="designs__arraycontains=rct"]').first
    facet.click()
    page.wait_for_url(re.compile(r"designs__arraycontains=rct"))
    heading = page.locator("h3").filter(has_text="rows").first.inner_text()
    assert re.match(r"\d+ rows? where", heading), heading
    ids = page.locator("table.rows-and-columns tbody td.col-id").all_inner_texts()
    assert set(ids) >= {"39000001", "99000002"}
    web.shot("faceted-search")
    web.check_clean()


def test_canned_query_with_parameters(web):
    web.goto("/kb/studies_by_indication")
    page = web.page
    page.fill("input[name=indication]", "trd")
    page.fill("input[name=design]", "rct")
    page.fill("input[name=year_from]", "2020")
    page.click("form.sql input[type=submit]")
    page.wait_for_url(re.compile(r"indication=trd"))
    cells = page.locator("table.rows-and-columns tbody td.col-study_id").all_inner_texts()
    assert set(cells) == {"39000001", "99000001", "99000002"}
    assert page.locator("table.rows-and-columns td.col-design", has_text="Randomised controlled trial").count() == 3
    web.shot("canned-query-studies-by-indication")
    web.goto("/kb/head_to_head?a=ketamine&b=ect&design=")
    assert page.locator("td.col-study_id a", has_text="99000002").count() == 1
    web.shot("canned-query-head-to-head")
    web.check_clean()


def test_dashboard_renders_its_charts(web):
    web.goto("/")
    web.page.click("#kb-dashboard-link")
    page = web.page
    page.wait_for_url(re.compile(r"/-/dashboards/overview"))
    for chart in ("by-indication", "design-mix", "side-effects", "trials-by-year"):
        page.wait_for_selector(f"#chart-{chart} svg.marks, #chart-{chart} canvas.marks", timeout=20_000)
        marks = page.locator(f"#chart-{chart} svg.marks g.mark-rect path, #chart-{chart} canvas.marks")
        assert marks.count() > 0, chart
    assert re.search(r"\d+ studies", page.locator("#chart-count-studies").inner_text())
    web.shot("dashboard")
    web.check_clean()


def test_study_page(web):
    web.goto("/kb/search?q=electroconvulsive")
    page = web.page
    page.locator("td.col-study_id a", has_text="99000002").click()
    page.wait_for_url(re.compile(r"/kb/studies/99000002"))
    assert "Intravenous ketamine versus electroconvulsive therapy" in page.locator("h1").inner_text()
    assert page.locator(".kb-design").inner_text().startswith("Design: Randomised controlled trial")
    assert page.locator(".kb-evidence mark", has_text="hallucinations").is_visible()
    assert page.locator(".kb-absent").first.inner_text() == "reported as absent"
    assert page.locator("a.kb-trial").get_attribute("href") == "/kb/trials/NCT04599855"
    web.shot("study-99000002")
    web.goto("/kb/studies/39000001")
    assert page.locator(".kb-abstract h3").all_inner_texts()[:2] == ["BACKGROUND", "METHODS"]
    assert page.locator("a.kb-pubmed").get_attribute("href") == "https://pubmed.ncbi.nlm.nih.gov/39000001/"
    assert page.locator("a.kb-pmc").get_attribute("href") == "https://pmc.ncbi.nlm.nih.gov/articles/PMC11111111/"
    web.shot("study-39000001")
    web.check_clean()


def test_markup_in_records_never_runs(web):
    web.goto("/kb/studies/99000001")
    page = web.page
    title = page.locator("h1.kb-title").inner_text()
    assert '<script>alert("title")</script>' in title  # shown as text
    assert page.locator(".kb-study script").count() == 0 and page.locator(".kb-study img").count() == 0
    assert page.locator(".kb-evidence mark", has_text="dissociation").count() >= 1
    web.shot("study-with-markup-escaped")
    web.goto("/kb/trials/NCT09999999")
    assert '<script>alert("trial")</script>' in page.locator("h1.kb-title").inner_text()
    assert page.locator(".kb-trial-page script, .kb-trial-page img").count() == 0
    web.shot("trial-with-markup-escaped")
    web.check_clean()
