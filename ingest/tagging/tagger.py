"""Tagging studies by indication, mechanism, side effect, design, drug, route and population.

Pure: a record dict in, tags with their evidence out. The vocabulary (labels, synonyms,
MeSH ids, publication types) lives in ``vocabulary.yaml`` (read by :mod:`.vocabulary`);
this module finds the mentions and decides which sentences count, :mod:`.negation` reads
negation, :mod:`.resolve` keeps the study's own tags and :mod:`.sample_size` its n.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass, field

from . import design as design_rules
from .matching import keyed, left_boundary
from .negation import Cues, scan, sentence_cues
from .resolve import resolve
from .sample_size import Counts, count_participants
from .sentences import Sentence, record_sentences
from .vocabulary import KINDS, Vocabulary, load_vocabulary

MAX_EVIDENCE = 3  # sentences kept per tag and study


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
    counts: Counts = field(default_factory=Counts)
    parent_design: str | None = None  # the re-used study's design, for a secondary analysis
    evidence_level: int | None = None  # 1 (strongest) to 6, from the design (vocabulary.yaml)
    on_topic: bool = True  # about ketamine, esketamine, arketamine or their metabolites
    on_topic_evidence: str | None = None
    sentences: list[Sentence] = field(default_factory=list, repr=False)  # as split for tagging

    @property
    def sample_size(self) -> int | None:
        return self.counts.sample_size

    @property
    def sample_size_evidence(self) -> str | None:
        return self.counts.sample_size_evidence

    def as_dict(self) -> dict:
        return {
            **{kind: self.tags.get(kind, []) for kind in KINDS},
            "side_effect_absent": self.absent.get("side_effect", []),
            "parent_design": self.parent_design,
            "evidence_level": self.evidence_level,
            "on_topic": self.on_topic,
            "on_topic_evidence": self.on_topic_evidence,
            **asdict(self.counts),
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
    # What the single pass also found, kept on each sentence for the sample size: words naming people.
    for s in sentences:
        s.memo["people at"] = []
    for position in cues.people:
        i = bisect.bisect_right(starts, position) - 1
        sentences[i].memo["people at"].append(position - starts[i])
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
    found, cues = scan(vocab.anchor_automaton, text, lowered, keyed(lowered))
    seen = {(tag_id, start) for tag_id, start, _ in found} if vocab.unanchored else set()
    for tag_id in vocab.unanchored:
        for m in vocab.tags[tag_id].regex.finditer(lowered):
            if left_boundary(lowered, m.start()) and (tag_id, m.start()) not in seen:
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
                if left_boundary(text, m.start()) and (tag.id, m.start()) not in seen:
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


def _counts(mention: Mention, kind: str, claimed: set[tuple[int, int, int]], memo: dict,
            vocab: Vocabulary) -> bool:
    """Whether a (non-negated) text mention is evidence the study itself is about the tag."""
    where = mention.sentence.section_kind
    if kind == "population":
        return True
    if kind == "design":
        return design_rules.counts(mention, vocab)
    if kind == "mechanism":
        # Studied (measured, manipulated, tested), not named: "ketamine, an NMDA receptor antagonist".
        return where != "background" and not _sentence_rule(_DESCRIBES_KETAMINE, mention.sentence, memo)
    if kind == "route" and vocab.co_medication and vocab.co_medication.match(mention.sentence.lower, mention.end):
        return False  # "an oral antidepressant" beside esketamine nasal spray: not the study drug's route
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
    return where != "background"


_COMORBID = re.compile(r"\bco-?morbid")
_KETAMINES = r"(?:(?:s-|r-|es|ar)?ketamine)"
# A mechanism named as what ketamine is, in passing: not a mechanism the study investigates.
_DESCRIBES_KETAMINE = re.compile(
    rf"{_KETAMINES}\s*(?:\(\w+\)\s*)?,?\s*(?:is\s+)?(?:an?|the)\s+(?:[\w-]+\s+){{0,3}}(?:n-methyl|nmda)"
    rf"|(?:nmda|n-methyl-d-aspartate)\w*\s+(?:\(nmda\)\s+)?(?:receptor\s+)?(?:\(nmdar?\)\s+)?antagonists?,?\s+"
    rf"(?:\w+\s+)?{_KETAMINES}")


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
        if m.negated and kind == "design" and not design_rules.NEAR_NEGATION.search(
                m.sentence.lower[max(0, m.start - 30):m.start]):
            m.negated = False  # "57 without melancholic features, and then randomly assigned": not negated
        if m.negated:
            # "No association between dissociation and response" says nothing about its absence.
            if kind == "side_effect" and _overlaps(m, claimed):
                continue
            if kind != "side_effect" or (m.sentence.section_kind not in ("background", "methods")
                                         and not _ASSOCIATION_BETWEEN.search(m.sentence.lower)):
                negated_only.setdefault(m.tag_id, []).append(_text_evidence(m, vocab))
        elif _counts(m, kind, claimed, memo, vocab):
            supported.setdefault(m.tag_id, []).append(_text_evidence(m, vocab))

    present, design = resolve(record, supported, mentions, sentences, vocab)
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
    counts = count_participants(sentences, set(tags["design"])) if sample_size else Counts()
    topic, topic_evidence = on_topic(record, supported, tags["drug"])
    return TagResult(tags, absent, evidence, counts, design.parent, design_rules.evidence_level(design, vocab),
                     topic, topic_evidence, sentences)


_KETAMINE_WORD = re.compile(
    r"(?:\b|(?<=-))(?:[sr]-?|es|ar|nor|dehydronor|hydroxynor|\(\w+\)-)?ketamine\b|\bhnk\b", re.I)


def on_topic(record: dict, supported: dict[str, list[Evidence]], drugs: list[str]) -> tuple[bool, str | None]:
    """Whether the study is about ketamine or a relative, and what shows it (title, MeSH, chemical, sentences).

    Not the author keywords: a psychedelics paper lists "ketamine" among them without studying it."""
    title = record.get("title") or ""
    if _KETAMINE_WORD.search(title):
        return True, title
    for heading in record.get("mesh") or []:
        if _KETAMINE_WORD.search(heading.get("descriptor") or ""):
            return True, heading["descriptor"]
    for chemical in record.get("chemicals") or []:
        if _KETAMINE_WORD.search(chemical.get("name") or ""):
            return True, chemical["name"]
    # A drug tag: named outside the background (given, compared, measured or reviewed), not in passing.
    text = [e for d in drugs for e in supported.get(d, []) if e.source in ("title", "abstract")]
    if text:
        return True, text[0].evidence
    return False, None


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
