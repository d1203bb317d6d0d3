#!/usr/bin/env python3
"""Build-time figures: what tagging adds to a full rebuild of the shared corpus.

Usage: python scripts/bench_build.py [--corpus ../shared/corpus] [--repeat 7]

For the whole corpus (PubMed + ClinicalTrials.gov files) and for its PubMed part, prints the
minimum and median of --repeat runs, the runs with and without tagging alternating:
- `kb build --from-dir` wall time and CPU time (user + sys, worker processes included): the
  build time a user sees, Python start-up and imports included. "Without tagging" is the same
  command with the derivers switched off (no tags, no sentence index, trials untagged); "tags
  only" leaves out the sentence index (the claim checker's), to show what each part costs;
- the in-process build (parse + merge + write + index), which leaves out start-up and imports;
- the tagger alone on the studies, one process: records/s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.db import build as builder  # noqa: E402
from ingest.tagging import load_vocabulary, tag_record  # noqa: E402

# The `kb` command, with or without the derivers (tagging and the sentence index).
CLI = ("import sys\nfrom ingest.db import build\n{switch}from ingest.cli import cli\n"
       "sys.argv[0] = 'kb'\ncli()\n")
SWITCHES = {
    "without tagging": "build.default_derivers = lambda: []\n",
    "tags only": ("from ingest.db.tags import Tagging\n"
                  "build.default_derivers = lambda: [Tagging(sentences=False)]\n"),
    "with tagging": "",
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(folder: Path, target: Path, mode: str) -> tuple[float, float]:
    """(wall s, CPU s) of one `kb build --from-dir` run."""
    code = CLI.format(switch=SWITCHES[mode])
    command = [sys.executable, "-c", code, "build", "--from-dir", str(folder), "--db", str(target), "--no-progress"]
    cpu = children_cpu()
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started, children_cpu() - cpu


def run_in_process(folder: Path, target: Path, mode: str) -> float:
    from ingest.db.tags import Tagging

    derivers = {"without tagging": [], "tags only": [Tagging(sentences=False)], "with tagging": None}[mode]
    started = time.perf_counter()
    builder.build_from_dir(target, folder, derivers=derivers)
    return time.perf_counter() - started


def summary(times: list[float]) -> str:
    return f"min {min(times):.3f} s, median {statistics.median(times):.3f} s"


def added(with_tags: list[float], without: list[float]) -> str:
    return (f"+{(min(with_tags) / min(without) - 1) * 100:.0f}% on the minimum, "
            f"+{(statistics.median(with_tags) / statistics.median(without) - 1) * 100:.0f}% on the median")


def bench(label: str, folder: Path, target: Path, repeat: int) -> None:
    collected = builder.collect_dir(folder)
    print(f"== {label}: {folder} ({len(collected.records)} studies, {len(collected.trials)} trials)")
    modes = tuple(SWITCHES)
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    inproc: dict[str, list[float]] = {m: [] for m in modes}
    run_cli(folder, target, "with tagging")  # warm the page cache
    run_in_process(folder, target, "with tagging")
    for _ in range(repeat):
        for mode in modes:
            seconds, cpu_seconds = run_cli(folder, target, mode)
            wall[mode].append(seconds)
            cpu[mode].append(cpu_seconds)
            inproc[mode].append(run_in_process(folder, target, mode))
    base = "without tagging"
    for mode in modes:
        extra = "" if mode == base else f"  ({added(wall[mode], wall[base])})"
        print(f"`kb build` wall, {mode + ':':17s} {summary(wall[mode])}{extra}")
    print("`kb build` CPU (medians):         "
          + ", ".join(f"{mode} {statistics.median(cpu[mode]):.3f} s" for mode in modes))
    for mode in modes:
        extra = "" if mode == base else f"  ({added(inproc[mode], inproc[base])})"
        print(f"in-process, {mode + ':':22s} {summary(inproc[mode])}{extra}")
    vocab = load_vocabulary()
    records = list(collected.records.values())
    tagger = []
    for _ in range(repeat):
        started = time.perf_counter()
        for record in records:
            tag_record(record, vocab)
        tagger.append(time.perf_counter() - started)
    print(f"tagger alone, one process: {summary(tagger)} = {len(records) / min(tagger):,.0f} studies/s\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "kb.db"
        bench("whole corpus", args.corpus, target, args.repeat)
        bench("PubMed part", args.corpus / "pubmed", target, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
