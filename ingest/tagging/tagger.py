"""Tagging studies by indication, mechanism, side effect, design, drug, route and population.

Pure: a record dict in, tags with their evidence out. The vocabulary (labels, synonyms,
MeSH ids, publication types) lives in ``vocabulary.yaml``; this module holds only the rules
for reading it: which sentences count, negation, and how designs are resolved.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .sentences import Sentence, record_sentences

VOCABULARY_PATH = Path(__file__).with_name("vocabulary.yaml")
KINDS = ("indication", "mechanism", "side_effect", "design", "drug", "route", "population")
MAX_EVIDENCE = 3  # sentences kept per tag and study


@dataclass
class TagDef:
    id: str
    kind: str
    label: str
    definition: str
    mesh: list[dict]
    pubtypes: list[str]
    patterns: list[str]
    case_patterns: list[str]
    regex: re.Pattern | None = None  # lower-case patterns, run on lower-cased text
    case_regex: re.Pattern | None = None  # case-sensitive patterns (acronyms), run on the original
    _slow_regex: re.Pattern | None = None

    @property
    def slow_regex(self) -> re.Pattern | None:
        """Case-insensitive fallback for texts whose lower() changes offsets (compiled on first use)."""
        if self._slow_regex is None and self.patterns:
            self._slow_regex = _compile(self.patterns, self.id, re.IGNORECASE)
        return self._slow_regex
    anchors: tuple[str, ...] | None = None  # cheap substring pre-check before running `regex`


@dataclass
class Vocabulary:
    kinds: dict[str, dict]
    tags: dict[str, TagDef]
    mesh_index: dict[str, list[str]] = field(default_factory=dict)
    anchor_index: dict[str, list[str]] = field(default_factory=dict)  # anchor -> tag ids
    case_anchor_index: dict[str, list[str]] = field(default_factory=dict)  # same, case-sensitive patterns
    # Aho-Corasick automaton over every anchor (case-sensitive ones lower-cased, their regex run
    # on the original text).
    anchor_automaton: object = None
    unanchored: list[str] = field(default_factory=list)  # tags whose patterns have no literal start
    pubtype_index: dict[str, list[str]] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[TagDef]:
        return [t for t in self.tags.values() if t.kind == kind]


class VocabularyError(ValueError):
    pass


def _compile(patterns: list[str], tag_id: str, flags: int = 0) -> re.Pattern | None:
    # No leading look-behind: a pattern that starts with plain characters lets `re` skip ahead
    # fast; the word-boundary check on the left is done after matching (see _left_boundary).
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


def _automaton(payloads: dict[str, list]) -> object:
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


def _left_boundary(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "-_")


def load_vocabulary(path: Path | str | None = None) -> Vocabulary:
    """Read and validate a vocabulary file; patterns are compiled once (per version of the file)."""
    return _load(*_file_version(path))


def read_vocabulary(path: Path | str | None = None) -> Vocabulary:
    """The vocabulary's tags and kinds without compiling its patterns (enough to list the tags)."""
    return _read(*_file_version(path))


def _file_version(path: Path | str | None) -> tuple[str, int, int]:
    """A cache key that changes when the file does."""
    path = str(path or VOCABULARY_PATH)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise VocabularyError(f"{path}: cannot read the vocabulary ({exc.strerror})") from exc
    return path, stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int = 0, size: int = 0) -> Vocabulary:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ten times faster
    data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)
    kinds = data.get("kinds") or {}
    tags: dict[str, TagDef] = {}
    for raw in data.get("tags") or []:
        tag = TagDef(
            id=raw["id"], kind=raw["kind"], label=raw["label"], definition=raw.get("definition", ""),
            mesh=raw.get("mesh") or [], pubtypes=raw.get("pubtypes") or [],
            patterns=raw.get("patterns") or [], case_patterns=raw.get("case_patterns") or [],
        )
        if tag.kind not in kinds:
            raise VocabularyError(f"tag {tag.id}: unknown kind {tag.kind!r}")
        if tag.id in tags:
            raise VocabularyError(f"tag {tag.id}: defined twice")
        tags[tag.id] = tag
    return Vocabulary(kinds=kinds, tags=tags)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int = 0, size: int = 0) -> Vocabulary:
    vocab = _read(path, mtime_ns, size)
    tags = vocab.tags
    for tag in tags.values():
        tag.regex = _compile([p.lower() for p in tag.patterns], tag.id)
        tag.case_regex = _compile(tag.case_patterns, tag.id)
        tag.anchors = anchors_for([p.lower() for p in tag.patterns])
    for tag in tags.values():
        if tag.regex is not None and tag.anchors is None:
            vocab.unanchored.append(tag.id)
        for anchor in tag.anchors or ():
            vocab.anchor_index.setdefault(anchor, []).append(tag.id)
        for heading in tag.mesh:
            for key in (heading.get("ui"), heading.get("name")):
                if key:
                    vocab.mesh_index.setdefault(key.lower(), []).append(tag.id)
        for pubtype in tag.pubtypes:
            vocab.pubtype_index.setdefault(pubtype.lower(), []).append(tag.id)
    for tag in tags.values():
        if tag.case_patterns:
            anchors = anchors_for(tag.case_patterns)
            if anchors is None:
                raise VocabularyError(f"tag {tag.id}: case_patterns must start with a literal")
            for anchor in anchors:
                vocab.case_anchor_index.setdefault(anchor, []).append(tag.id)
    entries: dict[str, list] = {}
    for anchor, ids in vocab.anchor_index.items():
        entries.setdefault(anchor, []).extend((t, tags[t].regex.match, False) for t in ids)
    for anchor, ids in vocab.case_anchor_index.items():
        entries.setdefault(anchor.lower(), []).extend((t, tags[t].case_regex.match, True) for t in ids)
    for anchor, cue_entries in _cue_entries().items():
        entries.setdefault(anchor, []).extend(cue_entries)
    vocab.anchor_automaton = _automaton(entries)
    return vocab


# --------------------------------------------------------------------------- negation

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
PRE_WINDOW, POST_WINDOW, REDUCED_WINDOW = 90, 60, 60


@dataclass
class Cues:
    """Negation and reduction triggers of one text, found once and shared by its mentions."""

    text: str  # the text searched (lower-cased), for clause-break checks
    pre: list[int]  # end offsets of pre-negation triggers
    post: list[int]  # start offsets of post-negation triggers
    reduced: list[int]  # end offsets of reduction triggers
    breaks: list[int]  # offsets of clause-break words ("but", "however")

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
CUE_PRE, CUE_POST, CUE_REDUCED, CUE_BREAK = range(4)


def _cue_entries() -> dict[str, list]:
    entries: dict[str, list] = {}
    for cue, regex in ((CUE_PRE, _PRE_NEGATION), (CUE_POST, _POST_NEGATION), (CUE_REDUCED, _REDUCED),
                       (CUE_BREAK, _BREAK)):
        anchors = anchors_for([regex.pattern])
        if not anchors:
            raise VocabularyError(f"no literal start in {regex.pattern[:40]!r}")
        for anchor in anchors:
            entries.setdefault(anchor, []).append((cue, regex.match, False))
    return entries


@functools.lru_cache(maxsize=1)
def _cue_automaton() -> object:
    return _automaton(_cue_entries())


def _scan(automaton, text: str, lowered: str, key_text: str) -> tuple[list[tuple[str, int, int]], Cues]:
    """One Aho-Corasick pass: (tag id, start, end) of every anchored tag match, and the cues.

    Each anchor hit is a word start where one of its entries' regexes may match: lower-case
    patterns are tried on the lower-cased text, case-sensitive acronyms on the original.
    """
    seen: set[tuple[str, int]] = set()
    found = []
    cues: tuple[list[int], ...] = ([], [], [], [])
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
    return _scan(_cue_automaton(), lowered, lowered, keyed(lowered))[1]


def is_negated(sentence: str, start: int, end: int) -> bool:
    """NegEx-style: a negation trigger shortly before or after the term, in the same clause."""
    return sentence_cues(sentence).negated(start, end)


# --------------------------------------------------------------------------- tagging


@dataclass
class Evidence:
    tag_id: str
    kind: str
    source: str  # mesh | publication_type | title | abstract
    evidence: str
    section: str | None
    negated: bool
    sentence_index: int | None


@dataclass
class TagResult:
    tags: dict[str, list[str]]
    absent: dict[str, list[str]]
    evidence: list[Evidence]
    sample_size: int | None
    sample_size_evidence: str | None
    sentences: list[Sentence] = field(default_factory=list, repr=False)  # as split for tagging

    def as_dict(self) -> dict:
        return {
            **{kind: self.tags.get(kind, []) for kind in KINDS},
            "side_effect_absent": self.absent.get("side_effect", []),
            "sample_size": self.sample_size,
            "sample_size_evidence": self.sample_size_evidence,
            "evidence": [asdict(e) for e in self.evidence],
        }


@dataclass
class Mention:
    tag_id: str
    sentence: Sentence
    start: int
    end: int
    negated: bool
    reduced: bool


def find_mentions(sentences: list[Sentence], vocab: Vocabulary) -> list[Mention]:
    """Every vocabulary match in the title and abstract, located in its sentence."""
    text = "\n".join(s.text for s in sentences)
    starts, position = [], 0
    for s in sentences:
        starts.append(position)
        position += len(s.text) + 1
    lowered = text.lower()
    if len(lowered) != len(text):
        # Rare: lower() changed the length (e.g. dotted capital I); search case-insensitively instead.
        found, cues = _slow_matches(vocab, text), sentence_cues(text)
    else:
        # Cues are found once over the whole text (the newline between sentences is a clause break).
        found, cues = _matches(vocab, text, lowered)
    mentions: list[Mention] = []
    for tag_id, start, end in found:
        i = bisect.bisect_right(starts, start) - 1
        mentions.append(Mention(tag_id, sentences[i], start - starts[i], end - starts[i],
                                cues.negated(start, end), cues.reduction(start)))
    return mentions


def _matches(vocab: Vocabulary, text: str, lowered: str) -> tuple[list[tuple[str, int, int]], Cues]:
    """(tag id, start, end) of every pattern match, word-bounded on the left, and the text's cues.

    Every anchored pattern must begin with one of its tag's anchors, so instead of scanning
    the text once per tag, one Aho-Corasick pass finds every anchor starting a word and only
    those tags' patterns are tried, only there. Tags without anchors are scanned with their regex.
    """
    found, cues = _scan(vocab.anchor_automaton, text, lowered, keyed(lowered))
    seen = {(tag_id, start) for tag_id, start, _ in found} if vocab.unanchored else set()
    for tag_id in vocab.unanchored:
        for m in vocab.tags[tag_id].regex.finditer(lowered):
            if _left_boundary(lowered, m.start()) and (tag_id, m.start()) not in seen:
                seen.add((tag_id, m.start()))
                found.append((tag_id, m.start(), m.end()))
    return found, cues


def _slow_matches(vocab: Vocabulary, text: str) -> list[tuple[str, int, int]]:
    """Every match found case-insensitively, tag by tag (for texts whose lower() changes offsets)."""
    seen: set[tuple[str, int]] = set()
    found = []
    for tag in vocab.tags.values():
        for regex in (tag.slow_regex, tag.case_regex):
            for m in regex.finditer(text) if regex else ():
                if _left_boundary(text, m.start()) and (tag.id, m.start()) not in seen:
                    seen.add((tag.id, m.start()))
                    found.append((tag.id, m.start(), m.end()))
    return found


def _structured_evidence(record: dict, vocab: Vocabulary) -> list[Evidence]:
    out = []
    for heading in record.get("mesh") or []:
        keys = {(heading.get("descriptor_ui") or "").lower(), (heading.get("descriptor") or "").lower()}
        for tag_id in sorted({t for k in keys if k for t in vocab.mesh_index.get(k, [])}):
            tag = vocab.tags[tag_id]
            qualifiers = "/".join(q["name"] for q in heading.get("qualifiers") or [])
            label = heading["descriptor"] + (f"/{qualifiers}" if qualifiers else "")
            out.append(Evidence(tag_id, tag.kind, "mesh", label, None, False, None))
    for pubtype in record.get("publication_types") or []:
        for tag_id in vocab.pubtype_index.get((pubtype.get("name") or "").lower(), []):
            tag = vocab.tags[tag_id]
            out.append(Evidence(tag_id, tag.kind, "publication_type", pubtype["name"], None, False, None))
    return out


def _text_evidence(m: Mention, vocab: Vocabulary) -> Evidence:
    source = "title" if m.sentence.section_kind == "title" else "abstract"
    return Evidence(m.tag_id, vocab.tags[m.tag_id].kind, source, m.sentence.text, m.sentence.section,
                    m.negated, m.sentence.index)


# The rule regexes below run on lower-cased sentences (Sentence.lower): written in lower case,
# compiled without re.IGNORECASE, which makes `re` several times slower.
# Sentences that describe how effects were measured, or what is generally known, or an
# association, do not report an effect observed in the study.
_MEASUREMENT = re.compile(
    r"\b(?:assessed|measured|evaluated|rated|monitored|recorded|quantified|captured) (?:using|with|by|via)\b|"
    r"\b(?:using|with) the [^.]{0,60}(?:scale|inventory|questionnaire|checklist)\b|"
    r"\boutcomes? (?:include|included|were|was|is|are)\b",
)
_GENERAL = re.compile(
    r"\b(?:is|are) known\b|\bhas been (?:associated|linked|reported)|\bhave been (?:reported|associated|linked)|"
    r"\b(?:may|can|could) (?:cause|induce|lead)|\blimits? (?:its|their) (?:use|utility)|"
    r"\bconcerns? (?:about|over|regarding)|"
    r"\bdespite\b|\bknown (?:for|to)\b",
)
_ASSOCIATION_BETWEEN = re.compile(
    r"\b(?:associat\w*|correlat\w*|relationship|link)\b[^.;]{0,40}\bbetween\b")


def _overlaps(mention: Mention, spans: set[tuple[int, int, int]]) -> bool:
    return any(i == mention.sentence.index and s < mention.end and mention.start < e for i, s, e in spans)


def _sentence_rule(rule: re.Pattern, sentence: Sentence, memo: dict) -> bool:
    """Whether ``rule`` matches the sentence, computed once per sentence and rule."""
    key = (rule.pattern, sentence.index)
    if key not in memo:
        memo[key] = rule.search(sentence.lower) is not None
    return memo[key]


def _counts(mention: Mention, kind: str, claimed: set[tuple[int, int, int]], memo: dict) -> bool:
    """Whether a (non-negated) text mention is evidence the study itself is about the tag."""
    where = mention.sentence.section_kind
    if kind in ("mechanism", "population"):
        return True
    if kind == "side_effect":
        if where in ("background", "methods") or mention.reduced:
            return False
        if _sentence_rule(_MEASUREMENT, mention.sentence, memo) or _sentence_rule(_GENERAL, mention.sentence, memo):
            return False
        # The same words already name an indication ("cluster headache", "cognitive decline").
        return not _overlaps(mention, claimed)
    if kind == "indication" and where != "title" and (
            _sentence_rule(_MEASUREMENT, mention.sentence, memo) or _COMORBID.search(mention.sentence.lower)):
        # "assessed with the Edinburgh Postnatal Depression Scale", "comorbid PTSD": not the indication.
        return False
    if kind == "design" and where == "background":
        # An objective ("to assess, in a randomised trial, ...") states the study's own design.
        return bool(_OBJECTIVE_LABEL.match(mention.sentence.section or ""))
    return where != "background"


_COMORBID = re.compile(r"\bco-?morbid")
_OBJECTIVE_LABEL = re.compile(r"\s*(?:OBJECTIVES?|AIMS?|PURPOSE|GOALS?)\b", re.I)


def tag_record(record: dict, vocab: Vocabulary | None = None, sample_size: bool = True) -> TagResult:
    """All tags of one study, each with the sentences (or MeSH / publication type) behind it.

    ``sample_size=False`` skips the sample size (trials have their enrolment).
    """
    vocab = vocab or load_vocabulary()
    sentences = record_sentences(record)
    mentions = find_mentions(sentences, vocab)
    structured = _structured_evidence(record, vocab)

    supported: dict[str, list[Evidence]] = {}
    negated_only: dict[str, list[Evidence]] = {}
    for ev in structured:
        supported.setdefault(ev.tag_id, []).append(ev)
    claimed = {(m.sentence.index, m.start, m.end) for m in mentions if vocab.tags[m.tag_id].kind == "indication"}
    memo: dict = {}  # rule checks per sentence, shared by the sentence's mentions
    for m in mentions:
        kind = vocab.tags[m.tag_id].kind
        if m.negated:
            # "No association between dissociation and response" says nothing about its absence.
            if kind == "side_effect" and _overlaps(m, claimed):
                continue
            if kind != "side_effect" or (m.sentence.section_kind not in ("background", "methods")
                                         and not _ASSOCIATION_BETWEEN.search(m.sentence.lower)):
                negated_only.setdefault(m.tag_id, []).append(_text_evidence(m, vocab))
        elif _counts(m, kind, claimed, memo):
            supported.setdefault(m.tag_id, []).append(_text_evidence(m, vocab))

    present = _resolve(record, supported, mentions, vocab)
    tags: dict[str, list[str]] = {kind: [] for kind in KINDS}
    evidence: list[Evidence] = []
    for tag_id in present:
        tags[vocab.tags[tag_id].kind].append(tag_id)
        # A design read from the title's wording ("...: a review") has the title as its evidence.
        rows = supported.get(tag_id) or [
            Evidence(tag_id, vocab.tags[tag_id].kind, "title", record.get("title") or "", "TITLE", False, 0)]
        evidence.extend(_best(rows))
    absent: dict[str, list[str]] = {"side_effect": []}
    for tag_id, rows in negated_only.items():
        if vocab.tags[tag_id].kind == "side_effect" and tag_id not in present:
            absent["side_effect"].append(tag_id)
            evidence.extend(_best(rows))
    # Reviews, guidelines and laboratory studies have no participants of their own.
    secondary = {"narrative_review", "systematic_review", "meta_analysis", "guideline", "animal", "in_vitro"}
    if not sample_size or secondary & set(tags["design"]):
        size, size_sentence = None, None
    else:
        size, size_sentence = extract_sample_size(sentences)
    return TagResult(tags, absent, evidence, size, size_sentence, sentences)


def _best(rows: list[Evidence]) -> list[Evidence]:
    """Structured evidence first, then distinct sentences, at most MAX_EVIDENCE."""
    order = {"mesh": 0, "publication_type": 1, "title": 2, "abstract": 3}
    seen, out = set(), []
    for row in sorted(rows, key=lambda r: (order[r.source], r.sentence_index or 0)):
        key = (row.source, row.evidence)
        if key in seen:
            continue
        seen.add(key)
        out.append(row)
        if len(out) == MAX_EVIDENCE:
            break
    return out


# --------------------------------------------------------------------------- resolution rules



def _resolve(record: dict, supported: dict[str, list[Evidence]], mentions: list[Mention],
             vocab: Vocabulary) -> list[str]:
    present = set(supported)
    by_kind: dict[str, set[str]] = {k: set() for k in KINDS}
    for tag_id in present:
        by_kind[vocab.tags[tag_id].kind].add(tag_id)
    designs = resolve_designs(record, supported, by_kind["design"])
    indications = _resolve_indications(supported, by_kind["indication"])
    drugs = _resolve_drugs(supported, by_kind["drug"], mentions)
    populations = by_kind["population"]
    if "animal" in designs and "human" in populations and not _has_text(supported, "human", min_count=2):
        populations.discard("human")
    keep = designs | indications | drugs | by_kind["mechanism"] | by_kind["side_effect"] | by_kind["route"] \
        | populations
    return sorted(keep, key=lambda t: (KINDS.index(vocab.tags[t].kind), t))


def _has_text(supported: dict[str, list[Evidence]], tag_id: str, min_count: int = 1,
              sources: tuple[str, ...] = ("title", "abstract")) -> bool:
    return sum(1 for e in supported.get(tag_id, []) if e.source in sources) >= min_count


def _in_title(supported: dict[str, list[Evidence]], tag_id: str) -> bool:
    return any(e.source == "title" for e in supported.get(tag_id, []))


def _structured(supported: dict[str, list[Evidence]], tag_id: str) -> bool:
    return any(e.source in ("mesh", "publication_type") for e in supported.get(tag_id, []))


_STRONG_MDD = re.compile(r"major depress|\bMDD\b|unipolar|depressive disorder", re.I)
_TRD_WORDS = re.compile(r"resistan|refractor|\bTRD\b", re.I)


def _resolve_indications(supported: dict[str, list[Evidence]], found: set[str]) -> set[str]:
    found = set(found)
    # "Treatment-resistant major depression" is TRD; MDD stays only when a non-resistant
    # major-depression population is named in its own right.
    if "trd" in found and "mdd" in found:
        own = [e for e in supported["mdd"] if e.source in ("title", "abstract")
               and _STRONG_MDD.search(e.evidence) and not _TRD_WORDS.search(e.evidence)]
        if len(own) < 2 and not any(e.source == "title" for e in own):
            found.discard("mdd")
    # Comorbid substance use is not an indication for ketamine.
    if "substance_use" in found:
        own = [e for e in supported["substance_use"] if not re.search(r"comorbid|history of|use scale|related factors",
                                                                      e.evidence, re.I)]
        if not own or (len(own) < 2 and not _in_title(supported, "substance_use")):
            found.discard("substance_use")
    # Weak indications need more than one passing mention.
    for tag_id in ("anaesthesia", "palliative_depression", "delirium", "agitation", "schizophrenia",
                   "fibromyalgia", "crps"):
        if tag_id in found and not (_in_title(supported, tag_id) or _structured(supported, tag_id)
                                    or _has_text(supported, tag_id, min_count=2)):
            found.discard(tag_id)
    return found


def _resolve_drugs(supported: dict[str, list[Evidence]], found: set[str], mentions: list[Mention]) -> set[str]:
    found = set(found)
    # Esketamine/arketamine papers name racemic ketamine as background ("the S-enantiomer of ketamine").
    for enantiomer in ("esketamine", "arketamine"):
        if enantiomer in found and "ketamine" in found and not _in_title(supported, "ketamine"):
            racemic = [e for e in supported["ketamine"] if e.source in ("title", "abstract")
                       and not re.search(r"enantiomer|isomer|racemic|derivative|metabolite", e.evidence, re.I)]
            if len(racemic) < 2:
                found.discard("ketamine")
    if "hnk" in found and not _in_title(supported, "hnk") and not _has_text(supported, "hnk", min_count=2):
        found.discard("hnk")
    return found


_REVIEW_TITLE = re.compile(r"\breview\b|\boverview\b|\bperspective\b|\bupdate on\b|\bcommentary\b", re.I)
_SYSTEMATIC_TITLE = re.compile(r"systematic|meta-?analy|scoping|umbrella", re.I)


def resolve_designs(record: dict, supported: dict[str, list[Evidence]], found: set[str]) -> set[str]:
    """The study's own design: secondary designs mentioned in passing are dropped."""
    title = record.get("title") or ""
    if "protocol" in found and (_in_title(supported, "protocol") or _structured(supported, "protocol")
                                or _has_text(supported, "protocol", 2)):
        return {"protocol"}
    synthesis = {d for d in ("meta_analysis", "systematic_review") if d in found}
    if synthesis:
        strong = {d for d in synthesis if _in_title(supported, d) or _structured(supported, d)
                  or _has_text(supported, d, 2)}
        if strong:
            if "meta_analysis" in strong and "systematic_review" in found:
                strong.add("systematic_review")
            return strong
    if "guideline" in found and (_in_title(supported, "guideline") or _structured(supported, "guideline")):
        return {"guideline"}
    if _REVIEW_TITLE.search(title) and not _SYSTEMATIC_TITLE.search(title):
        return {"narrative_review"}
    if "narrative_review" in found and (_structured(supported, "narrative_review")
                                        or _has_text(supported, "narrative_review", 1)):
        if not ({"rct", "nonrandomised_trial", "cohort", "case_report"} & found
                and not _structured(supported, "narrative_review")):
            return {"narrative_review"}
    for single in ("case_report", "case_series"):
        if single in found and (_in_title(supported, single) or _structured(supported, single)):
            return {single}
    animal = "animal" in found and (_in_title(supported, "animal") or _has_text(supported, "animal", 2)
                                    or _structured(supported, "animal"))
    human_trial = [d for d in ("rct", "nonrandomised_trial") if d in found]
    if animal and not human_trial:
        return {"animal"} | ({"in_vitro"} if "in_vitro" in found else set())
    for design in ("rct", "nonrandomised_trial", "case_control", "cross_sectional", "cohort",
                   "case_series", "case_report"):
        if design in found:
            if design == "nonrandomised_trial" and _structured(supported, "nonrandomised_trial") \
                    and "rct" in found:
                return {"rct"}
            return {design}
    if "in_vitro" in found:
        return {"in_vitro"}
    return set()


# --------------------------------------------------------------------------- sample size

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
