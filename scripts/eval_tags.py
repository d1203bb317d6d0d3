#!/usr/bin/env python3
"""Precision, recall and F1 of the tagger against the hand-annotated gold set.

Usage: python scripts/eval_tags.py [--corpus ../shared/corpus] [--errors KIND]

Records are built exactly as `kb build --from-dir CORPUS/pubmed` builds them (efetch XML and
the MEDLINE export, merged), then tagged and compared with tests/gold/tags_gold_*.jsonl.
Part A was used while tuning the rules; part B is reported separately as a held-out check.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tag_eval import EVAL_KINDS, errors, legacy, load_gold, predict, score  # noqa: E402

from ingest.db.collect import collect_dir  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--errors", metavar="KIND", help="list the disagreements for one kind")
    args = parser.parse_args()
    records = collect_dir(args.corpus / "pubmed").records
    parts = load_gold(ROOT / "tests" / "gold")
    parts["all"] = [item for name in sorted(parts) for item in parts[name]]
    started = time.perf_counter()
    predictions = {pmid: legacy(p) for pmid, p in predict(records, parts["all"]).items()}
    elapsed = time.perf_counter() - started
    print(f"gold: {', '.join(f'{k}={len(v)}' for k, v in parts.items())} abstracts; "
          f"tagged in {elapsed * 1000:.0f} ms")
    for name, gold in parts.items():
        scores = score(gold, predictions)
        print(f"\n== part {name} ({len(gold)} abstracts)")
        print(f"{'kind':<20}{'P':>7}{'R':>7}{'F1':>7}{'TP':>6}{'FP':>6}{'FN':>6}")
        for kind in (*EVAL_KINDS, "overall"):
            s = scores[kind]
            print(f"{kind:<20}{s.precision:7.3f}{s.recall:7.3f}{s.f1:7.3f}{s.tp:6d}{s.fp:6d}{s.fn:6d}")
    if args.errors:
        print(f"\n== disagreements for {args.errors} (pmid: false positives / false negatives)")
        for pmid, fp, fn in errors(parts["all"], predictions, args.errors):
            print(f"{pmid}: +{sorted(fp)} -{sorted(fn)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
