"""Building kb.db: a fresh database from collected records, or records merged into an existing one.

Both write through :func:`ingest.db.atomic.atomic_database`, so a failed build or import
leaves the previous kb.db exactly as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import sqlite_utils

from ..sources.formats import SOURCES
from .aggregates import refresh_dashboard_counts, refresh_facet_counts
from .atomic import DEFAULT_LOCK_WAIT, BuildError, atomic_database, pause_point
from .collect import Collected, collect_dir
from .derive import Deriver, default_derivers
from .order import compact_if_needed, mark_sorted
from .schema import create_fts, create_schema, optimise, refresh_term_docs
from .staging import StagingFile, staging_path
from .studies import child_rows, delete_study, source_record_rows, study_row, upsert_merged
from .trials import link_studies_to_trials, write_trials

__all__ = ["DEFAULT_LOCK_WAIT", "SOURCES", "BuildError", "Collected", "build", "build_from_dir", "import_into",
           "staged"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def previous_runs(target: Path) -> list[dict]:
    """ingest_runs rows of the kb.db being replaced, so history survives a rebuild."""
    if not target.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("select * from ingest_runs order by id")]
        conn.close()
        return rows
    except sqlite3.Error:
        return []


# Runs that asked a source's server for everything (or everything new): `kb update` continues from them.
NETWORK_MODES = ("network", "update")


def last_fetched(target: Path, sources: Iterable[str]) -> dict[str, dt.date | None]:
    """For each source, the day the last successful network build or update of ``target`` started.

    Days, not moments: the sources' date filters are days, and a day's overlap is merged away.
    """
    days: dict[str, dt.date | None] = dict.fromkeys(sources)
    for run in previous_runs(target):
        if run.get("mode") not in NETWORK_MODES or not str(run.get("status") or "").startswith("ok"):
            continue
        try:
            day = dt.datetime.fromisoformat(run["started"]).date()
        except (TypeError, ValueError):
            continue
        for source in str(run.get("source") or "").split(","):
            if source in days and (days[source] is None or day > days[source]):
                days[source] = day
    return days


WRITE_BATCH = 1000  # studies (with their tags, sentences and findings) written per executemany


def write_fresh(db: sqlite_utils.Database, collected: Collected, deriver: Deriver, progress: bool = False) -> int:
    """Bulk-write merged records, and what the derivers compute from them, into an empty schema.

    Records are read back newest first (rowid order is then recency: ranked searches that cap
    how many matches they score keep the newest), derived a bounded number at a time and
    written in batches, so memory does not grow with the corpus.
    """
    from tqdm import tqdm

    batch: dict[str, list[dict]] = {}
    written = 0

    def flush() -> None:
        for name, rows in batch.items():
            if rows:
                _insert_rows(db, name, rows)
                rows.clear()

    for each in deriver.derivers:
        each.prepare(db)
    total = len(collected.records)
    with db.atomic():
        for study_id, record, derived in tqdm(deriver.studies(collected.newest_first(), total), total=total,
                                              desc="Writing studies", unit="rec", disable=not progress):
            row = study_row(study_id, record)
            tables = child_rows(study_id, record)
            tables["source_records"] = source_record_rows(study_id, collected.packed_sources.get(study_id))
            for columns, extra in derived:
                row.update(columns)
                for name, rows in extra.items():
                    tables.setdefault(name, []).extend(rows)
            batch.setdefault("studies", []).append(row)
            for name, rows in tables.items():
                batch.setdefault(name, []).extend(rows)
            written += 1
            if len(batch["studies"]) >= WRITE_BATCH:
                flush()
        flush()
    return written


def carry_first_seen(db: sqlite_utils.Database, target: Path, now: str) -> None:
    """Each study's ``first_seen`` from the kb.db being replaced (a rebuild is not news); else ``now``.

    Read by SQL through ATTACH, so memory does not grow with the corpus.
    """
    attached = False
    if target.exists():  # only read, under the writer lock (plain path: this connection has no URIs)
        db.execute("attach database ? as previous", [str(target)])
        attached = True
    try:
        try:
            old_columns = ({row[1] for row in db.execute("pragma previous.table_info(studies)")}
                           if attached else set())
        except sqlite3.Error:
            old_columns = set()  # not a readable database: every study is new
        with db.atomic():
            if "first_seen" in old_columns:
                db.execute("update studies set first_seen = (select p.first_seen from previous.studies p "
                           "where p.id = studies.id)")
            db.execute("update studies set first_seen = ? where first_seen is null", [now])
    finally:
        if attached:
            db.execute("detach database previous")


def _insert_rows(db: sqlite_utils.Database, table: str, rows: list[dict]) -> None:
    """Plain executemany (much faster than insert_all); columns are the union over the batch."""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    sql = (f"insert into [{table}] ({', '.join(f'[{c}]' for c in columns)}) "
           f"values ({', '.join('?' for _ in columns)})")
    db.conn.executemany(sql, [[r.get(c) for c in columns] for r in rows])


# Steps that derive data (tags...) from the records just written: (db, {study_id: record}).
Hook = Callable[[sqlite_utils.Database, dict[str, dict]], None]


def build(
    target: Path,
    collected: Collected,
    source: str,
    mode: str,
    query: str | None = None,
    inputs: list[str] | None = None,
    after_write: list[Hook] | None = None,
    progress: bool = False,
    derivers: list | None = None,
    wait: float = DEFAULT_LOCK_WAIT,
) -> dict:
    """Write a new kb.db from ``collected``, atomically replacing ``target``.

    ``wait``: seconds to wait for another writer of ``target`` to finish (0: refuse at once).
    """
    derivers = default_derivers() if derivers is None else derivers
    if not collected.records and not collected.trials:
        detail = f": {collected.errors[0]}" if collected.errors else ""
        raise BuildError(f"no records could be loaded{detail}")
    started = _now()
    with atomic_database(target, copy_existing=False, wait=wait, compact=True) as db, Deriver(derivers) as deriver:
        history = previous_runs(target)  # read under the writer lock: an import finishing now is kept
        create_schema(db, fts=False)
        pause_point("schema")
        written = write_fresh(db, collected, deriver, progress)
        mark_sorted(db)  # written newest first
        carry_first_seen(db, target, started)
        pause_point("written")
        trials = list(collected.trials.items())
        write_trials(db, [trial for _, trial in trials], deriver.trial_tags(trials), tagged=bool(derivers))
        link_studies_to_trials(db)
        create_fts(db)
        refresh_term_docs(db)
        refresh_dashboard_counts(db)
        refresh_facet_counts(db)
        for hook in after_write or []:
            hook(db, collected.records)
        stats = _record_run(
            db, history, source, mode, query, inputs or collected.files, started, collected,
            written, len(collected.deleted),
        )
        optimise(db)
    return stats


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Collected]:
    """An empty Collected whose studies are kept in a staging file beside ``target``, deleted after."""
    try:
        staging = StagingFile(staging_path(target))
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BuildError(f"{target.parent}: cannot write the build's staging file there ({reason})") from exc
    try:
        yield Collected.on_disk(staging)
    finally:
        staging.close()


def build_from_dir(target: Path, directory: Path, sources: Iterable[str] = SOURCES, progress: bool = False,
                   derivers: list | None = None, wait: float = DEFAULT_LOCK_WAIT) -> dict:
    """Build kb.db from every file under ``directory``, the records gathered on disk meanwhile."""
    sources = tuple(sources)
    with staged(target) as collected:
        collect_dir(directory, progress, sources, collected)
        return build(target, collected, ",".join(sources), "from-dir", inputs=collected.files, progress=progress,
                     derivers=derivers, wait=wait)


def import_into(
    target: Path,
    collected: Collected,
    source: str,
    inputs: list[str],
    after_write: list[Hook] | None = None,
    derivers: list | None = None,
    wait: float = DEFAULT_LOCK_WAIT,
    progress: bool = False,
    mode: str = "import",
    since: dt.date | None = None,
    query: str | None = None,
) -> dict:
    """Merge ``collected`` into an existing kb.db (atomically: copy, change, rename, under the writer lock).

    ``progress``: a bar on stderr, when it is a terminal, while the studies are merged, tagged and written.
    ``mode="update"`` (`kb update`, changes fetched ``since`` a day): nothing new is not an error;
    the run is still recorded, so the next update starts from it.
    """
    from tqdm import tqdm

    derivers = default_derivers() if derivers is None else derivers
    if not target.exists():
        raise BuildError(f"{target}: no such database (run `kb build` first)")
    if not collected.records and not collected.deleted and not collected.trials and mode != "update":
        detail = f": {collected.errors[0]}" if collected.errors else ""
        raise BuildError(f"no records could be loaded{detail}")
    started = _now()
    with atomic_database(target, copy_existing=True, wait=wait) as db:
        create_schema(db)
        touched: dict[str, dict] = {}
        deleted = 0
        for deriver in derivers:
            deriver.prepare(db)
        with db.atomic():
            for key, record in tqdm(collected.records.items(), total=len(collected.records), desc="Importing studies",
                                    unit="rec", disable=None if progress else True):  # None: only on a tty
                study_id, merged = upsert_merged(db, record, derivers, collected.sources_of(key))
                touched[study_id] = merged
            for pmid in collected.deleted:
                deleted += int(delete_study(db, str(pmid)))
        write_trials(db, collected.trials.values(), tagged=bool(derivers))
        link_studies_to_trials(db)
        refresh_term_docs(db)
        refresh_dashboard_counts(db)
        refresh_facet_counts(db)
        for hook in after_write or []:
            hook(db, touched)
        stats = _record_run(
            db, [], source, mode, query, inputs, started, collected, len(touched), deleted,
            since.isoformat() if since else None,
        )
        compact_if_needed(db)  # rows were appended: sort them in once they are many
        optimise(db)
    return stats


def _record_run(
    db, history, source, mode, query, inputs, started, collected, written, deleted, since=None
) -> dict:
    if history:
        db["ingest_runs"].insert_all(history, pk="id", replace=True)
    total = db.execute("select count(*) from studies").fetchone()[0]
    run = {
        "source": source,
        "mode": mode,
        "query": query,
        "inputs": json.dumps(inputs),
        "started": started,
        "finished": _now(),
        "status": "ok" if not collected.errors else "ok-with-errors",
        "records_parsed": collected.parsed,
        "studies_written": written,
        "studies_deleted": deleted,
        "studies_total": total,
        "errors": json.dumps(collected.errors),
        "source_counts": json.dumps(dict(sorted(collected.by_source.items()))),
        "since": since,
    }
    db["ingest_runs"].insert(run)
    return run
