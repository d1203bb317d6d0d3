"""The record: what every source produces and every later stage consumes.

Sources (``ingest.sources``) turn bytes into records; tagging, the database and the claim
checker read nothing else. A source may add keys of its own, but every key below means the
same thing wherever it appears, and a record is always passed and written whole.

**Study record** (a dict; ``empty_record`` gives every key its empty value):

=========================  ==================================================================
key                        value
=========================  ==================================================================
``pmid``                   int or None (Europe PMC preprints, RIS entries without one)
``pmid_version``           int or None: PubMed's ``Version`` attribute (1 when absent)
``doi`` / ``pmcid``        normalised strings (``10.x/...`` lower-case, ``PMC123``) or None
``title``                  plain text, word boundaries kept around inline markup
``abstract_sections``      list of ``{"label", "nlm_category", "text"}``; label None if unlabelled
``abstract``               the sections joined by :func:`join_sections`
``journal``, ``iso_abbrev``, ``issn``, ``volume``, ``issue``, ``pages``   strings ("" if unknown)
``year``                   int or None
``pub_date``               ISO ``YYYY[-MM[-DD]]`` or None
``medline_date``           PubMed's free-text ``MedlineDate`` as written, or None
``entry_date``             ISO ``YYYY-MM-DD`` the record entered its source (PubMed's Entrez date,
                           Europe PMC's first index date), or None
``languages``              list of strings (``"eng"``)
``authors``                list of ``{"last_name", "fore_name", "initials", "suffix",
                           "collective_name", "orcid", "affiliations": [str]}``
``publication_types``      list of ``{"ui", "name"}`` (PubMed publication types)
``mesh``                   list of ``{"descriptor_ui", "descriptor", "major",
                           "qualifiers": [{"ui", "name", "major"}]}``
``chemicals``              list of ``{"ui", "name", "registry_number"}``
``keywords``               list of strings
``databanks``              list of ``{"name", "accession"}`` (``ClinicalTrials.gov``, NCT id)
``nct_ids``                list of ``NCT########`` cited by the record
``comments_corrections``   list of ``{"ref_type", "pmid", "source", "note"}``; ref_type as in
                           PubMed XML (``RetractionIn``, ``ErratumFor``...)
``sources``                list of source names that contributed (``pubmed``, ``medline``,
                           ``ris``, ``europepmc``)
=========================  ==================================================================

Europe PMC adds ``source_id`` (``MED:123``), ``europepmc_source``, ``is_open_access``,
``cited_by_count`` and ``is_preprint``.

**Trial record** (ClinicalTrials.gov): ``nct_id``, ``title``, ``official_title``, ``acronym``,
``brief_summary``, ``detailed_description``, ``study_type``, ``phases`` (API v2 enum values),
``overall_status``, ``start_date``, ``completion_date``, ``start_year``, ``enrollment``,
``enrollment_type``, ``conditions``, ``keywords``, ``interventions``, ``arm_groups``,
``sponsor``, ``sponsor_class``, ``collaborators``, ``allocation``, ``masking``,
``intervention_model``, ``primary_purpose``, ``has_results``, ``primary_outcomes``,
``secondary_outcomes``, ``references`` (``{"pmid", "type", "citation"}``), ``countries``,
``source``.

A parser returns a :class:`ParseResult`; unreadable input raises :class:`ParseError`.

**Caps.** Every record passes :meth:`ParseResult.add` (trials :meth:`ParseResult.add_trial`),
which cuts any value over the caps below and drops an implausible year, with a warning in
``errors`` naming the record: one huge field must not break kb.db or the pages that show it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .text import clean_ws

# Structured-abstract labels as MEDLINE prints them inline: "BACKGROUND: ...", at the start or
# after a sentence ends. (Matching the sentence end, not looking behind for it, lets the regex
# engine skip ahead to the punctuation: five times faster on a huge abstract.)
_LABEL = r"([A-Z][A-Z ,&/-]{2,40}[A-Z]):\s"
_LABEL_AT_START = re.compile(_LABEL)
_LABEL_AFTER_SENTENCE = re.compile(r"[.?!)\]]\s" + _LABEL)


# Field caps, applied at ingest: far above any real record (abstracts are a few thousand
# characters), far below what breaks SQLite's value limit on served connections or a page.
MAX_ABSTRACT_CHARS = 100_000  # the whole abstract, and any other long text (a trial's summary)
MAX_TITLE_CHARS = 2_000
MAX_TEXT_CHARS = 2_000  # every other text: journal, affiliation, keyword, MeSH term, outcome...
MAX_AUTHORS = 10_000  # consortium papers list a few thousand
MAX_LIST_ITEMS = 1_000  # every other list: keywords, MeSH headings, chemicals, affiliations...
LONG_TEXT_FIELDS = frozenset({"abstract", "text", "brief_summary", "detailed_description"})
TITLE_FIELDS = frozenset({"title", "official_title"})
# Publication and start years outside MIN_YEAR..(this year + FUTURE_YEARS) are typing errors.
MIN_YEAR = 1800
FUTURE_YEARS = 5


class ParseError(ValueError):
    """Malformed input; the message names what and where."""


@dataclass
class ParseResult:
    records: list[dict] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    trials: list[dict] = field(default_factory=list)  # ClinicalTrials.gov pages only
    # Called with each record as soon as it is parsed (the build starts tagging it meanwhile).
    on_record: Callable[[dict], None] | None = field(default=None, repr=False, compare=False)
    # False: records go to ``on_record`` only, never into ``records`` (a streamed file's memory stays flat).
    keep: bool = field(default=True, repr=False, compare=False)
    count: int = field(default=0, compare=False)  # study records added, kept or handed on

    def add(self, record: dict) -> None:
        """Keep a study record, capped (see the caps above); warnings go to ``errors``."""
        self._warn(record, cap_record(record))
        self.count += 1
        if self.keep:
            self.records.append(record)
        if self.on_record:
            self.on_record(record)

    def add_trial(self, trial: dict) -> None:
        """Keep a trial record, capped like a study record."""
        self._warn(trial, cap_record(trial))
        self.trials.append(trial)

    def _warn(self, record: dict, changes: list[str]) -> None:
        if changes:
            self.errors.append(f"{record_name(record)}: {'; '.join(changes)}")


def record_name(record: dict) -> str:
    """How a warning names a record: its PMID, DOI, source id or NCT id."""
    for key, label in (("pmid", "PMID "), ("doi", "DOI "), ("source_id", ""), ("nct_id", "")):
        if record.get(key):
            return f"{label}{record[key]}"
    return "a record without an identifier"


def cap_record(record: dict) -> list[str]:
    """Cut every value of ``record`` (in place) to the caps; what was cut, for a warning."""
    cut: dict[tuple[str, str], list[int]] = {}  # (field, unit) -> [values cut, longest, cap]
    _cap_abstract(record, cut)
    for key, value in record.items():
        record[key] = _capped(value, key, key, cut)
    changes = [_describe_cut(path, unit, *counts) for (path, unit), counts in cut.items()]
    return changes + _check_years(record)


def _cap_abstract(record: dict, cut: dict) -> None:
    """Keep the abstract and its sections in step: whole sections in order, the last one cut."""
    abstract, sections = record.get("abstract"), record.get("abstract_sections")
    if not isinstance(abstract, str) or not isinstance(sections, list):
        return
    if len(abstract) <= MAX_ABSTRACT_CHARS and len(sections) <= MAX_LIST_ITEMS:
        return
    if len(abstract) > MAX_ABSTRACT_CHARS:
        _note(cut, "abstract", "characters", len(abstract), MAX_ABSTRACT_CHARS)
    if len(sections) > MAX_LIST_ITEMS:
        _note(cut, "abstract_sections", "items", len(sections), MAX_LIST_ITEMS)
    if not sections:
        record["abstract"] = abstract[:MAX_ABSTRACT_CHARS]
        return
    record["abstract_sections"] = _sections_within(sections, MAX_ABSTRACT_CHARS)
    record["abstract"] = join_sections(record["abstract_sections"])


def _sections_within(sections: list[dict], budget: int) -> list[dict]:
    kept: list[dict] = []
    for section in sections[:MAX_LIST_ITEMS]:
        label = section.get("label")
        room = budget - (len(label) + 2 if label else 0) - (2 if kept else 0)  # "LABEL: ", "\n\n"
        if room <= 0:
            break
        kept.append({**section, "text": section["text"][:room]})
        budget = room - len(kept[-1]["text"])
    return kept


def _capped(value, key: str, path: str, cut: dict):
    """``value`` with every string and list in it within its cap."""
    if isinstance(value, str):
        limit = _text_cap(key)
        if len(value) > limit:
            _note(cut, path, "characters", len(value), limit)
            return value[:limit]
        return value
    if isinstance(value, list):
        limit = MAX_AUTHORS if key == "authors" else MAX_LIST_ITEMS
        if len(value) > limit:
            _note(cut, path, "items", len(value), limit)
        return [_capped(item, key, path, cut) for item in value[:limit]]
    if isinstance(value, dict):
        return {k: _capped(v, k, f"{path}.{k}", cut) for k, v in value.items()}
    return value


def _text_cap(key: str) -> int:
    if key in LONG_TEXT_FIELDS:
        return MAX_ABSTRACT_CHARS
    return MAX_TITLE_CHARS if key in TITLE_FIELDS else MAX_TEXT_CHARS


def _note(cut: dict, path: str, unit: str, size: int, limit: int) -> None:
    counts = cut.setdefault((path, unit), [0, 0, limit])
    counts[0] += 1
    counts[1] = max(counts[1], size)


def _describe_cut(path: str, unit: str, values: int, longest: int, limit: int) -> str:
    was = f"{values:,} values, the longest {longest:,}" if values > 1 else f"was {longest:,}"
    return f"{path} cut to {limit:,} {unit} ({was})"


def _check_years(record: dict) -> list[str]:
    """Drop a year outside MIN_YEAR..now+FUTURE_YEARS (and the date built on it)."""
    latest = dt.date.today().year + FUTURE_YEARS
    changes = []
    for key, date_key in (("year", "pub_date"), ("start_year", None)):
        year = record.get(key)
        if isinstance(year, int) and not isinstance(year, bool) and not MIN_YEAR <= year <= latest:
            changes.append(f"{key} {year} is not between {MIN_YEAR} and {latest}: dropped")
            record[key] = None
            if date_key and str(record.get(date_key) or "").startswith(str(year)):
                record[date_key] = None
    return changes


def empty_record(pmid: int | None, source: str) -> dict:
    """A study record with every key of the contract at its empty value."""
    return {
        "pmid": pmid, "pmid_version": None, "title": "", "abstract": "", "abstract_sections": [],
        "journal": "", "iso_abbrev": "", "issn": "", "volume": "", "issue": "", "pages": "",
        "year": None, "pub_date": None, "medline_date": None, "entry_date": None, "languages": [], "authors": [],
        "publication_types": [], "mesh": [], "chemicals": [], "keywords": [], "databanks": [],
        "nct_ids": [], "comments_corrections": [], "doi": None, "pmcid": None,
        "sources": [source],
    }


def join_sections(sections: list[dict]) -> str:
    """The abstract as one text: labelled sections as "LABEL: text", one per paragraph."""
    parts = []
    for section in sections:
        label = section.get("label")
        parts.append(f"{label}: {section['text']}" if label else section["text"])
    return "\n\n".join(p for p in parts if p)


def split_inline_sections(text: str) -> list[dict]:
    """Recover the sections of a structured abstract flattened to "LABEL: text LABEL: text"."""
    text = clean_ws(text)
    if not text:
        return []
    matches = _inline_labels(text)
    if not matches:
        return [{"label": None, "nlm_category": None, "text": text}]
    sections = []
    if matches[0].start(1) > 0:
        sections.append({"label": None, "nlm_category": None, "text": text[: matches[0].start(1)].strip()})
    for i, match in enumerate(matches):
        end = matches[i + 1].start(1) if i + 1 < len(matches) else len(text)
        body = text[match.end():end].strip()
        if body:
            sections.append({"label": match.group(1).strip(), "nlm_category": None, "text": body})
    return sections


def _inline_labels(text: str) -> list[re.Match]:
    """Each inline label's match; ``start(1)`` is where the label begins."""
    first = _LABEL_AT_START.match(text)
    rest = _LABEL_AFTER_SENTENCE.finditer(text, first.end() if first else 0)
    return [first, *rest] if first else list(rest)


def load_json_page(data: bytes, source: str, key: str, kind: type, missing: str) -> dict:
    """A JSON API page: an object whose ``key`` is a ``kind``; else ParseError naming ``source``."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        raise ParseError(f"{source} page is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get(key), kind):
        raise ParseError(f"{source} page has {missing}")
    return payload
