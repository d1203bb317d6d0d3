"""Text helpers shared by every parser: flattening markup, dates, identifiers."""

from __future__ import annotations

import html
import json
import re

# A lone UTF-16 surrogate (JSON can carry one as "\ud800") cannot be encoded, so cannot be stored.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Block-level tags (opening, closing or void) end a phrase; so does <br>. A tag never contains
# "<": stopping there keeps every pattern linear on markup that never closes its tags.
_BLOCK_TAG = re.compile(r"(</?(?:p|div|br|h[1-6]|li)\b[^<>]*>)", re.IGNORECASE)
_ANY_TAG = re.compile(r"<(?:/?[A-Za-z][^<>]*|![^<>]*|\?[^<>]*)>")
# Markup with more tags than this is flattened with _ANY_TAG instead of BeautifulSoup, whose
# tree building is quadratic in the nesting depth (20,000 nested <p> take minutes).
MAX_HTML_TAGS = 2000
_ASCII_ID = re.compile(r"[0-9]{1,18}")
_NCT = re.compile(r"\bNCT\s?([0-9]{8})\b", re.IGNORECASE)
_DOI = re.compile(r"\b(10\.\d{4,9}/\S+)", re.IGNORECASE)

MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}
# Seasons as PubMed writes them; mapped to the season's first month.
SEASONS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}


def clean_ws(text: str | None) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    if not text:
        return ""
    # Every whitespace character but the ASCII space is unprintable: printable text without
    # double spaces needs only its ends stripped (a fast path that matters for huge fields).
    if text.isprintable() and "  " not in text:
        return text.strip()
    return _SURROGATE.sub("\ufffd", " ".join(text.split()))


def parse_id(text: str | None) -> int | None:
    """A positive integer identifier (PMID, count) from ASCII digits; None for anything else.

    ``str.isdigit`` accepts "²" and "٣", which ``int`` refuses or misreads, and an unbounded
    number of digits cannot be stored in SQLite: neither is an identifier.
    """
    text = (text or "").strip()
    if not _ASCII_ID.fullmatch(text):
        return None
    return int(text) or None


def element_text(el) -> str:
    """All text inside an XML element, markup dropped, word boundaries kept.

    Text and tails are concatenated exactly as they appear, so
    ``in <i>Rattus</i> at`` stays ``in Rattus at`` and ``R<sup>2</sup>`` stays ``R2``.
    """
    if el is None:
        return ""
    return clean_ws("".join(el.itertext()))


def html_to_text(fragment: str | None) -> str:
    """Plain text from an HTML fragment (Europe PMC abstracts carry <i>, <sup>, <h4>...)."""
    if not fragment:
        return ""
    if "<" not in fragment and "&" not in fragment:
        return clean_ws(fragment)
    from bs4 import BeautifulSoup

    # Block elements end a phrase: a space after each of their tags keeps words from fusing.
    # (Done on the markup, in one pass: inserting into the parsed tree is quadratic in the tags.)
    spaced = _BLOCK_TAG.sub(r"\1 ", fragment)
    if fragment.count("<") > MAX_HTML_TAGS:
        return clean_ws(html.unescape(_ANY_TAG.sub("", spaced)))
    soup = BeautifulSoup(spaced, "html.parser")
    return clean_ws(html.unescape(soup.get_text()))


def month_number(token: str) -> int | None:
    token = token.strip().lower()
    if token.isdigit():
        value = parse_id(token) if len(token) <= 2 else None
        return value if value and value <= 12 else None
    return MONTHS.get(token[:3]) or SEASONS.get(token)


def parse_free_date(text: str | None) -> tuple[int | None, str | None]:
    """Year and a partial ISO date from free text such as PubMed's MedlineDate.

    "1990 May-Jun" -> (1990, "1990-05"); "2007 Spring" -> (2007, "2007-03");
    "1998 Dec-1999 Jan" -> (1998, "1998-12"); "2000-2001" -> (2000, "2000").
    """
    if not text:
        return None, None
    # Any four- or five-digit number may be the year: an implausible one (1066, 99999) is
    # dropped with a warning when the record is capped (ingest.records.cap_record).
    match = re.search(r"\b([1-9]\d{3,4})\b", text)
    if not match:
        return None, None
    year = int(match.group(1))
    rest = text[match.end():].strip()
    first = re.match(r"([A-Za-z]+|\d{1,2})\b", rest)
    month = month_number(first.group(1)) if first else None
    if month is None:
        return year, f"{year:04d}"
    day_match = re.match(r"[A-Za-z]+\s+(\d{1,2})\b", rest)
    if day_match and 1 <= int(day_match.group(1)) <= 31:
        return year, f"{year:04d}-{month:02d}-{int(day_match.group(1)):02d}"
    return year, f"{year:04d}-{month:02d}"


def iso_date(year: str | None, month: str | None, day: str | None) -> tuple[int | None, str | None]:
    """Partial ISO date from PubMed's Year / Month / Day elements."""
    # Up to nine digits are read (and an implausible year dropped, with a warning, when the
    # record is capped); more are not a year at all.
    if not year or not re.fullmatch(r"[0-9]{1,9}", year.strip()):
        return None, None
    y = int(year)
    m = month_number(month) if month else None
    if m is None:
        return y, f"{y:04d}"
    d = parse_id(day) if day and len(day.strip()) <= 2 else None
    if d and d <= 31:
        return y, f"{y:04d}-{m:02d}-{d:02d}"
    return y, f"{y:04d}-{m:02d}"


def nct_ids_in(text: str | None) -> list[str]:
    """NCT numbers mentioned in free text, normalised and de-duplicated in order."""
    if not text:
        return []
    seen: dict[str, None] = {}
    for digits in _NCT.findall(text):
        seen.setdefault(f"NCT{digits}", None)
    return list(seen)


def normalise_doi(value: str | None) -> str | None:
    """A bare lower-case DOI from a DOI, a doi.org URL or a 'doi:' string."""
    if not value:
        return None
    match = _DOI.search(value.strip())
    if not match:
        return None
    return match.group(1).rstrip(".,;)").lower()


def normalise_pmcid(value: str | None) -> str | None:
    if not value:
        return None
    digits = re.sub(r"\D", "", value)
    return f"PMC{digits}" if digits else None


# --------------------------------------------------------------------------- JSON from APIs and kb.db


def as_dict(value) -> dict:
    """``value`` if it is a JSON object, else an empty one (APIs omit or mistype modules)."""
    return value if isinstance(value, dict) else {}


def json_int(value) -> int | None:
    """A count that fits an SQLite INTEGER, from a JSON number or ASCII digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    text = clean_ws(str(value)) if value is not None else ""
    return int(text) if _ASCII_ID.fullmatch(text) else None


def json_list(value) -> list:
    """A JSON-array column (``'["rct"]'``) as a list; empty for NULL or anything malformed."""
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return []
    return parsed if isinstance(parsed, list) else []
