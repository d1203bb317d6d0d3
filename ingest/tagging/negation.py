"""Negation, reduction and clause breaks (NegEx-style), found in the same pass as the tags."""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, field

from .matching import VocabularyError, anchors_for, build_automaton, keyed

_PRE_NEGATION = re.compile(
    r"(?:no|not(?! tolerat)|without|absence of|absent|free of|free from|neither|nor|none of|never|lack of|"
    r"no evidence of|no cases? of|no reports? of|no (?:significant|serious|major|clinically significant|"
    r"notable|increased?|persistent|lasting|sustained|severe|relevant|meaningful)|did not (?:cause|induce|"
    r"produce|increase|result in|lead to|show|experience|report|develop|have|affect|worsen|exacerbate)|"
    r"(?:was|were) not associated with|(?:was|were) not accompanied by|rule[sd]? out|denied|nor any)\b",

)
_POST_NEGATION = re.compile(
    r"(?:(?:was|were|are|is) (?:not|never|rarely) (?:observed|reported|seen|found|detected|noted|"
    r"present|associated|increased|significant\w*|different|evident|recorded|elevated|affected)|did not (?:occur|"
    r"differ|change|increase|emerge|develop|reach)|(?:was|were) absent|(?:was|were) similar|no (?:difference|"
    r"significant difference)|not (?:statistically )?significant\w*|(?:was|were) comparable|not differ)\b",

)
_REDUCED = re.compile(
    r"(?:reduc\w*|decreas\w*|lower\w*|less|fewer|prevent\w*|attenuat\w*|alleviat\w*|prophyla\w*|"
    r"protect\w* against|improv\w*|relie\w*|ameliorat\w*|inhibit\w*)\b",

)
# These run on lower-cased text; the left word boundary comes from the anchor automaton (a leading \b
# would stop `re` from skipping ahead quickly).
# Where a clause ends: a negation or reduction never reaches across one.
_BREAK = re.compile(r"(?:but|however|although|though|except|whereas|while|yet)\b")
# Not a negation cue, found in the same pass for the sample size: words that name people
# (a sentence without one states no number of participants).
PEOPLE_WORDS = re.compile(
    r"(?:patient|participant|subject|adult|individual|women|men|veteran|child|adolescent|volunteer|people|"
    r"person|mother|parturient|case|youth|respondent|user|resident|smoker|drinker|inmate|soldier|student|nurse|"
    r"physician|clinician|infant|neonate|elderly|survivor|outpatient|inpatient|out-patient|in-patient)")
PRE_WINDOW, POST_WINDOW, REDUCED_WINDOW = 90, 60, 60


@dataclass
class Cues:
    """Negation and reduction triggers of one text, found once and shared by its mentions."""

    text: str  # the text searched (lower-cased), for clause-break checks
    pre: list[int]  # end offsets of pre-negation triggers
    post: list[int]  # start offsets of post-negation triggers
    reduced: list[int]  # end offsets of reduction triggers
    breaks: list[int]  # offsets of clause-break words ("but", "however")
    people: list[int] = field(default_factory=list)  # offsets of words naming people

    def _clear(self, a: int, b: int) -> bool:
        """No clause break between offsets a and b (punctuation is looked up only when needed)."""
        i = bisect.bisect_left(self.breaks, a)
        if i < len(self.breaks) and self.breaks[i] < b:
            return False
        return _PUNCTUATION_BREAK.search(self.text, a, b) is None

    def negated(self, start: int, end: int) -> bool:
        if any(p <= start and start - p <= PRE_WINDOW and self._clear(p, start) for p in self.pre):
            return True
        return any(q >= end and q - end <= POST_WINDOW and self._clear(end, q) for q in self.post)

    def reduction(self, start: int) -> bool:
        return any(r <= start and start - r <= REDUCED_WINDOW and self._clear(r, start) for r in self.reduced)


_PUNCTUATION_BREAK = re.compile(r"[.;:\n]")  # a newline separates the sentences of a record

# Negation cues are found in the same Aho-Corasick pass as the vocabulary: an automaton entry
# whose target is one of these ints records a cue instead of a tag (field order of Cues).
CUE_PRE, CUE_POST, CUE_REDUCED, CUE_BREAK, CUE_PEOPLE = range(5)


def cue_entries() -> dict[str, list]:
    entries: dict[str, list] = {}
    for cue, regex in ((CUE_PRE, _PRE_NEGATION), (CUE_POST, _POST_NEGATION), (CUE_REDUCED, _REDUCED),
                       (CUE_BREAK, _BREAK), (CUE_PEOPLE, PEOPLE_WORDS)):
        anchors = anchors_for([regex.pattern])
        if not anchors:
            raise VocabularyError(f"no literal start in {regex.pattern[:40]!r}")
        for anchor in anchors:
            entries.setdefault(anchor, []).append((cue, regex.match, False))
    return entries


@functools.lru_cache(maxsize=1)
def _cue_automaton() -> object:
    return build_automaton(cue_entries())


def scan(automaton, text: str, lowered: str, key_text: str) -> tuple[list[tuple[str, int, int]], Cues]:
    """One Aho-Corasick pass: (tag id, start, end) of every anchored tag match, and the cues.

    Each anchor hit is a word start where one of its entries' regexes may match: lower-case
    patterns are tried on the lower-cased text, case-sensitive acronyms on the original.
    """
    seen: set[tuple[str, int]] = set()
    found = []
    cues: tuple[list, ...] = ([], [], [], [], [])
    for end, (length, payload) in automaton.iter(key_text):
        position = end - length + 1
        for target, match, original in payload:
            m = match(text if original else lowered, position)
            if m is None:
                continue
            if target.__class__ is int:
                cues[target].append(m.end() if target in (CUE_PRE, CUE_REDUCED) else position)
            elif (target, position) not in seen:
                seen.add((target, position))
                found.append((target, position, m.end()))
    cues[CUE_BREAK].sort()
    return found, Cues(lowered, *cues)


def sentence_cues(text: str) -> Cues:
    """Negation, reduction and clause-break positions in a text (offsets are the text's own)."""
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = text
    return scan(_cue_automaton(), lowered, lowered, keyed(lowered))[1]


def is_negated(sentence: str, start: int, end: int) -> bool:
    """NegEx-style: a negation trigger shortly before or after the term, in the same clause."""
    return sentence_cues(sentence).negated(start, end)
