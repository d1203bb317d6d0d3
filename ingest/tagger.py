"""Tagging studies by indication, mechanism, side effect, design, drug, route and population.

Pure: a record dict in, tags with their evidence out. The vocabulary (labels, synonyms,
MeSH ids, publication types) lives in ``vocabulary.yaml``; this module holds only the rules
for reading it: which sentences count, negation, and how designs are resolved.
"""

from __future__ import annotations

import bisect
import functools
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
    anchor_automaton: object = None  # Aho-Corasick automaton over every anchor
    case_anchor_index: dict[str, list[str]] = field(default_factory=dict)  # same, case-sensitive patterns
    case_automaton: object = None
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


def _leading_literals(items) -> set[str] | None:
    """Literal prefixes one of which every match of a parsed pattern must start with (None: unknown)."""
    from re import _constants as c  # the parser's opcodes; stable across 3.11+

    prefix = ""
    for op, arg in items:
        if op in (c.ASSERT, c.ASSERT_NOT, c.AT) and not prefix:
            continue
        if op is c.LITERAL:
            prefix += chr(arg)
            continue
        if op is c.SUBPATTERN:
            found = _leading_literals(arg[-1])
        elif op is c.BRANCH:
            found = set()
            for branch in arg[1]:
                more = _leading_literals(branch)
                if not more:
                    found = None
                    break
                found |= more
        else:
            break
        # A group after a literal run ("re(?:sistant|fractory)") lengthens the prefixes.
        if found:
            return {prefix + f for f in found}
        break
    return {prefix} if len(prefix) >= 2 else None


def _automaton(anchors) -> object:
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for anchor in anchors:
        automaton.add_word(anchor, anchor)
    automaton.make_automaton()
    return automaton


def anchors_for(patterns: list[str]) -> tuple[str, ...] | None:
    """Substrings at least one of which must occur for any pattern to match (None: always search)."""
    from re import _parser

    out: set[str] = set()
    for pattern in patterns:
        found = _leading_literals(list(_parser.parse(pattern)))
        if not found:
            return None
        out |= found
    return tuple(sorted(out))


def _left_boundary(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "-_")


def load_vocabulary(path: Path | str | None = None) -> Vocabulary:
    """Read and validate a vocabulary file; patterns are compiled once."""
    return _load(str(path or VOCABULARY_PATH))


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Vocabulary:
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
        tag.regex = _compile([p.lower() for p in tag.patterns], tag.id)
        tag.case_regex = _compile(tag.case_patterns, tag.id)
        tag.anchors = anchors_for([p.lower() for p in tag.patterns])
        tags[tag.id] = tag
    vocab = Vocabulary(kinds=kinds, tags=tags)
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
    vocab.anchor_automaton = _automaton(vocab.anchor_index)
    for tag in tags.values():
        if tag.case_patterns:
            anchors = anchors_for(tag.case_patterns)
            if anchors is None:
                raise VocabularyError(f"tag {tag.id}: case_patterns must start with a literal")
            for anchor in anchors:
                vocab.case_anchor_index.setdefault(anchor, []).append(tag.id)
    vocab.case_automaton = _automaton(vocab.case_anchor_index)
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
# These run on lower-cased text; the left word boundary is checked in Python (a leading \b
# would stop `re` from skipping ahead quickly).
# Where a clause ends: a negation or reduction never reaches across one.
_BREAK = re.compile(r"(?:but|however|although|though|except|whereas|while|yet)\b")
PRE_WINDOW, POST_WINDOW, REDUCED_WINDOW = 90, 60, 60


@dataclass
class Cues:
    """Negation and reduction triggers of one sentence, found once and shared by its mentions."""

    pre: list[int]  # end offsets of pre-negation triggers
    post: list[int]  # start offsets of post-negation triggers
    reduced: list[int]  # end offsets of reduction triggers
    breaks: list[int]  # offsets of clause breaks

    def _clear(self, a: int, b: int) -> bool:
        i = bisect.bisect_left(self.breaks, a)
        return i == len(self.breaks) or self.breaks[i] >= b

    def negated(self, start: int, end: int) -> bool:
        if any(p <= start and start - p <= PRE_WINDOW and self._clear(p, start) for p in self.pre):
            return True
        return any(q >= end and q - end <= POST_WINDOW and self._clear(end, q) for q in self.post)

    def reduction(self, start: int) -> bool:
        return any(r <= start and start - r <= REDUCED_WINDOW and self._clear(r, start) for r in self.reduced)


class LiteralFinder:
    """All word-bounded matches of a regex whose alternatives start with literals.

    One Aho-Corasick pass finds where an alternative's literal start occurs; the regex is
    tried only there. Much faster than ``finditer`` for long alternations.
    """

    def __init__(self, regex: re.Pattern):
        self.regex = regex
        anchors = anchors_for([regex.pattern])
        if not anchors:
            raise VocabularyError(f"no literal start in {regex.pattern[:40]!r}")
        self.automaton = _automaton(anchors)

    def finditer(self, text: str):
        last = -1
        for end, anchor in self.automaton.iter(text):
            position = end - len(anchor) + 1
            if position == last or not _left_boundary(text, position):
                continue
            m = self.regex.match(text, position)
            if m:
                last = position
                yield m


_FINDERS: dict[str, LiteralFinder] = {}


def _finder(name: str) -> LiteralFinder:
    if name not in _FINDERS:
        _FINDERS[name] = LiteralFinder(globals()[name])
    return _FINDERS[name]


_PUNCTUATION_BREAK = re.compile(r"[.;:]")


def sentence_cues(text: str, lowered: str | None = None) -> Cues:
    """Negation, reduction and clause-break positions in a text (offsets are the text's own).

    ``lowered``: the text already lower-cased by the caller, with the same offsets.
    """
    if lowered is None:
        lowered = text.lower()
        if len(lowered) != len(text):
            lowered = text
    breaks = [m.start() for m in _finder("_BREAK").finditer(lowered)]
    breaks += [m.start() for m in _PUNCTUATION_BREAK.finditer(lowered)]
    return Cues(
        pre=[m.end() for m in _finder("_PRE_NEGATION").finditer(lowered)],
        post=[m.start() for m in _finder("_POST_NEGATION").finditer(lowered)],
        reduced=[m.end() for m in _finder("_REDUCED").finditer(lowered)],
        breaks=sorted(breaks),
    )


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
        lowered = None
    found: list[tuple[str, int, int]] = []
    for tag_id, start, end in _matches(vocab, text, lowered):
        found.append((tag_id, start, end))
    mentions: list[Mention] = []
    # Cues are found once over the whole text; the newline between sentences is a clause break.
    cues = sentence_cues(text, text if lowered is None else lowered)
    cues.breaks = sorted(cues.breaks + starts[1:])
    for tag_id, start, end in found:
        i = bisect.bisect_right(starts, start) - 1
        mentions.append(Mention(tag_id, sentences[i], start - starts[i], end - starts[i],
                                cues.negated(start, end), cues.reduction(start)))
    return mentions


def _matches(vocab: Vocabulary, text: str, lowered: str | None):
    """(tag id, start, end) of every pattern match, word-bounded on the left.

    Every anchored pattern must begin with one of its tag's anchors, so instead of scanning
    the text once per tag, one Aho-Corasick pass finds every anchor occurrence and only
    those tags' patterns are tried, only there (a second automaton does the same for the
    case-sensitive acronyms). Tags without anchors are scanned with their regex.
    """
    seen: set[tuple[str, int]] = set()
    if lowered is None:
        for tag in vocab.tags.values():
            for regex in (tag.slow_regex, tag.case_regex):
                for m in regex.finditer(text) if regex else ():
                    if _left_boundary(text, m.start()) and (tag.id, m.start()) not in seen:
                        seen.add((tag.id, m.start()))
                        yield tag.id, m.start(), m.end()
        return
    for automaton, index, haystack, kind in (
        (vocab.anchor_automaton, vocab.anchor_index, lowered, "regex"),
        (vocab.case_automaton, vocab.case_anchor_index, text, "case_regex"),
    ):
        for end, anchor in automaton.iter(haystack) if index else ():
            position = end - len(anchor) + 1
            if not _left_boundary(haystack, position):
                continue
            for tag_id in index[anchor]:
                if (tag_id, position) in seen:
                    continue
                m = getattr(vocab.tags[tag_id], kind).match(haystack, position)
                if m:
                    seen.add((tag_id, position))
                    yield tag_id, m.start(), m.end()
    for tag_id in vocab.unanchored:
        for m in vocab.tags[tag_id].regex.finditer(lowered):
            if _left_boundary(lowered, m.start()) and (tag_id, m.start()) not in seen:
                seen.add((tag_id, m.start()))
                yield tag_id, m.start(), m.end()


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


# Sentences that describe how effects were measured, or what is generally known, or an
# association, do not report an effect observed in the study.
_MEASUREMENT = re.compile(
    r"\b(?:assessed|measured|evaluated|rated|monitored|recorded|quantified|captured) (?:using|with|by|via)\b|"
    r"\b(?:using|with) the [^.]{0,60}(?:scale|inventory|questionnaire|checklist)\b|"
    r"\boutcomes? (?:include|included|were|was|is|are)\b",
    re.IGNORECASE,
)
_GENERAL = re.compile(
    r"\b(?:is|are) known\b|\bhas been (?:associated|linked|reported)|\bhave been (?:reported|associated|linked)|"
    r"\b(?:may|can|could) (?:cause|induce|lead)|\blimits? (?:its|their) (?:use|utility)|"
    r"\bconcerns? (?:about|over|regarding)|"
    r"\bdespite\b|\bknown (?:for|to)\b",
    re.IGNORECASE,
)
_ASSOCIATION_BETWEEN = re.compile(
    r"\b(?:associat\w*|correlat\w*|relationship|link)\b[^.;]{0,40}\bbetween\b", re.IGNORECASE)


def _overlaps(mention: Mention, spans: set[tuple[int, int, int]]) -> bool:
    return any(i == mention.sentence.index and s < mention.end and mention.start < e for i, s, e in spans)


def _counts(mention: Mention, kind: str, claimed: set[tuple[int, int, int]]) -> bool:
    """Whether a (non-negated) text mention is evidence the study itself is about the tag."""
    where = mention.sentence.section_kind
    if kind in ("mechanism", "population"):
        return True
    if kind == "side_effect":
        text = mention.sentence.text
        if where in ("background", "methods") or mention.reduced:
            return False
        if _MEASUREMENT.search(text) or _GENERAL.search(text):
            return False
        # The same words already name an indication ("cluster headache", "cognitive decline").
        return not _overlaps(mention, claimed)
    if kind == "indication" and where != "title" and (
            _MEASUREMENT.search(mention.sentence.text) or _COMORBID.search(mention.sentence.text)):
        # "assessed with the Edinburgh Postnatal Depression Scale", "comorbid PTSD": not the indication.
        return False
    if kind == "design" and where == "background":
        # An objective ("to assess, in a randomised trial, ...") states the study's own design.
        return bool(_OBJECTIVE_LABEL.match(mention.sentence.section or ""))
    return where != "background"


_COMORBID = re.compile(r"\bco-?morbid", re.I)
_OBJECTIVE_LABEL = re.compile(r"\s*(?:OBJECTIVES?|AIMS?|PURPOSE|GOALS?)\b", re.I)


def tag_record(record: dict, vocab: Vocabulary | None = None) -> TagResult:
    """All tags of one study, each with the sentences (or MeSH / publication type) behind it."""
    vocab = vocab or load_vocabulary()
    sentences = record_sentences(record)
    mentions = find_mentions(sentences, vocab)
    structured = _structured_evidence(record, vocab)

    supported: dict[str, list[Evidence]] = {}
    negated_only: dict[str, list[Evidence]] = {}
    for ev in structured:
        supported.setdefault(ev.tag_id, []).append(ev)
    claimed = {(m.sentence.index, m.start, m.end) for m in mentions if vocab.tags[m.tag_id].kind == "indication"}
    for m in mentions:
        kind = vocab.tags[m.tag_id].kind
        if m.negated:
            # "No association between dissociation and response" says nothing about its absence.
            if kind == "side_effect" and _overlaps(m, claimed):
                continue
            if kind != "side_effect" or (m.sentence.section_kind not in ("background", "methods")
                                         and not _ASSOCIATION_BETWEEN.search(m.sentence.text)):
                negated_only.setdefault(m.tag_id, []).append(_text_evidence(m, vocab))
        elif _counts(m, kind, claimed):
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
    size, size_sentence = (None, None) if secondary & set(tags["design"]) else extract_sample_size(sentences)
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
_SIZE_PATTERNS = [
    re.compile(r"\b(?:randomi[sz]ed|enrolled|included|recruited|allocated|assigned)\s+" + _NUM + r"\s+" + _PEOPLE,
               re.I),
    re.compile(r"\b" + _NUM + r"\s+" + _PEOPLE + r"(?:\s+(?:with|from|who|aged|diagnosed)\b[^,.;]{0,60}?)?"
               r"\s+(?:were|was)\s+(?:randomi[sz]ed|enrolled|included|recruited|"
               r"randomly|allocated|assigned|treated|studied)", re.I),
    re.compile(r"\b(?:a total of|total of|overall,?)\s+" + _NUM + r"\s+" + _PEOPLE, re.I),
    re.compile(r"\(\s*n\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)\s*\)", re.I),
    re.compile(r"^" + _NUM + r"\s+" + _PEOPLE, re.I),
    re.compile(r"\b(?:among|in|of)\s+" + _NUM + r"\s+" + _PEOPLE, re.I),
]


# Cheap pre-check: a sentence stating a sample size names people (or "n =").
_SIZE_HINT = re.compile(r"patient|participant|subject|adult|individual|women|men\b|veteran|child|adolescent|"
                        r"volunteer|people|person|mother|parturient|case|youth|n ?=", re.I)


def _to_int(token: str) -> int | None:
    token = token.lower().replace(",", "")
    if len(token) > 7:  # more than 9,999,999 people is not a sample size (and int() of 5,000 digits fails)
        return None
    if token.isascii() and token.isdigit():
        return int(token)
    return _NUMBER_WORDS.get(token)


def extract_sample_size(sentences: list[Sentence]) -> tuple[int | None, str | None]:
    """Participants randomised / enrolled, where the abstract states it."""
    candidates = [s for s in sentences if s.section_kind not in ("title", "background") and _SIZE_HINT.search(s.text)]
    for pattern_rank, pattern in enumerate(_SIZE_PATTERNS):
        best: tuple[int, str] | None = None
        for sentence in candidates:
            for match in pattern.finditer(sentence.text):
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
