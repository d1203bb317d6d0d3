"""Building kb.db: collecting records from files or the network, then writing atomically.

A build never modifies kb.db in place. It writes ``.kb.db.tmp-PID`` beside the target and
renames it over the target only once everything has been written and committed, so a
crash or a bad input leaves the previous kb.db exactly as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import gzip
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from . import clinicaltrials, europepmc, exports, pubmed
from .merge import merge_records
from .schema import create_fts, create_schema, optimise, refresh_term_docs
from .store import child_rows, delete_study, study_id_for, study_row, upsert_merged
from .tagger import load_vocabulary
from .trials import link_studies_to_trials, trial_tags, write_trials

RECORD_SUFFIXES = (".xml", ".xml.gz", ".nbib", ".txt", ".ris", ".medline", ".json", ".json.gz")
SOURCES = ("pubmed", "europepmc", "clinicaltrials")


class BuildError(RuntimeError):
    """The build cannot complete; kb.db has not been touched."""


@dataclass
class Collected:
    """Records gathered from many inputs, merged by study (PMID, then DOI), in first-seen order."""

    records: dict[str, dict] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    parsed: int = 0
    errors: list[str] = field(default_factory=list)
    trials: dict[str, dict] = field(default_factory=dict)
    by_doi: dict[str, str] = field(default_factory=dict)
    # Told of every study record as soon as it is parsed, and of every trial: see Prederiver.
    watcher: Prederiver | None = field(default=None, repr=False, compare=False)

    def add(self, record: dict) -> None:
        self.parsed += 1
        key = study_id_for(record)
        if record.get("pmid"):
            self.deleted.discard(record["pmid"])
        doi_key = self.by_doi.get(record.get("doi") or "")
        previous = self.records.get(key)
        if doi_key and doi_key != key and self._same_study(doi_key, record):
            # Known by DOI under another key (a preprint, a record without PMID): one study.
            other = self.records.pop(doi_key)
            previous = merge_records(previous, other) if previous else other
            if not record.get("pmid") and other.get("pmid"):
                key = doi_key
        merged = merge_records(previous, record) if previous else record
        self.records[key] = merged
        if merged.get("doi"):
            self.by_doi[merged["doi"]] = key

    def parsed_record(self, record: dict) -> None:
        """A record just parsed, before it is added (and perhaps merged)."""
        if self.watcher:
            try:
                key = study_id_for(record)
            except ValueError:
                return  # add() reports it
            self.watcher.study(key, record)

    def _same_study(self, key: str, record: dict) -> bool:
        other = self.records.get(key)
        if other is None:
            return False
        # Two different PMIDs with one DOI are two records (errata share DOIs): keep both.
        return not (record.get("pmid") and other.get("pmid") and record["pmid"] != other["pmid"])

    def add_trial(self, trial: dict) -> None:
        previous = self.trials.get(trial["nct_id"])
        self.trials[trial["nct_id"]] = merged = merge_trials(previous, trial) if previous else trial
        if self.watcher:
            self.watcher.trial(trial["nct_id"], merged)

    def delete(self, pmid: int) -> None:
        self.records.pop(str(pmid), None)
        self.deleted.add(pmid)


# --------------------------------------------------------------------------- reading inputs


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise pubmed.ParseError(f"not a readable gzip file ({exc})") from exc
    return data


def merge_trials(old: dict, new: dict) -> dict:
    """Two copies of one trial: the later copy wins (registries update status and enrolment),
    but a field it lacks keeps the earlier value."""
    merged = dict(old)
    merged.update({key: value for key, value in new.items() if value not in (None, "", [])})
    return merged


def parse_bytes(data: bytes, on_record: Callable[[dict], None] | None = None) -> pubmed.ParseResult:
    """Parse one input whose format is recognised from its content.

    ``on_record``: called with each PubMed XML or MEDLINE record as soon as it is parsed.
    """
    kind = exports.sniff_format(data)
    if kind == "xml":
        return pubmed.parse_pubmed_xml(data, on_record)
    if kind == "medline":
        return exports.parse_medline(data, on_record)
    if kind == "ris":
        return exports.parse_ris(data)
    if kind == "europepmc":
        page = europepmc.parse_search_page(data)
        return pubmed.ParseResult(records=page.records, errors=page.errors)
    if kind == "clinicaltrials":
        trials = clinicaltrials.parse_studies_page(data)
        return pubmed.ParseResult(trials=trials.trials, errors=trials.errors)
    if kind == "json":
        raise pubmed.ParseError("JSON, but neither a Europe PMC search page nor a ClinicalTrials.gov /studies page")
    raise pubmed.ParseError("not PubMed XML, MEDLINE text, RIS, Europe PMC or ClinicalTrials.gov JSON")


def input_files(directory: Path) -> list[Path]:
    """Every loadable file under ``directory``, in a stable (sorted) order."""
    if not directory.exists():
        raise BuildError(f"--from-dir {directory}: no such directory")
    if not directory.is_dir():
        raise BuildError(f"--from-dir {directory}: not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise BuildError(f"--from-dir {directory}: permission denied")
    files = sorted(
        p for p in directory.rglob("*")
        if p.is_file() and p.name.lower().endswith(RECORD_SUFFIXES) and not p.name.startswith(".")
    )
    return files


KIND_SOURCE = {"xml": "pubmed", "medline": "pubmed", "ris": "pubmed", "europepmc": "europepmc",
               "clinicaltrials": "clinicaltrials"}


def collect_file(collected: Collected, path: Path, label: str | None = None,
                 sources: Iterable[str] = SOURCES) -> None:
    """Parse one file into ``collected``; a bad file is reported, never fatal."""
    label = label or str(path)
    try:
        data = read_bytes(path)
    except (OSError, pubmed.ParseError) as exc:
        collected.errors.append(f"{label}: cannot read ({getattr(exc, 'strerror', None) or exc})")
        return
    if KIND_SOURCE.get(exports.sniff_format(data) or "", "pubmed") not in set(sources):
        return
    try:
        result = parse_bytes(data, collected.parsed_record)
    except pubmed.ParseError as exc:
        partial = getattr(exc, "partial", None)
        kept = f"; {len(partial.records)} records before the fault were kept" if partial and partial.records else ""
        collected.errors.append(f"{label}: {exc}{kept}")
        if partial is None:
            return
        result = partial
    collected.files.append(label)
    _collect_result(collected, result, label)


def _collect_result(collected: Collected, result: pubmed.ParseResult, label: str) -> None:
    for record in result.records:
        collected.add(record)
    for trial in result.trials:
        collected.add_trial(trial)
    for pmid in result.deleted:
        collected.delete(pmid)
    collected.errors.extend(f"{label}: {e}" for e in result.errors)


def collect_dir(directory: Path, progress: bool = False, sources: Iterable[str] = SOURCES,
                collected: Collected | None = None) -> Collected:
    from tqdm import tqdm

    files = input_files(directory)
    if not files:
        raise BuildError(f"--from-dir {directory}: no PubMed XML, MEDLINE, RIS, Europe PMC or ClinicalTrials.gov files")
    collected = collected or Collected()
    for path in tqdm(files, desc="Parsing files", unit="file", disable=not progress):
        collect_file(collected, path, str(path.relative_to(directory)), sources)
    return collected


def collect_pages(pages: Iterable[bytes], source: str = "pubmed", collected: Collected | None = None) -> Collected:
    """Records (or trials) from one source's pages as its client yields them."""
    collected = collected or Collected()
    for number, page in enumerate(pages, 1):
        label = f"{source} page {number}"
        collected.files.append(label)
        try:
            result = parse_bytes(page)
        except pubmed.ParseError as exc:
            raise pubmed.ParseError(f"{label}: {exc}") from exc
        _collect_result(collected, result, label)
        pause_point(f"page:{source}:{number}")
    return collected


def pause_point(name: str) -> None:
    """Debug aid for crash tests: with KB_PAUSE_AT=name the process announces itself and waits.

    The crash-safety tests kill the build with SIGKILL at such points.
    """
    if os.environ.get("KB_PAUSE_AT") == name:
        print(f"kb: paused at {name}", file=sys.stderr, flush=True)
        time.sleep(120)


# --------------------------------------------------------------------------- writing


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def atomic_database(target: Path, copy_existing: bool) -> Iterator[sqlite_utils.Database]:
    """A temporary database beside ``target``, renamed over it only on success."""
    target = target.resolve()
    if not target.parent.is_dir():
        raise BuildError(f"{target.parent}: cannot write the new database there (not a directory)")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        _remove_stale_temporaries(target)
        tmp.unlink(missing_ok=True)
        if copy_existing:
            _backup(target, tmp)
        db = sqlite_utils.Database(tmp)
        db.execute("select 1")
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{target.parent}: cannot write the new database there ({exc})") from exc
    try:
        db.execute("PRAGMA journal_mode = OFF" if not copy_existing else "PRAGMA journal_mode = DELETE")
        db.execute("PRAGMA synchronous = OFF")
        yield db
        db.execute("PRAGMA synchronous = FULL")
        db.close()
        _fsync(tmp)
        pause_point("before-rename")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        db.close()
        tmp.unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary files of builds that were killed (their process is gone)."""
    for path in target.parent.glob(f".{target.name}.tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _backup(source: Path, dest: Path) -> None:
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        src.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise BuildError(f"{source}: not a readable SQLite database ({exc})") from exc
    dst = sqlite3.connect(dest)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)


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


def default_derivers() -> list:
    """Derived data computed for every study written: tags, for now."""
    from .tag_store import Tagging

    return [Tagging()]


def write_fresh(db: sqlite_utils.Database, collected: Collected, prederived: Prederiver,
                progress: bool = False) -> int:
    """Bulk-write merged records, and what the derivers compute from them, into an empty schema."""
    from tqdm import tqdm

    batch: dict[str, list[dict]] = {}
    written = 0

    def flush() -> None:
        for name, rows in batch.items():
            if rows:
                _insert_rows(db, name, rows)
                rows.clear()

    for deriver in prederived.derivers:
        deriver.prepare(db)
    # Newest first: rowid order is then recency, and ranked searches that cap how many matches
    # they score (the `search` canned query, the claim checker) keep the newest.
    items = sorted(collected.records.items(), key=lambda item: -(item[1].get("year") or 0))
    prederived.prepare(items, list(collected.trials.items()))
    with db.atomic():
        for (study_id, record), derived in tqdm(
            zip(items, prederived.results(items), strict=True),
            total=len(items), desc="Writing studies", unit="rec", disable=not progress,
        ):
            row = study_row(study_id, record)
            tables = child_rows(study_id, record)
            for columns, extra in derived:
                row.update(columns)
                for name, rows in extra.items():
                    tables.setdefault(name, []).extend(rows)
            batch.setdefault("studies", []).append(row)
            for name, rows in tables.items():
                batch.setdefault(name, []).extend(rows)
            written += 1
            if len(batch["studies"]) >= 2000:
                flush()
        flush()
    return written


PARALLEL_THRESHOLD = 400  # records; below this, starting worker processes costs more than it saves
_worker_derivers: list = []


def _derive_chunk(items: list[tuple[str, dict]]) -> list[list[tuple[dict, dict]]]:
    return [[d.derive(study_id, record) for d in _worker_derivers] for study_id, record in items]


def _tag_trial_chunk(items: list[tuple[str, dict]]) -> list[dict[str, list[str]]]:
    vocab = load_vocabulary()
    return [trial_tags(trial, vocab) for _, trial in items]


def _fork_pool(derivers: list, workers: int):
    import multiprocessing

    global _worker_derivers
    _worker_derivers = derivers  # inherited by the forked workers, never pickled
    load_vocabulary()  # compiled once, here, rather than once per worker
    # Freeze the parent's objects out of the collector first: a collection in a forked worker
    # would otherwise touch (and so copy) every page of the records it inherited.
    gc.freeze()
    try:
        return multiprocessing.get_context("fork").Pool(workers)
    finally:
        gc.unfreeze()


def _workers() -> int:
    return min(os.cpu_count() or 1, 4)


class _Lane:
    """Records of one kind sent to the workers in chunks; results looked up by key and record."""

    CHUNK = 50

    def __init__(self, work: Callable, inline: Callable):
        self.work, self.inline = work, inline  # chunk function for workers; (key, record) -> result here
        self.batch: list[tuple[str, dict]] = []
        self.submitted: dict[str, tuple[dict, int, int]] = {}  # key -> (record, chunk, index in chunk)
        self.chunks: list = []  # AsyncResult per chunk

    def submit(self, pool) -> None:
        if not self.batch:
            return
        for index, (key, record) in enumerate(self.batch):
            self.submitted[key] = (record, len(self.chunks), index)
        self.chunks.append(pool.apply_async(self.work, (self.batch,)))
        self.batch = []

    def known(self, key: str, record: dict) -> bool:
        known = self.submitted.get(key)
        return known is not None and known[0] is record

    def result(self, key: str, record: dict):
        if self.known(key, record):
            chunk, index = self.submitted[key][1:]
            return self.chunks[chunk].get()[index]
        return self.inline(key, record)


class Prederiver:
    """Tags studies and trials in worker processes as soon as they are parsed, while parsing goes on.

    Tagging costs more CPU than parsing; run side by side they share the cores instead of
    queueing, and the main process never compiles the vocabulary. Workers start once a first
    chunk is ready (small inputs never fork). A record merged again later is derived again:
    a result is used only if it was derived from the very record being written.
    """

    def __init__(self, derivers: list):
        self.derivers = derivers
        self.enabled = bool(derivers) and _workers() >= 2
        self.pool = None
        self.studies = _Lane(_derive_chunk, lambda key, record: [d.derive(key, record) for d in derivers])
        self.trials = _Lane(_tag_trial_chunk, lambda key, trial: trial_tags(trial, load_vocabulary()))

    def study(self, key: str, record: dict) -> None:
        """A study record just parsed."""
        self._queue(self.studies, key, record)

    def trial(self, key: str, trial: dict) -> None:
        """A trial just collected."""
        self._queue(self.trials, key, trial)

    def _queue(self, lane: _Lane, key: str, record: dict) -> None:
        if not self.enabled:
            return
        lane.batch.append((key, record))
        if len(lane.batch) >= lane.CHUNK:
            self._submit(lane)

    def _submit(self, lane: _Lane) -> None:
        if lane.batch and self.pool is None:
            self.pool = _fork_pool(self.derivers, _workers())
        lane.submit(self.pool)

    def _send_missing(self, lane: _Lane, items: list[tuple[str, dict]]) -> None:
        """Send what was not derived yet (merged since, or parsed in one go) to the workers, if worth it."""
        missing = [(key, record) for key, record in items if not lane.known(key, record)]
        lane.batch = []
        if self.enabled and (self.pool is not None or len(missing) >= PARALLEL_THRESHOLD):
            for start in range(0, len(missing), lane.CHUNK):
                lane.batch = missing[start:start + lane.CHUNK]
                self._submit(lane)

    def prepare(self, studies: list[tuple[str, dict]], trials: list[tuple[str, dict]]) -> None:
        """Everything still to derive goes to the workers now, studies first."""
        self._send_missing(self.studies, studies)
        if self.derivers:
            self._send_missing(self.trials, trials)

    def results(self, items: list[tuple[str, dict]]) -> Iterator[list[tuple[dict, dict]]]:
        """Each deriver's output for each (key, study record), in order."""
        for key, record in items:
            yield self.studies.result(key, record)

    def trial_tags(self, items: list[tuple[str, dict]]) -> list[dict[str, list[str]]] | None:
        """Tags of each (key, trial), in order; None when the build derives nothing."""
        if not self.derivers:
            return None
        return [self.trials.result(key, trial) for key, trial in items]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> Prederiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
    prederived: Prederiver | None = None,
) -> dict:
    """Write a new kb.db from ``collected``, atomically replacing ``target``.

    ``prederived``: the Prederiver that watched ``collected`` being gathered (its derivers are used).
    """
    derivers = default_derivers() if derivers is None else derivers
    if not collected.records and not collected.trials:
        detail = f": {collected.errors[0]}" if collected.errors else ""
        raise BuildError(f"no records could be loaded{detail}")
    started = _now()
    history = previous_runs(target)
    if prederived is not None:
        derivers = prederived.derivers
    with atomic_database(target, copy_existing=False) as db, prederived or Prederiver(derivers) as early:
        create_schema(db, fts=False)
        pause_point("schema")
        written = write_fresh(db, collected, early, progress)
        pause_point("written")
        trials = list(collected.trials.items())
        write_trials(db, [trial for _, trial in trials], early.trial_tags(trials), tagged=bool(derivers))
        link_studies_to_trials(db)
        create_fts(db)
        refresh_term_docs(db)
        for hook in after_write or []:
            hook(db, collected.records)
        stats = _record_run(
            db, history, source, mode, query, inputs or collected.files, started, collected,
            written, len(collected.deleted),
        )
        optimise(db)
    return stats


def build_from_dir(target: Path, directory: Path, sources: Iterable[str] = SOURCES, progress: bool = False,
                   derivers: list | None = None) -> dict:
    """Build kb.db from every file under ``directory``; studies are tagged while parsing goes on."""
    sources = tuple(sources)
    with Prederiver(default_derivers() if derivers is None else derivers) as early:
        collected = collect_dir(directory, progress, sources, Collected(watcher=early))
        return build(target, collected, ",".join(sources), "from-dir", inputs=collected.files, progress=progress,
                     prederived=early)


def import_into(
    target: Path,
    collected: Collected,
    source: str,
    inputs: list[str],
    after_write: list[Hook] | None = None,
    derivers: list | None = None,
) -> dict:
    """Merge ``collected`` into an existing kb.db (atomically: copy, change, rename)."""
    derivers = default_derivers() if derivers is None else derivers
    if not target.exists():
        raise BuildError(f"{target}: no such database (run `kb build` first)")
    if not collected.records and not collected.deleted and not collected.trials:
        detail = f": {collected.errors[0]}" if collected.errors else ""
        raise BuildError(f"no records could be loaded{detail}")
    started = _now()
    with atomic_database(target, copy_existing=True) as db:
        create_schema(db)
        touched: dict[str, dict] = {}
        deleted = 0
        for deriver in derivers:
            deriver.prepare(db)
        with db.atomic():
            for record in collected.records.values():
                study_id, merged = upsert_merged(db, record, derivers)
                touched[study_id] = merged
            for pmid in collected.deleted:
                deleted += int(delete_study(db, str(pmid)))
        write_trials(db, collected.trials.values(), tagged=bool(derivers))
        link_studies_to_trials(db)
        refresh_term_docs(db)
        for hook in after_write or []:
            hook(db, touched)
        stats = _record_run(
            db, [], source, "import", None, inputs, started, collected, len(touched), deleted
        )
        optimise(db)
    return stats


def _record_run(
    db, history, source, mode, query, inputs, started, collected, written, deleted
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
    }
    db["ingest_runs"].insert(run)
    return run
