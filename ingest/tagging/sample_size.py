"""How many: the participants a study randomised or enrolled; for a synthesis, its studies and their participants.

Each count keeps the sentence that states it. Only primary studies of people have a sample
size; a synthesis has ``studies_included`` and ``participants_pooled`` instead (a different
thing: they are not participants of the review); models, protocols, registrations, reviews
and laboratory studies have none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .sentences import Sentence

_UNITS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_UNIT = "(?:" + "|".join(sorted(_UNITS, key=len, reverse=True)) + ")"
_TEN = "(?:" + "|".join(_TENS) + ")"
_UNDER_HUNDRED = rf"(?:{_TEN}(?:\s*-\s*|\s+)?{_UNIT}?|{_UNIT})"  # "seventy-six", "fifty- six", "twenty one"
_WORDS = rf"(?:(?:{_UNIT}|a)\s+hundred(?:\s+(?:and\s+)?{_UNDER_HUNDRED})?|{_UNDER_HUNDRED})"
NUMBER = rf"(\d{{1,3}}(?:,\d{{3}})+|\d+|{_WORDS})"
# A few words may sit between the number and the people ("76 adult outpatients with TRD").
_PEOPLE = (r"(?:(?!(?:from|of|in|with|and|or)\s)[a-z][\w-]*\s+){0,4}?"
           r"(?:patients|participants|subjects|adults|individuals|women|men|veterans|children|"
           r"adolescents|volunteers|people|persons|mothers|parturients|outpatients|inpatients|cases|youths?|"
           r"respondents|users|residents|smokers|drinkers|inmates|soldiers|students|nurses|physicians|clinicians|"
           r"infants|neonates|elderly|pregnant women|survivors)")
_VERBS = (r"(?:randomi[sz]ed|enrolled|included|recruited|allocated|assigned|analy[sz]ed|studied|evaluated|treated|"
          r"surveyed)")
_SIZE_PATTERNS = [  # run on Sentence.lower, strongest first
    re.compile(rf"\b{_VERBS}\s+(?:a total of\s+|total of\s+)?{NUMBER}\s+{_PEOPLE}"),
    re.compile(rf"(?:^|[^\w-]){NUMBER}\s+{_PEOPLE}(?:\s+(?:with|from|who|aged|diagnosed|meeting|at)\b[^,.;]{{0,60}}?)?"
               rf"\s+(?:were|was|had been)\s+(?:randomi[sz]ed|enrolled|included|recruited|randomly|allocated|"
               rf"assigned|treated|studied|analy[sz]ed|evaluated|surveyed)"),
    re.compile(rf"\b(?:a total of|total of|overall,?)\s+{NUMBER}\s+{_PEOPLE}"),
    re.compile(rf"\b(?:carried out|conducted|performed|done)\s+(?:on|in|with|among)\s+{NUMBER}\s+{_PEOPLE}"),
    re.compile(rf"\b(?:involving|including|comprising|enrolling|recruiting)\s+{NUMBER}\s+{_PEOPLE}"),
    re.compile(r"\(\s*n\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)\s*\)"),
    re.compile(rf"^{NUMBER}\s+{_PEOPLE}"),
    re.compile(rf"\b(?:among|in|of|from|to)\s+{NUMBER}\s+{_PEOPLE}"),
]
_ARM_RANK = 5  # the "(n = ...)" pattern: per-arm counts, added up
# Cheap pre-check: a sentence stating a sample size names people (or "n =").
_SIZE_HINT = re.compile(r"patient|participant|subject|adult|individual|women|men\b|veteran|child|adolescent|"
                        r"volunteer|people|person|mother|parturient|case|youth|respondent|user|resident|n ?=")
_NOT_PEOPLE_BEFORE = re.compile(r"(?:aged|age|ages|mean age|years|yrs|mg|doses?|sessions?|cycles?|infusions?)\s*$")

_STUDIES = r"(?:[\w-]+\s+){0,3}?(?:studies|trials|rcts|articles|papers|publications|reports|cohorts)"
_INCLUDED_PATTERNS = [
    re.compile(rf"\b{NUMBER}\s+{_STUDIES}\s+(?:\([^)]{{0,40}}\)\s+)?(?:were|was)\s+(?:included|eligible|identified|"
               rf"selected|analy[sz]ed|retained)"),
    re.compile(rf"\b(?:included|identified|yielded|retained|selected|analy[sz]ed|pooled|comprised)\s+{NUMBER}\s+{_STUDIES}"),
    re.compile(rf"\b{NUMBER}\s+{_STUDIES}\s+(?:met|fulfilled|satisfied)\b"),
    re.compile(rf"\b{NUMBER}\s+{_STUDIES}\s+(?:\(|with|involving|including|comprising|enrolling|totaling|totalling|"
               rf"representing|and)"),
    re.compile(rf"\b(?:a total of|total of|overall,?)\s+{NUMBER}\s+{_STUDIES}"),
]
_POOLED_PATTERNS = [
    re.compile(rf"\b(?:involving|including|comprising|enrolling|totaling|totalling|representing|with|and|of)\s+"
               rf"(?:a total of\s+|data from\s+|data on\s+)?{NUMBER}\s+{_PEOPLE}"),
    re.compile(rf"\b(?:a total of|total of)\s+{NUMBER}\s+{_PEOPLE}"),
    re.compile(r"\b[nN]\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)\s+(?:participants|patients|subjects|individuals)?"),
    re.compile(rf"{NUMBER}\s+{_PEOPLE}\s+(?:were|was)\s+(?:included|analy[sz]ed|pooled)"),
]
_STUDIES_HINT = re.compile(r"studies|trials|rcts|articles|papers|publications|reports|cohorts")

MAX_PEOPLE = 5_000_000
_ONE_PATIENT = re.compile(r"\b(?:a|an)\s+\d{1,3}-year-old\b|\bwe (?:report|describe|present) (?:a|an|the)\b")


@dataclass
class Counts:
    sample_size: int | None = None
    sample_size_evidence: str | None = None
    studies_included: int | None = None
    studies_included_evidence: str | None = None
    participants_pooled: int | None = None
    participants_pooled_evidence: str | None = None


def to_int(token: str) -> int | None:
    """A count written in digits or words ("1,204", "Seventy-six", "one hundred and twelve")."""
    token = " ".join(token.lower().replace(",", "").split())
    if len(token) > 60:
        return None
    if token.isascii() and token.isdigit():
        return int(token) if len(token) <= 7 else None  # int() of thousands of digits is slow
    total = 0
    words = re.findall(r"[a-z]+", token)
    if not words:
        return None
    for word in words:
        if word == "and":
            continue
        if word == "hundred":
            total = max(total, 1) * 100
        elif word == "a":
            total += 1  # "a hundred"
        elif word in _UNITS:
            total += _UNITS[word]
        elif word in _TENS:
            total += _TENS[word]
        else:
            return None
    return total or None


def count_participants(sentences: list[Sentence], designs: set[str]) -> Counts:
    """The counts that fit the study's design, each with its sentence."""
    if designs & {"meta_analysis", "systematic_review"}:
        return _synthesis_counts(sentences)
    if designs & NO_PARTICIPANTS:
        return Counts()
    size, evidence = extract_sample_size(sentences)
    if size is None and "case_report" in designs:
        described = next((s.text for s in sentences
                          if s.section_kind != "background" and _ONE_PATIENT.search(s.lower)), None)
        if described:
            return Counts(1, described)
    return Counts(size, evidence)


# Designs whose abstracts describe no participants of their own.
NO_PARTICIPANTS = frozenset({"narrative_review", "guideline", "animal", "in_vitro", "modelling", "protocol",
                             "registration"})


def extract_sample_size(sentences: list[Sentence]) -> tuple[int | None, str | None]:
    """Participants randomised / enrolled, where the abstract states it."""
    candidates = [s for s in sentences if s.section_kind not in ("title", "background") and _SIZE_HINT.search(s.lower)]
    for rank, pattern in enumerate(_SIZE_PATTERNS):
        for sentence in candidates:
            if rank == _ARM_RANK:
                found = _arm_total(pattern, sentence)
            else:
                found = _first_count(pattern, sentence, rank)
            if found is not None:
                return found, sentence.text
    return None, None


def _first_count(pattern: re.Pattern, sentence: Sentence, rank: int) -> int | None:
    for match in pattern.finditer(sentence.lower):
        if _NOT_PEOPLE_BEFORE.search(sentence.lower[:match.start(1)]):
            continue
        value = to_int(match.group(1))
        if value is None or value < 1 or value > MAX_PEOPLE:
            continue
        if 1900 <= value <= 2100 and rank >= _ARM_RANK:  # years are not sample sizes
            continue
        return value
    return None


def _arm_total(pattern: re.Pattern, sentence: Sentence) -> int | None:
    """ "(n = 20) ... (n = 22)": the arms added up, or the total when the others are its parts."""
    values = [v for v in (to_int(m.group(1)) for m in pattern.finditer(sentence.lower)) if v and v <= MAX_PEOPLE]
    if not values:
        return None
    largest = max(values)
    rest = sum(values) - largest
    if len(values) == 1 or rest == largest or rest < largest / 2:
        return largest
    return sum(values)


def _synthesis_counts(sentences: list[Sentence]) -> Counts:
    counts = Counts()
    candidates = [s for s in sentences if s.section_kind not in ("title", "background")]
    for pattern in _INCLUDED_PATTERNS:
        for sentence in candidates:
            if not _STUDIES_HINT.search(sentence.lower):
                continue
            value = _first_count(pattern, sentence, 0)
            if value is not None and value < 10_000:
                counts.studies_included, counts.studies_included_evidence = value, sentence.text
                break
        if counts.studies_included is not None:
            break
    # Pooled participants: stated with the included studies, or in the results.
    ordered = candidates
    if counts.studies_included_evidence:
        start = next(i for i, s in enumerate(candidates) if s.text == counts.studies_included_evidence)
        ordered = candidates[start:] + candidates[:start]
    for pattern in _POOLED_PATTERNS:
        for sentence in ordered:
            value = _first_count(pattern, sentence, 0)
            if value is not None and value != counts.studies_included:
                counts.participants_pooled, counts.participants_pooled_evidence = value, sentence.text
                return counts
    return counts
