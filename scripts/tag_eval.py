"""Scoring the tagger against the hand-annotated gold set in tests/gold/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ingest.tagging import load_vocabulary, tag_record

EVAL_KINDS = ("indication", "mechanism", "side_effect", "side_effect_absent", "design", "drug", "route")


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, predicted: set, gold: set) -> None:
        self.tp += len(predicted & gold)
        self.fp += len(predicted - gold)
        self.fn += len(gold - predicted)


def load_gold(folder: Path) -> dict[str, list[dict]]:
    """Gold parts by name ("a", "b"), each a list of {pmid, kind: [ids]}."""
    parts = {}
    for path in sorted(folder.glob("tags_gold_*.jsonl")):
        parts[path.stem.removeprefix("tags_gold_")] = [
            json.loads(line) for line in path.read_text().splitlines() if line.strip()
        ]
    return parts


def predict(records: dict[str, dict], gold: list[dict]) -> dict[str, dict]:
    vocab = load_vocabulary()
    out = {}
    for item in gold:
        record = records.get(str(item["pmid"]))
        if record is None:
            raise KeyError(f"gold PMID {item['pmid']} is not in the corpus")
        out[str(item["pmid"])] = tag_record(record, vocab).as_dict()
    return out


# The first gold sets (tags_gold_a/b) predate three designs: they filed single-arm trials under
# nonrandomised_trial and a post-hoc analysis under its parent trial's design, and had no
# modelling. Their scores are computed with the tagger's answer mapped back to that scheme.
LEGACY_DESIGNS = {"single_arm_trial": "nonrandomised_trial"}


def legacy(prediction: dict) -> dict:
    designs = []
    for design in prediction.get("design") or []:
        if design == "secondary_analysis":
            design = prediction.get("parent_design")
        elif design == "modelling":
            design = None
        design = LEGACY_DESIGNS.get(design, design)
        if design and design not in designs:
            designs.append(design)
    return {**prediction, "design": designs}


def score(gold: list[dict], predictions: dict[str, dict]) -> dict[str, Score]:
    scores = {kind: Score() for kind in EVAL_KINDS}
    for item in gold:
        predicted = predictions[str(item["pmid"])]
        for kind in EVAL_KINDS:
            scores[kind].add(set(predicted.get(kind) or []), set(item.get(kind) or []))
    overall = Score()
    for kind in EVAL_KINDS:
        overall.tp += scores[kind].tp
        overall.fp += scores[kind].fp
        overall.fn += scores[kind].fn
    scores["overall"] = overall
    return scores


def errors(gold: list[dict], predictions: dict[str, dict], kind: str) -> list[tuple[str, set, set]]:
    """(pmid, false positives, false negatives) for one kind, for error analysis."""
    out = []
    for item in gold:
        predicted = set(predictions[str(item["pmid"])].get(kind) or [])
        expected = set(item.get(kind) or [])
        if predicted != expected:
            out.append((str(item["pmid"]), predicted - expected, expected - predicted))
    return out


# --------------------------------------------------------------------------- the blind test set

BLIND_FILE = "tags_blind.jsonl"
DEV_FILE = "tags_dev.jsonl"


def _load_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_blind(folder: Path) -> list[dict]:
    """The adjudicated blind test set (tests/gold/blind/tags_blind.jsonl); [] until it exists."""
    return _load_jsonl(folder / "blind" / BLIND_FILE)


def load_dev(folder: Path) -> list[dict]:
    """The blind development set (tests/gold/dev/tags_dev.jsonl): same guide, other records; tuned on."""
    return _load_jsonl(folder / "dev" / DEV_FILE)


@dataclass
class Exact:
    """Share of items where the tagger gives exactly the gold value."""

    right: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 1.0

    def add(self, predicted, gold) -> None:
        self.total += 1
        self.right += int(predicted == gold)


def score_values(gold: list[dict], predictions: dict[str, dict]) -> dict[str, Exact]:
    """Exact-match figures for the study-level values of the blind set.

    sample_size: where the abstract states one (gold sample_size_stated); sample_size_none: where
    it does not, the tagger must give none; evidence_level and on_topic: every study;
    parent_design: secondary analyses; studies_included / participants_pooled: where stated.
    """
    out = {name: Exact() for name in ("sample_size", "sample_size_none", "evidence_level", "on_topic",
                                      "off_topic_found", "parent_design", "studies_included",
                                      "participants_pooled")}
    for item in gold:
        p = predictions[str(item["pmid"])]
        if item.get("sample_size_stated") and item.get("sample_size") is not None:
            out["sample_size"].add(p.get("sample_size"), item["sample_size"])
        elif item.get("sample_size") is None:
            out["sample_size_none"].add(p.get("sample_size"), None)
        out["evidence_level"].add(p.get("evidence_level"), item.get("evidence_level"))
        out["on_topic"].add(bool(p.get("on_topic")), bool(item.get("on_topic")))
        if item.get("on_topic") is False:
            out["off_topic_found"].add(bool(p.get("on_topic")), False)
        if "secondary_analysis" in (item.get("design") or []):
            out["parent_design"].add(p.get("parent_design"), item.get("parent_design"))
        for name in ("studies_included", "participants_pooled"):
            if item.get(name) is not None:
                out[name].add(p.get(name), item[name])
    return out


def load_blind_side_effects(folder: Path) -> list[dict]:
    """Further blind records annotated for side effects only (observed / reported absent)."""
    return _load_jsonl(folder / "blind" / "side_effects_blind.jsonl")
