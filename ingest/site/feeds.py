"""Atom feeds of studies (RFC 4287).

Two kinds of rows make a feed, as the site's ``.atom`` renderer finds them:

* rows with datasette-atom's columns, ``atom_id``, ``atom_title`` and ``atom_updated`` (and
  optionally ``atom_link``, ``atom_content``, ``atom_content_html``, ``atom_author_name``,
  ``atom_author_email``, ``atom_author_uri``): one entry per row, as datasette-atom makes it
  (the canned query ``new_studies`` is written that way);
* any other rows naming studies (a studies table page, a facet selection, a search): one entry
  per study, from its record (:func:`study_entry`).

Record text never reaches a reader as markup: titles and ``atom_content`` are Atom text
constructs; an entry's HTML content is built here with every piece of record text escaped;
and ``atom_content_html`` (markup a query wrote) is flattened to text, not passed on.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from markupsafe import Markup

from ingest.records.citations import (
    date_parts,
    display_name,
    doi_url,
    named_authors,
    one_line,
    pubmed_url,
    vancouver_source,
)
from ingest.records.text import html_to_text, json_list

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_COLUMNS = ("atom_id", "atom_title", "atom_updated")
CONTENT_TYPE = "application/atom+xml; charset=utf-8"
MAX_AUTHORS = 20


@dataclass
class Entry:
    id: str
    title: str
    updated: dt.datetime
    link: str | None = None
    published: dt.datetime | None = None
    authors: list[dict] = field(default_factory=list)
    content: str | None = None
    content_type: str = "text"  # "html" only for markup built here, every record value escaped
    related: list[tuple[str, str]] = field(default_factory=list)  # (href, title)
    categories: list[tuple[str, str]] = field(default_factory=list)  # (term, label)


def when(value) -> dt.datetime | None:
    """A timezone-aware datetime from a year, an ISO date (``2024``, ``2024-08``, ``2024-08-15``)
    or an ISO timestamp (UTC when it names no zone); None when it is none of these."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and 1000 <= value <= 9999:
        return dt.datetime(value, 1, 1, tzinfo=dt.UTC)
    text = str(value).strip()
    match = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", text)
    try:
        if match:
            year, month, day = (int(p) if p else 1 for p in match.groups())
            return dt.datetime(year, month, day, tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def has_atom_columns(columns) -> bool:
    return set(ATOM_COLUMNS) <= set(columns or [])


def atom_column_entry(row: dict, absolute) -> Entry | None:
    """An entry from datasette-atom's columns (``absolute`` makes a site-relative link absolute)."""
    updated = when(row.get("atom_updated"))
    entry_id = one_line(row.get("atom_id"))
    if not entry_id or updated is None:
        return None
    entry = Entry(id=entry_id, title=one_line(row.get("atom_title")) or entry_id, updated=updated)
    link = one_line(row.get("atom_link"))
    if link:
        entry.link = absolute(link) if link.startswith("/") else link
    if row.get("atom_content_html"):
        entry.content = one_line(html_to_text(str(row["atom_content_html"])))
    elif row.get("atom_content"):
        entry.content = _text(row["atom_content"])
    author = {k: one_line(row.get(f"atom_author_{k}")) for k in ("name", "email", "uri")}
    if author["name"]:
        entry.authors = [{k: v for k, v in author.items() if v}]
    return entry


def _text(value) -> str:
    """Text kept in paragraphs (a blank line between them), control characters dropped."""
    return "\n\n".join(one_line(p) for p in re.split(r"\n\s*\n", str(value)) if one_line(p))


def study_entry(record: dict, page_url: str, labels: dict[str, str]) -> Entry:
    """One study as an entry: its page, authors, source, design and abstract (all escaped)."""
    row = record.get("row") or {}
    published = when("-".join(f"{p:02d}" if i else str(p) for i, p in enumerate(date_parts(record))) or None)
    # When kb.db first had the study, once it records that; until then, when it was published.
    updated = when(row.get("first_seen")) or published or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    entry = Entry(id=pubmed_url(record) or doi_url(record) or page_url, title=one_line(record.get("title"))
                  or str(record.get("id")), updated=updated, link=page_url, published=published)
    authors = named_authors(record)
    entry.authors = [{"name": display_name(a)} for a in authors[:MAX_AUTHORS]]
    if len(authors) > MAX_AUTHORS:
        entry.authors.append({"name": "et al."})
    entry.related = [(url, name) for url, name in ((pubmed_url(record), "PubMed"), (doi_url(record), "DOI")) if url]
    designs = [labels.get(d, d) for d in _ids(row.get("designs"))]
    for column in ("designs", "indications", "drugs"):
        entry.categories += [(tag, labels.get(tag, tag)) for tag in _ids(row.get(column))]
    entry.content = str(_content(record, designs))
    entry.content_type = "html"
    return entry


def _ids(value) -> list[str]:
    return [v for v in json_list(value) if isinstance(v, str)]


def _content(record: dict, designs: list[str]) -> Markup:
    parts = [Markup("<p>{}</p>").format(vancouver_source(record))]
    facts = []
    if designs:
        facts.append(Markup("Design: {}").format(", ".join(designs)))
    if record.get("is_retracted"):
        facts.append(Markup("<strong>Retracted</strong>"))
    if facts:
        parts.append(Markup("<p>{}</p>").format(Markup(" · ").join(facts)))
    sections = record.get("abstract_sections") or []
    if sections:
        for section in sections:
            if section.get("label"):
                parts.append(Markup("<p><strong>{}:</strong> {}</p>").format(one_line(section["label"]),
                                                                             one_line(section["text"])))
            else:
                parts.append(Markup("<p>{}</p>").format(one_line(section["text"])))
    elif record.get("abstract"):
        parts += [Markup("<p>{}</p>").format(p) for p in _text(record["abstract"]).split("\n\n")]
    links = [Markup('<a href="{}">{}</a>').format(url, name)
             for url, name in ((pubmed_url(record), "PubMed"), (doi_url(record), "DOI")) if url]
    if links:
        parts.append(Markup("<p>{}</p>").format(Markup(" · ").join(links)))
    return Markup("\n").join(parts)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def atom_feed(*, feed_id: str, title: str, self_url: str, html_url: str | None, entries: list[Entry],
              subtitle: str | None = None) -> bytes:
    """The feed as UTF-8 XML, entries in the order given.

    Written with lxml, which escapes every text and attribute. (feedgen 1.0 writes an entry's
    links without their rel, type and title, python-feedgen issue #135: a related link would
    become a second alternate one, which RFC 4287 forbids.)
    """
    from lxml import etree

    def sub(parent, tag: str, text: str | None = None, **attrs) -> etree._Element:
        element = etree.SubElement(parent, f"{{{ATOM_NS}}}{tag}", {k: v for k, v in attrs.items() if v})
        if text is not None:
            element.text = text
        return element

    feed = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    sub(feed, "id", feed_id)
    sub(feed, "title", one_line(title) or "ketamine-kb")
    if subtitle:
        sub(feed, "subtitle", one_line(subtitle))
    latest = max((e.updated for e in entries), default=None)
    sub(feed, "updated", _iso(latest or dt.datetime.now(dt.UTC).replace(microsecond=0)))
    sub(sub(feed, "author"), "name", "ketamine-kb")
    sub(feed, "generator", "ketamine-kb")
    sub(feed, "link", href=self_url, rel="self", type="application/atom+xml")
    if html_url:
        sub(feed, "link", href=html_url, rel="alternate", type="text/html")
    for item in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", item.id)
        sub(entry, "title", item.title or item.id)
        sub(entry, "updated", _iso(item.updated))
        if item.published:
            sub(entry, "published", _iso(item.published))
        for author in item.authors:
            person = sub(entry, "author")
            for key in ("name", "email", "uri"):
                if author.get(key):
                    sub(person, key, author[key])
        if item.link:
            sub(entry, "link", href=item.link, rel="alternate", type="text/html")
        for href, name in item.related:
            sub(entry, "link", href=href, rel="related", title=name)
        for term, label in item.categories:
            sub(entry, "category", term=term, label=label)
        # An entry with no alternate link must have content (RFC 4287 4.1.1.1): its title then.
        content = item.content if item.content or item.link else item.title
        if content:
            sub(entry, "content", content, type=item.content_type if item.content else "text")
    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)
