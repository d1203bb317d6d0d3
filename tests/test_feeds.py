"""Atom feeds of studies: any table view, facet selection or search, and the canned query new_studies
(datasette-atom's atom_* columns); well-formed RFC 4287, newest first, no record text as markup."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest
from lxml import etree
from test_datasette_pages import (
    OFF_TOPIC,
    STUDY_IDS,
    get,
    rows,
)

from ingest.site.exports import page_url, study_column, table_feed_url
from ingest.site.feeds import Entry, atom_column_entry, atom_feed, when

ATOM = "{http://www.w3.org/2005/Atom}"
NS = {"a": "http://www.w3.org/2005/Atom"}




def feed(ds, path: str, **params) -> etree._Element:
    response = get(ds, path, **params)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    root = etree.fromstring(response.content)
    assert root.tag == f"{ATOM}feed"
    assert_valid_atom(root)
    return root


def assert_valid_atom(root: etree._Element) -> None:
    """RFC 4287's musts: the feed's id, title, updated, author and self link; each entry's id, title, updated."""
    for name in ("id", "title", "updated"):
        assert len(root.findall(f"a:{name}", NS)) == 1, name
    assert root.find("a:author/a:name", NS) is not None
    assert root.find("a:link[@rel='self']", NS) is not None
    ids = []
    for entry in root.findall("a:entry", NS):
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"a:{name}", NS)) == 1, name
        ids.append(entry.findtext("a:id", namespaces=NS))
        dt.datetime.fromisoformat(entry.findtext("a:updated", namespaces=NS))
        content = entry.find("a:content", NS)
        if content is not None:
            assert content.get("type") in ("text", "html")
    assert len(ids) == len(set(ids)), "entry ids must be unique"


def entries(root) -> list[etree._Element]:
    return root.findall("a:entry", NS)


def link_of(entry) -> str:
    """An entry's alternate link (a link without rel is one, RFC 4287 4.2.7.2)."""
    return next(link.get("href") for link in entry.findall("a:link", NS) if link.get("rel", "alternate") == "alternate")


def study_of(entry) -> str:
    return link_of(entry).rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- any table view


def test_the_studies_feed_is_the_page_newest_first(ds):
    root = feed(ds, "/kb/studies.atom", on_topic="1", _sort_desc="pub_date")
    found = [study_of(e) for e in entries(root)]
    assert set(found) == STUDY_IDS - {OFF_TOPIC}
    assert found == [r["id"] for r in rows(ds, "/kb/studies.json", on_topic="1", _sort_desc="pub_date")]
    first = entries(root)[0]
    assert first.findtext("a:id", namespaces=NS) == "https://pubmed.ncbi.nlm.nih.gov/39000001/"
    assert link_of(first) == "http://localhost/kb/studies/39000001"
    # Updated: when kb.db first had the study; published: its publication date.
    first_seen = rows(ds, "/kb/studies.json", id="39000001")[0]["first_seen"]
    assert first.findtext("a:updated", namespaces=NS) == dt.datetime.fromisoformat(first_seen).isoformat()
    assert first.findtext("a:published", namespaces=NS) == "2024-08-15T00:00:00+00:00"
    assert [a.text for a in first.findall("a:author/a:name", NS)] == [
        "Nguyen, Thi Mai", "O'Brien, Seán, Jr", "ESKETINTRANASAL Study Group"]
    assert {c.get("term") for c in first.findall("a:category", NS)} >= {"rct", "trd", "esketamine"}
    assert {link.get("title") for link in first.findall("a:link[@rel='related']", NS)} == {"PubMed", "DOI"}
    updated = [e.findtext("a:updated", namespaces=NS) for e in entries(root)]
    assert updated == sorted(updated, reverse=True)
    assert root.findtext("a:updated", namespaces=NS) == updated[0]
    assert root.find("a:link[@rel='self']", NS).get("href") == (
        "http://localhost/kb/studies.atom?on_topic=1&_sort_desc=pub_date")
    assert root.find("a:link[@rel='alternate']", NS).get("href") == (
        "http://localhost/kb/studies?on_topic=1&_sort_desc=pub_date")


def test_a_facet_selection_and_a_search_have_feeds(ds):
    rcts = feed(ds, "/kb/studies.atom", designs__arraycontains="rct", on_topic="1", _sort_desc="pub_date")
    assert [study_of(e) for e in entries(rcts)] == ["39000001", "99000001", "99000002"]
    assert 'where designs contains "rct"' in rcts.findtext("a:title", namespaces=NS)
    searched = feed(ds, "/kb/studies.atom", _search="dissociation", _sort_desc="pub_date")
    assert {study_of(e) for e in entries(searched)} == {r["id"] for r in rows(ds, "/kb/studies.json",
                                                                                _search="dissociation")}
    # Any table with a study_id: each study once.
    tags = feed(ds, "/kb/design_tags.atom", tag_id="rct")
    assert sorted(study_of(e) for e in entries(tags)) == ["39000001", "99000001", "99000002"]


def test_the_canned_new_studies_query_follows_datasette_atoms_columns(ds):
    found = rows(ds, "/kb/new_studies.json", q="", indication="", design="", drug="")
    assert {r["study_id"] for r in found} == STUDY_IDS - {OFF_TOPIC}
    assert [r["atom_updated"] for r in found] == sorted((r["atom_updated"] for r in found), reverse=True)
    assert {"atom_id", "atom_title", "atom_updated", "atom_link", "atom_content", "atom_author_name"} <= set(found[0])
    root = feed(ds, "/kb/new_studies.atom", q="esketamine", indication="", design="", drug="")
    assert [study_of(e) for e in entries(root)] == ["39000001", "99000001"]
    first = entries(root)[0]
    assert first.findtext("a:id", namespaces=NS) == "https://pubmed.ncbi.nlm.nih.gov/39000001/"
    assert link_of(first) == "http://localhost/kb/studies/39000001"  # the query's relative link, made absolute
    assert first.find("a:content", NS).get("type") == "text"
    assert first.findtext("a:author/a:name", namespaces=NS) == "Nguyen TM"
    assert root.findtext("a:title", namespaces=NS) == "ketamine-kb: New studies, newest first (an Atom feed)"
    filtered = rows(ds, "/kb/new_studies.json", q="", indication="Treatment-resistant depression", design="rct",
                    drug="ketamine")
    assert [r["study_id"] for r in filtered] == ["99000002"]
    assert rows(ds, "/kb/new_studies.json", q='"', indication="", design="", drug="")  # bad FTS input: all


def test_record_text_never_reaches_a_reader_as_markup(ds):
    for path, params in (("/kb/studies.atom", {"_offtopic": "1"}), ("/kb/new_studies.atom", {"q": "esketamine"})):
        raw = get(ds, path, **params).text
        assert "<script" not in raw and "<img" not in raw and "<b>" not in raw, path
        root = etree.fromstring(raw.encode())
        hostile = next(e for e in entries(root) if study_of(e) == "99000001")
        assert hostile.findtext("a:title", namespaces=NS).startswith('Esketamine <script>alert("title")</script>')
        content = hostile.find("a:content", NS)
        if content.get("type") == "html":
            # HTML content: what a reader renders. The stored markup in it is escaped text.
            rendered = Tags()
            rendered.feed(content.text)
            assert rendered.tags <= {"p", "strong", "a"}, rendered.tags
            assert "&lt;script&gt;alert(&#34;abstract&#34;)&lt;/script&gt;" in content.text
            assert "<script" not in content.text and "<img" not in content.text and "<i>" not in content.text
            assert "Journal of &lt;b&gt;Bold&lt;/b&gt; Psychiatry" in content.text
        else:
            assert '<script>alert("abstract")</script>' in content.text  # plain text, shown as written


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)


def test_markup_a_query_writes_is_flattened_to_text(ds):
    sql = ("select 'urn:x:1' as atom_id, 'T <b>bold</b>' as atom_title, '2024-01-02T03:04:05' as atom_updated, "
           "'<p>Hi</p><script>alert(1)</script>' as atom_content_html, 'Ann' as atom_author_name, "
           "'https://example.org/x' as atom_link "
           "union all select 'urn:x:2', 'no date', 'not a date', null, null, null")
    root = feed(ds, "/kb.atom", sql=sql)
    (entry,) = entries(root)  # a row without a usable atom_updated is left out
    assert entry.findtext("a:title", namespaces=NS) == "T <b>bold</b>"
    assert entry.find("a:content", NS).get("type") == "text"
    assert "<script" not in entry.findtext("a:content", namespaces=NS)
    assert entry.findtext("a:updated", namespaces=NS) == "2024-01-02T03:04:05+00:00"
    assert link_of(entry) == "https://example.org/x"


def test_feeds_are_offered_where_rows_name_studies(ds):
    page = get(ds, "/kb/studies", designs__arraycontains="rct").text
    feed_url = "/kb/studies.atom?designs__arraycontains=rct&amp;on_topic=1&amp;_sort_desc=first_seen"
    assert ('<link rel="alternate" type="application/atom+xml" title="New studies matching this page" '
            f'href="{feed_url}">') in page
    assert f'class="kb-feed" href="{feed_url}"' in page
    sorted_page = get(ds, "/kb/studies", _sort="title", on_topic="1").text
    assert 'href="/kb/studies.atom?on_topic=1&amp;_sort_desc=first_seen"' in sorted_page  # its own sort replaced
    search = get(ds, "/kb/search", q="esketamine suicidal").text
    assert 'class="kb-feed" href="/kb/new_studies.atom?q=esketamine+suicidal"' in search
    assert 'type="application/atom+xml" title="New studies matching this query" href="/kb/new_studies.atom?q=' in search
    assert 'href="/kb/new_studies.atom?q=esketamine"' in get(ds, "/kb/new_studies", q="esketamine").text
    assert "kb-feed" not in get(ds, "/kb/tags").text and "tags.atom" not in get(ds, "/kb/tags").text
    # A study's own page offers citations, not a feed of one.
    assert "39000001.atom" not in get(ds, "/kb/studies/39000001").text
    assert get(ds, "/kb/tags.atom").status_code == 400


# --------------------------------------------------------------------------- the pieces


def test_when_reads_years_dates_and_timestamps():
    assert when(2024) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert when("2024-08") == dt.datetime(2024, 8, 1, tzinfo=dt.UTC)
    assert when("2024-08-15") == dt.datetime(2024, 8, 15, tzinfo=dt.UTC)
    assert when("2024-08-15T10:00:00Z") == dt.datetime(2024, 8, 15, 10, tzinfo=dt.UTC)
    assert when("2024-08-15T10:00:00+02:00").utcoffset() == dt.timedelta(hours=2)
    for bad in (None, "", "soon", "2024-13", "2024-02-30"):
        assert when(bad) is None, bad


def test_atom_column_entries_and_control_characters():
    entry = atom_column_entry({"atom_id": "urn:a", "atom_title": "Bell\x07 and\nnewline", "atom_updated": "2020",
                               "atom_link": "/kb/studies/1", "atom_content": "one\n\ntwo\x00"},
                              lambda path: "http://host" + path)
    assert (entry.title, entry.link, entry.content) == ("Bell and newline", "http://host/kb/studies/1", "one\n\ntwo")
    assert atom_column_entry({"atom_id": "", "atom_title": "x", "atom_updated": "2020"}, str) is None
    body = atom_feed(feed_id="urn:f", title="F", self_url="http://host/f.atom", html_url=None,
                     entries=[entry, Entry(id="urn:b", title="B", updated=when("2021"))])
    root = etree.fromstring(body)
    assert [e.findtext("a:id", namespaces=NS) for e in entries(root)] == ["urn:a", "urn:b"]  # the order given
    assert root.findtext("a:updated", namespaces=NS) == "2021-01-01T00:00:00+00:00"
    empty = etree.fromstring(atom_feed(feed_id="urn:f", title="", self_url="http://h/f", html_url=None, entries=[]))
    assert entries(empty) == [] and empty.findtext("a:title", namespaces=NS) == "ketamine-kb"


def test_export_and_feed_urls():
    assert study_column(["id", "title"], "studies") == ("id", "id")
    assert study_column(["id", "label"], "tags") is None
    assert study_column(["study_id"], "authors") == ("study_id", "id")
    assert study_column(["pmid", "title"], None) == ("pmid", "pmid")
    assert study_column(["title"], None) is None
    assert page_url("/kb/studies", "a=1&_next=5&_size=10&b=", "ris") == "/kb/studies.ris?a=1&b="
    assert page_url("/kb/studies.json", "a=1", "atom") == "/kb/studies.atom?a=1"
    assert page_url("/kb/x.y", "", "ris") == "/kb/x.y?_format=ris"
    assert table_feed_url("/kb/studies", "_sort=year&on_topic=1", "first_seen") == (
        "/kb/studies.atom?on_topic=1&_sort_desc=first_seen")
    assert re.fullmatch(r"/kb/studies\.atom\?_sort_desc=pub_date", table_feed_url("/kb/studies", "", "pub_date"))


@pytest.mark.parametrize("column", ["first_seen"])
def test_a_first_seen_column_dates_the_entries_once_kb_db_has_one(column):
    from ingest.site.feeds import study_entry

    record = {"id": "1", "pmid": 1, "title": "T", "year": 2020, "pub_date": "2020-05",
              "row": {column: "2026-01-03T04:05:06+00:00", "designs": '["rct"]'}}
    entry = study_entry(record, "http://h/kb/studies/1", {"rct": "Randomised controlled trial"})
    assert entry.updated == dt.datetime(2026, 1, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert entry.published == dt.datetime(2020, 5, 1, tzinfo=dt.UTC)
    assert entry.categories == [("rct", "Randomised controlled trial")]
    assert "Design: Randomised controlled trial" in entry.content
