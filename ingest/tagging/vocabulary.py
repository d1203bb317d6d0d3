"""The tag vocabulary: ``vocabulary.yaml`` read, validated and compiled (once per version of the file)."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .matching import VocabularyError, anchors_for, build_automaton, compile_patterns
from .negation import cue_entries

__all__ = ["KINDS", "VOCABULARY_PATH", "TagDef", "Vocabulary", "VocabularyError", "load_vocabulary",
           "read_vocabulary"]

VOCABULARY_PATH = Path(__file__).with_name("vocabulary.yaml")
KINDS = ("indication", "mechanism", "side_effect", "design", "drug", "route", "population")


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
    evidence_level: int | None = None  # designs only: 1 (strongest) to 6; None for no results
    evidence_level_if_parent: dict[str, int] = field(default_factory=dict)  # secondary analyses
    regex: re.Pattern | None = None  # lower-case patterns, run on lower-cased text
    case_regex: re.Pattern | None = None  # case-sensitive patterns (acronyms), run on the original
    _slow_regex: re.Pattern | None = None

    @property
    def slow_regex(self) -> re.Pattern | None:
        """Case-insensitive fallback for texts whose lower() changes offsets (compiled on first use)."""
        if self._slow_regex is None and self.patterns:
            self._slow_regex = compile_patterns(self.patterns, self.id, re.IGNORECASE)
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
    evidence_levels: dict[int, str] = field(default_factory=dict)  # level -> label
    # Named cue lists the design rules use (design_cues in the file): raw patterns, and compiled
    # (lower-case, run on lower-cased text) by load_vocabulary.
    design_cue_patterns: dict[str, list[str]] = field(default_factory=dict)
    # name -> [(literal prefixes every match starts with, or None: always search; regex)]
    design_cues: dict[str, list[tuple[tuple[str, ...] | None, re.Pattern]]] = field(default_factory=dict)
    design_cue_automaton: object = None  # prefix substring -> (cue name, pattern index), one pass per sentence
    # Words after a route word that make it another drug's route ("an oral antidepressant"): raw, compiled.
    co_medication_patterns: list[str] = field(default_factory=list)
    co_medication: re.Pattern | None = None

    def of_kind(self, kind: str) -> list[TagDef]:
        return [t for t in self.tags.values() if t.kind == kind]


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
            evidence_level=raw.get("evidence_level"),
            evidence_level_if_parent=dict(raw.get("evidence_level_if_parent") or {}),
        )
        if tag.kind not in kinds:
            raise VocabularyError(f"tag {tag.id}: unknown kind {tag.kind!r}")
        if tag.id in tags:
            raise VocabularyError(f"tag {tag.id}: defined twice")
        tags[tag.id] = tag
    levels = {int(level): str(label) for level, label in (data.get("evidence_levels") or {}).items()}
    for tag in tags.values():
        for level in (tag.evidence_level, *tag.evidence_level_if_parent.values()):
            if level is not None and level not in levels:
                raise VocabularyError(f"tag {tag.id}: evidence level {level!r} is not in evidence_levels")
    cues = {str(name): [str(p) for p in patterns or []] for name, patterns in (data.get("design_cues") or {}).items()}
    co_medication = [str(p) for p in data.get("co_medication") or []]
    return Vocabulary(kinds=kinds, tags=tags, evidence_levels=levels, design_cue_patterns=cues,
                      co_medication_patterns=co_medication)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int = 0, size: int = 0) -> Vocabulary:
    vocab = _read(path, mtime_ns, size)
    tags = vocab.tags
    for tag in tags.values():
        tag.regex = compile_patterns([p.lower() for p in tag.patterns], tag.id)
        tag.case_regex = compile_patterns(tag.case_patterns, tag.id)
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
    for anchor, cues in cue_entries().items():
        entries.setdefault(anchor, []).extend(cues)
    _add_design_cues(vocab)
    vocab.co_medication = _co_medication_regex(vocab.co_medication_patterns)
    vocab.anchor_automaton = build_automaton(entries)
    return vocab


def _co_medication_regex(words: list[str]) -> re.Pattern | None:
    """Matched right after a route word: "-ly", an optional "(IM)" and one word, then a co-medication
    ("intramuscular (IM) naltrexone"; after the "IM" in parentheses, the co-medication itself)."""
    if not words:
        return None
    try:
        words_regex = "|".join(p.lower() for p in words)
        return re.compile(r"(?:ly)?(?:\)\s+|\s+(?:\([a-z.]+\)\s+)?(?:[\w-]+\s+)?)(?:" + words_regex + ")")
    except re.error as exc:
        raise VocabularyError(f"co_medication: {exc}") from exc


def _add_design_cues(vocab: Vocabulary) -> None:
    """Each cue pattern on its own, with the literal prefixes one of which its matches start with:
    a pattern that starts with a literal is searched fast, and only where its prefix starts a word."""
    vocab.design_cues = {name: [(anchors_for([p]), _compile_cue(name, p)) for p in patterns]
                         for name, patterns in vocab.design_cue_patterns.items()}
    vocab.design_cue_automaton = _substring_automaton(
        {(name, i): anchors for name, cues in vocab.design_cues.items() for i, (anchors, _) in enumerate(cues)
         if anchors})


def _substring_automaton(anchors: dict[object, tuple[str, ...]]) -> object:
    """Aho-Corasick over plain substrings; each hit yields the keys whose anchor it is."""
    import ahocorasick

    names: dict[str, set] = {}
    for name, strings in anchors.items():
        for anchor in strings:
            names.setdefault(anchor, set()).add(name)
    automaton = ahocorasick.Automaton()
    for anchor, owners in names.items():
        automaton.add_word(anchor, frozenset(owners))
    if names:
        automaton.make_automaton()
    return automaton if names else None


def _compile_cue(name: str, pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise VocabularyError(f"design cue {name}: bad pattern ({exc})") from exc
