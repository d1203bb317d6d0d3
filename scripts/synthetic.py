"""Synthetic kb.db corpora for benchmarks, shaped like the real records.

Studies are assembled from the shared corpus's own titles and abstract sentences (shuffled,
recombined, with fresh ids, years and tags drawn from the real distributions), so FTS and
claim-check costs scale as they would on real text. Nothing here is used by the product.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.db import build as builder  # noqa: E402
from ingest.db.schema import create_fts, create_schema, refresh_term_docs  # noqa: E402
from ingest.db.tags import Tagging  # noqa: E402
from ingest.tagging.sentences import record_sentences  # noqa: E402


def real_material(corpus: Path) -> dict:
    """Titles, sentences by section kind, and tag columns from the real corpus."""
    collected = builder.collect_dir(corpus / "pubmed")
    tagging = Tagging()
    titles, sentences, tag_rows = [], {}, []
    for study_id, record in collected.records.items():
        titles.append(record["title"])
        for s in record_sentences(record):
            if s.section_kind != "title":
                sentences.setdefault(s.section_kind, []).append((s.section, s.text))
        columns, _ = tagging.derive(study_id, record)
        tag_rows.append(columns)
    return {"titles": titles, "sentences": sentences, "tags": tag_rows}


def xml_corpus(corpus: Path, records: int) -> bytes:
    """A PubmedArticleSet of ``records`` articles: the real efetch articles repeated with new PMIDs."""
    import re

    articles = []
    for path in sorted((corpus / "pubmed").rglob("*.xml")):
        articles += re.findall(rb"<PubmedArticle>.*?</PubmedArticle>", path.read_bytes(), re.S)
    out = [b'<?xml version="1.0"?>\n<PubmedArticleSet>\n']
    for i in range(records):
        article = re.sub(rb'(<PMID Version="\d+">)\d+(</PMID>)', rb"\g<1>%d\g<2>" % (50_000_000 + i),
                         articles[i % len(articles)], count=1)
        out.append(article + b"\n")
    out.append(b"</PubmedArticleSet>\n")
    return b"".join(out)


def build_synthetic(path: Path, studies: int, corpus: Path, seed: int = 7, sentences_per_study: int = 6) -> Path:
    """Write a synthetic kb.db with ``studies`` studies (and their sentence index) to ``path``."""
    rng = random.Random(seed)
    material = real_material(corpus)
    kinds = [k for k in ("background", "methods", "results", "conclusions") if material["sentences"].get(k)]
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    import sqlite_utils

    db = sqlite_utils.Database(tmp)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    create_schema(db, fts=False)
    conn: sqlite3.Connection = db.conn
    started = time.perf_counter()
    batch_studies, batch_sentences = [], []
    for n in range(studies):
        study_id = str(60_000_000 + n)
        title = rng.choice(material["titles"])
        parts = [(k, *rng.choice(material["sentences"][k])) for k in rng.sample(kinds * 2, sentences_per_study)]
        abstract = " ".join(text for _, _, text in parts)
        tags = rng.choice(material["tags"])
        year = rng.randint(1995, 2026)
        batch_studies.append((study_id, int(study_id), title, abstract, year, tags["designs"], tags["drugs"],
                              tags["routes"], tags["indications"], tags["side_effects"], tags["mechanisms"],
                              tags["sample_size"], 0, json.dumps(["synthetic"])))
        context = f"{title} | {year}"
        batch_sentences.append((study_id, 0, "TITLE", "title", title, context))
        for i, (kind, section, text) in enumerate(parts, 1):
            batch_sentences.append((study_id, i, section, kind, text, context))
        if len(batch_studies) >= 20_000:
            _flush(conn, batch_studies, batch_sentences)
            print(f"  {n + 1:,} studies written ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    _flush(conn, batch_studies, batch_sentences)
    print("  indexing (FTS5)...", file=sys.stderr)
    create_fts(db)
    refresh_term_docs(db)
    db.execute("ANALYZE")
    db.close()
    tmp.rename(path)
    return path


def _flush(conn: sqlite3.Connection, studies: list, sentences: list) -> None:
    with conn:
        conn.executemany(
            "insert into studies (id, pmid, title, abstract, year, designs, drugs, routes, indications, side_effects,"
            " mechanisms, sample_size, is_retracted, sources) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", studies)
        conn.executemany(
            "insert into sentences (study_id, position, section, section_kind, text, context) values (?,?,?,?,?,?)",
            sentences)
    studies.clear()
    sentences.clear()
