"""Measuring the claim checker against the gold sets (tests/gold): recall@k, nDCG@k, judged share.

Evaluation code, not the product: used by scripts/eval_claims.py, scripts/bench_claims.py and
the tests.
"""

from __future__ import annotations

import json
from typing import Any

from ingest.claims import check_claim


def load_gold(path: Any) -> list[dict[str, Any]]:
    """Claims with the PMIDs a careful reader would cite: {"claim": ..., "pmids": [...]} per line.

    A pooled set also lists every PMID judged for the claim ("judged") and those judged on topic
    but not evidence ("related"); see tests/gold/GUIDE.md.
    """
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def recall_at_k(ranked: list[str], gold: list[str], k: int = 10) -> float:
    """Share of the gold studies in the top k; out of k when there are more than k gold studies."""
    if not gold:
        return 0.0
    return len(set(ranked[:k]) & set(gold)) / min(len(gold), k)


def ndcg_at_k(ranked: list[str], gold: list[str], k: int = 10) -> float:
    """Binary-relevance nDCG: gold studies near the top count more."""
    import math

    wanted = set(gold)
    dcg = sum(1 / math.log2(i + 2) for i, pmid in enumerate(ranked[:k]) if pmid in wanted)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(wanted), k)))
    return dcg / ideal if ideal else 0.0


def evaluate(conn: Any, gold: list[dict[str, Any]], k: int = 10,
             vectors: Any = None) -> dict[str, Any]:
    """Mean recall@k and nDCG@k over gold claims, with each claim's figures."""
    per_claim = []
    for item in gold:
        ranked = [s.pmid for s in check_claim(conn, item["claim"], limit=k, vectors=vectors).results]
        judged = set(item.get("judged") or ()) | set(item["pmids"])
        per_claim.append({"claim": item["claim"], "recall": recall_at_k(ranked, item["pmids"], k),
                          "ndcg": ndcg_at_k(ranked, item["pmids"], k), "ranked": ranked,
                          "judged": sum(p in judged for p in ranked) / (len(ranked) or 1)})
    count = len(per_claim) or 1
    return {"recall": sum(c["recall"] for c in per_claim) / count,
            "ndcg": sum(c["ndcg"] for c in per_claim) / count,
            "judged": sum(c["judged"] for c in per_claim) / count, "claims": per_claim}
