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
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .text import clean_ws

# Structured-abstract labels as MEDLINE prints them inline: "BACKGROUND: ...".
_INLINE_LABEL = re.compile(r"(?:^|(?<=[.?!)\]]\s))([A-Z][A-Z ,&/-]{2,40}[A-Z]):\s")


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

    def add(self, record: dict) -> None:
        self.records.append(record)
        if self.on_record:
            self.on_record(record)


def empty_record(pmid: int | None, source: str) -> dict:
    """A study record with every key of the contract at its empty value."""
    return {
        "pmid": pmid, "pmid_version": None, "title": "", "abstract": "", "abstract_sections": [],
        "journal": "", "iso_abbrev": "", "issn": "", "volume": "", "issue": "", "pages": "",
        "year": None, "pub_date": None, "medline_date": None, "languages": [], "authors": [],
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
    matches = list(_INLINE_LABEL.finditer(text))
    if not matches:
        return [{"label": None, "nlm_category": None, "text": text}]
    sections = []
    if matches[0].start() > 0:
        sections.append({"label": None, "nlm_category": None, "text": text[: matches[0].start()].strip()})
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end():end].strip()
        if body:
            sections.append({"label": match.group(1).strip(), "nlm_category": None, "text": body})
    return sections


def load_json_page(data: bytes, source: str, key: str, kind: type, missing: str) -> dict:
    """A JSON API page: an object whose ``key`` is a ``kind``; else ParseError naming ``source``."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        raise ParseError(f"{source} page is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get(key), kind):
        raise ParseError(f"{source} page has {missing}")
    return payload
