#!/usr/bin/env python3
"""Latency of `kb check` per claim on the shared corpus: p50 and p95, full-text only and hybrid.

Usage: python scripts/bench_claims.py [--db kb.db] [--corpus ../shared/corpus] [--repeat 3] [--limit 10]

Times check_claim (ranking, evidence at a glance) for every gold claim, --repeat times each, on
one warm connection, as `kb check --file` and the Datasette page run it. Model and vector
loading happen once, before timing, and are reported apart. Without --db, kb.db is built from
CORPUS/pubmed in a temporary folder; hybrid needs the semantic extra and `kb embed --db DB`.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from claim_eval import load_gold  # noqa: E402

from ingest.claims import check_claim  # noqa: E402
from ingest.db import build as builder  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def timed(conn, claims: list[str], repeat: int, limit: int, vectors) -> list[float]:
    check_claim(conn, claims[0], limit=limit, vectors=vectors)  # warm caches (vocabulary, pages)
    out = []
    for _ in range(repeat):
        for claim in claims:
            started = time.perf_counter()
            check_claim(conn, claim, limit=limit, vectors=vectors)
            out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--gold", type=Path, default=ROOT / "tests" / "gold" / "claims.jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    claims = [item["claim"] for item in load_gold(args.gold)]
    with tempfile.TemporaryDirectory() as workdir:
        db = args.db
        if db is None:
            db = Path(workdir) / "kb.db"
            builder.build(db, builder.collect_dir(args.corpus / "pubmed"), "files", "from-dir")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        sentences = conn.execute("select count(*) from sentences").fetchone()[0]
        print(f"{len(claims)} claims x {args.repeat}, {sentences} sentences, db={db}")
        modes = [("fts", None)]
        try:
            from ingest.claims.embeddings import SemanticUnavailable, load_index

            started = time.perf_counter()
            index = load_index(db)
            print(f"vector index: {len(index.rowids)} vectors, {index.model}, "
                  f"loaded in {(time.perf_counter() - started) * 1000:.0f} ms (once per process)")
            modes.append(("hybrid", index))
        except SemanticUnavailable as exc:
            print(f"hybrid not measured: {exc}")
        for mode, vectors in modes:
            times = timed(conn, claims, args.repeat, args.limit, vectors)
            print(f"{mode:<7} p50 {statistics.median(times):6.1f} ms  p95 {percentile(times, 0.95):6.1f} ms  "
                  f"max {max(times):6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
