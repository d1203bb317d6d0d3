"""How many sentences a search word would make FTS5 rank, read from the index itself.

In a ketamine knowledge base "ketamine" is in almost every sentence's context; a query with
it must score most of the index (seconds at a million studies) and gains nothing from it
(its IDF is near zero). The claim checker asks, per word, how many sentences contain its
porter stem and leaves out the words that are too common or, in a very large index, too
costly. The counts come from `sentences_term_docs` (the common stems' counts, copied from the
index at build time: one B-tree lookup each) or, in a kb.db without it, from
`sentences_fts_vocab` (an fts5vocab view, which walks a stem's whole posting list).
"""

from __future__ import annotations

import sqlite3

COMMON_SHARE = 0.2  # a word in at least this share of sentences carries no ranking signal
MAX_MATCHING_ROWS = 20_000  # a claim's query should not have to rank more sentences than this
MIN_SENTENCES = 500  # in a smaller index shares are noise and ranking everything is cheap
VOCAB_TABLE = "sentences_fts_vocab"
TERM_DOCS_TABLE = "sentences_term_docs"  # stems missing from it are in too few sentences to be costly


def stems(words: list[str]) -> dict[str, list[str]]:
    """Each word's tokens as the index stores them (porter stems), via FTS5 itself."""
    memory = sqlite3.connect(":memory:")
    try:
        memory.execute("create virtual table t using fts5(x, tokenize='porter')")
        memory.executemany("insert into t (rowid, x) values (?, ?)", list(enumerate(words, 1)))
        memory.execute("create virtual table v using fts5vocab(t, 'instance')")
        out: dict[str, list[str]] = {w: [] for w in words}
        for doc, term in memory.execute("select doc, term from v order by doc, offset"):
            out[words[doc - 1]].append(term)
        return out
    finally:
        memory.close()


def costly_terms(conn: sqlite3.Connection, words: list[str]) -> dict[str, float]:
    """{word: share of sentences} for the words a claim query should leave out."""
    try:
        total = conn.execute("select max(rowid) from sentences").fetchone()[0] or 0
        if total < MIN_SENTENCES or not words:
            return {}
        has_table = conn.execute("select 1 from sqlite_master where name = ?", [TERM_DOCS_TABLE]).fetchone()
        lookup = (f"select docs from {TERM_DOCS_TABLE} where term = ?" if has_table
                  else f"select doc from {VOCAB_TABLE} where term = ?")
        out = {}
        for word, tokens in stems(words).items():
            counts = [conn.execute(lookup, [t]).fetchone() for t in tokens]
            # A phrase ("5-ht") matches at most as often as its rarest token.
            rows = min((c[0] if c else 0) for c in counts) if counts else 0
            if rows / total >= COMMON_SHARE or rows > MAX_MATCHING_ROWS:
                out[word] = rows / total
        return out
    except sqlite3.Error:  # an index without the vocabulary table: search every word
        return {}
