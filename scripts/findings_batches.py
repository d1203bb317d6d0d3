#!/usr/bin/env python3
"""Write the findings gold set's annotation batches (result sentences) outside the repository.

Usage: python scripts/findings_batches.py OUT_DIR [--corpus ../shared/corpus] [--round 2]

Selection (tests/gold/findings/GUIDE.md): records as `kb build --from-dir CORPUS/pubmed` builds
them, sorted by integer PMID; every results / conclusions sentence (the last three sentences of an
unstructured abstract) is a candidate; every STEP-th candidate is taken and split in two halves, the
first SHARED going to both annotators. Sentence numbers are ingest.tagging.sentences' indexes (the
title is 0). The batches hold abstract text, so they go to OUT_DIR, never into this repository.

Round 2 (GUIDE.md, "Round 2"): the candidates round 1 did not take that state a quantity-like
number (a percentage, n/N, or a time with its unit), every ROUND2_STEP-th of them, shared and
split the same way between two new annotators.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.db.collect import collect_dir  # noqa: E402
from ingest.tagging.sentences import record_sentences  # noqa: E402

STEP = 12
SHARED = 25
ANNOTATORS = ("r", "s")
ROUND2_STEP = 2
ROUND2_SHARED = 20
ROUND2_ANNOTATORS = ("x", "y")
QUANTITY_LIKE = re.compile(
    r"\d\s?%|\b\d+\s*/\s*\d+\b|\b(?:\d+|one|two|three|four|five|six|seven|eight|ten|twelve)[\s-]*"
    r"(?:minutes?|min|hours?|h|days?|weeks?|months?|years?)\b", re.IGNORECASE)


def candidates(records: dict[str, dict]) -> list[dict]:
    """Every result sentence of every record with a PMID and an abstract, in (PMID, sentence) order."""
    out = []
    for record in sorted((r for r in records.values() if str(r.get("pmid") or "").isdigit() and r.get("abstract")),
                         key=lambda r: int(r["pmid"])):
        sentences = [s for s in record_sentences(record) if s.section_kind != "title"]
        structured = any(s.section_kind in ("results", "conclusions") for s in sentences)
        chosen = ([s for s in sentences if s.section_kind in ("results", "conclusions")] if structured
                  else sentences[-3:])
        out += [{"pmid": str(record["pmid"]), "sentence": s.index, "title": record.get("title"),
                 "section": s.section, "text": s.text} for s in chosen]
    return out


def batches(items: list[dict], round_: int = 1) -> dict[str, list[dict]]:
    if round_ == 1:
        picked, shared_n, names = items[::STEP], SHARED, ANNOTATORS
    else:
        left = [item for i, item in enumerate(items) if i % STEP and QUANTITY_LIKE.search(item["text"])]
        picked, shared_n, names = left[::ROUND2_STEP], ROUND2_SHARED, ROUND2_ANNOTATORS
    shared, rest = picked[:shared_n], picked[shared_n:]
    half = -(-len(rest) // 2)
    return {name: shared + rest[i * half:(i + 1) * half] for i, name in enumerate(names)}


def round2_split(pmid: str, pmids: list[str]) -> str:
    """dev or test for a round-2 sentence: its study's place among round 2's studies, alternating,
    so no abstract has sentences on both sides."""
    return "dev" if pmids.index(pmid) % 2 == 0 else "test"


def merge_round2(folder: Path) -> dict[str, int]:
    """Round 2's gold from its annotators' files (folder/annotator_{x,y}.jsonl): the shared sentences
    as the first annotator labelled them, then each one's own, split into dev and test by study."""
    first, second = ([json.loads(line) for line in (folder / f"annotator_{name}.jsonl").read_text().splitlines()
                      if line.strip()] for name in ROUND2_ANNOTATORS)
    items = first + second[ROUND2_SHARED:]
    pmids = list(dict.fromkeys(item["pmid"] for item in items))
    counts = {}
    for split in ("dev", "test"):
        chosen = [item for item in items if round2_split(item["pmid"], pmids) == split]
        (folder / f"findings_{split}.jsonl").write_text(
            "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in chosen), encoding="utf-8")
        counts[split] = len(chosen)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--round", type=int, choices=(1, 2), default=1, dest="round_")
    parser.add_argument("--merge-round2", action="store_true",
                        help="write round 2's dev and test files from its annotators' files in OUT_DIR")
    args = parser.parse_args()
    if args.merge_round2:
        print(merge_round2(args.out))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name, items in batches(candidates(collect_dir(args.corpus / "pubmed").records), args.round_).items():
        path = args.out / f"batch_{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for item in items:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
        print(f"{path}: {len(items)} sentences")


if __name__ == "__main__":
    main()
