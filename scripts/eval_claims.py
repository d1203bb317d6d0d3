#!/usr/bin/env python3
"""Recall@10 and nDCG@10 of `kb check` on the gold claims, full-text only and hybrid.

Usage: python scripts/eval_claims.py [--db kb.db] [--corpus ../shared/corpus] [--k 10] [--per-claim]

Without --db, kb.db is built from CORPUS/pubmed into a temporary folder (as `kb build
--from-dir` does). Hybrid needs the `semantic` extra and the vector index (`kb embed --db
DB`); without them only the full-text figures are printed. Gold (PMIDs chosen by reading the
abstracts; recall@k counts out of min(gold, k)): tests/gold/claims.jsonl, the set the ranking
was tuned on; claims_holdout.jsonl, annotated blind and held out until its failures guided the
claim vocabulary; claims_test.jsonl, written and annotated blind and never tuned on. Then the
same claims judged again over a pool of several rankings (*_pooled.jsonl, see
tests/gold/GUIDE.md), with the share of the top k that was judged.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from claim_eval import evaluate, load_gold  # noqa: E402
from findings_eval import load_findings_gold, predict_sentences, score_findings  # noqa: E402
from stance_eval import load_stance_gold, score_stances, score_verdicts  # noqa: E402

from ingest.db import build as builder  # noqa: E402

GOLD_FILES = ("claims.jsonl", "claims_holdout.jsonl", "claims_test.jsonl",
              "claims_pooled.jsonl", "claims_holdout_pooled.jsonl", "claims_test_pooled.jsonl")


def kb_path(args: argparse.Namespace, workdir: Path) -> Path:
    if args.db:
        return args.db
    target = workdir / "kb.db"
    builder.build(target, builder.collect_dir(args.corpus / "pubmed"), "files", "from-dir")
    return target


def vector_index(db: Path):
    try:
        from ingest.claims.embeddings import SemanticUnavailable, load_index
    except ImportError as exc:  # pragma: no cover - the module itself needs no extra
        return None, str(exc)
    try:
        return load_index(db), None
    except SemanticUnavailable as exc:
        return None, str(exc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="kb.db to evaluate (default: build one from the corpus)")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--gold", type=Path, action="append",
                        help="gold claims (JSON lines; repeatable; default: the tuning and the held-out set)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--per-claim", action="store_true", help="print each claim's recall and nDCG")
    parser.add_argument("--only", choices=("ranking", "stance", "findings"), help="print one part only")
    args = parser.parse_args()
    gold_files = args.gold or [ROOT / "tests" / "gold" / name for name in GOLD_FILES]
    with tempfile.TemporaryDirectory() as workdir:
        db = kb_path(args, Path(workdir))
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        if args.only in (None, "findings"):
            print_findings(args.corpus)
        if args.only in (None, "stance"):
            print_stances(conn)
        if args.only not in (None, "ranking"):
            return 0
        index, why_not = vector_index(db)
        modes = [("fts", None)] + ([("hybrid", index)] if index is not None else [])
        for gold_file in gold_files:
            gold = load_gold(gold_file)
            print(f"== {gold_file.name}: {len(gold)} gold claims, k={args.k}, db={db}")
            for mode, vectors in modes:
                result = evaluate(conn, gold, args.k, vectors)
                model = f" ({vectors.model}, {vectors.coverage:.0%} of sentences)" if vectors is not None else ""
                judged = f"  judged@{args.k} {result['judged']:.0%}" if any("judged" in g for g in gold) else ""
                print(f"{mode:<7} recall@{args.k} {result['recall']:.3f}  nDCG@{args.k} {result['ndcg']:.3f}"
                      f"{judged}{model}")
                if args.per_claim:
                    for c in result["claims"]:
                        print(f"    {c['recall']:.2f} {c['ndcg']:.2f}  {c['claim']}")
        if index is None:
            print(f"hybrid  not measured: {why_not}")
    return 0


def print_findings(corpus: Path) -> None:
    """Findings direction accuracy, outcome P/R/F1 and quantity P/R/F1 on each findings split."""
    records = builder.collect_dir(corpus / "pubmed").records
    for split in ("dev", "test"):
        gold = load_findings_gold(split)
        if not gold:
            continue
        s = score_findings(gold, predict_sentences(records, gold))
        (op, orr, of), (qp, qr, qf) = s.outcome_prf, s.quantity_prf
        print(f"== findings {split} ({len(gold)} sentences{', tuned on' if split == 'dev' else ', never tuned on'})")
        print(f"direction accuracy {s.direction_accuracy:.3f} ({s.direction_right}/{s.direction_total})  "
              f"outcomes P {op:.3f} R {orr:.3f} F1 {of:.3f}  quantities P {qp:.3f} R {qr:.3f} F1 {qf:.3f}")


def print_stances(conn: sqlite3.Connection) -> None:
    """Stance accuracy and macro-F1 per pair, verdict accuracy per claim, on each stance split."""
    for split in ("dev", "test"):
        claims, pairs, verdicts = load_stance_gold(split)
        if not pairs:
            continue
        stances, judged = score_stances(conn, claims, pairs), score_verdicts(conn, claims, verdicts)
        per_label = "  ".join(f"{label} {stances.f1(label):.2f}" for label in stances.labels)
        print(f"== stance {split} ({len(pairs)} pairs, {len(verdicts)} claims"
              f"{', tuned on' if split == 'dev' else ', never tuned on'})")
        print(f"stance accuracy {stances.accuracy:.3f}  macro-F1 {stances.macro_f1:.3f}  ({per_label})")
        print(f"verdict accuracy {judged.accuracy:.3f}  macro-F1 {judged.macro_f1:.3f}")


if __name__ == "__main__":
    sys.exit(main())
