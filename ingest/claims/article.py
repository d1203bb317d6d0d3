"""Checking a whole text: the statements about ketamine in an article or blog post, each checked.

A writer reviews articles, not single sentences. :func:`checkable_statements` reads plain text or
Markdown (headings, lists, emphasis and block quotes are markup, not words), splits it into
sentences and keeps those a fact-checker would check: statements about the drug's effects, onset
and duration, side effects, mechanisms, routes, populations and rates. It leaves out the clinic's
own voice (what "we" do, what "you" should do), testimonials, questions and sentences about
nothing the literature measures. A sentence that continues a paragraph about ketamine ("This
dissociation tends to peak...") is checked as being about ketamine. :func:`check_text` checks each
statement and keeps, for the table a writer reads, its verdict and the strongest supporting and
contradicting study.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..tagging.sentences import split_sentences
from .check import check_claim
from .results import ClaimCheck, ClaimError, StudyResult
from .stance import read_claim
from .understand import MAX_CLAIM_CHARS, claim_tags

MAX_TEXT_CHARS = 500_000  # a long feature article is 50 kB; a whole book is not a text to check here
MAX_STATEMENTS = 200

_MARKUP_LINE = re.compile(r"^\s*(?:#{1,6}\s|[-*_]{3,}\s*$|\|)")  # headings, rules, table rows
_LINE_PREFIX = re.compile(r"^\s*(?:>\s*)+|^\s*(?:[-*+]|\d{1,3}[.)])\s+")  # quotes, list items
_EMPHASIS = re.compile(r"(\*{1,3}|_{1,3})(?=\S)(.+?)(?<=\S)\1")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_CODE = re.compile(r"`([^`]*)`")

# Who is speaking, and to whom: a clinic's procedures and advice are not claims about the drug.
_CLINIC_VOICE = re.compile(r"^(?:at \w+(?: \w+)?, )?(?:we|we'll|we're|we've|our|us|you'll|you'd|you|your|plan|"
                           r"please|call|book|contact|ask|remember|don't|do not|let|here's|here is)\b", re.I)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|my|me)\b")
# A reason given for a procedure carries a claim of its own: "... because nausea is a common side effect".
_REASON = re.compile(r"\b(?:because|since|as) (?=\w)", re.I)
_ANAPHOR = re.compile(r"^(?:this|these|that|those|it|its|they|their|the (?:drug|medication|medicine|treatment|"
                      r"infusions?|effects?|dissociation|benefits?|relief|spray|dose|response|improvement)s?)\b",
                      re.I)
_CLAIM_KINDS = ("indication", "mechanism", "side_effect", "route", "population")


@dataclass
class Statement:
    text: str  # as written in the article
    claim: str  # what is checked: the text, with the drug named when the paragraph implies it
    paragraph: int
    topics: list[str]


def article_paragraphs(text: str) -> list[str]:
    """The text's paragraphs as plain running text (Markdown markup removed, quotes kept as text)."""
    paragraphs, current = [], []
    for line in text.splitlines():
        if not line.strip() or _MARKUP_LINE.match(line):
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        plain = _LINE_PREFIX.sub("", line)
        plain = _CODE.sub(r"\1", _LINK.sub(r"\1", plain))
        plain = _EMPHASIS.sub(r"\2", _EMPHASIS.sub(r"\2", plain))
        current.append(plain.strip())
    if current:
        paragraphs.append(" ".join(current))
    return [p for p in (" ".join(p.split()) for p in paragraphs) if p]


def checkable_statements(text: str) -> list[Statement]:
    """Every sentence of ``text`` a fact-checker would check against the literature, in order."""
    if len(text) > MAX_TEXT_CHARS:
        raise ClaimError(f"text longer than {MAX_TEXT_CHARS:,} characters")
    out: list[Statement] = []
    paragraphs = article_paragraphs(text)
    drugs = [_paragraph_drug(p) for p in paragraphs]
    article_drug = _main_drug(drugs)
    last_drug = None
    for number, paragraph in enumerate(paragraphs):
        # A paragraph that names no drug is about the one the text was last about (a post on
        # ketamine says "the infusion", "the spray", "it"), or the one the whole text is about.
        drug = drugs[number] or last_drug or article_drug
        last_drug = drugs[number] or last_drug
        for sentence in split_sentences(paragraph):
            statement = _statement(sentence, number, drug)
            if statement:
                out.append(statement)
    return out[:MAX_STATEMENTS]


def _main_drug(drugs: list[str | None]) -> str | None:
    named = [d for d in drugs if d]
    return max(set(named), key=named.count) if named else None


def _paragraph_drug(paragraph: str) -> str | None:
    drugs = claim_tags(paragraph[:MAX_CLAIM_CHARS]).get("drug", [])
    return drugs[0] if drugs else None


def _statement(sentence: str, paragraph: int, paragraph_drug: str | None) -> Statement | None:
    if len(sentence) > MAX_CLAIM_CHARS or sentence.endswith("?") or _testimonial(sentence):
        return None
    claim = _after_lead_in(sentence)
    if _clinic_voice(claim.lstrip("\"'“ ")):
        reason = _REASON.search(claim)
        if not reason:
            return None
        claim = claim[reason.end():]  # the claim inside the advice
    tags = claim_tags(claim)
    named = bool(tags.get("drug"))
    if not named:
        if not paragraph_drug:
            return None
        claim = f"{claim.rstrip('.')} ({paragraph_drug})"
        tags = claim_tags(claim)
    topics = _topics(claim, tags)
    if not topics and named and _STATES.search(claim):
        topics = ["other"]  # "Ketamine is not recommended during pregnancy": a fact about the drug itself
    if not named and not (set(topics) - {"outcome", "indication"} or _ANAPHOR.match(claim)
                          or _about_treatment(claim)):
        return None  # an outcome word alone, in a sentence that names no drug, is not a claim about it
    return Statement(sentence, claim, paragraph, topics) if topics else None


_LEAD_IN = re.compile(r"^(?:fact|myth|truth|bottom line|the good news|the bad news|here's (?:the \w+ )?(?:\w+ ){0,5}"
                      r"about|here is (?:the \w+ )?(?:\w+ ){0,5}about|in short|in fact)\s*:\s*", re.I)
_STATES = re.compile(r"\b(?:is|are|was|were|has|have|can|cannot|may|does|do|causes?|acts?|works?|blocks?|binds?|"
                     r"reduces?|increases?|raises?|lowers?|lasts?|takes?|needs?|requires?|contains?|approved)\b",
                     re.I)


def _after_lead_in(sentence: str) -> str:
    """ "Fact: Ketamine ...", "Here's the part people like most: ketamine acts ..." -> the statement."""
    match = _LEAD_IN.match(sentence)
    return sentence[match.end():] if match else sentence


_FIRST_CLAUSE = re.compile(r"^[^,;:]*?(?=,|;|:| so | and | but |$)")
_SPEAKER_OR_READER = re.compile(r"\b(?:we|we're|we've|we'll|our|us|your|if you)\b", re.I)


def _clinic_voice(sentence: str) -> bool:
    """The clinic speaking of itself or to the reader: in how the sentence opens or in its first clause."""
    if _CLINIC_VOICE.match(sentence):
        return True
    first = _FIRST_CLAUSE.match(sentence)
    return bool(first and _SPEAKER_OR_READER.search(first.group(0)))


def _testimonial(sentence: str) -> bool:
    """A patient's own words: first person, or a quotation followed by who said it."""
    return bool(_FIRST_PERSON.search(sentence.lower())) or bool(re.search(r"[\"”]\s*[—–-]\s*\w", sentence))


def _about_treatment(sentence: str) -> bool:
    return bool(re.search(r"\b(?:infusions?|treatment|dose|doses|sessions?|spray|patients|responders)\b",
                          sentence, re.I))


def _topics(claim: str, tags: dict[str, list[str]]) -> list[str]:
    """What the statement says that studies measure (empty: nothing to check)."""
    assertion = read_claim(claim, tags)
    topics = [kind for kind in _CLAIM_KINDS if tags.get(kind)]
    if assertion.outcomes:
        topics.append("outcome")
    if assertion.duration_max_h or assertion.duration_min_h or assertion.permanent:
        topics.append("duration")
    if assertion.onset_max_h:
        topics.append("onset")
    if assertion.rate:
        topics.append("rate")
    if assertion.comparison:
        topics.append("comparison")
    return topics


# --------------------------------------------------------------------------- checking


@dataclass
class StatementCheck:
    statement: str
    claim: str
    topics: list[str]
    verdict: str
    reasons: list[str]
    strongest_support: dict[str, Any] | None
    strongest_contradiction: dict[str, Any] | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strongest(check: ClaimCheck, stance: str) -> dict[str, Any] | None:
    """The best-ranked study with this stance (ranking already weighs evidence), or None."""
    study: StudyResult | None = next((s for s in check.results if s.stance == stance), None)
    if study is None:
        return None
    return {"pmid": study.pmid, "first_author": study.citation.get("first_author"),
            "year": study.citation.get("year"), "title": study.citation.get("title"), "design": study.design,
            "sentence": study.stance_sentence, "url": study.url}


def check_statement(conn: Any, statement: Statement, limit: int = 10, vectors: Any = None) -> StatementCheck:
    try:
        result = check_claim(conn, statement.claim, limit=limit, vectors=vectors)
    except ClaimError as exc:
        return StatementCheck(statement.text, statement.claim, statement.topics, "insufficient", [], None, None,
                              str(exc))
    return StatementCheck(statement.text, statement.claim, statement.topics, result.verdict.get("label", ""),
                          result.verdict.get("reasons", []), _strongest(result, "supports"),
                          _strongest(result, "contradicts"))
