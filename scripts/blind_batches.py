"""Write the blind test set's annotation batches (abstracts) outside the repository.

Usage: python scripts/blind_batches.py OUT_DIR [--corpus ../shared/corpus]

Selection (tests/gold/blind/GUIDE.md): records with a PMID and an abstract, sorted by PMID;
``ok[1::3]``; the first 30 are shared by every annotator, the rest split in three. The batches
hold abstract text, so they go to OUT_DIR (never into this repository).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = 30
ANNOTATORS = ("a", "b", "c")


def selection(corpus: Path) -> list[dict]:
    records = [json.loads(line) for line in (corpus / "literature.jsonl").open(encoding="utf-8") if line.strip()]
    ok = sorted((r for r in records if str(r.get("pmid") or "").isdigit() and r.get("abstract")),
                key=lambda r: int(r["pmid"]))
    return ok[1::3]


def batches(records: list[dict]) -> dict[str, list[dict]]:
    shared, rest = records[:SHARED], records[SHARED:]
    size = -(-len(rest) // len(ANNOTATORS))
    return {name: shared + rest[i * size:(i + 1) * size] for i, name in enumerate(ANNOTATORS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, items in batches(selection(args.corpus)).items():
        path = args.out / f"batch_{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for r in items:
                handle.write(json.dumps({k: r.get(k) for k in ("pmid", "title", "abstract", "mesh", "pubtypes",
                                                               "keywords", "year", "journal")},
                                        ensure_ascii=False) + "\n")
        print(f"{path}: {len(items)} records")


if __name__ == "__main__":
    main()
