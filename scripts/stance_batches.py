#!/usr/bin/env python3
"""Write the stance gold set's annotation batches outside the repository.

Usage: python scripts/stance_batches.py CLAIMS_JSONL KB_DB OUT_DIR [--annotators t,u]

For each claim (tests/gold/stance/claims.jsonl), up to PER_CLAIM studies: the tool's top 5
(`kb check --mode fts`), then a plain BM25 search over titles and abstracts (top 8), without
duplicates, on-topic studies only. The first SHARED claims go to both annotators; the rest are split
by claim. The batches hold abstract text, so they go to OUT_DIR (never into this repository).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PER_CLAIM, SHARED, ANNOTATORS = 8, 4, ("t", "u")
_STOP = set("a an the of in to and or is are be can for with as by on at it its that this than more most very just "
            "after before within up about".split())


def bm25_ids(db: sqlite3.Connection, claim: str, limit: int) -> list[str]:
    words = [w for w in re.findall(r"[a-z0-9]+", claim.lower()) if w not in _STOP and len(w) > 2]
    query = " OR ".join(f'"{w}"' for w in words)
    rows = db.execute("select s.id from studies_fts f join studies s on s.rowid = f.rowid where studies_fts match ? "
                      "and s.on_topic = 1 order by bm25(studies_fts) limit ?", (query, limit)).fetchall()
    return [str(r[0]) for r in rows]


def tool_ids(claim: str, db_path: Path, limit: int) -> list[str]:
    kb = Path(sys.executable).with_name("kb")
    out = subprocess.run([str(kb), "check", claim, "--mode", "fts", "--limit", str(limit), "--json", "--db",
                          str(db_path)], capture_output=True, text=True, check=True)
    return [r["pmid"] for r in json.loads(out.stdout)["results"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claims", type=Path)
    parser.add_argument("db", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--annotators", default=",".join(ANNOTATORS),
                        help="comma-separated annotator names, one batch each (default: t,u)")
    args = parser.parse_args()
    annotators = [a for a in args.annotators.split(",") if a]
    claims = [json.loads(line) for line in args.claims.open(encoding="utf-8") if line.strip()]
    db = sqlite3.connect(args.db)
    args.out.mkdir(parents=True, exist_ok=True)
    rest = claims[SHARED:]
    half = -(-len(rest) // len(annotators))
    for i, name in enumerate(annotators):
        mine = claims[:SHARED] + rest[i * half:(i + 1) * half]
        path = args.out / f"batch_{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for claim in mine:
                pool: list[str] = []
                for pmid in tool_ids(claim["claim"], args.db, 5) + bm25_ids(db, claim["claim"], PER_CLAIM):
                    if pmid not in pool:
                        pool.append(pmid)
                for pmid in pool[:PER_CLAIM]:
                    title, abstract = db.execute("select title, abstract from studies where id = ?", (pmid,)).fetchone()
                    handle.write(json.dumps({"claim_id": claim["id"], "claim": claim["claim"], "pmid": pmid,
                                             "title": title, "abstract": abstract}, ensure_ascii=False) + "\n")
        print(f"{path}: {len(mine)} claims")


if __name__ == "__main__":
    main()
