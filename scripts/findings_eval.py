"""Scoring the findings extractor against the findings gold (tests/gold/findings/).

Outcome detection: precision / recall of the (sentence, outcome) pairs that carry a result.
Direction accuracy: on the pairs both found, the share with the gold direction.
Quantities: a predicted quantity matches a gold one in the same sentence when the type is the same
and the value agrees within 5% (or 0.5 of the unit); precision, recall and F1 over all quantities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ingest.tagging.findings import FindingsVocabulary, extract_findings, load_findings_vocabulary
from ingest.tagging.sentences import record_sentences

GOLD = Path(__file__).resolve().parent.parent / "tests" / "gold" / "findings"
SPLITS = {"dev": "findings_dev.jsonl", "test": "findings_test.jsonl"}


def load_findings_gold(split: str, folder: Path = GOLD) -> list[dict]:
    """One split's sentences: round 1's (every 12th result sentence) and round 2's (sentences stating
    a quantity-like number, folder/round2/)."""
    items = []
    for path in (folder / SPLITS[split], folder / "round2" / SPLITS[split]):
        if path.exists():
            items += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return items


@dataclass
class FindingsScore:
    outcome_tp: int = 0
    outcome_fp: int = 0
    outcome_fn: int = 0
    direction_right: int = 0
    direction_total: int = 0
    quantity_tp: int = 0
    quantity_fp: int = 0
    quantity_fn: int = 0
    confusions: list[tuple] = field(default_factory=list)

    @staticmethod
    def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    @property
    def outcome_prf(self) -> tuple[float, float, float]:
        return self._f1(self.outcome_tp, self.outcome_fp, self.outcome_fn)

    @property
    def quantity_prf(self) -> tuple[float, float, float]:
        return self._f1(self.quantity_tp, self.quantity_fp, self.quantity_fn)

    @property
    def direction_accuracy(self) -> float:
        return self.direction_right / self.direction_total if self.direction_total else 0.0


def predict_sentences(records: dict[str, dict], gold: list[dict],
                      vocab: FindingsVocabulary | None = None) -> dict[tuple[str, int], tuple[list, list]]:
    """(pmid, sentence) -> (findings, quantities) the extractor gives that sentence."""
    vocab = vocab or load_findings_vocabulary()
    out: dict[tuple[str, int], tuple[list, list]] = {}
    for pmid in sorted({item["pmid"] for item in gold}):
        findings, quantities = extract_findings(record_sentences(records[pmid]), vocab)
        for item in gold:
            if item["pmid"] == pmid:
                key = (pmid, int(item["sentence"]))
                out[key] = ([f for f in findings if f.sentence_index == key[1]],
                            [q for q in quantities if q.sentence_index == key[1]])
    return out


def _same_value(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.5, 0.05 * max(abs(a), abs(b)))


def score_findings(gold: list[dict], predictions: dict[tuple[str, int], tuple[list, list]]) -> FindingsScore:
    score = FindingsScore()
    for item in gold:
        key = (item["pmid"], int(item["sentence"]))
        findings, quantities = predictions.get(key, ([], []))
        predicted = {f.outcome: f.direction for f in findings}
        expected = {f["outcome"]: f["direction"] for f in item.get("findings") or []}
        both = predicted.keys() & expected.keys()
        score.outcome_tp += len(both)
        score.outcome_fp += len(predicted.keys() - expected.keys())
        score.outcome_fn += len(expected.keys() - predicted.keys())
        for outcome in both:
            score.direction_total += 1
            if predicted[outcome] == expected[outcome]:
                score.direction_right += 1
            else:
                score.confusions.append((key, outcome, expected[outcome], predicted[outcome]))
        unmatched = list(item.get("quantities") or [])
        for q in quantities:
            hit = next((g for g in unmatched if g["type"] == q.type and _same_value(float(g["value"]), q.value)), None)
            if hit is not None:
                unmatched.remove(hit)
                score.quantity_tp += 1
            else:
                score.quantity_fp += 1
        score.quantity_fn += len(unmatched)
    return score
