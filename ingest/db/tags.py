"""Writing tags into kb.db: the vocabulary tables, study_tags rows and per-kind arrays."""

from __future__ import annotations

import json
from dataclasses import asdict

import sqlite_utils

from ..tagging import KINDS, TagResult, Vocabulary, load_vocabulary, read_vocabulary, tag_record
from ..tagging.findings import extract_findings, load_findings_vocabulary
from ..tagging.sentences import Sentence
from .schema import TAG_COLUMNS


def write_vocabulary(db: sqlite_utils.Database, vocab: Vocabulary) -> None:
    db["tag_kinds"].insert_all(
        ({"id": k, "label": v.get("label"), "description": v.get("description")} for k, v in vocab.kinds.items()),
        replace=True,
    )
    db["tags"].insert_all(
        (
            {
                "id": t.id, "kind": t.kind, "label": t.label, "definition": t.definition,
                "mesh_ids": json.dumps([m["ui"] for m in t.mesh if m.get("ui")]),
                "mesh_names": json.dumps([m["name"] for m in t.mesh if m.get("name")]),
                "publication_types": json.dumps(t.pubtypes),
                "patterns": json.dumps(t.patterns + t.case_patterns, ensure_ascii=False),
                "evidence_level": t.evidence_level,
            }
            for t in vocab.tags.values()
        ),
        replace=True,
    )
    designs = vocab.of_kind("design")
    db["evidence_levels"].insert_all(
        ({"level": level, "label": label,
          "designs": json.dumps([t.id for t in designs if t.evidence_level == level
                                 or level in t.evidence_level_if_parent.values()])}
         for level, label in sorted(vocab.evidence_levels.items())),
        replace=True,
    )


def stored_once(text: str | None, index: int | None, sentences: dict[int, str] | None) -> str | None:
    """``text`` as a row stores it: None when it is the study's sentence ``index`` as the sentences table
    holds it (``sentences``: position -> text of the rows written with it; None when none are), read back
    through the *_text views (db/schema.py TEXT_VIEWS)."""
    if sentences is not None and index is not None and sentences.get(index) == text:
        return None
    return text


def tag_rows(study_id: str, result: TagResult, sentences: dict[int, str] | None = None) -> list[dict]:
    """study_tags rows; ``sentences``: the study's sentences written with them (see :func:`stored_once`)."""
    rows, positions = [], {}
    for ev in result.evidence:
        position = positions.get(ev.tag_id, 0)
        positions[ev.tag_id] = position + 1
        rows.append({
            "study_id": study_id, "tag_id": ev.tag_id, "position": position, "kind": ev.kind,
            "source": ev.source, "evidence": stored_once(ev.evidence, ev.sentence_index, sentences),
            "section": ev.section, "negated": int(ev.negated), "sentence_index": ev.sentence_index,
        })
    return rows


def finding_rows(study_id: str, sentences: list[Sentence],
                 stored: dict[int, str] | None = None) -> dict[str, list[dict]]:
    """The study's findings and quantities (tagging/findings.py) as findings / finding_quantities rows.

    ``stored``: the study's sentences written with them (see :func:`stored_once`)."""
    findings, quantities = extract_findings(sentences)
    vocab = load_findings_vocabulary()
    return {
        "findings": [
            {"study_id": study_id, "position": n, "sentence_index": f.sentence_index, "section": f.section,
             "outcome": f.outcome, "outcome_label": _outcome_label(vocab, f.outcome), "direction": f.direction,
             "hedged": int(f.hedged), "comparison": int(f.comparison), "tag_id": f.outcome_tag,
             "sentence": stored_once(f.sentence, f.sentence_index, stored)}
            for n, f in enumerate(findings)
        ],
        "finding_quantities": [
            {"study_id": study_id, "position": n, "sentence_index": q.sentence_index, "section": q.section,
             "type": q.type, "value": q.value, "unit": q.unit, "text": q.text, "denominator": q.denominator,
             "sentence": stored_once(q.sentence, q.sentence_index, stored)}
            for n, q in enumerate(quantities)
        ],
    }


def _outcome_label(vocab, outcome_id: str) -> str:
    outcome = vocab.outcome(outcome_id)
    return outcome.label if outcome else outcome_id


def tag_columns(result: TagResult, vocab: Vocabulary) -> dict:
    columns = {TAG_COLUMNS[kind]: json.dumps(result.tags.get(kind, [])) for kind in KINDS}
    columns["side_effects_absent"] = json.dumps(result.absent.get("side_effect", []))
    columns.update(asdict(result.counts))
    columns["evidence_level"] = result.evidence_level
    columns["evidence_level_label"] = evidence_level_label(result.evidence_level, vocab)
    columns["parent_design"] = result.parent_design
    columns["on_topic"] = int(result.on_topic)
    columns["on_topic_evidence"] = result.on_topic_evidence
    return columns


def evidence_level_label(level: int | None, vocab: Vocabulary) -> str | None:
    """ "2 · Randomised controlled trial": the number first, so the labels sort by level."""
    return None if level is None else f"{level} · {vocab.evidence_levels.get(level, '')}".rstrip(" ·")


class Tagging:
    """Deriver for builds and imports: tags and sample size of each study written.

    The patterns are compiled on first use: in a build, that is in the worker processes,
    while the main process goes on parsing.
    """

    def __init__(self, vocab: Vocabulary | None = None, sentences: bool = True):
        self._vocab = vocab
        self.sentences = sentences  # also write the sentence index (the claim checker's)

    @property
    def vocab(self) -> Vocabulary:
        if self._vocab is None:
            self._vocab = load_vocabulary()
        return self._vocab

    def prepare(self, db: sqlite_utils.Database) -> None:
        write_vocabulary(db, self._vocab or read_vocabulary())

    def derive(self, study_id: str, record: dict) -> tuple[dict, dict[str, list[dict]]]:
        result = tag_record(record, self.vocab)
        sentences = sentence_rows(study_id, result, record) if self.sentences else None
        # Evidence and findings that are one of these sentences point at it instead of copying it.
        stored = {s.index: s.text for s in result.sentences} if sentences is not None else None
        rows = {"study_tags": tag_rows(study_id, result, stored), **finding_rows(study_id, result.sentences, stored)}
        if sentences is not None:
            # The context before the sentences: their index entries read it as they are written.
            rows["sentence_contexts"] = [{"study_id": study_id, "context": sentence_context(record, result)}]
            rows["sentences"] = sentences
        return tag_columns(result, self.vocab), rows


CONTEXT_TITLE_CHARS = 500  # of the title in the context: every real title fits; it is indexed with each sentence


def sentence_context(record: dict, result: TagResult) -> str:
    """What a lone sentence loses: the study's title, drugs, routes, design and year."""
    parts = [_shortened(record.get("title") or "", CONTEXT_TITLE_CHARS)]
    labels = [t for kind in ("drug", "route", "design", "indication") for t in result.tags.get(kind, [])]
    if labels:
        parts.append(" ".join(label.replace("_", " ") for label in labels))
    if record.get("year"):
        parts.append(str(record["year"]))
    return " | ".join(p for p in parts if p)


def _shortened(text: str, limit: int) -> str:
    """``text`` cut at the last word boundary within ``limit`` characters."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def sentence_rows(study_id: str, result: TagResult, record: dict | None = None) -> list[dict]:
    """The study's sentences; each reads in the study's context (sentence_contexts), not a copy of it.

    With the ``record`` whose studies row is written alongside, a sentence that is the title, or
    found in the abstract (in order; the sentence splitter normalises spaces, so not always), stores
    where it is there (text_start, 1-based, and text_length) and its text NULL: sentences_text reads it back.
    """
    title = (record or {}).get("title") or ""
    abstract = (record or {}).get("abstract") or ""
    searchable = record is not None and "\x00" not in abstract  # SQLite's text functions stop at a NUL
    rows, cursor = [], 0
    for s in result.sentences:
        row = {"study_id": study_id, "position": s.index, "section": s.section, "section_kind": s.section_kind,
               "text": s.text, "text_start": None, "text_length": None}
        if searchable and s.section_kind == "title":
            if s.text == title and "\x00" not in title:
                row.update(text=None, text_start=1, text_length=len(title))
        elif searchable and s.text:
            at = abstract.find(s.text, cursor)
            if at >= 0:
                row.update(text=None, text_start=at + 1, text_length=len(s.text))
                cursor = at + len(s.text)
        rows.append(row)
    return rows
