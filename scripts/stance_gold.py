#!/usr/bin/env python3
"""Assemble the stance gold set from the annotators' files, and measure their agreement.

Usage: python scripts/stance_gold.py ANNOTATIONS_DIR [--corpus ../shared/corpus]

ANNOTATIONS_DIR holds out_<annotator>.jsonl written from tests/gold/stance/GUIDE.md and the
batches of scripts/stance_batches.py. The decisive sentence is stored as its number in the study's
sentences (ingest.tagging.sentences; the title is 0), never as text. An annotator already in
tests/gold/stance/annotator_<name>.jsonl with no out_<name>.jsonl in ANNOTATIONS_DIR is kept as
stored (a later round of claims adds annotators beside the earlier ones). Writes, under
tests/gold/stance/: annotator_<name>.jsonl, stance_gold.jsonl (one line per (claim, study) pair;
on shared claims the first annotator in name order decides where they differ), verdicts.jsonl and
AGREEMENT.md (agreement on the shared claims).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.db.collect import collect_dir  # noqa: E402
from ingest.tagging.sentences import record_sentences  # noqa: E402

OUT = ROOT / "tests" / "gold" / "stance"
# Round 1 (c01-c44): c01-c11 and c23-c33 tuned on. Round 2 (c45-c74, written later by another writer):
# every other pair of ids, so both splits hold lay and technical claims on every topic.
DEV_CLAIMS = {f"c{i:02d}" for i in (*range(1, 12), *range(23, 34))} | \
    {f"c{i}" for i in range(45, 75) if (i - 45) % 4 < 2}


def split_of(claim_id: str) -> str:
    return "dev" if claim_id in DEV_CLAIMS else "test"


def sentence_number(record: dict, text: str | None) -> int | None:
    """The index of the annotator's sentence among the study's sentences (best overlap)."""
    if not text:
        return None
    wanted = " ".join(text.split()).lower()
    best, best_score = None, 0.0
    for sentence in record_sentences(record):
        have = " ".join(sentence.text.split()).lower()
        if have == wanted:
            return sentence.index
        overlap = len(set(have.split()) & set(wanted.split())) / max(1, len(set(wanted.split())))
        if overlap > best_score:
            best, best_score = sentence.index, overlap
    return best if best_score >= 0.6 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    args = parser.parse_args()
    records = collect_dir(args.corpus / "pubmed").records
    pairs: dict[str, dict[tuple[str, str], dict]] = {}
    verdicts: dict[str, dict[str, dict]] = {}
    fresh = {path.stem.split("_", 1)[1] for path in args.folder.glob("out_*.jsonl")}
    for path in sorted(OUT.glob("annotator_*.jsonl")):
        name = path.stem.split("_", 1)[1]
        if name in fresh:
            continue
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        pairs[name] = {(r["claim_id"], str(r["pmid"])): r for r in rows if "verdict" not in r}
        verdicts[name] = {r["claim_id"]: r for r in rows if "verdict" in r}
    for path in sorted(args.folder.glob("out_*.jsonl")):
        name = path.stem.split("_", 1)[1]
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        mine, said = {}, {}
        for row in rows:
            if "verdict" in row:
                said[row["claim_id"]] = {"claim_id": row["claim_id"], "verdict": row["verdict"]}
                continue
            pmid = str(row["pmid"])
            mine[(row["claim_id"], pmid)] = {"claim_id": row["claim_id"], "pmid": pmid, "stance": row["stance"],
                                             "sentence": sentence_number(records[pmid], row.get("sentence"))}
        pairs[name], verdicts[name] = mine, said
        with (OUT / f"annotator_{name}.jsonl").open("w", encoding="utf-8") as handle:
            for item in [*mine.values(), *said.values()]:
                handle.write(json.dumps(item) + "\n")
    names = sorted(pairs)
    gold: dict[tuple[str, str], dict] = {}
    gold_verdicts: dict[str, dict] = {}
    for name in reversed(names):  # the first annotator in name order is written last, so decides
        gold.update(pairs[name])
        gold_verdicts.update(verdicts[name])
    with (OUT / "stance_gold.jsonl").open("w", encoding="utf-8") as handle:
        for key in sorted(gold):
            handle.write(json.dumps({**gold[key], "split": split_of(key[0])}) + "\n")
    with (OUT / "verdicts.jsonl").open("w", encoding="utf-8") as handle:
        for claim_id in sorted(gold_verdicts):
            handle.write(json.dumps({**gold_verdicts[claim_id], "split": split_of(claim_id)}) + "\n")
    lines = ["# Stance gold: agreement on the shared claims", ""]
    for a, b in zip(names, names[1:], strict=False):
        shared = sorted(pairs[a].keys() & pairs[b].keys())
        if not shared:
            continue  # annotators of different rounds share no claims
        same = sum(pairs[a][k]["stance"] == pairs[b][k]["stance"] for k in shared)
        both = sorted(verdicts[a].keys() & verdicts[b].keys())
        same_verdicts = sum(verdicts[a][c]["verdict"] == verdicts[b][c]["verdict"] for c in both)
        kappa = _kappa([pairs[a][k]["stance"] for k in shared], [pairs[b][k]["stance"] for k in shared])
        lines += [f"- {a} vs {b}: stance {same}/{len(shared)} pairs agree ({same / max(1, len(shared)):.2f}, "
                  f"Cohen's kappa {kappa:.2f}); verdicts {same_verdicts}/{len(both)} claims agree."]
    counts = Counter(item["stance"] for item in gold.values())
    lines += ["", f"Gold: {len(gold)} pairs on {len({k[0] for k in gold})} claims; stances {dict(counts)}; "
              f"verdicts {dict(Counter(v['verdict'] for v in gold_verdicts.values()))}."]
    (OUT / "AGREEMENT.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _kappa(a: list[str], b: list[str]) -> float:
    if not a:
        return 0.0
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (len(a) ** 2)
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


if __name__ == "__main__":
    main()
