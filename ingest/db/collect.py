"""Collecting records from files and source pages, merged by study as they arrive."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from ..records import ParseError, ParseResult
from ..records.merge import MAX_PMID_VERSION, merge_sources, plausible_version, source_key, with_source_record
from ..sources.formats import SOURCES, UnreadableInput, is_record_file, parse_bytes, parse_path
from .atomic import BuildError, pause_point
from .staging import StagingFile
from .studies import pack_record, study_id_for, unpack_record


@dataclass
class Collected:
    """Records gathered from many inputs, merged by study (PMID, then DOI), in first-seen order.

    In memory (dicts) for imports and tests; a build keeps them on disk (:meth:`on_disk`).
    """

    records: MutableMapping[str, dict] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    parsed: int = 0
    # Records (and trials) read, by the source that produced them: a run's per-source counts.
    by_source: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    trials: dict[str, dict] = field(default_factory=dict)
    by_doi: MutableMapping[str, str] = field(default_factory=dict)
    # A study several sources contributed to: each source's own record, packed (a few kB each),
    # so that a later record replaces its own source's alone (records.merge). A study from one
    # source is its one record, in ``records``.
    packed_sources: MutableMapping[str, dict[str, bytes]] = field(default_factory=dict)

    @classmethod
    def on_disk(cls, staging: StagingFile) -> Collected:
        """Studies, their DOIs and their sources' records kept in ``staging`` (memory flat in their number).

        Trials (a registry's few thousand), deletions and counts stay in memory.
        """
        return cls(records=staging.mapping("records", ordered_by_year=True), by_doi=staging.mapping("by_doi"),
                   packed_sources=staging.mapping("packed_sources"))

    def newest_first(self) -> Iterable[tuple[str, dict]]:
        """(study id, record), newest year first, ties in first-seen order: the order kb.db is written in."""
        if hasattr(self.records, "newest_first"):
            return self.records.newest_first()
        return sorted(self.records.items(), key=lambda item: -(item[1].get("year") or 0))

    def add(self, record: dict) -> None:
        self.parsed += 1
        self.by_source[(record.get("sources") or ["unknown"])[0]] += 1
        key = study_id_for(record)
        if record.get("pmid"):
            self.deleted.discard(record["pmid"])
        by_source, changed = self.sources_of(key), source_key(record)
        doi_key = self.by_doi.get(record.get("doi") or "")
        if doi_key and doi_key != key and self._same_study(doi_key, record):
            # Known by DOI under another key (a preprint, a record without PMID): one study.
            other = self.records[doi_key]
            by_source, changed = _joined(by_source, self.sources_of(doi_key)), None
            self._forget(doi_key)
            if not record.get("pmid") and other.get("pmid"):
                self._forget(key)
                key = doi_key
        merged = self._keep(key, with_source_record(by_source, record), changed)
        if merged.get("doi"):
            self.by_doi[merged["doi"]] = key

    def sources_of(self, key: str) -> dict[str, dict]:
        """The study's records by source (a study from one source: its record)."""
        if key in self.packed_sources:
            return {source: unpack_record(blob) for source, blob in self.packed_sources[key].items()}
        record = self.records.get(key)
        return {source_key(record): record} if record else {}

    def _keep(self, key: str, by_source: dict[str, dict], changed: str | None) -> dict:
        """Store the study merged from ``by_source``; only the ``changed`` source is packed again."""
        self.records[key] = merged = merge_sources(by_source)
        if len(by_source) < 2:
            self.packed_sources.pop(key, None)
        else:
            old = self.packed_sources.get(key, {})
            self.packed_sources[key] = {source: old[source] if source in old and source != changed
                                        else pack_record(r) for source, r in by_source.items()}
        return merged

    def _forget(self, key: str) -> None:
        self.records.pop(key, None)
        self.packed_sources.pop(key, None)

    def _same_study(self, key: str, record: dict) -> bool:
        other = self.records.get(key)
        if other is None:
            return False
        # Two different PMIDs with one DOI are two records (errata share DOIs): keep both.
        return not (record.get("pmid") and other.get("pmid") and record["pmid"] != other["pmid"])

    def add_trial(self, trial: dict) -> None:
        self.by_source["clinicaltrials"] += 1
        previous = self.trials.get(trial["nct_id"])
        self.trials[trial["nct_id"]] = merge_trials(previous, trial) if previous else trial

    def delete(self, pmid: int) -> None:
        self._forget(str(pmid))
        self.deleted.add(pmid)


def _joined(first: dict[str, dict], second: dict[str, dict]) -> dict[str, dict]:
    """Two studies found to be one: their records by source together."""
    joined = dict(first)
    for record in second.values():
        joined = with_source_record(joined, record)
    return joined


def _implausible_version(record: dict) -> bool:
    """A PMID Version such as 999: kept, it would outrank every genuine record of that PMID."""
    version = record.get("pmid_version")
    return version is not None and plausible_version(version) is None


def merge_trials(old: dict, new: dict) -> dict:
    """Two copies of one trial: the later copy wins (registries update status and enrolment),
    but a field it lacks keeps the earlier value."""
    merged = dict(old)
    merged.update({key: value for key, value in new.items() if value not in (None, "", [])})
    return merged


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
        if p.is_file() and is_record_file(p)  # READMEs, PROVENANCE.json... are skipped quietly
    )
    return files


def collect_file(collected: Collected, path: Path, label: str | None = None,
                 sources: Iterable[str] = SOURCES) -> None:
    """Parse one file into ``collected``, its records merged as they are parsed (a PubMed XML file
    is streamed: memory does not grow with it); a bad file is reported, never fatal."""
    label = label or str(path)
    delivered = ParseResult()  # counts the records handed on, for the messages below

    def deliver(record: dict) -> None:
        delivered.count += 1
        _collect_record(collected, record, label)

    try:
        _, result = parse_path(path, deliver, sources=sources)
    except (OSError, UnreadableInput) as exc:
        collected.errors.append(f"{label}: cannot read ({getattr(exc, 'strerror', None) or exc})"
                                f"{_kept(delivered.count)}")
        return
    except ParseError as exc:
        collected.errors.append(f"{label}: {exc}{_kept(delivered.count)}")
        result = getattr(exc, "partial", None)
        if result is None:
            return
    if result is None:  # a source not asked for
        return
    collected.files.append(label)
    _collect_rest(collected, result, label)


def _kept(count: int) -> str:
    return f"; {count} records before the fault were kept" if count else ""


def _collect_record(collected: Collected, record: dict, label: str) -> None:
    if _implausible_version(record):
        collected.parsed += 1
        collected.errors.append(
            f"{label}: PMID {record.get('pmid')}: Version {record['pmid_version']} is not a plausible "
            f"PubMed version (1-{MAX_PMID_VERSION}): record skipped")
        return
    collected.add(record)


def _collect_rest(collected: Collected, result: ParseResult, label: str) -> None:
    """What a parse gives besides the study records: trials, deletions, warnings."""
    for trial in result.trials:
        collected.add_trial(trial)
    for pmid in result.deleted:
        collected.delete(pmid)
    collected.errors.extend(f"{label}: {e}" for e in result.errors)


def _collect_result(collected: Collected, result: ParseResult, label: str) -> None:
    for record in result.records:
        _collect_record(collected, record, label)
    _collect_rest(collected, result, label)


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
        except ParseError as exc:
            raise ParseError(f"{label}: {exc}") from exc
        _collect_result(collected, result, label)
        pause_point(f"page:{source}:{number}")
    return collected
