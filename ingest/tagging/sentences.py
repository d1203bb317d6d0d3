"""Splitting abstracts into sentences, keeping each sentence's section."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

# Abbreviations whose full stop does not end a sentence.
_ABBREVIATIONS = (
    "e.g", "i.e", "et al", "vs", "v", "approx", "ca", "cf", "fig", "figs", "no", "nos", "dr", "prof",
    "mr", "mrs", "ms", "st", "i.v", "i.m", "s.c", "p.o", "b.i.d", "t.i.d", "q.d", "min", "max",
    "resp", "incl", "etc", "vol", "mg", "kg", "ml", "hr", "h", "wk", "wks", "yr", "yrs", "sp", "spp",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s",
)
_ABBREV_SET = frozenset(_ABBREVIATIONS)
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")

BACKGROUND_LABELS = re.compile(
    r"^(?:BACKGROUND|INTRODUCTION|CONTEXT|RATIONALE|AIMS?|OBJECTIVES?|PURPOSE|IMPORTANCE|"
    r"BACKGROUND AND (?:AIMS?|OBJECTIVES?|PURPOSE)|AIMS? AND OBJECTIVES?|STUDY OBJECTIVES?|"
    r"SIGNIFICANCE|HYPOTHESIS)\b",
    re.IGNORECASE,
)
# Map free-text section labels to a small set, for ranking and display.
SECTION_KINDS = [
    ("results", re.compile(r"RESULT|FINDING|OUTCOME", re.I)),
    ("conclusions", re.compile(r"CONCLU|INTERPRETATION|DISCUSSION|IMPLICATION|SUMMARY", re.I)),
    ("methods", re.compile(r"METHOD|DESIGN|SETTING|PARTICIPANT|PATIENT|INTERVENTION|MEASURE|SUBJECT|"
                           r"PROCEDURE|MATERIAL|DATA SOURCE|ELIGIBILITY|SEARCH|TRIAL REG", re.I)),
    ("background", BACKGROUND_LABELS),
]


@dataclass
class Sentence:
    text: str
    section: str | None  # the abstract's own label ("RESULTS"), "TITLE", or None
    section_kind: str  # title | background | methods | results | conclusions | abstract
    index: int  # position within the study (title is 0 when present)
    memo: dict = field(default_factory=dict, repr=False, compare=False)  # rule results, computed once

    @cached_property
    def lower(self) -> str:
        """The text lower-cased, for rules written in lower case (case-insensitive regexes are slow)."""
        return self.text.lower()


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences without breaking at abbreviations or decimals."""
    text = " ".join(text.split())
    if not text:
        return []
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        candidate = text[start:match.start() + 1]
        last_word = candidate.rsplit(None, 1)[-1].lstrip("([").rstrip(".").lower()
        if last_word in _ABBREV_SET:
            continue
        sentences.append(candidate.strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def section_kind(label: str | None, nlm_category: str | None = None) -> str:
    for value in (nlm_category, label):
        if not value:
            continue
        for kind, pattern in SECTION_KINDS:
            if pattern.search(value):
                return kind
    return "abstract"


def record_sentences(record: dict) -> list[Sentence]:
    """The title, then every abstract sentence with its section."""
    out: list[Sentence] = []
    if record.get("title"):
        out.append(Sentence(record["title"], "TITLE", "title", 0))
    sections = record.get("abstract_sections") or []
    if not sections and record.get("abstract"):
        sections = [{"label": None, "nlm_category": None, "text": record["abstract"]}]
    unstructured = all(not s.get("label") for s in sections)
    for section in sections:
        kind = section_kind(section.get("label"), section.get("nlm_category"))
        texts = split_sentences(section["text"])
        for number, text in enumerate(texts):
            this_kind = kind
            # A long unstructured abstract usually opens with background; a short text does not.
            if unstructured and kind == "abstract" and number == 0 and len(sections) == 1 and len(texts) >= 4:
                this_kind = "background" if not _STUDY_VOICE.search(text) else "abstract"
            out.append(Sentence(text, section.get("label"), this_kind, len(out)))
    return out


# A first sentence written in the study's own voice is not background.
_STUDY_VOICE = re.compile(
    r"\b(?:we|this (?:study|trial|review|article|paper|report|analysis)|here|the present study|"
    r"the aim|the objective|the purpose|to (?:evaluate|assess|investigate|examine|determine|compare))\b",
    re.IGNORECASE,
)
