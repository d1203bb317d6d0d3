"""Regression guard: the tagger against the hand-annotated gold set (tests/gold/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tag_eval import legacy, load_gold, predict, score

from ingest.db.collect import collect_dir

GOLD = Path(__file__).parent / "gold"
# Measured F1 (scripts/eval_tags.py, all 169 abstracts) minus a small margin: a change that
# loses more than that is a regression. Raise these when the tagger improves.
FLOORS = {"indication": 0.84, "side_effect": 0.86, "mechanism": 0.84, "design": 0.83, "drug": 0.96,
          "route": 0.92, "overall": 0.87}


@pytest.fixture(scope="module")
def scores(corpus):
    records = collect_dir(corpus / "pubmed").records
    gold = [item for part in load_gold(GOLD).values() for item in part]
    predictions = {pmid: legacy(p) for pmid, p in predict(records, gold).items()}
    return score(gold, predictions)


def test_gold_set_is_large_enough_and_has_no_text():
    parts = load_gold(GOLD)
    items = [item for part in parts.values() for item in part]
    assert len(items) >= 150 and len({i["pmid"] for i in items}) == len(items)
    for item in items:
        assert set(item) == {"pmid", "indication", "mechanism", "side_effect", "side_effect_absent", "design",
                             "drug", "route"}


@pytest.mark.parametrize("kind", sorted(FLOORS))
def test_f1_floor(scores, kind):
    assert scores[kind].f1 >= FLOORS[kind], f"{kind}: F1 {scores[kind].f1:.3f} < {FLOORS[kind]}"
