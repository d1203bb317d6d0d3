"""Rowid order as recency order: the sorted prefix, the tail imports append, and renumbering.

The claim checker and the ranked searches cap how many matches they score by rowid: BM25 must
score every row it sorts, and FTS5 finds the cap-th match in rowid order without scoring any. A
fresh build writes the newest studies first, so the capped matches are the newest. ``kb import``
and ``kb update`` append rows (a replaced study is deleted and written again, at the end too): the
tail above ``kb_order.sorted_upto`` (schema.py), which every capped ranking ranks whole. When the
tail grows past :data:`TAIL_LIMITS`, :func:`renumber` sorts it in: the rows get new rowids in the
order a fresh build writes them, and the full-text indexes are rebuilt on the new rowids.

Nothing else keeps a rowid of a study or a sentence: other tables refer to studies by id and to
sentences by (study id, position), and the vector side database (claims/embeddings.py) matches
sentences by (study id, position, text hash), reading their rowids when it is loaded.
"""

from __future__ import annotations

import time

import sqlite_utils

from .schema import KB_ORDER_SQL, ORDERED_TABLES, create_order_triggers

# Half the claim checker's caps (claims/retrieve.py RANKED_SENTENCES_CAP, RANKED_STUDIES_CAP: 5,000
# matches each): a capped ranking then scores at most 1.5 times its cap.
TAIL_LIMITS = {"studies": 2_500, "sentences": 2_500}

# The full-text index whose rowids are each ordered table's: rebuilt after renumbering.
FTS_OF = {"studies": "studies_fts", "sentences": "sentences_fts"}


def sorted_upto(db: sqlite_utils.Database, table: str) -> int | None:
    """The rowid up to which ``table``'s rowid order is recency order; None when kb.db does not say."""
    if "kb_order" not in db.table_names():
        return None
    row = db.execute("select sorted_upto from kb_order where table_name = ?", [table]).fetchone()
    return row[0] if row else None


def tail_sizes(db: sqlite_utils.Database) -> dict[str, int | None]:
    """Rows past each ordered table's sorted prefix (None: the order is unknown)."""
    sizes: dict[str, int | None] = {}
    for table in ORDERED_TABLES:
        upto = sorted_upto(db, table)
        sizes[table] = None if upto is None else \
            db.execute(f"select count(*) from [{table}] where rowid > ?", [upto]).fetchone()[0]
    return sizes


def mark_sorted(db: sqlite_utils.Database) -> None:
    """Record that rowid order is recency order throughout (a fresh build's, a renumbered kb.db's)."""
    with db.atomic():
        db.execute(KB_ORDER_SQL)
        for table in ORDERED_TABLES:
            last = db.execute(f"select coalesce(max(rowid), 0) from [{table}]").fetchone()[0]
            db.execute("insert or replace into kb_order (table_name, sorted_upto) values (?, ?)", [table, last])
        create_order_triggers(db)


def needs_renumbering(db: sqlite_utils.Database, limits: dict[str, int] | None = None) -> bool:
    """Whether a tail is past its limit, or the order is unknown (a kb.db of an older version)."""
    limits = TAIL_LIMITS if limits is None else limits
    return any(size is None or size > limits[table] for table, size in tail_sizes(db).items())


def compact_if_needed(db: sqlite_utils.Database, limits: dict[str, int] | None = None) -> dict | None:
    """Renumber when :func:`needs_renumbering`; what :func:`renumber` did, or None."""
    return renumber(db) if needs_renumbering(db, limits) else None


def renumber(db: sqlite_utils.Database) -> dict:
    """Give studies and sentences new rowids in recency order, keep their indexes true, mark them sorted.

    Studies in a fresh build's order (year, newest first; then their current order, so the sorted
    prefix keeps its order and the tail follows each year's), sentences in their studies' order,
    then by position. Returns the tails sorted in and the seconds taken.
    """
    started = time.perf_counter()
    tails = tail_sizes(db)
    triggers = db.execute("select name, sql from sqlite_master where type = 'trigger' and tbl_name in "
                          f"({', '.join('?' for _ in ORDERED_TABLES)})", list(ORDERED_TABLES)).fetchall()
    with db.atomic():
        # The index triggers would re-index every row twice; the indexes are rebuilt once instead.
        for name, _ in triggers:
            db.execute(f"drop trigger [{name}]")
        _renumber_rows(db, "studies", "select rowid, row_number() over (order by coalesce(year, 0) desc, rowid) "
                                      "from studies")
        # After the studies: their new rowids are their order. A sentence without its study goes last.
        _renumber_rows(db, "sentences", "select s.rowid, row_number() over (order by st.rowid is null, "
                                        "st.rowid, s.position, s.rowid) "
                                        "from sentences s left join studies st on st.id = s.study_id")
        for table in ORDERED_TABLES:
            if FTS_OF[table] in db.table_names():
                db.execute(f"insert into [{FTS_OF[table]}] ([{FTS_OF[table]}]) values ('rebuild')")
        for _, sql in triggers:
            db.execute(sql)
        mark_sorted(db)
    return {"tails": tails, "seconds": round(time.perf_counter() - started, 3)}


def _renumber_rows(db: sqlite_utils.Database, table: str, numbered_sql: str) -> None:
    """New rowids of ``table``: ``numbered_sql`` reads (rowid, new rowid) pairs."""
    db.execute("drop table if exists temp.new_rowids")
    db.execute("create temp table new_rowids (old integer primary key, new integer not null)")
    db.execute(f"insert into temp.new_rowids (old, new) {numbered_sql}")
    # Out of the way first (negative rowids are free), so that no new rowid meets an old one.
    db.execute(f"update [{table}] set rowid = -rowid")
    db.execute(f"update [{table}] set rowid = n.new from temp.new_rowids n where n.old = -[{table}].rowid")
    db.execute("drop table temp.new_rowids")
