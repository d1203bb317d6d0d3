"""How many: the participants a study randomised or enrolled; for a synthesis, its studies and their participants.

Each count keeps the sentence that states it. Only primary studies of people have a sample
size; a synthesis has ``studies_included`` and ``participants_pooled`` instead (a different
thing: they are not participants of the review); models, protocols, registrations, reviews
and laboratory studies have none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .design import OBJECTIVE_LABEL
from .negation import PEOPLE_WORDS
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
_PEOPLE_NOUN = (r"(?:patients|participants|subjects|adults|individuals|women|men|veterans|children|"
                r"adolescents|volunteers|people|persons|mothers|parturients|outpatients|inpatients|cases|youths?|"
                r"respondents|users|residents|smokers|drinkers|inmates|soldiers|students|nurses|physicians|"
                r"clinicians|infants|neonates|elderly|pregnant women|survivors)")
_PEOPLE = rf"(?:(?!(?:from|of|in|with|and|or)\s)[a-z][\w-]*\s+){{0,4}}?(?:[a-z]+-)?{_PEOPLE_NOUN}"
_VERBS = (r"(?:randomi[sz]ed|enrolled|included|recruited|allocated|assigned|analy[sz]ed|studied|evaluated|treated|"
          r"surveyed)")
# Each number in a sentence is read once (one scan), then its context tells which statement it is
# in, strongest first: the rank of the first of these that fits (the "before" text ends at the
# number, the "after" text starts after it).
_DIGITS_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?![\w-])|\d+(?![\w-])")  # starts with a digit: searched fast
_WORDS_TOKEN = re.compile(rf"\b({_WORDS})(?![\w-])")
_PEOPLE_AFTER = re.compile(rf"\s+{_PEOPLE}")
_ENROLLED_AFTER = re.compile(rf"\s+{_PEOPLE}(?:\s+(?:with|from|who|aged|diagnosed|meeting|at)\b[^,.;]{{0,100}}?)?"
                             rf"\s+(?:were|was|had been)\s+(?:randomi[sz]ed|enrolled|included|recruited|randomly|"
                             rf"allocated|assigned|treated|studied|analy[sz]ed|evaluated|surveyed)")
_BEFORE_RANKS = [  # (rank, what the text before the number ends with); rank 1 is _ENROLLED_AFTER
    (0, re.compile(rf"\b{_VERBS}\s+(?:a total of\s+|total of\s+)?$")),
    (2, re.compile(r"\b(?:a total of|total of|overall,?)\s+$")),
    (3, re.compile(r"\b(?:carried out|conducted|performed|done)\s+(?:on|in|with|among)\s+$")),
    # "In this two-center observational study, 261 adults with TRD ... received": this study's people.
    (3, re.compile(r"\bin (?:this|the present|our) [^,.;()]{0,60}?(?:study|trial|analysis|cohort),\s+$")),
    (4, re.compile(r"\b(?:involving|including|comprising|enrolling|recruiting|involved|comprised|"
                   r"(?:study|trial) with|analys[ie]s (?:on|of))\s+$")),
    (7, re.compile(r"\b(?:among|in|of|from|to)\s+(?:the\s+|all\s+)?$")),
]
# Weakest: the number of people is the subject of the sentence's verb ("41 participants received...").
_SUBJECT_RANK = 8
_PARENTHESIS = r"\((?:[^()]|\([^()]{0,30}\)){0,80}\)"  # one level of nesting: "(mean age (SD) = 25.1)"
_SUBJECT_AFTER = re.compile(rf"\s+{_PEOPLE}(?:\s+{_PARENTHESIS})?(?:\s+(?:with|from|who|aged|diagnosed|meeting|at|"
                            rf"undergoing|scheduled)\b[^,.;()]{{0,80}}?)?,?\s+(?:received|underwent|participated|"
                            rf"completed|took part|were|was|had|met|provided|consented|entered)\b")
# "Fourteen patients (40%) were nonresponders": a share of the sample, not the sample.
_SHARE_AFTER = re.compile(rf"\s+{_PEOPLE}\s*\(\s*\d+(?:\.\d+)?\s*%\s*\)")
_START_RANK = 6  # the sentence opens with the number of people
_N_EQUALS = re.compile(r"\(\s*n\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)\s*\)")
_ARM_RANK = 5  # the "(n = ...)" pattern: per-arm counts, added up
# A number right after these is an age, a dose or a count of sessions, not of people.
_NOT_PEOPLE_BEFORE = ("aged", "age", "ages", "years", "yrs", "mg", "dose", "doses", "session", "sessions", "cycle",
                      "cycles", "infusion", "infusions")

_STUDIES = r"(?:[\w-]+\s+){0,3}?(?:studies|trials|rcts|articles|papers|publications|reports|cohorts)"
_INCLUDED_PATTERNS = [
    # "From all included studies (n = 29), ..."
    re.compile(rf"\b(?:included|eligible)\s+(?:[\w-]+\s+){{0,2}}?(?:studies|trials|rcts|articles)"
               rf"\s*\(\s*n\s*=\s*{NUMBER}\s*\)"),
    re.compile(rf"\b{NUMBER}\s+{_STUDIES}\s+(?:\([^)]{{0,40}}\)\s+)?(?:were|was)\s+(?:included|eligible|identified|"
               rf"selected|analy[sz]ed|retained)"),
    re.compile(rf"\b(?:included|identified|yielded|retained|selected|analy[sz]ed|pooled|comprised|found|analy[sz]ing|"
               rf"including)\s+{NUMBER}\s+{_STUDIES}"),
    re.compile(rf"\b{NUMBER}\s+{_STUDIES}\s+(?:met|fulfilled|satisfied)\b"),
    # "Of the 2275 articles identified, 93 met inclusion criteria"; "Among the 11 included trials"
    re.compile(rf"\b{NUMBER}\s+(?:met|fulfilled|satisfied)\s+(?:the\s+|our\s+|all\s+)?"
               rf"(?:inclusion|eligibility|selection)"),
    re.compile(rf"\b{NUMBER}\s+included\s+{_STUDIES}"),
    re.compile(rf"\b{NUMBER}\s+{_STUDIES}\s+(?:\(|with|involving|including|comprising|enrolling|totaling|totalling|"
               rf"representing|and)"),
    re.compile(rf"\b(?:a total of|total of|overall,?)\s+{NUMBER}\s+{_STUDIES}"),
]
_POOLED_PATTERNS = [
    re.compile(rf"\b(?:involving|including|comprising|enrolling|totaling|totalling|representing|with|and|of|included|"
               rf"involved|enrolled|comprised)\s+(?:a total of\s+|data from\s+|data on\s+|the\s+)?"
               rf"{NUMBER}\s+{_PEOPLE}"),
    # "238 studies (380,505 participants)"
    re.compile(rf"\b(?:studies|trials|rcts|articles|cohorts)\s+\(\s*(?:n\s*=\s*)?{NUMBER}\s+{_PEOPLE}"),
    re.compile(rf"\b(?:a total of|total of)\s+{NUMBER}\s+{_PEOPLE}"),
    re.compile(r"\b[nN]\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)\s+(?:participants|patients|subjects|individuals)?"),
    re.compile(rf"{NUMBER}\s+{_PEOPLE}\s+(?:were|was)\s+(?:included|analy[sz]ed|pooled)"),
]
# "Seven studies were eligible out of 1220 identified articles": the records screened, not those included.
_SCREENED_BEFORE = ("out of",)
_STUDIES_HINT = re.compile(r"studies|trials|rcts|articles|papers|publications|reports|cohorts")

MAX_PEOPLE = 5_000_000
# Cheap pre-checks (substring tests are much faster than regex alternations run at every position).
_DIGIT = re.compile(r"\d")
_NUMBER_WORDS = (*_UNITS, *_TENS, "hundred")


def _has_number(text: str) -> bool:
    return bool(_DIGIT.search(text)) or any(word in text for word in _NUMBER_WORDS)


def _names_people(sentence: Sentence) -> bool:
    """Known from the tagger's single pass over the record when it ran; else looked up here."""
    people = sentence.memo.get("people at")
    names = bool(people) if people is not None else bool(PEOPLE_WORDS.search(sentence.lower))
    return names or "n =" in sentence.lower or "n=" in sentence.lower


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
        counts = _synthesis_counts(sentences)
        if "rct" in designs:  # a trial reported with a meta-analysis: the trial's n, from its own sentences
            own = [s for s in sentences if not _SYNTHESIS_WORDS.search(s.lower)]
            counts.sample_size, counts.sample_size_evidence = extract_sample_size(own)
        return counts
    if designs & NO_PARTICIPANTS:
        return Counts()
    size, evidence = extract_sample_size(sentences)
    if size is None and "case_report" in designs:
        described = next((s.text for s in sentences
                          if s.section_kind != "background" and _ONE_PATIENT.search(s.lower)), None)
        if described:
            return Counts(1, described)
    return Counts(size, evidence)


_SYNTHESIS_WORDS = re.compile(r"meta-?\s?analy|systematic review|pooled|included (?:studies|trials)")
# Designs whose abstracts describe no participants of their own.
NO_PARTICIPANTS = frozenset({"narrative_review", "guideline", "animal", "in_vitro", "modelling", "protocol",
                             "registration"})


def _about_this_study(sentence: Sentence) -> bool:
    """Methods, results and unlabelled text; background only under an aim label ("OBJECTIVE: ...")."""
    if sentence.section_kind == "title":
        return False
    return sentence.section_kind != "background" or bool(OBJECTIVE_LABEL.match(sentence.section or ""))


def extract_sample_size(sentences: list[Sentence]) -> tuple[int | None, str | None]:
    """Participants randomised / enrolled, where the abstract states it: the strongest statement, first found."""
    candidates = [s for s in sentences if _about_this_study(s) and _names_people(s) and _has_number(s.lower)]
    best: tuple[int, int, int, str] | None = None  # (rank, sentence order, value, text)
    for order, sentence in enumerate(candidates):
        for rank, value in _statements(sentence):
            if best is None or (rank, order) < best[:2]:
                best = (rank, order, value, sentence.text)
    return (best[2], best[3]) if best else (None, None)


def _statements(sentence: Sentence) -> list[tuple[int, int]]:
    """(rank, count) of every sample-size statement in the sentence."""
    text = sentence.lower
    found = []
    people = sentence.memo.get("people at")  # where words naming people start, when the tagger's pass ran
    for start, end, token in _number_tokens(text):
        if people is not None and not any(end < at <= end + 90 for at in people):
            continue  # no people named within a few words after the number
        before, after = text[max(0, start - 48):start], text[end:end + 160]
        if before.rstrip().endswith(_NOT_PEOPLE_BEFORE) or not _PEOPLE_AFTER.match(after):
            continue
        if _SHARE_AFTER.match(after) and not before.endswith(("of ", "of the ")):
            continue  # "Fourteen patients (40%) were nonresponders"; but "44 of 82 patients (54%)" counts 82
        value = to_int(token)
        if value is None or value < 1 or value > MAX_PEOPLE:
            continue
        ranks = [rank for rank, pattern in _BEFORE_RANKS if pattern.search(before)]
        if _ENROLLED_AFTER.match(after):
            ranks.append(1)
        elif _SUBJECT_AFTER.match(after):
            ranks.append(_SUBJECT_RANK)
        if start == 0:
            ranks.append(_START_RANK)
        if 1900 <= value <= 2100:  # a year, unless the sentence says plainly it counts people
            ranks = [r for r in ranks if r < _ARM_RANK]
        if ranks:
            found.append((min(ranks), value))
    arms = _arm_total(sentence)
    if arms is not None:
        found.append((_ARM_RANK, arms))
    groups = _group_total(sentence)
    if groups is not None:  # before the single groups' own counts, at the best rank any of them has
        found.insert(0, (min((rank for rank, _ in found), default=1), groups))
    return found


def _first_count(pattern: re.Pattern, sentence: Sentence, rank: int, skip_before: tuple[str, ...] = ()) -> int | None:
    for match in pattern.finditer(sentence.lower):
        before = sentence.lower[:match.start(1)].rstrip()
        if before.endswith(_NOT_PEOPLE_BEFORE) or (skip_before and before.endswith(skip_before)):
            continue
        value = to_int(match.group(1))
        if value is None or value < 1 or value > MAX_PEOPLE:
            continue
        if 1900 <= value <= 2100 and rank >= _ARM_RANK:  # years are not sample sizes
            continue
        return value
    return None


def _number_tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, token) of every count in digits or words; not part of a decimal, a range or a word."""
    tokens = [(m.start(), m.end(), m.group()) for m in _DIGITS_TOKEN.finditer(text)
              if m.start() == 0 or text[m.start() - 1] not in ".,-_" and not text[m.start() - 1].isalnum()]
    if any(word in text for word in _NUMBER_WORDS):
        tokens += [(m.start(), m.end(), m.group(1)) for m in _WORDS_TOKEN.finditer(text)
                   if m.start() == 0 or text[m.start() - 1] not in "-_"]
    return sorted(tokens)


_ALLOCATION = r"(?:randomi[sz]ed|randomly assigned|randomly allocated|assigned|allocated)"
# Groups counted one by one, added up: "336 patients were randomised to A and 340 to B",
# "110 TRD and 25 TRBD patients were included", "17 participants with X, 18 participants with Y and 8 ...".
# Each with the words one of which every match contains: a substring test is much faster than the pattern.
_GROUP_LISTS = [
    ((" and ", " while ", " whereas "),
     re.compile(rf"\b{NUMBER}\s+{_PEOPLE}\s+(?:were|was)\s+{_ALLOCATION}\s+to\s+[^,;.]{{1,80}}?(?:,\s*|\s+)"
                rf"(?:and|while|whereas)\s+{NUMBER}\s+(?:\w+\s+)?(?:to|were)\b")),
    ((" and ",),
     re.compile(rf"\b{NUMBER}\s+[\w-]+(?:\s+[\w-]+)?\s+and\s+{NUMBER}\s+[\w-]+(?:\s+[\w-]+)?\s+{_PEOPLE_NOUN}\s+"
                rf"(?:were|was)\s+(?:included|enrolled|recruited|randomi[sz]ed|analy[sz]ed|studied)")),
    ((" and ",),
     re.compile(rf"\b{NUMBER}\s+{_PEOPLE}\s+with\s+[^,;]{{1,40}}?,\s+{NUMBER}\s+{_PEOPLE}\s+with\s+"
                rf"[^,;]{{1,40}}?,?\s+and\s+{NUMBER}\s+{_PEOPLE}\s+with\b")),
    # "differences ... between 36 individuals with TRD and 25 healthy volunteers"
    (("between ",), re.compile(rf"\bbetween\s+{NUMBER}\s+{_PEOPLE}[^,;.]{{0,80}}?\s+and\s+{NUMBER}\s+{_PEOPLE}")),
    # "169 participants with MDD received TMS only, while 66 received TMS and ketamine"
    ((" while ", " whereas "),
     re.compile(rf"\b{NUMBER}\s+{_PEOPLE}\s+[^;.]{{0,80}}?\b(?:received|underwent)\b[^;.]{{1,120}}?,?\s+"
                rf"(?:while|whereas)\s+{NUMBER}\s+(?:\w+\s+)?(?:received|underwent)\b")),
]


def _group_total(sentence: Sentence) -> int | None:
    text = sentence.lower
    for needed, pattern in _GROUP_LISTS:
        match = any(word in text for word in needed) and pattern.search(text)
        if match:
            values = [to_int(group) for group in match.groups()]
            if all(values) and sum(values) <= MAX_PEOPLE:
                return sum(values)
    return None


_VERSUS = re.compile(r"\b(?:versus|vs\.?|compared (?:with|to))\s")


def _arm_total(sentence: Sentence) -> int | None:
    """ "(n = 20) ... (n = 22)": the arms added up, or the total when the others are its parts."""
    arms = [(m, to_int(m.group(1))) for m in _N_EQUALS.finditer(sentence.lower)]
    matches = [m for m, v in arms if v and v <= MAX_PEOPLE]
    values = [v for _, v in arms if v and v <= MAX_PEOPLE]
    if not values:
        return None
    largest = max(values)
    rest = sum(values) - largest
    if len(values) == 2 and (values[0] == values[1]
                             or _VERSUS.search(sentence.lower, matches[0].end(), matches[1].start())):
        # Two arms: equal ("ketamine group (n = 8) ... control group (n = 8)") or set against each other.
        return sum(values)
    if len(values) == 1 or rest == largest or rest < largest / 2:
        return largest
    return sum(values)


def _synthesis_counts(sentences: list[Sentence]) -> Counts:
    counts = Counts()
    candidates = [s for s in sentences if s.section_kind not in ("title", "background") and _has_number(s.lower)]
    with_studies = [s for s in candidates if _STUDIES_HINT.search(s.lower)]
    for pattern in _INCLUDED_PATTERNS:
        for sentence in with_studies:
            value = _first_count(pattern, sentence, 0, _SCREENED_BEFORE)
            if value is not None and value < 10_000:
                counts.studies_included, counts.studies_included_evidence = value, sentence.text
                break
        if counts.studies_included is not None:
            break
    # Pooled participants: stated with the included studies, or in the results.
    ordered = [s for s in candidates if _names_people(s)]
    if counts.studies_included_evidence and any(s.text == counts.studies_included_evidence for s in ordered):
        start = next(i for i, s in enumerate(ordered) if s.text == counts.studies_included_evidence)
        ordered = ordered[start:] + ordered[:start]
    for pattern in _POOLED_PATTERNS:
        for sentence in ordered:
            value = _first_count(pattern, sentence, 0)
            if value is not None and value != counts.studies_included:
                counts.participants_pooled, counts.participants_pooled_evidence = value, sentence.text
                return counts
    return counts
