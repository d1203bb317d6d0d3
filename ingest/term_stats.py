"""Words so common in the sentence index that searching for them ranks nearly every row.

In a ketamine knowledge base "ketamine" is in almost every sentence's context; an FTS5 query
containing it has to score most of the index (seconds at a million studies) and gains
nothing from it (its IDF is near zero). The build records such words with their share of
sentences, and the claim checker leaves them out of its full-text query.
"""

from __future__ import annotations

import re
from collections import Counter

import sqlite_utils

COMMON_SHARE = 0.2  # a word in at least this share of sentences is "common"
MIN_SENTENCES = 500  # below this, shares are noise: record nothing
SAMPLE = 200_000  # sentences read at most (an evenly spaced sample of larger indexes)
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")


def compute_common_terms(db: sqlite_utils.Database) -> int:
    """Refill ``common_terms`` from the sentence index; returns how many words are common."""
    total = db.execute("select count(*) from sentences").fetchone()[0]
    db.execute("delete from common_terms")
    if total < MIN_SENTENCES:
        return 0
    step = max(1, total // SAMPLE)
    counts: Counter = Counter()
    seen = 0
    for text, context in db.execute("select text, context from sentences where rowid % ? = 0", [step]):
        counts.update(set(_WORD.findall(f"{text} {context or ''}".lower())))
        seen += 1
    rows = [{"term": term, "share": round(n / seen, 4)} for term, n in counts.items() if n / seen >= COMMON_SHARE]
    if rows:
        db["common_terms"].insert_all(rows, pk="term", replace=True)
    return len(rows)


def common_terms(conn) -> dict[str, float]:
    """{word: share} from a kb.db connection (empty when the table is absent)."""
    try:
        return dict(conn.execute("select term, share from common_terms").fetchall())
    except Exception:  # an older kb.db without the table: no pruning
        return {}
