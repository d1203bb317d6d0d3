"""Sample size: the participants a study randomised or enrolled, where its abstract states it."""

from __future__ import annotations

import re

from .sentences import Sentence

_NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
_NUM = r"(\d{1,3}(?:,\d{3})+|\d+|" + "|".join(_NUMBER_WORDS) + r")"
_PEOPLE = (r"(?:[\w-]+\s+){0,4}?(?:patients|participants|subjects|adults|individuals|women|men|veterans|children|"
           r"adolescents|volunteers|people|persons|mothers|parturients|outpatients|inpatients|cases|youths?)")
_SIZE_PATTERNS = [  # run on Sentence.lower
    re.compile(r"\b(?:randomi[sz]ed|enrolled|included|recruited|allocated|assigned)\s+" + _NUM + r"\s+" + _PEOPLE),
    re.compile(r"\b" + _NUM + r"\s+" + _PEOPLE + r"(?:\s+(?:with|from|who|aged|diagnosed)\b[^,.;]{0,60}?)?"
               r"\s+(?:were|was)\s+(?:randomi[sz]ed|enrolled|included|recruited|"
               r"randomly|allocated|assigned|treated|studied)"),
    re.compile(r"\b(?:a total of|total of|overall,?)\s+" + _NUM + r"\s+" + _PEOPLE),
    re.compile(r"\(\s*n\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)\s*\)"),
    re.compile(r"^" + _NUM + r"\s+" + _PEOPLE),
    re.compile(r"\b(?:among|in|of)\s+" + _NUM + r"\s+" + _PEOPLE),
]


# Cheap pre-check: a sentence stating a sample size names people (or "n =").
_SIZE_HINT = re.compile(r"patient|participant|subject|adult|individual|women|men\b|veteran|child|adolescent|"
                        r"volunteer|people|person|mother|parturient|case|youth|n ?=")


def _to_int(token: str) -> int | None:
    token = token.lower().replace(",", "")
    if len(token) > 7:  # more than 9,999,999 people is not a sample size (and int() of 5,000 digits fails)
        return None
    if token.isascii() and token.isdigit():
        return int(token)
    return _NUMBER_WORDS.get(token)


def extract_sample_size(sentences: list[Sentence]) -> tuple[int | None, str | None]:
    """Participants randomised / enrolled, where the abstract states it."""
    candidates = [s for s in sentences if s.section_kind not in ("title", "background") and _SIZE_HINT.search(s.lower)]
    for pattern_rank, pattern in enumerate(_SIZE_PATTERNS):
        best: tuple[int, str] | None = None
        for sentence in candidates:
            for match in pattern.finditer(sentence.lower):
                value = _to_int(match.group(1))
                if value is None or value < 1 or value > 5_000_000:
                    continue
                # Years and doses are not sample sizes.
                if 1900 <= value <= 2100 and pattern_rank >= 3:
                    continue
                if best is None or (pattern_rank == 3 and value > best[0]):
                    best = (value, sentence.text)
                if pattern_rank != 3:
                    break
            if best and pattern_rank != 3:
                break
        if best:
            return best
    return None, None
