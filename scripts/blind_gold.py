"""Assemble the blind test set from the annotators' files, and measure their agreement.

Usage: python scripts/blind_gold.py ANNOTATIONS_DIR

ANNOTATIONS_DIR holds out_<annotator>.jsonl files written from tests/gold/blind/GUIDE.md and the
batches of scripts/blind_batches.py (out_se.jsonl: side effects only, from GUIDE_SE.md). Writes,
under tests/gold/blind/: annotator_<name>.jsonl (labels only) and tags_blind.jsonl, the gold:
a record annotated by three or more annotators by majority (a label kept when most give it, a
value when most agree), by two by agreement (where they differ, the annotator first in name
order), by one as given; side_effects_blind.jsonl likewise from the side-effect annotation.
Prints the pairwise agreement on the records two annotators share, and writes it to
tests/gold/blind/AGREEMENT.md.
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


def adjudicate(items: list[dict], keys: tuple[str, ...] = KEYS) -> dict:
    """One gold record from every annotation of it (see the module docstring)."""
    if len(items) == 1:
        return {k: items[0][k] for k in keys}
    need = len(items) // 2 + 1 if len(items) >= 3 else 2
    gold = {"pmid": items[0]["pmid"]}
    for k in keys:
        if k == "pmid":
            continue
        if k in LISTS:
            counts = Counter(label for i in items for label in set(i[k]))
            agreed = sorted(label for label, n in counts.items() if n >= need)
            gold[k] = agreed if len(items) >= 3 or set(items[0][k]) == set(items[1][k]) else sorted(set(items[0][k]))
        else:
            value, n = Counter(json.dumps(i[k]) for i in items).most_common(1)[0]
            gold[k] = json.loads(value) if n >= need else items[0][k]
    return {k: gold[k] for k in keys}


def set_f1(a: set, b: set) -> float | None:
    if not a and not b:
        return None  # both empty: agreement, but no labels to weigh
    return 2 * len(a & b) / (len(a) + len(b))


def agreement(done: dict[str, list[dict]], lists: tuple[str, ...] = LISTS,
              values: tuple[str, ...] = VALUES) -> tuple[list[str], int]:
    """Pairwise agreement per kind over the records two annotators share: exact-match share, label F1."""
    by_pmid = {name: {i["pmid"]: i for i in items} for name, items in done.items()}
    pairs = []
    for a, b in itertools.combinations(sorted(done), 2):
        pairs += [(by_pmid[a][p], by_pmid[b][p]) for p in sorted(set(by_pmid[a]) & set(by_pmid[b]))]
    lines = ["| kind | exact agreement | mean pairwise label F1 |", "|---|---|---|"]
    for k in (*lists, *values):
        exact = [(set(x[k]) == set(y[k])) if k in lists else (x[k] == y[k]) for x, y in pairs]
        f1s = [f for f in (set_f1(set(x[k]), set(y[k])) for x, y in pairs) if f is not None] if k in lists else []
        share = f"{sum(exact) / len(exact):.2f}" if exact else "-"
        lines.append(f"| {k} | {share} | {sum(f1s) / len(f1s):.2f} |" if f1s else f"| {k} | {share} | - |")
    return lines, len(pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", type=Path)
    args = parser.parse_args()
    files = sorted(p for p in args.annotations.glob("out_*.jsonl") if p.stem != "out_se")
    done = {p.stem.removeprefix("out_"): [clean(i) for i in read(p)] for p in files}
    if not done:
        raise SystemExit(f"{args.annotations}: no out_*.jsonl")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, items in done.items():
        (OUT / f"annotator_{name}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    gathered: dict[str, list[dict]] = {}
    for name in sorted(done):
        for item in done[name]:
            gathered.setdefault(item["pmid"], []).append(item)
    gold = [adjudicate(items) for items in gathered.values()]
    (OUT / "tags_blind.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold), encoding="utf-8")
    lines, pairs = agreement(done)
    multi = sum(len(v) >= 2 for v in gathered.values())
    report = ["# Blind test set: inter-annotator agreement", "",
              f"{len(done)} annotators; {len(gold)} records in the gold, {multi} of them annotated by two or more "
              f"({pairs} annotator pairs over shared records). Written by `python scripts/blind_gold.py`.", "",
              *lines, ""]
    se_path = args.annotations / "out_se.jsonl"
    if se_path.exists():
        se_keys = ("pmid", "side_effect", "side_effect_absent")
        se = [{k: (i[k] if k == "pmid" else sorted(set(i[k] or []))) for k in se_keys}
              for i in (json.loads(line) for line in se_path.read_text(encoding="utf-8").splitlines() if line.strip())]
        for item in se:
            item["pmid"] = str(item["pmid"])
        (OUT / "side_effects_blind.jsonl").write_text("".join(json.dumps(i) + "\n" for i in se), encoding="utf-8")
        absent = sum(bool(i["side_effect_absent"]) for i in se)
        report += [f"Side effects (one annotator, {len(se)} further records, {absent} with an effect reported "
                   "absent): side_effects_blind.jsonl.", ""]
    (OUT / "AGREEMENT.md").write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
