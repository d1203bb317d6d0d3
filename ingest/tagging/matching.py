"""Finding vocabulary patterns fast: literal anchors, "keyed" text and one Aho-Corasick pass.

Every anchored pattern must begin with one of its literal prefixes (its anchors); the anchors of
all tags and negation cues go into one automaton, and a pattern's regex is tried only where one
of its anchors starts a word.
"""

from __future__ import annotations

import re


class VocabularyError(ValueError):
    pass


def compile_patterns(patterns: list[str], tag_id: str, flags: int = 0) -> re.Pattern | None:
    # No leading look-behind: a pattern that starts with plain characters lets `re` skip ahead
    # fast; the word-boundary check on the left is done after matching (see left_boundary).
    if not patterns:
        return None
    try:
        return re.compile("(?:" + "|".join(patterns) + r")(?![\w])", flags)
    except re.error as exc:
        raise VocabularyError(f"tag {tag_id}: bad pattern ({exc})") from exc


MAX_ANCHORS_PER_PATTERN = 64


def _leading_literals(items) -> tuple[set[str], bool] | None:
    """Literal prefixes one of which every match of a parsed pattern must start with.

    Returns (prefixes, complete): ``complete`` when the prefixes are the whole pattern, so
    what follows it can lengthen them ("treatment[- ]resist" gives "treatment-resist" and
    "treatment resist"). None when nothing is known.
    """
    from re import _constants as c  # the parser's opcodes; stable across 3.11+

    prefixes = {""}
    for op, arg in items:
        if op in (c.ASSERT, c.ASSERT_NOT, c.AT) and prefixes == {""}:
            continue
        if op is c.LITERAL:
            more, complete = {chr(arg)}, True
        elif op is c.IN and len(arg) <= 4 and all(o is c.LITERAL for o, _ in arg):
            more, complete = {chr(a) for _, a in arg}, True  # a small class: [- ]
        elif op is c.SUBPATTERN or op is c.BRANCH:
            found = _leading_literals(arg[-1]) if op is c.SUBPATTERN else _branch_literals(arg[1])
            if found is None:
                break
            more, complete = found
        else:
            break
        combined = {p + m for p in prefixes for m in more}
        if len(combined) > MAX_ANCHORS_PER_PATTERN:
            break
        prefixes = combined
        if not complete:
            return prefixes, False
    else:
        return prefixes, True
    return (prefixes, False) if prefixes != {""} else None


def _branch_literals(branches) -> tuple[set[str], bool] | None:
    found, complete = set(), True
    for branch in branches:
        more = _leading_literals(branch)
        if more is None:
            return None
        found |= more[0]
        complete = complete and more[1]
    return found, complete


# Anchors are searched in a "keyed" copy of the text where every character that can end a word
# (anything but a letter, digit, "-" or "_") is NUL, and each anchor is keyed with a leading NUL:
# an anchor is then reported only where it starts a word, and offsets stay those of the text.
_ASCII_WORD_BREAKS = bytes(c if chr(c).isalnum() or chr(c) in "-_" else 0 for c in range(256))
_NON_ASCII_WORD = re.compile(r"(?:(?![\x00-\x7f])\w)+")


def keyed(text: str) -> str:
    """The text as the anchor automata search it: word breaks as NUL, one NUL in front."""
    # bytes.translate is far faster than str.translate or re.sub; a non-ASCII character
    # becomes "?" (a break) and is put back where it is a letter or digit.
    ascii_keyed = text.encode("ascii", "replace").translate(_ASCII_WORD_BREAKS).decode("ascii")
    if text.isascii():
        return "\0" + ascii_keyed
    parts, last = ["\0"], 0
    for m in _NON_ASCII_WORD.finditer(text):
        parts += [ascii_keyed[last:m.start()], m.group()]
        last = m.end()
    parts.append(ascii_keyed[last:])
    return "".join(parts)


def build_automaton(payloads: dict[str, list]) -> object:
    """Aho-Corasick over anchors; each hit yields (end, (key length, payload)).

    Anchors that key alike ("(2r" and "[2r") share one entry: their payload lists are joined.
    """
    import ahocorasick

    automaton = ahocorasick.Automaton()
    merged: dict[str, list] = {}
    for anchor, payload in payloads.items():
        merged.setdefault(keyed(anchor), []).append(payload)
    for key, items in merged.items():
        automaton.add_word(key, (len(key), tuple(x for item in items for x in item)))
    automaton.make_automaton()
    return automaton


def anchors_for(patterns: list[str]) -> tuple[str, ...] | None:
    """Substrings at least one of which must occur for any pattern to match (None: always search)."""
    from re import _parser

    out: set[str] = set()
    for pattern in patterns:
        found = _leading_literals(list(_parser.parse(pattern)))
        if found is None or min(len(p) for p in found[0]) < 2:
            return None
        out |= found[0]
    return tuple(sorted(out))


def left_boundary(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "-_")
