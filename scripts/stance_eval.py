"""Scoring stances and verdicts against the stance gold (tests/gold/stance/).

Stance: for every gold (claim, study) pair the tool's stance for that study, whatever its rank;
accuracy and macro-F1 over the four labels. Verdict: the tool's verdict for the claim (from its own
ranked studies, as `kb check` gives it) against the annotators' verdict over the pooled studies.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ingest.claims.check import check_claim
from ingest.claims.stance import (
    STANCES,
    VERDICTS,
    judge_study,
    keep_rare_terms,
    read_claim,
)
from ingest.claims.understand import claim_tags

GOLD = Path(__file__).resolve().parent.parent / "tests" / "gold" / "stance"


def load_stance_gold(split: str | None = None, folder: Path = GOLD) -> tuple[dict[str, str], list[dict], list[dict]]:
    """(claims by id, pairs, verdicts) of one split ("dev", "test") or of both."""
    def rows(name: str) -> list[dict]:
        path = folder / name
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if path.exists() else []
    claims = {c["id"]: c["claim"] for c in rows("claims.jsonl")}
    pairs = [p for p in rows("stance_gold.jsonl") if split is None or p["split"] == split]
    verdicts = [v for v in rows("verdicts.jsonl") if split is None or v["split"] == split]
    return claims, pairs, verdicts


@dataclass
class LabelScore:
    labels: tuple[str, ...]
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (gold, predicted)

    @property
    def accuracy(self) -> float:
        return sum(g == p for g, p in self.pairs) / len(self.pairs) if self.pairs else 0.0

    def f1(self, label: str) -> float:
        tp = sum(g == p == label for g, p in self.pairs)
        fp = sum(p == label != g for g, p in self.pairs)
        fn = sum(g == label != p for g, p in self.pairs)
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    @property
    def macro_f1(self) -> float:
        present = [label for label in self.labels if any(g == label for g, _ in self.pairs)]
        return sum(self.f1(label) for label in present) / len(present) if present else 0.0


def score_stances(conn: sqlite3.Connection, claims: dict[str, str], pairs: list[dict]) -> LabelScore:
    score = LabelScore(STANCES)
    assertions = {}
    for pair in pairs:
        claim = claims[pair["claim_id"]]
        if claim not in assertions:
            assertions[claim] = keep_rare_terms(conn, read_claim(claim, claim_tags(claim)))
        stance, _ = judge_study(conn, assertions[claim], pair["pmid"])
        score.pairs.append((pair["stance"], stance.label))
    return score


def score_verdicts(conn: sqlite3.Connection, claims: dict[str, str], verdicts: list[dict]) -> LabelScore:
    score = LabelScore(VERDICTS)
    for item in verdicts:
        result = check_claim(conn, claims[item["claim_id"]])
        score.pairs.append((item["verdict"], result.verdict["label"]))
    return score
