#!/usr/bin/env python3
"""Recency order after imports (ingest/db/order.py): what renumbering costs, and ranking with a tail.

Usage: python scripts/bench_order.py [--sizes corpus,10000,40000] [--tail 300] [--corpus ../shared/corpus]
                                     [--work /tmp/kb-order] [--keep]

For each size, a kb.db: ``corpus`` is `kb build` of the shared corpus (its PubMed files); a number
is a synthetic kb.db of that many studies (scripts/synthetic.py, real sentences recombined), whose
random order is first sorted by a full renumbering (an older kb.db's first import does the same).
Then ``--tail`` PubMed articles (the corpus's efetch articles with fresh PMIDs) are imported, once
with renumbering held off (the tail stays: what the rankings then cost) and once as `kb import`
runs (renumbering when the tail is past order.TAIL_LIMITS). Prints, per size: studies, sentences,
the full renumbering, the import without and with renumbering, renumbering alone on the imported
copy, and the claim check and the `search` canned query (median of --repeat) with the tail and
sorted.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import sqlite_utils
import yaml
from datasette.utils import escape_fts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from synthetic import build_synthetic, xml_corpus  # noqa: E402

from ingest.claims.check import check_claim  # noqa: E402
from ingest.db import build as builder  # noqa: E402
from ingest.db import collect, order  # noqa: E402

CLAIMS = ["esketamine causes dissociation", "ketamine increases blood pressure", "ketamine relief can be permanent"]
SEARCHES = ["esketamine", "depression", "dissociation infusion"]
SEARCH_SQL = yaml.safe_load((ROOT / "metadata.yml").read_text())["databases"]["kb"]["queries"]["search"]["sql"]
NEVER = {"studies": 2**62, "sentences": 2**62}  # tail limits that hold renumbering off


def base_db(size: str, work: Path, corpus: Path) -> tuple[Path, float | None]:
    """The kb.db of one size, sorted; and the seconds its full renumbering took (None: built sorted)."""
    path = work / size / "kb.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if size == "corpus":
        builder.build(path, builder.collect_dir(corpus / "pubmed"), "files", "from-dir")
        return path, None
    build_synthetic(path, int(size), corpus)
    db = sqlite_utils.Database(path)
    seconds = order.renumber(db)["seconds"]
    db.close()
    return path, seconds


def imported(base: Path, tail_file: Path, name: str, limits: dict | None) -> tuple[Path, float]:
    """A copy of ``base`` with ``tail_file`` imported (renumbering by ``limits``); the import's seconds."""
    path = base.with_name(name) / "kb.db"
    path.parent.mkdir(exist_ok=True)
    shutil.copyfile(base, path)
    kept = order.TAIL_LIMITS
    order.TAIL_LIMITS = limits or kept
    try:
        collected = builder.Collected()
        collect.collect_file(collected, tail_file)
        started = time.perf_counter()
        builder.import_into(path, collected, "file", [str(tail_file)])
        return path, time.perf_counter() - started
    finally:
        order.TAIL_LIMITS = kept


def median_ms(fn, items: list[str], repeat: int) -> float:
    fn(items[0])  # warm
    times = []
    for _ in range(repeat):
        for item in items:
            started = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def query_times(path: Path, repeat: int) -> tuple[float, float]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.create_function("escape_fts", 1, escape_fts)
    try:
        claims = median_ms(lambda claim: check_claim(conn, claim, limit=10), CLAIMS, repeat)
        searches = median_ms(lambda q: conn.execute(SEARCH_SQL, {"q": q}).fetchall(), SEARCHES, repeat)
    finally:
        conn.close()
    return claims, searches


def measure(size: str, work: Path, corpus: Path, tail: int, repeat: int) -> dict:
    base, full = base_db(size, work, corpus)
    tail_file = work / size / "tail.xml"
    tail_file.write_bytes(xml_corpus(corpus, tail))
    with_tail, import_plain = imported(base, tail_file, "with-tail", NEVER)
    compacted, import_compacting = imported(base, tail_file, "compacted", None)
    db = sqlite_utils.Database(with_tail)
    tails = order.tail_sizes(db)
    counts = [db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("studies", "sentences")]
    db.close()
    alone_copy = with_tail.with_name("renumbered.db")
    shutil.copyfile(with_tail, alone_copy)
    db = sqlite_utils.Database(alone_copy)
    db.execute("PRAGMA synchronous = OFF")  # as imports write
    alone = order.renumber(db)["seconds"]
    db.close()
    claims_tail, search_tail = query_times(with_tail, repeat)
    claims_sorted, search_sorted = query_times(compacted, repeat)
    return {
        "studies": f"{counts[0]:,}", "sentences": f"{counts[1]:,}",
        "tail (studies / sentences)": f"{tails['studies']:,} / {tails['sentences']:,}",
        "full renumbering, random order (s)": "-" if full is None else f"{full:.2f}",
        "import, renumbering held off (s)": f"{import_plain:.2f}",
        "import as kb import runs it (s)": f"{import_compacting:.2f}",
        "renumber alone, tail sorted in (s)": f"{alone:.2f}",
        "claim check with tail / sorted (ms)": f"{claims_tail:.0f} / {claims_sorted:.0f}",
        "search query with tail / sorted (ms)": f"{search_tail:.1f} / {search_sorted:.1f}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="corpus,10000,40000")
    parser.add_argument("--tail", type=int, default=300, help="PubMed articles imported as the tail")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kb-order"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s != "corpus" and not s.isdigit()]
    if bad:
        parser.error(f"--sizes: {bad[0]!r} is neither 'corpus' nor a number of studies")
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        for size in sizes:
            print(f"{size}...", file=sys.stderr)
            results[size] = measure(size, args.work, args.corpus, args.tail, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    rows = list(next(iter(results.values())))
    width = max(map(len, rows))
    print(f"{'':{width}}  " + "  ".join(f"{s:>14}" for s in sizes))
    for row in rows:
        print(f"{row:{width}}  " + "  ".join(f"{results[s][row]:>14}" for s in sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
