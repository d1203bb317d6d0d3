#!/usr/bin/env python3
"""Write the findings gold set's annotation batches (result sentences) outside the repository.

Usage: python scripts/findings_batches.py OUT_DIR [--corpus ../shared/corpus]

Selection (tests/gold/findings/GUIDE.md): records as `kb build --from-dir CORPUS/pubmed` builds
them, sorted by integer PMID; every results / conclusions sentence (the last three sentences of an
unstructured abstract) is a candidate; every STEP-th candidate is taken and split in two halves, the
first SHARED going to both annotators. Sentence numbers are ingest.tagging.sentences' indexes (the
title is 0). The batches hold abstract text, so they go to OUT_DIR, never into this repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.db.collect import collect_dir  # noqa: E402
from ingest.tagging.sentences import record_sentences  # noqa: E402

STEP = 12
SHARED = 25
ANNOTATORS = ("r", "s")


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


def batches(items: list[dict]) -> dict[str, list[dict]]:
    picked = items[::STEP]
    shared, rest = picked[:SHARED], picked[SHARED:]
    half = -(-len(rest) // 2)
    return {name: shared + rest[i * half:(i + 1) * half] for i, name in enumerate(ANNOTATORS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, items in batches(candidates(collect_dir(args.corpus / "pubmed").records)).items():
        path = args.out / f"batch_{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for item in items:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
        print(f"{path}: {len(items)} sentences")


if __name__ == "__main__":
    main()
