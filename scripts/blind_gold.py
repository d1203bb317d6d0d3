"""Assemble the blind test set from the annotators' files, and measure their agreement.

Usage: python scripts/blind_gold.py ANNOTATIONS_DIR

ANNOTATIONS_DIR holds out_a.jsonl, out_b.jsonl, out_c.jsonl (one per annotator, written from
tests/gold/blind/GUIDE.md and the batches of scripts/blind_batches.py). Writes, under
tests/gold/blind/: annotator_{a,b,c}.jsonl (labels only) and tags_blind.jsonl, the gold: the
shared records by majority vote (a label kept when two of three give it; a value kept when two
of three agree, else annotator a's), the rest as their one annotator gave them. Prints the
agreement on the shared records, and writes it to tests/gold/blind/AGREEMENT.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "gold" / "blind"
sys.path.insert(0, str(ROOT / "scripts"))

from blind_batches import SHARED  # noqa: E402

LISTS = ("design", "indication", "drug", "route", "mechanism", "side_effect", "side_effect_absent")
VALUES = ("on_topic", "parent_design", "evidence_level", "sample_size", "sample_size_stated", "studies_included",
          "participants_pooled")
KEYS = ("pmid", *VALUES[:1], *LISTS, *VALUES[1:])


def read(path: Path) -> list[dict]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for item in items:
        item["pmid"] = str(item["pmid"])
        missing = [k for k in KEYS if k not in item]
        if missing:
            raise SystemExit(f"{path}: pmid {item['pmid']} lacks {missing}")
    return items


def clean(item: dict) -> dict:
    """Labels only, in a fixed key order (the annotator's notes are kept: their words, not the abstract's)."""
    out = {k: item[k] for k in KEYS}
    for k in LISTS:
        out[k] = sorted(set(out[k] or []))
    if item.get("notes"):
        out["notes"] = str(item["notes"])[:300]
    return out


def majority(items: list[dict]) -> dict:
    gold = {"pmid": items[0]["pmid"]}
    for k in VALUES:
        counts = Counter(json.dumps(i[k]) for i in items)
        value, n = counts.most_common(1)[0]
        gold[k] = json.loads(value) if n >= 2 else items[0][k]
    for k in LISTS:
        counts = Counter(label for i in items for label in set(i[k]))
        gold[k] = sorted(label for label, n in counts.items() if n >= 2)
    return {k: gold[k] for k in KEYS}


def set_f1(a: set, b: set) -> float | None:
    if not a and not b:
        return None  # both empty: agreement, but no labels to weigh
    return 2 * len(a & b) / (len(a) + len(b))


def agreement(shared: dict[str, list[dict]]) -> list[str]:
    """Pairwise agreement per kind: exact-match share, and label F1 (for lists)."""
    lines = ["| kind | exact agreement (pairs) | mean pairwise label F1 |", "|---|---|---|"]
    names = sorted(shared)
    for k in (*LISTS, *VALUES):
        exact, f1s = [], []
        for a, b in itertools.combinations(names, 2):
            for x, y in zip(shared[a], shared[b], strict=True):
                if k in LISTS:
                    exact.append(set(x[k]) == set(y[k]))
                    f1 = set_f1(set(x[k]), set(y[k]))
                    if f1 is not None:
                        f1s.append(f1)
                else:
                    exact.append(x[k] == y[k])
        f1_text = f"{sum(f1s) / len(f1s):.2f}" if f1s else "-"
        lines.append(f"| {k} | {sum(exact) / len(exact):.2f} ({len(exact)}) | {f1_text if k in LISTS else '-'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", type=Path)
    args = parser.parse_args()
    files = {name: args.annotations / f"out_{name}.jsonl" for name in ("a", "b", "c")}
    done = {name: [clean(i) for i in read(path)] for name, path in files.items() if path.exists()}
    if not done:
        raise SystemExit(f"{args.annotations}: no out_*.jsonl")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, items in done.items():
        (OUT / f"annotator_{name}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    shared = {name: items[:SHARED] for name, items in done.items() if len(items) >= SHARED}
    gold: dict[str, dict] = {}
    if len(shared) >= 2:
        pmids = [i["pmid"] for i in next(iter(shared.values()))]
        for position, pmid in enumerate(pmids):
            votes = [items[position] for items in shared.values()]
            if any(v["pmid"] != pmid for v in votes):
                raise SystemExit(f"shared record {position}: annotators disagree on the PMID")
            gold[pmid] = majority(votes) if len(votes) >= 3 else {k: votes[0][k] for k in KEYS}
    for items in done.values():
        for item in items[SHARED:]:
            gold.setdefault(item["pmid"], {k: item[k] for k in KEYS})
    (OUT / "tags_blind.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold.values()), encoding="utf-8")
    lines = agreement(shared) if len(shared) >= 2 else ["(fewer than two annotators finished the shared records)"]
    report = ["# Blind test set: inter-annotator agreement", "",
              f"{len(shared)} annotators on the {SHARED} shared records (pairs: every two annotators, every record); "
              f"{len(gold)} records in the gold. Written by `python scripts/blind_gold.py`.", "", *lines, ""]
    (OUT / "AGREEMENT.md").write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
