#!/usr/bin/env python3
"""`kb embed` throughput: sentences/s per configuration and the projected time for 400,000 sentences.

Usage: python scripts/bench_embed.py [--sentences 800] [--configs all] [--target 400000]
                                     [--corpus ../shared/corpus] [--work /tmp/kb-embed-bench] [--keep]

Builds kb.db from the shared corpus (as `kb build --from-dir` does) and keeps the sentences of
studies drawn at random until about --sentences remain: real sentences, so their lengths, titles
and section kinds are those `kb embed` meets. Then it runs `kb embed` on it once per
configuration, each in a fresh process and from an empty side database:

- ``1 process``: one worker, one model thread (OMP_NUM_THREADS=1), every section kind;
- ``1 process x 2 threads``: one worker, the engine's own two OpenMP threads;
- ``2 processes``: two workers of one thread each (``--workers 2``);
- ``2 processes title+conclusions``: the same with ``--kinds title,conclusions``.

For each it prints the sentences embedded, the wall time, sentences/s, the CPU seconds per
sentence (the figure that holds on a machine shared with other work) and the projected time for
--target sentences shaped like these (a --kinds run embeds only its share of them): from the
wall time as measured, and from the CPU time on as many idle cores as the configuration keeps
busy. The load average before and after says how busy the machine was. Needs the semantic extra.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.db import build as builder  # noqa: E402

KB = str(Path(sys.executable).with_name("kb"))
# name -> (kb embed arguments, extra environment, cores it can keep busy)
CONFIGS = {
    "1 process": (["--workers", "1"], {"OMP_NUM_THREADS": "1"}, 1),
    "1 process x 2 threads": (["--workers", "1"], {"OMP_NUM_THREADS": "2"}, 2),
    "2 processes": (["--workers", "2"], {"OMP_NUM_THREADS": "1"}, 2),
    "2 processes title+conclusions": (["--workers", "2", "--kinds", "title,conclusions"], {"OMP_NUM_THREADS": "1"}, 2),
}


def sample_kb(work: Path, sentences: int, corpus: Path, seed: int = 4) -> Path:
    """kb.db of the shared corpus, thinned to the sentences of random studies until about ``sentences`` remain."""
    db = work / "kb.db"
    db.unlink(missing_ok=True)
    builder.build(db, builder.collect_dir(corpus / "pubmed"), "files", "from-dir")
    conn = sqlite3.connect(db)
    try:
        counts = conn.execute("select study_id, count(*) from sentences group by study_id order by study_id").fetchall()
        random.Random(seed).shuffle(counts)
        kept, total = [], 0
        for study_id, count in counts:
            if total >= sentences:
                break
            kept.append(study_id)
            total += count
        conn.execute("create temp table kept (study_id text primary key)")
        conn.executemany("insert into kept values (?)", [(k,) for k in kept])
        with conn:  # the FTS index follows through kb.db's triggers
            conn.execute("delete from sentences where study_id not in (select study_id from temp.kept)")
    finally:
        conn.close()
    if total < sentences:
        print(f"the corpus has only {total:,} sentences", file=sys.stderr)
    return db


def kind_shares(db: Path) -> dict[str, float]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("select coalesce(section_kind, 'abstract'), count(*) from sentences group by 1").fetchall()
    finally:
        conn.close()
    total = sum(n for _, n in rows) or 1
    return {kind: n / total for kind, n in rows}


def run_config(db: Path, arguments: list[str], env: dict[str, str]) -> dict[str, float]:
    """`kb embed` from an empty side database: wall seconds, CPU seconds (its workers too), sentences embedded."""
    side = db.with_name(f"{db.stem}-vectors.db")
    side.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([KB, "embed", "--db", str(db), "--no-progress", *arguments], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"kb embed {' '.join(arguments)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    embedded = int(re.search(r"\((\d+) embedded", done.stderr).group(1))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "embedded": embedded}


def share_of(arguments: list[str], shares: dict[str, float]) -> float:
    if "--kinds" not in arguments:
        return 1.0
    kinds = arguments[arguments.index("--kinds") + 1].split(",")
    return sum(shares.get(kind, 0.0) for kind in kinds)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=800, help="about this many sentences in the corpus")
    parser.add_argument("--configs", default="all", help="comma-separated configuration names, or all: "
                        + "; ".join(CONFIGS))
    parser.add_argument("--target", type=int, default=400_000, help="sentences to project the time for")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kb-embed-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the corpus and databases under --work")
    args = parser.parse_args()
    names = list(CONFIGS) if args.configs == "all" else [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configurations: {', '.join(unknown)}")
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"building kb.db, keeping about {args.sentences:,} sentences...", file=sys.stderr, flush=True)
        db = sample_kb(args.work, args.sentences, args.corpus)
        shares = kind_shares(db)
        print("section kinds: " + ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda x: -x[1])))
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"{'configuration':<32} {'embedded':>8} {'wall s':>7} {'sent/s':>7} {'CPU s/sent':>10} "
              f"{format(args.target, ',') + ' (wall)':>16} {'(idle cores)':>12}")
        for name in names:
            arguments, env, cores = CONFIGS[name]
            result = run_config(db, arguments, env)
            rate, per_sentence = result["embedded"] / result["wall"], result["cpu"] / result["embedded"]
            wanted = args.target * share_of(arguments, shares)
            print(f"{name:<32} {result['embedded']:>8,} {result['wall']:>7.1f} {rate:>7.1f} {per_sentence:>10.3f} "
                  f"{hours(wanted / rate):>16} {hours(wanted * per_sentence / cores):>12}", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
