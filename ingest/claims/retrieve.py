"""Retrieving candidate sentences and studies for a claim: FTS5 bm25 over kb.db, and vectors."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .results import ClaimError, Sentence
from .understand import TAG_KINDS

if TYPE_CHECKING:
    from .embeddings import VectorIndex

FTS_CANDIDATES = 400  # sentences read from each ranking before grouping by study
TITLE_WEIGHT = 2.0  # bm25 weight of the title against the abstract in the whole-abstract ranking
CONTEXT_WEIGHT = 1.0  # bm25 weight of the study context column (title, tags, year): the topic counts as much


def require_sentences(conn: sqlite3.Connection) -> set[str]:
    """kb.db's table and view names; ClaimError when the sentence index is missing."""
    names = {r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view')")}
    if not {"sentences", "sentences_fts", "studies"} <= names:
        raise ClaimError("this database has no sentence index (rebuild it with `kb build`)")
    return names


RANKED_SENTENCES_CAP = 5_000  # at most this many matching sentences are scored, the newest studies' first
RANKED_STUDIES_CAP = 5_000  # the same for whole abstracts
NO_LIMIT = 2**63 - 1
CONTENT_OF = {"sentences_fts": "sentences", "studies_fts": "studies"}  # the table whose rowids each index has


def last_rowid_ranked(conn: sqlite3.Connection, fts_table: str, query: str, cap: int) -> int:
    """The rowid of the cap-th match, in rowid order, over the whole table (see :func:`ranked_range`:
    past the sorted prefix rowid order is not recency order)."""
    row = conn.execute(f"select rowid from {fts_table} where {fts_table} match ? order by rowid limit 1 offset ?",
                       (query, cap - 1)).fetchone()
    return row[0] if row else NO_LIMIT


def sorted_upto(conn: sqlite3.Connection, table: str) -> int:
    """The rowid up to which ``table``'s rowid order is recency order, newest first (db/order.py).

    Rows past it (the tail) were appended by imports and updates since kb.db was last sorted. A
    kb.db that does not say (an older version) is taken as sorted throughout.
    """
    try:
        row = conn.execute("select sorted_upto from kb_order where table_name = ?", [table]).fetchone()
    except sqlite3.OperationalError:  # no kb_order table
        return NO_LIMIT
    return row[0] if row else NO_LIMIT


@dataclass(frozen=True)
class RankedRange:
    """The matches a capped ranking scores: the sorted prefix's first (the newest) up to ``last``, and
    every match past ``tail_after`` (the tail: rows written since kb.db was sorted, kept small by
    renumbering, so the ranking scores at most about 1.5 times its cap)."""

    last: int
    tail_after: int

    @property
    def params(self) -> dict[str, int]:
        return {"last": self.last, "tail_after": self.tail_after}

    def union(self, select: str, rowid: str) -> str:
        """``select`` (a SELECT ending in its WHERE) over the prefix's ranked matches, union all the tail's.

        Two rowid ranges, each of which FTS5 walks by itself; one condition with OR it would test on
        every match. The ranges never overlap: ``last`` <= ``tail_after``.
        """
        return f"{select} and {rowid} <= :last union all {select} and {rowid} > :tail_after"


def ranked_range(conn: sqlite3.Connection, fts_table: str, query: str, cap: int) -> RankedRange:
    """Which matches of ``query`` to rank: the newest ``cap`` of the sorted prefix, and the whole tail.

    BM25 must score every row it sorts; past a few thousand matches that is most of the time a
    query takes. kb.db stores the newest studies first (lowest rowids), so capping by rowid ranks
    the newest matches. The cap-th match is cheap to find: FTS5 walks matches in rowid order.
    """
    upto = sorted_upto(conn, CONTENT_OF[fts_table])
    row = conn.execute(f"select rowid from {fts_table} where {fts_table} match :query and rowid <= :upto "
                       "order by rowid limit 1 offset :skip",
                       {"query": query, "upto": upto, "skip": cap - 1}).fetchone()
    return RankedRange(last=row[0] if row else upto, tail_after=upto)


SENTENCE_MATCHES = (
    "select s.rowid, s.study_id, s.position, s.section, s.section_kind, sentences_fts.text, sentences_fts.context, "
    f"bm25(sentences_fts, 1.0, {CONTEXT_WEIGHT}) as score "
    "from sentences_fts join sentences s on s.rowid = sentences_fts.rowid where sentences_fts match :query"
)


def fts_ranking(conn: sqlite3.Connection, query: str, ranked: bool = True) -> list[tuple[str, Sentence]]:
    try:
        rows = _ranked_sentences(conn, query) if ranked else _newest_sentences(conn, query)
    except sqlite3.OperationalError as exc:  # a query FTS5 still rejects: report, never crash
        raise ClaimError(f"full-text search failed ({exc})") from exc
    return [_sentence(row, bm25=row[7]) for row in rows]


def _ranked_sentences(conn: sqlite3.Connection, query: str) -> list[tuple]:
    bounds = ranked_range(conn, "sentences_fts", query, RANKED_SENTENCES_CAP)
    return conn.execute(f"{bounds.union(SENTENCE_MATCHES, 'sentences_fts.rowid')} order by score limit :limit",
                        {"query": query, "limit": FTS_CANDIDATES, **bounds.params}).fetchall()


def _newest_sentences(conn: sqlite3.Connection, query: str) -> list[tuple]:
    """Unranked, newest studies' sentences first, when every word is too common to rank cheaply: FTS5
    can stop after the limit in rowid order, but must score every match to sort by bm25. The
    tail's matches are put among the prefix's by their study's year."""
    upto = sorted_upto(conn, "sentences")
    params = {"query": query, "upto": upto, "limit": FTS_CANDIDATES}
    prefix = conn.execute(f"{SENTENCE_MATCHES} and sentences_fts.rowid <= :upto order by sentences_fts.rowid "
                          "limit :limit", params).fetchall()
    tail = conn.execute(f"select m.*, coalesce(st.year, 0) as year from ({SENTENCE_MATCHES} "
                        "and sentences_fts.rowid > :upto) m left join studies st on st.id = m.study_id "
                        "order by year desc, m.rowid limit :limit", params).fetchall()
    if not tail:
        return prefix
    years = _study_years(conn, {row[1] for row in prefix})
    merged = [(years.get(row[1], 0), row) for row in prefix] + [(row[-1], row[:-1]) for row in tail]
    return [row for _, row in sorted(merged, key=lambda pair: (-pair[0], pair[1][0]))[:FTS_CANDIDATES]]


def _study_years(conn: sqlite3.Connection, ids: set[str]) -> dict[str, int]:
    marks = ", ".join("?" for _ in ids)
    return {sid: year or 0 for sid, year in conn.execute(f"select id, year from studies where id in ({marks})",
                                                          list(ids))}


def vector_ranking(conn: sqlite3.Connection, vectors: VectorIndex, claim: str) -> list[tuple[str, Sentence]]:
    hits = dict(vectors.search(claim, FTS_CANDIDATES))
    rows: list[tuple] = []
    rowids = list(hits)
    for start in range(0, len(rowids), 500):  # keep well under SQLite's bound-parameter limit
        chunk = rowids[start:start + 500]
        rows += conn.execute("select s.rowid, s.study_id, s.position, s.section, s.section_kind, f.text, f.context "
                             "from sentences s join sentences_fts f on f.rowid = s.rowid "
                             f"where s.rowid in ({', '.join('?' for _ in chunk)})", chunk).fetchall()
    out = [_sentence(row, cosine=hits[row[0]]) for row in rows]
    return sorted(out, key=lambda pair: -(pair[1].cosine or 0))


# A sentence's text and context are read from the index (as it was indexed): kb.db stores the context
# once per study (sentence_contexts) and the text once, in the title or abstract; an older kb.db in every row.
def _sentence(row: tuple, bm25: float | None = None, cosine: float | None = None) -> tuple[str, Sentence]:
    return row[1], Sentence(rowid=row[0], position=row[2], section=row[3], section_kind=row[4] or "abstract",
                            text=row[5], context=row[6] or "", bm25=bm25, cosine=cosine)


STUDY_COLUMNS = tuple(dict.fromkeys(("id", "title", "year", "journal", "first_author", "doi", "designs",
                                     "populations", "sample_size", "is_retracted", "on_topic", *TAG_KINDS.values())))


def study_rows(conn: sqlite3.Connection, ids: list[str]) -> dict[str, dict]:
    available = {r[1] for r in conn.execute("pragma table_info(studies)")}
    columns = [c for c in STUDY_COLUMNS if c in available]
    out: dict[str, dict] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        sql = (f"select {', '.join(columns)} from studies "
               f"where id in ({', '.join('?' for _ in chunk)})")
        for row in conn.execute(sql, chunk):
            out[row[0]] = dict(zip(columns, row, strict=True))
    return out


def abstract_ranking(conn: sqlite3.Connection, query: str, tables: set[str]) -> dict[str, float]:
    """Whole-abstract bm25 (studies_fts) as a share of the best: is the study about the claim at all?"""
    if "studies_fts" not in tables:
        return {}
    try:
        bounds = ranked_range(conn, "studies_fts", query, RANKED_STUDIES_CAP)
        matches = (f"select s.id, bm25(studies_fts, {TITLE_WEIGHT}, 1.0) as score from studies_fts "
                   "join studies s on s.rowid = studies_fts.rowid where studies_fts match :query")
        rows = conn.execute(f"{bounds.union(matches, 'studies_fts.rowid')} order by score limit :limit",
                            {"query": query, "limit": FTS_CANDIDATES, **bounds.params}).fetchall()
    except sqlite3.OperationalError:  # a studies_fts of another shape: the sentences still rank
        return {}
    best = rows[0][1] if rows else 0.0
    return {sid: score / best for sid, score in rows} if best else {}
