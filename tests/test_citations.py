"""Citation exports (RIS, BibTeX, CSL-JSON, MEDLINE) of any page of studies, the study page's Cite
box, Highwire Press meta tags and COinS, and the round trip export -> `kb import` -> the same studies."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote

import pytest
from click.testing import CliRunner
from conftest import require_module
from test_datasette_pages import (
    FIXTURES,
    OFF_TOPIC,
    STUDY_IDS,
    get,
    rows,
)

from ingest.cli import cli
from ingest.records.citations import (
    FORMATS,
    apa,
    bibtex_key,
    coins,
    display_name,
    export,
    highwire_tags,
    read_studies,
    split_pages,
    to_bibtex,
    to_medline,
    to_ris,
    vancouver,
)
from ingest.records.text import clean_ws
from ingest.sources.files import parse_medline, parse_ris

MIME = {"ris": "application/x-research-info-systems", "bibtex": "application/x-bibtex",
        "csljson": "application/vnd.citationstyles.csl+json", "nbib": "application/x-medline"}
ENTRY_START = {"ris": r"^TY  - ", "bibtex": r"^@article\{", "nbib": r"^PMID- "}




def ids_in(fmt: str, body: str) -> list[str]:
    """The study ids an export holds, in order."""
    if fmt == "csljson":
        return [item["id"] for item in json.loads(body)]
    if fmt == "ris":
        return [str(r["pmid"]) for r in parse_ris(body.encode()).records]
    if fmt == "nbib":
        return [str(r["pmid"]) for r in parse_medline(body.encode()).records]
    return re.findall(r"^  pmid = \{(\d+)\}", body, re.MULTILINE)


def study_record(site_kb, study_id: str) -> dict:
    conn = sqlite3.connect(site_kb)
    try:
        return read_studies(conn, [study_id])[0]
    finally:
        conn.close()


# --------------------------------------------------------------------------- renderers


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_the_studies_table_exports_in_each_format(ds, fmt):
    response = get(ds, f"/kb/studies.{fmt}", _offtopic="1", _size="max")
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].split(";")[0] == MIME[fmt]
    suffix = FORMATS[fmt].suffix
    assert response.headers["content-disposition"] == f'attachment; filename="kb-studies{suffix}"'
    assert set(ids_in(fmt, response.text)) == STUDY_IDS
    if fmt in ENTRY_START:
        assert len(re.findall(ENTRY_START[fmt], response.text, re.MULTILINE)) == len(STUDY_IDS)


def test_an_export_is_the_selection_a_page_shows(ds):
    # A facet selection: the studies page's own rows, in its order (newest first).
    rcts = get(ds, "/kb/studies.ris", designs__arraycontains="rct", on_topic="1").text
    page = [r["id"] for r in rows(ds, "/kb/studies.json", designs__arraycontains="rct", on_topic="1")]
    assert ids_in("ris", rcts) == page and set(page) == {"39000001", "99000001", "99000002"}
    # The studies page's search box.
    searched = ids_in("nbib", get(ds, "/kb/studies.nbib", _search="dissociation").text)
    assert set(searched) == {r["id"] for r in rows(ds, "/kb/studies.json", _search="dissociation")}
    # The ranked search (a canned query with a study_id column), in rank order.
    ranked = [r["study_id"] for r in rows(ds, "/kb/search.json", q="esketamine")]
    assert ids_in("csljson", get(ds, "/kb/search.csljson", q="esketamine").text) == ranked
    assert get(ds, "/kb/search.bibtex", q="esketamine").headers["content-disposition"].endswith('kb-search.bib"')
    # A view with a study_id, and hand-written SQL naming studies by PMID.
    view = get(ds, "/kb/design_tags.ris", tag_id="case_report").text
    assert ids_in("ris", view) == ["17000002"]
    by_pmid = get(ds, "/kb.nbib", sql="select pmid, title from studies where year < 2000")
    assert ids_in("nbib", by_pmid.text) == ["2345678"]


def test_a_study_page_exports_its_study(ds):
    response = get(ds, "/kb/studies/2345678.nbib")
    assert response.headers["content-disposition"] == 'attachment; filename="kb-study-2345678.nbib"'
    assert ids_in("nbib", response.text) == ["2345678"]
    assert "RIN - Anesthesiology. 1991 Jan;74(1):200 PMID: 1999999" in response.text


def test_a_page_of_many_says_where_the_rest_is(ds):
    response = get(ds, "/kb/studies.ris", _offtopic="1", _size="2")
    assert len(ids_in("ris", response.text)) == 2
    link = response.headers["link"]
    assert re.fullmatch(r'<http://localhost/kb/studies\.ris\?[^>]*_next=[^>]+>; rel="next"', link), link
    rest = get(ds, link[1:link.index(">")].replace("http://localhost", ""))
    assert rest.status_code == 200 and len(ids_in("ris", rest.text)) == 2


def test_rows_that_name_no_studies(ds):
    assert get(ds, "/kb/tags.ris").status_code == 400  # a table without study_id
    assert get(ds, "/kb.ris", sql="select 'nope' as id").status_code == 404
    empty = get(ds, "/kb/studies.bibtex", id="nope")
    assert empty.status_code == 200 and empty.text == ""
    # Offered only where the rows name studies.
    assert "studies.ris" in get(ds, "/kb/studies", _offtopic="1").text
    assert "tags.ris" not in get(ds, "/kb/tags").text


def test_the_claim_check_list_exports_best_first(ds):
    claim = {"claim": "esketamine causes dissociation", "mode": "fts", "limit": "5"}
    listed = [s["pmid"] for s in get(ds, "/-/claim-check", _format="json", **claim).json()["result"]["results"]]
    assert listed
    for fmt in FORMATS:
        response = get(ds, "/-/claim-check", _format=fmt, **claim)
        assert response.headers["content-type"].split(";")[0] == MIME[fmt]
        assert response.headers["content-disposition"] == f'attachment; filename="claim-check{FORMATS[fmt].suffix}"'
        assert ids_in(fmt, response.text) == listed
    page = get(ds, "/-/claim-check", **claim).text
    assert 'class="kb-export kb-export-ris" href="/-/claim-check?claim=esketamine+causes+dissociation' in page
    assert get(ds, "/-/claim-check", _format="ris").status_code == 400


def test_pages_offer_their_exports(ds):
    table = get(ds, "/kb/studies", designs__arraycontains="rct").text
    assert ('href="/kb/studies.ris?designs__arraycontains=rct&amp;on_topic=1&amp;_size=max"' in table
            and 'href="/kb/studies.bibtex?designs__arraycontains=rct' in table)
    search = get(ds, "/kb/search", q="esketamine").text
    for fmt in FORMATS:
        assert f'href="/kb/search.{fmt}?q=esketamine"' in search
    study = get(ds, "/kb/studies/39000001").text
    assert 'href="/kb/studies/39000001.ris"' in study and 'href="/kb/studies/39000001.nbib"' in study


# --------------------------------------------------------------------------- the round trip


def stored_studies(db: Path) -> dict[str, dict]:
    conn = sqlite3.connect(db)
    try:
        studies = {}
        for row in conn.execute("select id, pmid, doi, title, year, journal, abstract from studies"):
            studies[row[0]] = dict(zip(("id", "pmid", "doi", "title", "year", "journal", "abstract"), row,
                                       strict=True))
            studies[row[0]]["authors"] = []
        for row in conn.execute("select study_id, last_name, fore_name, initials, suffix, collective_name "
                                "from authors order by study_id, position"):
            author = dict(zip(("last_name", "fore_name", "initials", "suffix", "collective_name"), row[1:],
                              strict=True))
            studies[row[0]]["authors"].append(display_name(author))
        return studies
    finally:
        conn.close()


@pytest.mark.parametrize("fmt", ["ris", "nbib"])
def test_round_trip_export_then_kb_import_gives_the_same_studies(ds, site_kb, tmp_path, fmt):
    exported = tmp_path / f"all.{FORMATS[fmt].suffix.lstrip('.')}"
    exported.write_bytes(get(ds, f"/kb/studies.{fmt}", _offtopic="1", _size="max").content)
    # A fresh kb.db with no studies in it (built from a ClinicalTrials.gov page), then `kb import`.
    inputs = tmp_path / "trials"
    inputs.mkdir()
    shutil.copy(FIXTURES / "clinicaltrials" / "studies_page1.json", inputs)
    fresh = tmp_path / "kb.db"
    built = CliRunner().invoke(cli, ["build", "--from-dir", str(inputs), "--db", str(fresh), "--no-progress"])
    assert built.exit_code == 0 and "0 studies in kb.db" in built.output, built.output
    imported = CliRunner().invoke(cli, ["import", str(exported), "--db", str(fresh), "--no-progress"])
    assert imported.exit_code == 0, imported.output
    assert "7 records parsed, 7 written" in imported.output

    before, after = stored_studies(site_kb), stored_studies(fresh)
    assert set(after) == set(before) == STUDY_IDS
    for study_id, original in before.items():
        again = after[study_id]
        for key in ("pmid", "doi", "title", "year", "journal", "authors"):
            assert again[key] == original[key], (fmt, study_id, key)
        # The formats hold an abstract on one line: the same words, and the same text wherever
        # the paragraphs are labelled sections (39000001 has an unlabelled one between them).
        assert clean_ws(again["abstract"]) == clean_ws(original["abstract"]), (fmt, study_id)
        if study_id != "39000001":
            assert again["abstract"] == original["abstract"], (fmt, study_id)
    if fmt == "nbib":  # MEDLINE keeps every author field, initials and suffixes included
        conn_a, conn_b = sqlite3.connect(site_kb), sqlite3.connect(fresh)
        try:
            sql = ("select study_id, position, last_name, fore_name, initials, suffix, collective_name, orcid, "
                   "affiliations from authors order by study_id, position")
            assert conn_a.execute(sql).fetchall() == conn_b.execute(sql).fetchall()
            sql = ("select id, pub_date, medline_date, volume, issue, pages, iso_abbrev, issn, pmcid from studies "
                   "order by id")
            assert conn_a.execute(sql).fetchall() == conn_b.execute(sql).fetchall()
            sql = "select study_id, descriptor, major_topic from mesh_headings order by study_id, position"
            assert conn_a.execute(sql).fetchall() == conn_b.execute(sql).fetchall()
        finally:
            conn_a.close()
            conn_b.close()


# --------------------------------------------------------------------------- the formats themselves


def test_ris_is_read_by_rispy_too(ds):
    rispy = require_module("rispy")
    entries = rispy.loads(get(ds, "/kb/studies.ris", _offtopic="1", _size="max").text)
    assert len(entries) == len(STUDY_IDS)
    nguyen = next(e for e in entries if e.get("accession_number") == "39000001")
    assert nguyen["authors"][0] == "Nguyen, Thi Mai" and nguyen["doi"] == "10.1038/s41386-024-01855-x"
    assert (nguyen["start_page"], nguyen["end_page"], nguyen["date"]) == ("1401", "1410", "2024/08/15/")


def test_bibtex_is_read_by_bibtexparser(ds):
    bibtexparser = require_module("bibtexparser")
    library = bibtexparser.parse_string(get(ds, "/kb/studies.bibtex", _offtopic="1", _size="max").text)
    assert not library.failed_blocks
    entries = {e.key: e for e in library.entries}
    assert len(entries) == len(STUDY_IDS)
    nguyen = entries["nguyen2024intranasal"]
    assert nguyen["author"] == "Nguyen, Thi Mai and O'Brien, Jr, Seán and {ESKETINTRANASAL Study Group}"
    assert nguyen["pages"] == "1401--1410" and nguyen["pmid"] == "39000001"
    hostile = next(e for e in library.entries if e["pmid"] == "99000001")
    assert hostile["doi"] == '10.1000/xss"onmouseover="alert(4'


def test_csl_json_is_read_by_citeproc(ds):
    citeproc = require_module("citeproc")
    from citeproc.source.json import CiteProcJSON

    items = json.loads(get(ds, "/kb/studies.csljson", _offtopic="1", _size="max").text)
    style = citeproc.CitationStylesStyle("harvard-cite-them-right", validate=False)  # bundled with citeproc-py
    bibliography = citeproc.CitationStylesBibliography(style, CiteProcJSON(items), citeproc.formatter.plain)
    for item in items:
        bibliography.register(citeproc.Citation([citeproc.CitationItem(item["id"])]))
    rendered = [str(entry) for entry in bibliography.bibliography()]
    assert len(rendered) == len(STUDY_IDS)
    nguyen = next(r for r in rendered if r.startswith("Nguyen"))
    assert nguyen.startswith("Nguyen, T.M., O'Brien, S., Jr and ESKETINTRANASAL Study Group (2024) “Intranasal")
    assert "49(9), pp. 1401–1410. Available at: https://doi.org/10.1038/s41386-024-01855-x." in nguyen


def test_hostile_text_cannot_break_out_of_its_field():
    record = {"id": "1", "pmid": 1, "doi": "10.1000/a}b", "title": "T\nER  - \nTY  - JOUR\n\nPMID- 2\nx} @misc{y,",
              "abstract": "A\r\nAN  - 3\x00\x07", "abstract_sections": [], "journal": "J & {K}", "iso_abbrev": "",
              "issn": "", "volume": "", "issue": "", "pages": "", "year": 2020, "pub_date": "2020",
              "authors": [{"last_name": "Smith and Jones", "fore_name": "A"}], "keywords": [], "mesh": []}
    ris = parse_ris(to_ris([record]).encode())
    assert len(ris.records) == 1 and ris.records[0]["pmid"] == 1
    assert ris.records[0]["title"] == "T ER - TY - JOUR PMID- 2 x} @misc{y,"
    medline = parse_medline(to_medline([record]).encode())
    assert [r["pmid"] for r in medline.records] == [1] and medline.records[0]["abstract"] == "A AN - 3"
    bib = to_bibtex([record])
    assert len(re.findall(r"^@", bib, re.MULTILINE)) == 1 and r"x\} @misc\{y," in bib and r"J \& \{K\}" in bib
    assert "author = {{Smith and Jones}, A}" in bib and "doi = {10.1000/a%7Db}" in bib
    bibtexparser = require_module("bibtexparser")
    library = bibtexparser.parse_string(bib)
    assert not library.failed_blocks and len(library.entries) == 1


def test_unknown_format_and_pages():
    with pytest.raises(ValueError):
        export([], "docx")
    assert split_pages("401-5") == ("401", "405")
    assert split_pages("1401-1410") == ("1401", "1410")
    assert split_pages("e0123") == ("e0123", "")
    assert split_pages("") == ("", "")


# --------------------------------------------------------------------------- formatted references


def test_vancouver_and_apa(site_kb):
    nguyen = study_record(site_kb, "39000001")
    assert vancouver(nguyen) == (
        "Nguyen TM, O'Brien S, ESKETINTRANASAL Study Group. Intranasal esketamine in treatment-resistant depression: "
        "a randomized, double-blind trial of 2 mg/kg-1 equivalents. Neuropsychopharmacology. 2024 Aug 15;"
        "49(9):1401-1410. doi: 10.1038/s41386-024-01855-x. PMID: 39000001; PMCID: PMC11111111.")
    assert apa(nguyen) == (
        "Nguyen, T. M., O'Brien, S., & ESKETINTRANASAL Study Group. (2024). Intranasal esketamine in "
        "treatment-resistant depression: a randomized, double-blind trial of 2 mg/kg-1 equivalents. "
        "Neuropsychopharmacology, 49(9), 1401–1410. https://doi.org/10.1038/s41386-024-01855-x")
    dupont = study_record(site_kb, "2345678")
    assert vancouver(dupont) == ("Dupont J. [Ketamine anaesthesia for burns dressings in children]. Anesthesiology. "
                                 "1990 May-Jun;73(3):401-5. PMID: 2345678.")
    assert apa(dupont) == "Dupont, J. (1990). [Ketamine anaesthesia for burns dressings in children]. " \
                          "Anesthesiology, 73(3), 401–5."
    group = study_record(site_kb, "17000002")
    assert apa(group).startswith("Hong Kong Urology Collaborative. (2007). Ketamine-associated ulcerative cystitis")
    assert "Journal of Psychoactive Drugs, 12." in apa(group)  # NLM's "Journal of psychoactive drugs", title-cased


def test_long_author_lists_and_no_authors():
    base = {"title": "A trial", "journal": "J", "year": 2020, "pmid": 5}
    many = {**base, "authors": [{"last_name": f"Author{i}", "fore_name": "Ann"} for i in range(25)]}
    assert vancouver(many).startswith("Author0 A, Author1 A, Author2 A, Author3 A, Author4 A, Author5 A, et al. "
                                      "A trial.")
    assert apa(many).startswith("Author0, A., Author1, A.,") and ", … Author24, A. (2020)." in apa(many)
    assert "Author19" not in apa(many) and "Author18, A." in apa(many)
    nobody = {**base, "authors": []}
    assert vancouver(nobody) == "A trial. J. 2020. PMID: 5."
    assert apa(nobody) == "A trial. (2020). J."
    two = {**base, "authors": [{"last_name": "Lee", "fore_name": "Jean-Paul"}, {"last_name": "Kim", "initials": "HS"}]}
    assert apa(two).startswith("Lee, J.-P., & Kim, H. S. (2020).")
    assert bibtex_key(two) == "lee2020trial"


# --------------------------------------------------------------------------- Zotero and friends


class MetaAndSpans(HTMLParser):
    def __init__(self):
        super().__init__()
        self.meta: list[tuple[str, str]] = []
        self.coins: list[str] = []
        self.citations: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and (attrs.get("name") or "").startswith("citation_"):
            self.meta.append((attrs["name"], attrs.get("content")))
        if tag == "span" and attrs.get("class") == "Z3988":
            self.coins.append(attrs["title"])
        if tag == "p" and (attrs.get("id") or "").startswith("kb-cite-"):
            self._in = attrs["id"]
            self.citations[self._in] = ""

    def handle_endtag(self, tag):
        if tag == "p":
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.citations[self._in] += data


def test_study_page_has_highwire_tags_coins_and_a_cite_box(ds, site_kb):
    page = MetaAndSpans()
    page.feed(get(ds, "/kb/studies/39000001").text)
    meta = page.meta
    assert ("citation_title", "Intranasal esketamine in treatment-resistant depression: a randomized, double-blind "
            "trial of 2 mg/kg-1 equivalents.") in meta
    assert [v for k, v in meta if k == "citation_author"] == ["Nguyen, Thi Mai", "O'Brien, Seán, Jr",
                                                              "ESKETINTRANASAL Study Group"]
    for pair in [("citation_journal_title", "Neuropsychopharmacology : official publication of the American College "
                  "of Neuropsychopharmacology"), ("citation_publication_date", "2024/08/15"),
                 ("citation_doi", "10.1038/s41386-024-01855-x"), ("citation_pmid", "39000001"),
                 ("citation_abstract_html_url", "http://localhost/kb/studies/39000001"),
                 ("citation_firstpage", "1401"), ("citation_lastpage", "1410"), ("citation_volume", "49")]:
        assert pair in meta, pair
    assert meta == highwire_tags(study_record(site_kb, "39000001"), "http://localhost/kb/studies/39000001")
    (kev,) = page.coins
    fields = parse_qs(kev)
    assert fields["rft_val_fmt"] == ["info:ofi/fmt:kev:mtx:journal"] and fields["rft.genre"] == ["article"]
    assert fields["rft.atitle"][0].startswith("Intranasal esketamine") and fields["rft.aulast"] == ["Nguyen"]
    assert {"info:doi/10.1038/s41386-024-01855-x", "info:pmid/39000001"} <= set(fields["rft_id"])
    assert fields["rft.au"] == ["Nguyen, Thi Mai", "O'Brien, Seán, Jr"]
    record = study_record(site_kb, "39000001")
    assert " ".join(page.citations["kb-cite-vancouver"].split()) == vancouver(record)
    assert " ".join(page.citations["kb-cite-apa"].split()) == apa(record)
    html = get(ds, "/kb/studies/39000001").text
    assert "<i>Neuropsychopharmacology</i>, <i>49</i>(9)" in html  # APA italics, built around escaped text
    assert 'class="kb-copy" data-copy="kb-cite-apa"' in html


def test_citation_metadata_is_escaped(ds, site_kb):
    html = get(ds, "/kb/studies/99000001").text
    head, body = html.split("</head>", 1)
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>Bold" not in html
    assert '<meta name="citation_title" content="Esketamine &lt;script&gt;' in head
    assert '<meta name="citation_doi" content="10.1000/xss&#34;onmouseover=&#34;alert(4">' in head
    page = MetaAndSpans()
    page.feed(html)
    assert dict(page.meta)["citation_author"] == "<img src=x onerror=alert(3)>, X"  # text, once unescaped
    assert parse_qs(page.coins[0])["rft.jtitle"] == ["Journal of <b>Bold</b> Psychiatry"]
    assert unquote(coins(study_record(site_kb, "99000001"))).count("<script>") == 1


def test_off_topic_and_doi_keyed_studies_export_too(ds, tmp_path):
    response = get(ds, f"/kb/studies/{OFF_TOPIC}.csljson")
    assert [i["id"] for i in json.loads(response.text)] == [OFF_TOPIC]
    # A study keyed by its DOI (no PMID): exported without a PMID line or PubMed links.
    record = {"id": "doi:10.1089/jpm.2020.0001", "pmid": None, "doi": "10.1089/jpm.2020.0001", "title": "T",
              "year": 2021, "pub_date": "2021-03-15", "authors": [{"last_name": "Lee", "fore_name": "Hana"}]}
    ris = to_ris([record])
    assert "AN  -" not in ris and "UR  - https://doi.org/10.1089/jpm.2020.0001" in ris
    again = parse_ris(ris.encode()).records[0]
    assert (again["doi"], again["pub_date"], again["pmid"]) == ("10.1089/jpm.2020.0001", "2021-03-15", None)
    assert "PMID-" not in to_medline([record])


@pytest.mark.parametrize("flag, fmt", [("--ris", "ris"), ("--bibtex", "bibtex")])
def test_kb_check_writes_the_listed_studies_as_citations_best_first(site_kb, flag, fmt):
    args = ["check", "esketamine dissociation", "--db", str(site_kb), "--mode", "fts"]
    listed = [r["pmid"] for r in json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)["results"]]
    result = CliRunner().invoke(cli, [*args, flag])
    assert result.exit_code == 0 and listed
    assert ids_in(fmt, result.stdout) == listed
    both = CliRunner().invoke(cli, [*args, "--ris", "--json"])
    assert both.exit_code == 2
