#!/usr/bin/env python3
"""Build-time figures: a full rebuild of the shared corpus, with and without tagging.

Usage: python scripts/bench_build.py [--corpus ../shared/corpus] [--repeat 5]

Prints, for the PubMed part of the corpus and for the whole corpus (three sources):
- the in-process build time (parse + merge + write + derive), min and median of --repeat runs,
  without derived data (no tags, no sentence index) and with it;
- the wall time of the `kb build --from-dir` command (Python start-up and imports included);
- tagging throughput (records/s) of the tagger alone.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import build as builder  # noqa: E402
from ingest.tagger import load_vocabulary, tag_record  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def fmt(times: list[float]) -> str:
    return f"min {min(times):.3f} s, median {statistics.median(times):.3f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    kb = Path(sys.executable).with_name("kb")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "kb.db"
        for label, folder in (("pubmed", args.corpus / "pubmed"), ("whole corpus", args.corpus)):
            collected = builder.collect_dir(folder)
            print(f"== {label}: {folder} ({len(collected.records)} studies, {len(collected.trials)} trials)")
            plain = timed(lambda f=folder: builder.build(target, builder.collect_dir(f), "x", "bench",
                                                         derivers=[]), args.repeat)
            full = timed(lambda f=folder: builder.build(target, builder.collect_dir(f), "x", "bench"), args.repeat)
            print(f"in-process build without tags/sentences: {fmt(plain)}")
            print(f"in-process build with tags/sentences:    {fmt(full)}  "
                  f"(+{(min(full) / min(plain) - 1) * 100:.0f}% on the minimum)")
            command = [str(kb), "build", "--from-dir", str(folder), "--db", str(target), "--no-progress"]
            wall = timed(lambda c=command: subprocess.run(c, check=True, capture_output=True), args.repeat)
            print(f"`kb build --from-dir` wall time:         {fmt(wall)}")
            vocab = load_vocabulary()
            records = list(collected.records.values())
            tagging = timed(lambda r=records, v=vocab: [tag_record(x, v) for x in r], args.repeat)
            print(f"tagger alone: {fmt(tagging)} = {len(records) / min(tagging):,.0f} records/s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
