"""Similar studies for a study page: by the tags they share (rarer tags weigh more) and by vectors.

* **Tags**: the study's indications, designs, drugs and mechanisms (``study_tags``, not negated),
  each weighted by its rarity, log(N / studies with the tag). Bounded: candidates come from the
  postings of the study's rarest tags, at most ``POSTINGS_BUDGET`` rows in all, each tag's
  posting list read through ``idx_study_tags_tag_id_negated``; the best ``RESCORED`` of them are
  scored on all of the study's tags. How many studies carry a tag is read once per tag and kept
  (kb.db is served immutable).
* **Vectors**, when ``kb embed`` wrote ``<kb>-vectors.db`` beside kb.db and numpy is installed:
  each study's sentence vectors averaged (its centroid, normalised), the nearest centroids by
  cosine. The centroids are computed once per side database (in a background thread; a study
  page does not wait for a large one) and searched with one matrix product.

Pure SQL and numpy on a ``sqlite3`` connection; the ``search_page`` plugin calls it.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIMILAR_KINDS = ("indication", "design", "drug", "mechanism")
POSTINGS_BUDGET = 2_000  # study_tags rows read to find candidates
RESCORED = 100  # candidates scored on all of the study's tags
SHOWN = 6


@dataclass
class Similar:
    study_id: str
    score: float
    shared: list[str] = field(default_factory=list)  # tag ids both carry (tags), empty for vectors


# --------------------------------------------------------------------------- by tags


KIND_COLUMNS = {"indication": "indications", "design": "designs", "drug": "drugs", "mechanism": "mechanisms"}


class TagStats:
    """How many studies carry each tag, and studies in all: counted once (kb.db is served immutable)
    from the studies' tag columns, which idx_studies_tag_columns holds apart from the abstracts."""

    def __init__(self):
        self.studies = 0
        self.per_tag: dict[str, int] | None = None
        self.lock = threading.Lock()

    def load(self, conn: sqlite3.Connection) -> dict[str, int]:
        with self.lock:
            if self.per_tag is None:
                self.studies = conn.execute("select count(*) from studies").fetchone()[0]
                self.per_tag = _precomputed_frequencies(conn)
                if self.per_tag is None:
                    self.per_tag = dict(conn.execute(_frequency_sql()).fetchall())
            return self.per_tag


def _precomputed_frequencies(conn: sqlite3.Connection) -> dict[str, int] | None:
    """Studies per tag id from kb.db's facet_counts (every study, db/aggregates.py), when it has
    them for every tag column: at a million studies, counting them here takes seconds."""
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    if not {"facet_counts", "facet_columns"} <= tables:
        return None
    columns = list(KIND_COLUMNS.values())
    marks = ", ".join("?" for _ in columns)
    counted = {r[0] for r in conn.execute(f"select facet from facet_columns where scope = 'all' "
                                          f"and facet in ({marks})", columns)}
    if counted != set(columns):
        return None
    return dict(conn.execute(f"select value, sum(studies) from facet_counts where scope = 'all' "
                             f"and facet in ({marks}) group by value", columns).fetchall())


def _frequency_sql() -> str:
    """Studies per tag id over the tag columns: each column's distinct arrays counted, then their values."""
    picked = ", ".join(f"{c} as c{i}" for i, c in enumerate(KIND_COLUMNS.values()))
    parts = [f"select j.value, sum(g.n) from (select c{i} as a, count(*) as n from f group by c{i}) g, "
             f"json_each(g.a) j group by j.value" for i in range(len(KIND_COLUMNS))]
    return f"with f as materialized (select {picked} from studies)\n" + "\nunion all\n".join(parts)


def _study_tags(conn: sqlite3.Connection, study_id: str) -> list[str]:
    marks = ", ".join("?" for _ in SIMILAR_KINDS)
    return [r[0] for r in conn.execute(
        f"select distinct tag_id from study_tags where study_id = ? and negated = 0 and kind in ({marks})",
        (study_id, *SIMILAR_KINDS))]


def by_tags(conn: sqlite3.Connection, study_id: str, stats: TagStats, limit: int = SHOWN) -> list[Similar]:
    """The on-topic studies sharing the most (and rarest) of this study's tags, best first."""
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    if "study_tags" not in tables:
        return []
    tags = _study_tags(conn, study_id)
    if not tags:
        return []
    per_tag = stats.load(conn)
    total = stats.studies
    frequency = {t: per_tag.get(t, 1) for t in tags}
    weight = {t: math.log((total + 1) / (frequency[t] + 1)) for t in tags}
    candidates = _candidates(conn, study_id, sorted(tags, key=lambda t: frequency[t]), frequency, weight)
    best = sorted(candidates, key=lambda s: -candidates[s])[:RESCORED]
    shared = _shared(conn, best, tags)
    scored = [Similar(s, sum(weight[t] for t in shared[s]), sorted(shared[s], key=lambda t: (-weight[t], t)))
              for s in best if shared.get(s)]
    scored.sort(key=lambda s: (-s.score, s.study_id))
    return _on_topic(conn, scored, limit)


def _candidates(conn: sqlite3.Connection, study_id: str, rarest_first: list[str], frequency: Mapping[str, int],
                weight: Mapping[str, float]) -> dict[str, float]:
    """Studies found in the postings of the rarest tags (at most POSTINGS_BUDGET rows read), with the
    weight of the tags they were found by."""
    found: dict[str, float] = {}
    budget = POSTINGS_BUDGET
    for tag in rarest_first:
        if budget <= 0:
            break
        rows = conn.execute("select distinct study_id from study_tags where tag_id = ? and negated = 0 limit ?",
                            (tag, budget)).fetchall()
        budget -= max(len(rows), 1)
        for (other,) in rows:
            if other != study_id:
                found[other] = found.get(other, 0.0) + weight[tag]
    return found


def _shared(conn: sqlite3.Connection, ids: list[str], tags: list[str]) -> dict[str, set[str]]:
    if not ids:
        return {}
    out: dict[str, set[str]] = {}
    for start in range(0, len(ids), 400):
        chunk = ids[start:start + 400]
        rows = conn.execute(
            f"select study_id, tag_id from study_tags where study_id in ({', '.join('?' for _ in chunk)}) "
            f"and tag_id in ({', '.join('?' for _ in tags)}) and negated = 0", [*chunk, *tags])
        for other, tag in rows:
            out.setdefault(other, set()).add(tag)
    return out


def _on_topic(conn: sqlite3.Connection, ranked: list[Similar], limit: int) -> list[Similar]:
    """The first ``limit`` of them that are on topic (off-topic records are not offered)."""
    off = {r[0] for r in conn.execute("select id from studies where on_topic = 0")} \
        if "on_topic" in {r[1] for r in conn.execute("pragma table_info(studies)")} else set()
    return [s for s in ranked if s.study_id not in off][:limit]


# --------------------------------------------------------------------------- by vectors


@dataclass
class StudyVectors:
    ids: list[str]
    index: dict[str, int]
    matrix: Any  # (studies, dim) float32, each row a normalised centroid


def read_study_vectors(side_path: Path) -> StudyVectors | None:
    """Each study's sentence vectors averaged and normalised; None without numpy or a usable side database."""
    try:
        import numpy as np
    except ImportError:
        return None
    try:
        conn = sqlite3.connect(f"file:{side_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        dim = int(dict(conn.execute("select key, value from meta").fetchall()).get("dim") or 0)
        rows = conn.execute("select study_id, vector from vectors order by study_id, position").fetchall()
    except (sqlite3.Error, ValueError):
        return None
    finally:
        conn.close()
    rows = [(study_id, blob) for study_id, blob in rows if dim and len(blob) == dim * 4]
    if not rows:
        return None
    # One matrix of every sentence vector; each study's rows (adjacent: ordered by study) summed at once.
    sentences = np.frombuffer(b"".join(blob for _, blob in rows), dtype=np.float32).reshape(len(rows), dim)
    starts = [i for i, (study_id, _) in enumerate(rows) if i == 0 or rows[i - 1][0] != study_id]
    ids = [rows[i][0] for i in starts]
    matrix = np.add.reduceat(sentences, starts, axis=0)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms == 0, 1, norms)
    return StudyVectors(ids, {s: i for i, s in enumerate(ids)}, matrix.astype(np.float32))


class VectorCache:
    """Study centroids per side database, computed in a background thread and kept while the file is unchanged."""

    def __init__(self):
        self.lock = threading.Lock()
        self.loaded: dict[tuple, StudyVectors | None] = {}
        self.loading: dict[tuple, threading.Event] = {}

    def get(self, side_path: Path, wait: float) -> StudyVectors | None:
        """The centroids, or None when there are none or they are not ready within ``wait`` seconds."""
        try:
            key = (str(side_path.resolve()), side_path.stat().st_mtime_ns)
        except OSError:
            return None
        with self.lock:
            if key in self.loaded:
                return self.loaded[key]
            done = self.loading.get(key)
            if done is None:
                done = self.loading[key] = threading.Event()
                threading.Thread(target=self._load, args=(key, side_path, done), daemon=True).start()
        done.wait(wait)
        with self.lock:
            return self.loaded.get(key)

    def _load(self, key: tuple, side_path: Path, done: threading.Event) -> None:
        vectors = None
        try:
            vectors = read_study_vectors(side_path)
        finally:  # an older version of the file is dropped; a failure is remembered as "none"
            with self.lock:
                self.loaded = {k: v for k, v in self.loaded.items() if k[0] != key[0]}
                self.loaded[key] = vectors
                self.loading.pop(key, None)
            done.set()


VECTORS = VectorCache()  # one per process: the side database is shared by every request


def by_vectors(conn: sqlite3.Connection, study_id: str, vectors: StudyVectors | None,
               limit: int = SHOWN) -> list[Similar]:
    """The on-topic studies whose sentence centroid is nearest this study's, nearest first."""
    if vectors is None or study_id not in vectors.index:
        return []
    import numpy as np

    scores = vectors.matrix @ vectors.matrix[vectors.index[study_id]]
    k = min(len(vectors.ids), limit * 3 + 1)  # room for the study itself and off-topic ones
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top])]
    ranked = [Similar(vectors.ids[i], float(scores[i])) for i in top if vectors.ids[i] != study_id]
    known = _existing(conn, [s.study_id for s in ranked])
    return _on_topic(conn, [s for s in ranked if s.study_id in known], limit)


def _existing(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
    """The ids still in kb.db (the side database may hold studies a later build removed)."""
    if not ids:
        return set()
    return {r[0] for r in conn.execute(f"select id from studies where id in ({', '.join('?' for _ in ids)})", ids)}


# --------------------------------------------------------------------------- for the page


def described(conn: sqlite3.Connection, similar: list[Similar], labels: Mapping[str, str]) -> list[dict]:
    """Each similar study as a page lists it: id, title, year, journal, designs, the tags it shares."""
    if not similar:
        return []
    from ingest.records.text import json_list

    ids = [s.study_id for s in similar]
    rows = {r[0]: r for r in conn.execute(
        f"select id, title, year, journal, designs, evidence_level_label from studies "
        f"where id in ({', '.join('?' for _ in ids)})", ids)}
    out = []
    for item in similar:
        row = rows.get(item.study_id)
        if row is None:
            continue
        out.append({"id": row[0], "title": row[1] or row[0], "year": row[2], "journal": row[3],
                    "designs": [labels.get(d, d) for d in json_list(row[4]) if isinstance(d, str)],
                    "level": row[5], "score": item.score,
                    "shared": [{"id": t, "label": labels.get(t, t)} for t in item.shared]})
    return out
