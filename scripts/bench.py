#!/usr/bin/env python3
"""Performance figures for ketamine-kb, printed, never asserted.

Usage: python scripts/bench.py [--corpus ../shared/corpus] [--synthetic 1000000] [--skip-synthetic]

1. Full rebuild of the shared corpus with `kb build --from-dir` (target < 30 s).
2. Parse throughput, records/s: ingest.sources.pubmed.parse_pubmed_xml against a straightforward
   xml.etree.ElementTree parse of the same file (a synthetic PubmedArticleSet made of the
   corpus's real efetch articles with new PMIDs), both extracting the same basic fields.
3. FTS latency (the `search` canned query of metadata.yml, as Datasette runs it) and claim-check
   latency (FTS mode), p50/p95,
   on the shared corpus and on a synthetic corpus of --synthetic studies (target p95 < 250 ms),
   generated once into bench-output/ from the real titles and sentences.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import yaml  # noqa: E402
from datasette.utils import escape_fts  # noqa: E402
from synthetic import build_synthetic, xml_corpus  # noqa: E402

from ingest.db.schema import refresh_term_docs  # noqa: E402
from ingest.sources.pubmed import parse_pubmed_xml  # noqa: E402

FTS_TERMS = [
    "dissociation", "esketamine nasal spray", "suicidal ideation", "cystitis", "bdnf", "mtor", "remission",
    "treatment resistant depression", "hydroxynorketamine", "electroconvulsive", "postpartum", "infusion",
    "placebo", "anxiety", "ptsd", "chronic pain", "glutamate", "relapse", "adolescents", "blood pressure",
    "meta analysis", "oral ketamine", "abuse", "midazolam", "anhedonia", "sleep", "inflammation", "opioid",
    "bipolar", "cognition",
]
CLAIMS = [
    "ketamine's effects last up to four hours", "ketamine relief can be permanent",
    "ketamine must be given intravenously", "ketamine increases serotonin", "esketamine causes dissociation",
    "ketamine damages the bladder", "ketamine reduces suicidal thoughts within a day",
    "arketamine works without dissociation", "ketamine is addictive", "ketamine helps chronic pain",
    "oral ketamine is effective for depression", "ketamine raises blood pressure",
    "ketamine works through BDNF", "ketamine is better than ECT", "esketamine nasal spray prevents relapse",
]
# The `search` canned query exactly as Datasette runs it (200 rows, with designs and snippets).
RANKED_SEARCH = yaml.safe_load((ROOT / "metadata.yml").read_text())["databases"]["kb"]["queries"]["search"]["sql"]


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   (n={len(ordered)})"


def bench_rebuild(corpus: Path, repeat: int) -> None:
    kb = Path(sys.executable).with_name("kb")
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(kb), "build", "--from-dir", str(corpus), "--db", str(Path(tmp) / "kb.db"), "--no-progress"]
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    print(f"1. full rebuild of {corpus} (kb build --from-dir): min {min(times):.2f} s, "
          f"median {statistics.median(times):.2f} s over {repeat} runs (target < 30 s)")


def straightforward_parse(data: bytes) -> list[dict]:
    """What a first attempt looks like: ElementTree, findtext, itertext."""
    out = []
    for article in ET.fromstring(data).iter("PubmedArticle"):
        citation = article.find("MedlineCitation")
        art = citation.find("Article")
        out.append({
            "pmid": citation.findtext("PMID"),
            "title": "".join(art.find("ArticleTitle").itertext()),
            "abstract": " ".join("".join(t.itertext()) for t in art.findall("Abstract/AbstractText")),
            "journal": art.findtext("Journal/Title"),
            "year": art.findtext("Journal/JournalIssue/PubDate/Year"),
            "authors": [a.findtext("LastName") for a in art.findall("AuthorList/Author")],
            "mesh": [m.findtext("DescriptorName") for m in citation.findall("MeshHeadingList/MeshHeading")],
        })
    return out


def bench_parse(corpus: Path, records: int, repeat: int) -> None:
    data = xml_corpus(corpus, records)
    ours, plain = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        parsed = parse_pubmed_xml(data)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        simple = straightforward_parse(data)
        plain.append(time.perf_counter() - started)
    assert len(parsed.records) == len(simple) == records
    print(f"2. parse {records:,} efetch records ({len(data) / 1e6:.0f} MB): "
          f"ingest.sources.pubmed {records / min(ours):,.0f} records/s (all fields, markup-safe); "
          f"straightforward ElementTree {records / min(plain):,.0f} records/s (7 fields)")


def upgrade_synthetic(path: Path) -> None:
    """A synthetic kb.db cached by an older version lacks the tables a build now writes."""
    import sqlite_utils

    db = sqlite_utils.Database(path)
    if "sentences_term_docs" not in db.table_names():
        print("   adding sentences_term_docs to the cached synthetic corpus ...", file=sys.stderr)
        refresh_term_docs(db)
    db.close()


def bench_queries(label: str, db_path: Path, repeat: int) -> None:
    """p50/p95 of the search canned query and of claim checks, after one untimed warm-up pass.

    The warm-up pass (reported apart) reads the pages the queries need into the page cache, as a
    serving replica has them after its first requests; the timed passes are that steady state.
    """
    from ingest.claims import check_claim

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.create_function("escape_fts", 1, escape_fts)  # as Datasette registers it
    studies = conn.execute("select count(*) from studies").fetchone()[0]

    def search(term: str) -> None:
        conn.execute(RANKED_SEARCH, {"q": term}).fetchall()

    def claim(text: str) -> None:
        check_claim(conn, text, limit=10)

    print(f"3. {label} ({studies:,} studies)")
    for name, run, inputs in (("ranked FTS search", search, FTS_TERMS), ("claim check (FTS)", claim, CLAIMS)):
        cold = [timed(run, x) for x in inputs]
        warm = [timed(run, x) for _ in range(repeat) for x in inputs]
        print(f"   {name + ':':19s} {percentiles(warm)}   first pass (cold cache): p95 "
              f"{sorted(cold)[min(len(cold) - 1, int(round(0.95 * (len(cold) - 1))))] * 1000:.1f} ms")


def timed(run, argument) -> float:
    started = time.perf_counter()
    run(argument)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--synthetic", type=int, default=1_000_000, help="studies in the synthetic corpus")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--parse-records", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    random.seed(1)
    bench_rebuild(args.corpus, args.repeat)
    bench_parse(args.corpus, args.parse_records, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "kb.db"
        subprocess.run([str(Path(sys.executable).with_name("kb")), "build", "--from-dir", str(args.corpus),
                        "--db", str(db), "--no-progress"], check=True, capture_output=True)
        bench_queries("shared corpus", db, args.repeat)
    if not args.skip_synthetic:
        out = ROOT / "bench-output"
        out.mkdir(exist_ok=True)
        synthetic = out / f"synthetic-{args.synthetic}.db"
        if not synthetic.exists():
            started = time.perf_counter()
            print(f"   generating {synthetic} ...", file=sys.stderr)
            build_synthetic(synthetic, args.synthetic, args.corpus)
            print(f"   generated in {time.perf_counter() - started:.0f} s, "
                  f"{synthetic.stat().st_size / 1e9:.1f} GB", file=sys.stderr)
        upgrade_synthetic(synthetic)
        bench_queries(f"synthetic corpus {synthetic.name}", synthetic, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
