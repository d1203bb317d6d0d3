"""Europe PMC: the REST ``/search`` client (cursorMark paging) and the ``resultType=core`` JSON parser.

Fetching and parsing are kept apart: :class:`EuropePMCClient` yields raw JSON pages,
:func:`parse_search_page` turns one page into record dicts of exactly the shape
:mod:`ingest.records` documents (plus a few Europe PMC keys) and never touches the network.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..records import ParseError, join_sections, load_json_page, split_inline_sections
from ..records.text import (
    MAX_HTML_TAGS,
    as_dict,
    clean_ws,
    html_to_text,
    json_int,
    nct_ids_in,
    normalise_doi,
    normalise_pmcid,
    parse_free_date,
    parse_id,
)
from .http import FetchError, JsonApiClient, TransientBodyError, decode_json_body

DEFAULT_BASE_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest/"
SEARCH_TERMS = ("ketamine", "esketamine", "arketamine", "hydroxynorketamine")
# The PubMed default's [tiab] terms, in Europe PMC's field syntax.
DEFAULT_QUERY = " OR ".join(f"{fld}:{term}" for term in SEARCH_TERMS for fld in ("TITLE", "ABSTRACT"))
MAX_PAGE_SIZE = 1000
# More candidate headings than this is not a structured abstract: looking for its headings
# would take time quadratic in the markup, so the text is read without them.
MAX_HEADINGS = 200
# Europe PMC asks for moderate use; 5 requests/s stays well inside it.
DEFAULT_RATE = 5.0
SOURCE_NAME = "europepmc"
CTGOV = "ClinicalTrials.gov"

_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BOLD_TAGS = ("b", "strong")
# A heading must start its line: these end the run of text before it.
_BREAKS = ("br", "p", "div", "li", "ul", "ol", *_HEADING_TAGS)
# Private-use characters: never whitespace, never in an abstract, survive html_to_text.
_MARK = "\ue000{}\ue001"
_MARK_RE = re.compile("\ue000(\\d+)\ue001")
_REGULAR_DATE = re.compile(r"\d{4}( [A-Z][a-z]{2}( \d{1,2})?)?")
_JATS_TYPE = re.compile(r"[a-z]+(?:-[a-z]+)*")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@dataclass
class EuropePMCPage:
    records: list[dict] = field(default_factory=list)
    next_cursor: str | None = None
    hit_count: int = 0
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- parsing


def parse_search_page(data: bytes) -> EuropePMCPage:
    """Parse one ``/search?format=json&resultType=core`` answer.

    A result that cannot be understood is reported in ``errors`` and the rest still parse.
    Malformed JSON or a body without ``resultList`` raises :class:`ParseError`.
    """
    payload = load_json_page(data, "Europe PMC", "resultList", dict, "no resultList: not a /search answer")
    page = EuropePMCPage(next_cursor=_text(payload.get("nextCursorMark")) or None,
                         hit_count=json_int(payload.get("hitCount")) or 0)
    results = payload["resultList"].get("result") or []
    if not isinstance(results, list):
        raise ParseError("Europe PMC resultList.result is not a list")
    for number, result in enumerate(results, 1):
        try:
            page.records.append(parse_result(result))
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            page.errors.append(f"skipped Europe PMC result {number} ({_describe(result)}): {exc}")
    return page


def parse_result(result: dict) -> dict:
    """One ``resultList.result`` entry to a record dict."""
    if not isinstance(result, dict):
        raise TypeError(f"result is a {type(result).__name__}, not an object")
    source, ident = _text(result.get("source")).upper(), _text(result.get("id"))
    if not source or not ident:
        raise ValueError("no source or id")
    pmid_text = _text(result.get("pmid"))
    sections = abstract_sections(result.get("abstractText"))
    journal_info = as_dict(result.get("journalInfo"))
    journal = as_dict(journal_info.get("journal"))
    preprint_server = as_dict(result.get("bookOrReportDetails"))
    year, pub_date, medline_date = _dates(result, journal_info)
    raw_types = [n for n in (clean_ws(str(p)) for p in _items(result, "pubTypeList", "pubType")) if n]
    # pubTypeList mixes PubMed's types with JATS article-types ("research-article"); keep PubMed's.
    pub_types = [n for n in raw_types if not _JATS_TYPE.fullmatch(n)]
    keywords = [k for k in (html_to_text(str(k)) for k in _items(result, "keywordList", "keyword")) if k]
    title = html_to_text(result.get("title"))
    record = {
        "pmid": parse_id(pmid_text),
        "pmid_version": None,
        "title": title,
        "abstract_sections": sections,
        "abstract": join_sections(sections),
        # Preprints have no journal; their server (bioRxiv, medRxiv...) stands in for it.
        "journal": html_to_text(journal.get("title")) or _text(preprint_server.get("publisher")),
        "iso_abbrev": _text(journal.get("isoabbreviation") or journal.get("medlineAbbreviation")),
        "issn": _text(journal.get("issn") or journal.get("essn")),
        "volume": _text(journal_info.get("volume")),
        "issue": _text(journal_info.get("issue")),
        "pages": _text(result.get("pageInfo")),
        "year": year,
        "pub_date": pub_date,
        "medline_date": medline_date,
        "languages": [_text(result.get("language"))] if _text(result.get("language")) else [],
        "authors": [_author(a) for a in _items(result, "authorList", "author") if isinstance(a, dict)],
        "publication_types": [{"ui": None, "name": name} for name in pub_types],
        "mesh": [_mesh_heading(h) for h in _items(result, "meshHeadingList", "meshHeading") if isinstance(h, dict)],
        "chemicals": [_chemical(c) for c in _items(result, "chemicalList", "chemical") if isinstance(c, dict)],
        "keywords": keywords,
        "comments_corrections": [
            _comment_correction(c) for c in _items(result, "commentCorrectionList", "commentCorrection")
            if isinstance(c, dict)
        ],
        "doi": normalise_doi(_text(result.get("doi"))),
        "pmcid": normalise_pmcid(_text(result.get("pmcid")) or (ident if source == "PMC" else None)),
        "entry_date": _iso_day(result.get("firstIndexDate")),
        "sources": [SOURCE_NAME],
        "source_id": f"{source}:{ident}",
        "europepmc_source": source,
        "is_open_access": _text(result.get("isOpenAccess")).upper() == "Y",
        "cited_by_count": json_int(result.get("citedByCount")) or 0,
        "is_preprint": source == "PPR" or any(p.lower() == "preprint" for p in raw_types),
    }
    # dbCrossReferenceList / tmAccessionTypeList only name databases ("EMBL", "nct"), never
    # accessions. Trial numbers in the text are found (and labelled as such) by the trial
    # linker, so only keywords, the nearest thing to a registry field, count as databank ids.
    record["nct_ids"] = nct_ids_in(" ".join(keywords))
    record["databanks"] = [{"name": CTGOV, "accession": nct} for nct in record["nct_ids"]]
    return record


def abstract_sections(fragment: str | None) -> list[dict]:
    """Sections of an abstract given as HTML, labelled from its <h4> / <b> headings.

    ``<h4>Background</h4>text<h4>Methods</h4>text`` gives two sections labelled BACKGROUND
    and METHODS; text before the first heading is an unlabelled section. Without headings
    the text is still split on inline "LABEL: " markers, as PubMed's flattened abstracts are.
    """
    if not fragment or not str(fragment).strip():
        return []
    fragment = str(fragment)
    if "<" not in fragment or fragment.count("<") > MAX_HTML_TAGS:
        return split_inline_sections(html_to_text(fragment))
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(fragment, "html.parser")
    candidates = soup.find_all([*_HEADING_TAGS, *_BOLD_TAGS], limit=MAX_HEADINGS + 1)
    if len(candidates) > MAX_HEADINGS:
        return split_inline_sections(html_to_text(fragment))
    labels: list[str] = []
    replaced: set[int] = set()
    for el in candidates:
        if any(id(parent) in replaced for parent in el.parents) or not _is_heading(el):
            continue
        label = clean_ws(el.get_text()).rstrip(":").strip().upper()
        replaced.add(id(el))
        # Spaces keep a block boundary where the heading was.
        el.replace_with(f" {_MARK.format(len(labels))} ")
        labels.append(label)
    if not labels:
        return split_inline_sections(html_to_text(fragment))
    try:
        text = html_to_text(str(soup))
    except RecursionError:  # bs4 recurses over very deep markup
        return split_inline_sections(html_to_text(fragment))
    return _split_on_marks(text, labels)


def _split_on_marks(text: str, labels: list[str]) -> list[dict]:
    parts = _MARK_RE.split(text)
    sections = []
    lead = parts[0].strip()
    if lead:
        sections.append({"label": None, "nlm_category": None, "text": lead})
    for index, body in zip(parts[1::2], parts[2::2], strict=True):
        body = body.strip().lstrip(":").strip()
        if body:
            # Europe PMC carries no NlmCategory; PubMed's own record supplies it on merge.
            sections.append({"label": labels[int(index)] or None, "nlm_category": None, "text": body})
    return sections


def _is_heading(el) -> bool:
    """An <h4>, or a short <b>/<strong> that opens a paragraph or line as a label would."""
    if el.name in _HEADING_TAGS:
        return bool(clean_ws(el.get_text()))
    label = clean_ws(el.get_text())
    if not label or len(label) > 60 or not any(c.isalpha() for c in label):
        return False
    before = _run_text(reversed(list(el.previous_siblings)), keep_last_line=True)
    after = _run_text(el.next_siblings)
    if label.endswith(":") or after.startswith(":"):
        # "text. <b>Methods:</b> text" is a label; "see <b>Table 2:</b>" mid-sentence is not.
        return before == "" or before[-1] in ".?!)]"
    # Without a colon, only a bold standing alone on its line is a heading, not emphasis.
    return before == "" and after == ""


def _run_text(siblings, keep_last_line: bool = False) -> str:
    """Text of siblings (in document order) on one line, bounded by <br> or block elements.

    Following siblings stop at the first break; preceding ones keep only the last line.
    """
    parts: list[str] = []
    for sib in siblings:
        if getattr(sib, "name", None) in _BREAKS:
            if keep_last_line:
                parts.clear()
                continue
            break
        parts.append(sib if isinstance(sib, str) else sib.get_text())
    return clean_ws("".join(parts))


def _dates(result: dict, journal_info: dict) -> tuple[int | None, str | None, str | None]:
    """Year, partial ISO date and the irregular date string, like PubMed's PubDate / MedlineDate."""
    printed = _text(journal_info.get("dateOfPublication"))
    if printed:
        year, date = parse_free_date(printed)
        if year:
            return year, date, None if _REGULAR_DATE.fullmatch(printed) else printed
    for key in ("firstPublicationDate", "electronicPublicationDate"):
        match = _ISO_DATE.fullmatch(_text(result.get(key)))
        if match:
            return int(match.group(1)), match.group(0), None
    year = json_int(journal_info.get("yearOfPublication")) or json_int(result.get("pubYear"))
    return (year, f"{year:04d}", None) if year else (None, None, None)


def _iso_day(value) -> str | None:
    """A YYYY-MM-DD date as given, else None (Europe PMC's dates are ISO days)."""
    match = _ISO_DATE.fullmatch(_text(value))
    return match.group(0) if match and len(match.group(0)) == 10 else None


def _author(author: dict) -> dict:
    ids = author.get("authorId")
    orcid = None
    for ident in ids if isinstance(ids, list) else [ids]:
        if isinstance(ident, dict) and _text(ident.get("type")).upper() == "ORCID":
            orcid = _text(ident.get("value")).rsplit("/", 1)[-1] or None
    collective = _text(author.get("collectiveName")) or None
    last = _text(author.get("lastName")) or None
    if not last and not collective:
        last = _text(author.get("fullName")) or None
    details = [d for d in _items(author, "authorAffiliationDetailsList", "authorAffiliation") if isinstance(d, dict)]
    affiliations = [_text(d.get("affiliation")) for d in details] or [_text(author.get("affiliation"))]
    return {
        "last_name": last,
        "fore_name": _text(author.get("firstName")) or None,
        "initials": _text(author.get("initials")) or None,
        "suffix": None,
        "collective_name": collective,
        "orcid": orcid,
        "affiliations": list(dict.fromkeys(a for a in affiliations if a)),
    }


def _mesh_heading(heading: dict) -> dict:
    # Europe PMC gives names and Y/N flags but no descriptor or qualifier UIs.
    return {
        "descriptor_ui": None,
        "descriptor": _text(heading.get("descriptorName")),
        "major": _text(heading.get("majorTopic_YN")).upper() == "Y",
        "qualifiers": [
            {"ui": None, "name": _text(q.get("qualifierName")), "major": _text(q.get("majorTopic_YN")).upper() == "Y"}
            for q in _items(heading, "meshQualifierList", "meshQualifier") if isinstance(q, dict)
        ],
    }


def _chemical(chem: dict) -> dict:
    registry = _text(chem.get("registryNumber")) or None
    # "0" is MEDLINE's placeholder for "no registry number".
    return {"ui": None, "name": _text(chem.get("name")), "registry_number": registry if registry != "0" else None}


def _comment_correction(cc: dict) -> dict:
    source, ident = _text(cc.get("source")).upper(), _text(cc.get("id"))
    return {
        "ref_type": _ref_type(_text(cc.get("type"))),
        "pmid": parse_id(ident) if source == "MED" else None,
        "source": _text(cc.get("reference")) or (f"{source}:{ident}" if ident else None),
        "note": _text(cc.get("note")) or None,
    }


def _ref_type(text: str) -> str | None:
    """"Retraction in" -> "RetractionIn": PubMed's CommentsCorrections RefType spelling."""
    words = text.split()
    if not words:
        return None
    # PubMed writes "CorrectedandRepublishedIn" with a lower-case "and".
    return "".join(w.lower() if w.lower() == "and" else w[:1].upper() + w[1:].lower() for w in words)


def _items(obj: dict, outer: str, inner: str) -> list:
    """Europe PMC wraps lists twice: ``{"keywordList": {"keyword": [...]}}``."""
    value = as_dict(obj.get(outer)).get(inner)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]




def _text(value) -> str:
    return clean_ws(str(value)) if value is not None else ""




def _describe(result) -> str:
    if isinstance(result, dict):
        return f"{result.get('source')}:{result.get('id')}"
    return type(result).__name__


# --------------------------------------------------------------------------- fetching


def check_europepmc_body(content: bytes) -> dict:
    """The decoded page, or :class:`TransientBodyError` for an HTML page or broken JSON."""
    payload = decode_json_body(content, "Europe PMC")
    if not isinstance(payload, dict) or not isinstance(payload.get("resultList"), dict):
        detail = _text(payload.get("errMsg"))[:200] if isinstance(payload, dict) else None
        raise TransientBodyError(f"Europe PMC answer has no resultList{f': {detail}' if detail else ''}")
    if not isinstance(payload["resultList"].get("result") or [], list):
        raise TransientBodyError("Europe PMC answer's resultList.result is not a list")
    return payload


def changed_since_query(query: str, since: dt.date, until: dt.date | None = None) -> str:
    """``query`` limited to records first indexed (FIRST_IDATE) or updated (UPDATE_DATE) in a window."""
    window = f"[{since.isoformat()} TO {(until or dt.date.today()).isoformat()}]"
    return f"({query}) AND (FIRST_IDATE:{window} OR UPDATE_DATE:{window})"


class EuropePMCClient(JsonApiClient):
    """Europe PMC REST search client with retries, rate limiting and cursor paging."""

    endpoint = "search"
    default_rate = DEFAULT_RATE
    check_body = staticmethod(check_europepmc_body)

    def __init__(self, base_url: str = DEFAULT_BASE_URL, **options):
        super().__init__(base_url, **options)

    def count(self, query: str = DEFAULT_QUERY, since: dt.date | None = None) -> int:
        """How many results ``query`` has (first indexed or updated from ``since``): one small page."""
        if since is not None:
            query = changed_since_query(query, since)
        _, page = self.get_page({"query": query, "resultType": "idlist", "format": "json", "pageSize": 1})
        return json_int(page.get("hitCount")) or 0

    def search_pages(self, query: str = DEFAULT_QUERY, page_size: int = MAX_PAGE_SIZE,
                     progress: bool = True, since: dt.date | None = None) -> Iterator[bytes]:
        """Yield raw JSON pages covering every result of ``query``, following nextCursorMark.

        ``since``: only records first indexed or updated from that day on (`kb update`).
        """
        from tqdm import tqdm

        if since is not None:
            query = changed_since_query(query, since)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
        cursor, followed = "*", {"*"}
        with tqdm(total=0, unit="rec", desc="Europe PMC search", disable=not progress) as bar:
            while True:
                params = {"query": query, "resultType": "core", "format": "json",
                          "pageSize": page_size, "cursorMark": cursor}
                body, page = self.get_page(params)
                if cursor == "*":
                    bar.total = json_int(page.get("hitCount")) or 0
                    bar.refresh()
                results = page["resultList"].get("result") or []
                if not results:
                    return
                yield body
                bar.update(len(results))
                next_cursor = _text(page.get("nextCursorMark"))
                # The last page repeats the cursor it was asked for (or omits it).
                if not next_cursor or next_cursor == cursor:
                    return
                if next_cursor in followed:
                    # A cursor leading back to an earlier page: following it would never end.
                    raise FetchError(f"Europe PMC paging loops: cursor {next_cursor[:40]!r} was already followed")
                followed.add(next_cursor)
                cursor = next_cursor
