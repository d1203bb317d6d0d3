"""PubMed: the E-utilities client (esearch + efetch) and the efetch / baseline XML parser.

Fetching and parsing are kept apart: :class:`PubMedClient` yields raw XML bytes,
:func:`parse_pubmed_xml` turns bytes into plain dicts and never touches the network.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from lxml import etree

from ..records import ParseError, ParseResult, join_sections
from ..records.text import (
    clean_ws,
    element_text,
    iso_date,
    normalise_doi,
    normalise_pmcid,
    parse_free_date,
    parse_id,
)
from .http import ApiClient, TransientBodyError

DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
DEFAULT_QUERY = (
    "ketamine[tiab] OR esketamine[tiab] OR arketamine[tiab] OR hydroxynorketamine[tiab]"
    ' OR "Ketamine"[MeSH Terms]'
)
# esearch cannot page past this record of one result set; larger searches are sliced by date.
ESEARCH_WINDOW = 9_999
TOOL_NAME = "ketamine-kb"


# --------------------------------------------------------------------------- parsing


# Saved HTML (an error page, a browser's "save as") is not XML PubMed wrote.
_HTML_START = re.compile(rb"\A(\xef\xbb\xbf)?\s*(<!--.*?-->\s*)*<(!doctype\s+html|html)[\s>]",
                         re.IGNORECASE | re.DOTALL)


def _xml_parser_kwargs() -> dict:
    # Never resolve entities or fetch the DTD named in the DOCTYPE (no network, no XXE).
    return {"resolve_entities": False, "no_network": True, "huge_tree": True, "load_dtd": False}


FEED_BYTES = 1 << 20  # the pull parser is fed this much at a time


class _RecordElements:
    """Each PubmedArticle, DeleteCitation and PubmedBookArticle element as it ends, then ``root``.

    A pull parser fed chunk by chunk, drained after every feed and once more after a syntax
    error, so the records before a fault are always delivered (lxml 6.2's iterparse raises
    before yielding the events of the chunk that holds the error).
    """

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks = chunks
        self.root = None
        self.parser = etree.XMLPullParser(events=("end",), tag=("PubmedArticle", "DeleteCitation",
                                                                "PubmedBookArticle"), **_xml_parser_kwargs())

    def __iter__(self) -> Iterator[etree._Element]:
        try:
            for chunk in self.chunks:
                self.parser.feed(chunk)
                yield from (el for _, el in self.parser.read_events())
            self.root = self.parser.close()
        except etree.XMLSyntaxError:
            yield from (el for _, el in self.parser.read_events())
            raise
        yield from (el for _, el in self.parser.read_events())


def parse_pubmed_xml(data: bytes, on_record: Callable[[dict], None] | None = None) -> ParseResult:
    """Parse a PubmedArticleSet (efetch output or a baseline/update file).

    Returns every PubmedArticle as a dict and every DeleteCitation PMID. A record that
    cannot be understood is reported in ``errors`` and the rest still parse. Malformed XML
    raises :class:`ParseError` carrying the records parsed before the fault.
    ``on_record`` is called with each record as soon as it is parsed.
    """
    chunks = (data[start:start + FEED_BYTES] for start in range(0, len(data), FEED_BYTES))
    return parse_pubmed_stream(chunks, on_record)


def parse_pubmed_stream(chunks: Iterable[bytes], on_record: Callable[[dict], None] | None = None,
                        keep: bool = True) -> ParseResult:
    """:func:`parse_pubmed_xml` over a file's bytes in chunks; ``keep=False``: each record goes
    to ``on_record`` alone, so memory does not grow with the file."""
    result = ParseResult(on_record=on_record, keep=keep)
    chunks = iter(chunks)
    first = next(chunks, b"")
    if _HTML_START.match(first[:4096]):
        raise ParseError("an HTML page, not PubMed XML (a saved error or login page?)")
    events = _RecordElements(itertools.chain([first], chunks))
    try:
        for el in events:
            if el.tag == "PubmedArticle":
                try:
                    result.add(parse_article(el))
                except (ValueError, TypeError) as exc:
                    result.errors.append(f"skipped a PubmedArticle: {exc}")
            elif el.tag == "DeleteCitation":
                for pmid in el.findall("PMID"):
                    if parse_id(pmid.text):
                        result.deleted.append(parse_id(pmid.text))
            el.clear(keep_tail=True)
            while el.getprevious() is not None:  # parsed siblings: the tree stays one record deep
                del el.getparent()[0]
    except etree.XMLSyntaxError as exc:
        error = ParseError(f"malformed XML: {exc}")
        error.partial = result  # type: ignore[attr-defined]
        raise error from exc
    if not result.count and not result.deleted:
        _check_root(events.root)
    return result


def _check_root(root) -> None:
    """ParseError unless ``root`` is a PubMed article set (an empty one is fine)."""
    name = etree.QName(root).localname if root is not None else ""
    if name in ("PubmedArticleSet", "PubmedBookArticleSet"):
        return
    if name == "eFetchResult" or (root is not None and root.find("ERROR") is not None):
        message = clean_ws(root.findtext("ERROR"))[:300] or "no message"
        raise ParseError(f"an E-utilities error answer, not records: {message}")
    raise ParseError(f"not PubMed XML: its root element is <{name[:60]}>, not <PubmedArticleSet>")


def parse_article(article) -> dict:
    """One <PubmedArticle> element to a record dict."""
    citation = article.find("MedlineCitation")
    if citation is None:
        raise ValueError("no MedlineCitation")
    pmid_el = citation.find("PMID")
    pmid_text = (pmid_el.text or "").strip() if pmid_el is not None else ""
    pmid = parse_id(pmid_text)
    if pmid is None:
        raise ValueError(f"bad PMID {pmid_text[:20]!r}")
    art = citation.find("Article")
    if art is None:
        raise ValueError(f"PMID {pmid_text}: no Article")
    journal = art.find("Journal")
    year, pub_date, medline_date = _pub_date(journal)
    if year is None:
        year, pub_date = _article_date(art)
    sections = _abstract_sections(art.find("Abstract"))
    record = {
        "pmid": pmid,
        "pmid_version": _version(pmid_el.get("Version")),
        "title": element_text(art.find("ArticleTitle")) or element_text(art.find("VernacularTitle")),
        "abstract_sections": sections,
        "abstract": join_sections(sections),
        "journal": element_text(journal.find("Title")) if journal is not None else "",
        "iso_abbrev": element_text(journal.find("ISOAbbreviation")) if journal is not None else "",
        "issn": element_text(journal.find("ISSN")) if journal is not None else "",
        "volume": element_text(journal.find("JournalIssue/Volume")) if journal is not None else "",
        "issue": element_text(journal.find("JournalIssue/Issue")) if journal is not None else "",
        "pages": element_text(art.find("Pagination/MedlinePgn")),
        "year": year,
        "pub_date": pub_date,
        "medline_date": medline_date,
        "languages": [clean_ws(x.text) for x in art.findall("Language") if clean_ws(x.text)],
        "authors": [_author(a) for a in art.findall("AuthorList/Author")],
        "publication_types": [
            {"ui": pt.get("UI"), "name": element_text(pt)}
            for pt in art.findall("PublicationTypeList/PublicationType")
        ],
        "mesh": [_mesh_heading(h) for h in citation.findall("MeshHeadingList/MeshHeading")],
        "chemicals": [_chemical(c) for c in citation.findall("ChemicalList/Chemical")],
        "keywords": [
            element_text(k) for k in citation.findall("KeywordList/Keyword") if element_text(k)
        ],
        "databanks": _databanks(art),
        "comments_corrections": [
            _comment_correction(c) for c in citation.findall("CommentsCorrectionsList/CommentsCorrections")
        ],
        "doi": _doi(article, art),
        "pmcid": _article_id(article, "pmc"),
        "entry_date": _entry_date(article),
        "sources": ["pubmed"],
    }
    record["nct_ids"] = [
        d["accession"] for d in record["databanks"] if d["name"].lower().startswith("clinicaltrials")
    ]
    return record


def _entry_date(article) -> str | None:
    """When the record entered PubMed (its Entrez date, `[edat]`), as YYYY-MM-DD."""
    for status in ("entrez", "pubmed"):
        date = article.find(f"PubmedData/History/PubMedPubDate[@PubStatus='{status}']")
        if date is None:
            continue
        parts = [element_text(date.find(name)) for name in ("Year", "Month", "Day")]
        if all(part.isdigit() for part in parts):
            year, month, day = (int(part) for part in parts)
            if 1 <= month <= 12 and 1 <= day <= 31:
                return f"{year:04d}-{month:02d}-{day:02d}"
    return None


def _version(value: str | None) -> int:
    """The PMID's Version attribute: 1 when absent or unreadable (versions are small numbers)."""
    version = parse_id(value)
    return version if version and version < 1000 else 1


def _abstract_sections(abstract) -> list[dict]:
    if abstract is None:
        return []
    sections = []
    for text_el in abstract.findall("AbstractText"):
        text = element_text(text_el)
        if not text:
            continue
        sections.append(
            {
                "label": clean_ws(text_el.get("Label")) or None,
                "nlm_category": clean_ws(text_el.get("NlmCategory")) or None,
                "text": text,
            }
        )
    return sections


def _pub_date(journal) -> tuple[int | None, str | None, str | None]:
    if journal is None:
        return None, None, None
    pub = journal.find("JournalIssue/PubDate")
    if pub is None:
        return None, None, None
    medline = pub.findtext("MedlineDate")
    if medline:
        year, date = parse_free_date(medline)
        return year, date, clean_ws(medline)
    season = pub.findtext("Season")
    year, date = iso_date(pub.findtext("Year"), pub.findtext("Month") or season, pub.findtext("Day"))
    return year, date, None


def _article_date(art) -> tuple[int | None, str | None]:
    date = art.find("ArticleDate")
    if date is None:
        return None, None
    return iso_date(date.findtext("Year"), date.findtext("Month"), date.findtext("Day"))


def _author(author) -> dict:
    orcid = None
    for ident in author.findall("Identifier"):
        if (ident.get("Source") or "").upper() == "ORCID":
            orcid = clean_ws(ident.text).rsplit("/", 1)[-1] or None
    return {
        "last_name": element_text(author.find("LastName")) or None,
        "fore_name": element_text(author.find("ForeName")) or None,
        "initials": element_text(author.find("Initials")) or None,
        "suffix": element_text(author.find("Suffix")) or None,
        "collective_name": element_text(author.find("CollectiveName")) or None,
        "orcid": orcid,
        "affiliations": [
            element_text(a) for a in author.findall("AffiliationInfo/Affiliation") if element_text(a)
        ],
    }


def _mesh_heading(heading) -> dict:
    descriptor = heading.find("DescriptorName")
    return {
        "descriptor_ui": descriptor.get("UI") if descriptor is not None else None,
        "descriptor": element_text(descriptor),
        "major": (descriptor.get("MajorTopicYN") == "Y") if descriptor is not None else False,
        "qualifiers": [
            {"ui": q.get("UI"), "name": element_text(q), "major": q.get("MajorTopicYN") == "Y"}
            for q in heading.findall("QualifierName")
        ],
    }


def _chemical(chem) -> dict:
    name = chem.find("NameOfSubstance")
    registry = clean_ws(chem.findtext("RegistryNumber"))
    return {
        "ui": name.get("UI") if name is not None else None,
        "name": element_text(name),
        "registry_number": registry if registry and registry != "0" else None,
    }


def _databanks(art) -> list[dict]:
    banks = []
    for bank in art.findall("DataBankList/DataBank"):
        name = clean_ws(bank.findtext("DataBankName"))
        for acc in bank.findall("AccessionNumberList/AccessionNumber"):
            accession = clean_ws(acc.text)
            if not accession:
                continue
            if name.lower().startswith("clinicaltrials"):
                accession = accession.upper().replace(" ", "")
            banks.append({"name": name, "accession": accession})
    return banks


def _comment_correction(cc) -> dict:
    pmid = cc.find("PMID")
    pmid_text = clean_ws(pmid.text) if pmid is not None else ""
    return {
        "ref_type": cc.get("RefType"),
        "pmid": parse_id(pmid_text),
        "source": element_text(cc.find("RefSource")) or None,
        "note": element_text(cc.find("Note")) or None,
    }


def _article_id(article, id_type: str) -> str | None:
    for aid in article.findall("PubmedData/ArticleIdList/ArticleId"):
        if aid.get("IdType") == id_type and clean_ws(aid.text):
            value = clean_ws(aid.text)
            return normalise_pmcid(value) if id_type == "pmc" else value
    return None


def _doi(article, art) -> str | None:
    from_ids = _article_id(article, "doi")
    if from_ids:
        return normalise_doi(from_ids)
    for loc in art.findall("ELocationID"):
        if loc.get("EIdType") == "doi" and loc.get("ValidYN", "Y") == "Y":
            return normalise_doi(loc.text)
    return None


# --------------------------------------------------------------------------- fetching


class NCBIError(RuntimeError):
    """NCBI answered, but with an error we cannot get past."""


class SessionExpired(TransientBodyError):
    """The WebEnv history session has expired: search again and carry on."""

    retry_same_request = False


# How NCBI says a WebEnv is gone: "Unable to obtain query #1" (its usual words, in an
# eFetchResult or eSearchResult with HTTP 200), or a message naming the session or WebEnv.
_EXPIRED = re.compile(r"unable to obtain query|session|webenv", re.IGNORECASE)


def check_ncbi_body(content: bytes, expect: str) -> None:
    """Raise if a 200 response actually carries an error.

    NCBI sometimes answers 200 with an HTML "Service unavailable" page, a JSON
    ``{"error": "API rate limit exceeded"}``, or an XML ``<ERROR>``.
    """
    head = content[:4096].lstrip()
    lowered = head.lower()
    if lowered.startswith(b"<!doctype html") or lowered.startswith(b"<html"):
        raise TransientBodyError("NCBI returned an HTML page instead of data (service unavailable?)")
    if expect == "json":
        try:
            payload = json.loads(content)
        except (ValueError, RecursionError) as exc:
            raise TransientBodyError(f"NCBI returned invalid JSON: {str(exc)[:200]}") from exc
        payload = payload if isinstance(payload, dict) else {}
        result = payload.get("esearchresult")
        error = payload.get("error") or (result.get("ERROR") if isinstance(result, dict) else None)
        if error:
            text = clean_ws(str(error))[:300]
            if "rate limit" in text.lower():
                raise TransientBodyError(f"NCBI: {text}")
            raise NCBIError(f"NCBI esearch error: {text}")
        if not isinstance(result, dict) or not re.fullmatch(r"[0-9]{1,18}", str(result.get("count", "")).strip()):
            raise TransientBodyError("NCBI esearch answer has no result count")
        return
    match = re.search(rb"<ERROR>(.*?)</ERROR>", head, re.DOTALL)
    if match and b"<PubmedArticleSet" not in head:
        text = clean_ws(match.group(1).decode("utf-8", "replace"))[:300]
        if _EXPIRED.search(text):
            raise SessionExpired(f"NCBI: {text} (history session expired)")
        raise TransientBodyError(f"NCBI efetch error: {text}")
    if b"<PubmedArticleSet" not in head and b"<!DOCTYPE PubmedArticleSet" not in head:
        raise TransientBodyError("NCBI efetch answer is not a PubmedArticleSet")
    if b"</PubmedArticleSet>" not in content[-256:]:
        raise TransientBodyError("NCBI efetch answer is truncated")
    try:
        # Well-formed throughout, not just at both ends: a corrupt page is fetched again.
        for _, el in etree.iterparse(io.BytesIO(content), events=("end",), tag="PubmedArticle",
                                     **_xml_parser_kwargs()):
            el.clear(keep_tail=True)
    except etree.XMLSyntaxError as exc:
        raise TransientBodyError(f"NCBI efetch answer is malformed XML: {exc}") from exc


@dataclass
class SearchResult:
    count: int
    webenv: str | None
    query_key: str | None


class Slice(NamedTuple):
    """One esearch to page through: its date window (of ``datetype``) and what NCBI answered."""

    datetype: str
    mindate: str | None
    maxdate: str | None
    result: SearchResult


# What `kb update` asks for: records entered (edat) or modified (mdat) since the last run.
CHANGE_DATETYPES = ("edat", "mdat")


class PubMedClient(ApiClient):
    """E-utilities client honouring NCBI's rate limits and usage policy."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        email: str | None = None,
        tool: str = TOOL_NAME,
        rate: float | None = None,
        **options,
    ):
        self.api_key = api_key or os.environ.get("NCBI_API_KEY") or None
        self.email = email or os.environ.get("NCBI_EMAIL") or None
        self.tool = tool
        # NCBI: 3 requests/second without an API key, 10 with one.
        super().__init__(base_url, rate=rate or (10.0 if self.api_key else 3.0), **options)

    def _params(self, **params) -> dict:
        params = {k: v for k, v in params.items() if v is not None}
        params.update({"db": "pubmed", "tool": self.tool})
        if self.email:
            params["email"] = self.email
        if self.api_key:
            params["api_key"] = self.api_key
        return params

    def _get(self, endpoint: str, params: dict, expect: str, cache_key: dict | None = None) -> bytes:
        """A checked E-utilities answer; only pages with a ``cache_key`` go through the resume cache."""
        return self.get(endpoint, params, lambda body: check_ncbi_body(body, expect),
                        use_cache=cache_key is not None, cache_key=cache_key)

    def search(self, term: str, mindate: str | None = None, maxdate: str | None = None,
               datetype: str = "pdat") -> SearchResult:
        """esearch with usehistory=y; dates are YYYY/MM/DD, of ``datetype``: pdat (publication),
        edat (entered PubMed) or mdat (last modified).

        Always asked of NCBI, never replayed from a resume cache: the history session (WebEnv) it
        creates expires, and a replayed one would be refused.
        """
        params = self._params(
            term=term, usehistory="y", retmax=0, retmode="json",
            datetype=datetype if mindate else None, mindate=mindate, maxdate=maxdate,
        )
        body = json.loads(self._get("esearch.fcgi", params, "json"))["esearchresult"]
        # check_ncbi_body has made sure the count is a number.
        return SearchResult(int(str(body["count"]).strip()), body.get("webenv"), body.get("querykey"))

    def date_slices(
        self, term: str, start: dt.date, end: dt.date, datetype: str = "pdat"
    ) -> Iterator[Slice]:
        """Split a search into date slices (of ``datetype``) of at most 9,999 hits each."""
        result = self.search(term, _fmt(start), _fmt(end), datetype)
        if result.count <= ESEARCH_WINDOW:
            yield Slice(datetype, _fmt(start), _fmt(end), result)
            return
        if start >= end:
            raise NCBIError(
                f"{result.count} records with {datetype} {_fmt(start)} alone: cannot page past 9,999"
            )
        middle = start + (end - start) // 2
        yield from self.date_slices(term, start, middle, datetype)
        yield from self.date_slices(term, middle + dt.timedelta(days=1), end, datetype)

    def plan(self, term: str, since: dt.date | None = None, until: dt.date | None = None) -> list[Slice]:
        """The searches to run: one if it fits in 9,999 records, else date slices.

        ``since``: only what changed from that day on (to ``until``, default today): records that
        entered PubMed (edat) and records revised (mdat) in that window, two searches, as NCBI
        documents for keeping a local copy current.
        """
        today = dt.date.today()
        if since is not None:
            until = until or today
            return [piece for datetype in CHANGE_DATETYPES for piece in self.date_slices(term, since, until, datetype)]
        whole = self.search(term)
        if whole.count <= ESEARCH_WINDOW:
            return [Slice("pdat", None, None, whole)]
        return list(self.date_slices(term, dt.date(1800, 1, 1), dt.date(today.year + 1, 12, 31)))

    def count_changes(self, term: str, since: dt.date, until: dt.date | None = None) -> dict[str, int]:
        """How many records entered PubMed, and how many were revised, from ``since`` (they overlap)."""
        window = (_fmt(since), _fmt(until or dt.date.today()))
        labels = {"edat": "entered", "mdat": "revised"}
        return {labels[kind]: self.search(term, *window, kind).count for kind in CHANGE_DATETYPES}

    def fetch_batches(
        self, term: str, batch_size: int = 500, progress: bool = True, since: dt.date | None = None,
    ) -> Iterator[bytes]:
        """Yield efetch XML pages covering every record the search finds (changed since ``since``)."""
        from tqdm import tqdm

        slices = self.plan(term, since)
        total = sum(piece.result.count for piece in slices)
        with tqdm(total=total, unit="rec", desc="PubMed efetch", disable=not progress) as bar:
            for piece in slices:
                for page in self._fetch_slice(term, piece, batch_size):
                    yield page
                    bar.update(page.count(b"<PubmedArticle>"))

    def _fetch_slice(self, term: str, piece: Slice, batch_size: int) -> Iterator[bytes]:
        start, renewals, result = 0, 0, piece.result
        while start < result.count:
            page_params = {"retstart": start, "retmax": batch_size, "retmode": "xml", "rettype": "abstract"}
            params = self._params(WebEnv=result.webenv, query_key=result.query_key, **page_params)
            try:
                page = self._get("efetch.fcgi", params, "xml", _page_key(term, piece, result, page_params))
            except SessionExpired as exc:
                # History sessions time out on long runs: search again, resume at the same offset.
                renewals += 1
                if renewals > self.retries:
                    raise NCBIError(f"{exc}; searched again {renewals - 1} times") from exc
                self.on_retry(f"{self.base_url}efetch.fcgi: history session expired: searching again "
                              f"({renewals}/{self.retries})")
                result = self.search(term, piece.mindate, piece.maxdate, piece.datetype)
                continue
            yield page
            start, renewals = start + batch_size, 0


def _page_key(term: str, piece: Slice, result: SearchResult, page_params: dict) -> dict:
    """An efetch page's name in the resume cache: the search and the offset, not the WebEnv.

    A resumed run's fresh search has a new WebEnv; its pages are the kept ones as long as the
    search still finds the same number of records (a changed count names other pages).
    """
    key = {"term": term, "mindate": piece.mindate, "maxdate": piece.maxdate, "count": result.count, **page_params}
    if piece.datetype != "pdat":  # keys of publication-date slices stay as they were
        key["datetype"] = piece.datetype
    return key


def _fmt(day: dt.date) -> str:
    return day.strftime("%Y/%m/%d")
