#!/usr/bin/env python3
"""Precision, recall and F1 of the tagger against the hand-annotated gold set.

Usage: python scripts/eval_tags.py [--corpus ../shared/corpus] [--errors KIND]

Records are built exactly as `kb build --from-dir CORPUS/pubmed` builds them (efetch XML and
the MEDLINE export, merged), then tagged and compared with tests/gold/tags_gold_*.jsonl.
Part A was used while tuning the rules; part B is reported separately as a held-out check. The
first gold predates three designs; its design figures map single-arm trials to
nonrandomised_trial and secondary analyses to their parent design (tag_eval.legacy). The blind
test set (tests/gold/blind/, annotated without the tool) is scored as it is, in today's scheme.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tag_eval import (  # noqa: E402
    EVAL_KINDS,
    Score,
    errors,
    legacy,
    load_blind,
    load_blind_side_effects,
    load_dev,
    load_gold,
    predict,
    score,
    score_values,
)

from ingest.db.collect import collect_dir  # noqa: E402


def print_table(scores: dict[str, Score], kinds: tuple[str, ...], header: bool = True) -> None:
    """One line of P/R/F1 and counts per kind."""
    if header:
        print(f"{'kind':<20}{'P':>7}{'R':>7}{'F1':>7}{'TP':>6}{'FP':>6}{'FN':>6}")
    for kind in kinds:
        s = scores[kind]
        print(f"{kind:<20}{s.precision:7.3f}{s.recall:7.3f}{s.f1:7.3f}{s.tp:6d}{s.fp:6d}{s.fn:6d}")


def print_split(title: str, gold: list[dict], predictions: dict[str, dict]) -> None:
    """Per-kind P/R/F1 and exact-value shares on one blind split, in today's design scheme."""
    print(f"\n== {title}")
    print_table(score(gold, predictions), (*EVAL_KINDS, "overall"))
    print(f"{'value':<20}{'exact':>7}{'of':>6}")
    for name, e in score_values(gold, predictions).items():
        print(f"{name:<20}{e.accuracy:7.3f}{e.total:6d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--errors", metavar="KIND", help="list the disagreements for one kind")
    parser.add_argument("--blind", action="store_true", help="--errors on the blind test set")
    parser.add_argument("--dev", action="store_true", help="--errors on the blind development set")
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
        print_table(scores, (*EVAL_KINDS, "overall"))
    dev = load_dev(ROOT / "tests" / "gold")
    dev_predictions = predict(records, dev)
    if dev:
        print_split(f"blind development set ({len(dev)} abstracts, annotated without the tool; tuned on)",
                    dev, dev_predictions)
    blind = load_blind(ROOT / "tests" / "gold")
    raw = predict(records, blind)  # the test split: reported as it is, never tuned on
    if blind:
        print_split(f"blind test set ({len(blind)} abstracts, annotated without the tool; never tuned on)",
                    blind, raw)
    side = load_blind_side_effects(ROOT / "tests" / "gold")
    if side:
        side_predictions = predict(records, side)
        print(f"\n== blind side-effect set ({len(side)} further abstracts, "
              f"{sum(bool(i['side_effect_absent']) for i in side)} with an effect reported absent)")
        side_scores = {kind: Score() for kind in ("side_effect", "side_effect_absent")}
        for kind, s in side_scores.items():
            for item in side:
                s.add(set(side_predictions[item["pmid"]].get(kind) or []), set(item[kind]))
        print_table(side_scores, tuple(side_scores), header=False)
    if args.errors:
        gold, preds = ((blind, raw) if args.blind else (dev, dev_predictions) if args.dev
                       else (parts["all"], predictions))
        print(f"\n== disagreements for {args.errors} (pmid: false positives / false negatives)")
        for pmid, fp, fn in errors(gold, preds, args.errors):
            print(f"{pmid}: +{sorted(fp)} -{sorted(fn)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
