"""Merging two records of one study, field by field: nothing any source had is lost.

Rules: a newer PubMed version replaces an older one outright; otherwise text fields keep
the richer (longer, more precise) value, and list fields are unions keyed by identity,
with the richer duplicate's details filling the gaps of the other.

Those rules combine records of *different* sources. A later record from the *same* source is
that source's correction and replaces its earlier record whole (:func:`latest_of_source`), so a
study is kept as its records by source (:func:`with_source_record`), merged by
:func:`merge_sources`: a corrected PubMed record can drop a title, a MeSH term or a retraction
link, while what Europe PMC said stays.
"""

from __future__ import annotations

import copy

TEXT_FIELDS = ("title", "journal", "iso_abbrev", "issn", "volume", "issue", "pages", "medline_date")
ID_FIELDS = ("doi", "pmcid", "pmid")
UNION_FIELDS = {
    "languages": lambda v: v.lower(),
    "keywords": lambda v: v.lower(),
    "sources": lambda v: v,
    "nct_ids": lambda v: v.upper(),
    "publication_types": lambda v: v["name"].lower(),
    "chemicals": lambda v: v["name"].lower(),
    "databanks": lambda v: (v["name"].lower(), v["accession"].upper()),
    "comments_corrections": lambda v: (v["ref_type"], v["pmid"] or (v["source"] or "").lower()),
}


MAX_PMID_VERSION = 50  # PubMed versions are small numbers; a larger one is a typing error or a trap


def plausible_version(version) -> int | None:
    """A PMID version that can be believed, else None (unknown)."""
    return version if isinstance(version, int) and 1 <= version <= MAX_PMID_VERSION else None


def source_key(record: dict) -> str:
    """The source a record came from ("pubmed"); a merged record's sources joined by "+"."""
    return "+".join(record.get("sources") or [])


def latest_of_source(old: dict, new: dict) -> dict:
    """Two records of one study from one source: the newer PMID version, else the later record, whole."""
    old_version, new_version = plausible_version(old.get("pmid_version")), plausible_version(new.get("pmid_version"))
    if old_version and new_version and new_version < old_version:
        return old  # a stale copy of an older version changes nothing
    return new


def with_source_record(by_source: dict[str, dict], record: dict) -> dict[str, dict]:
    """The study's records by source once ``record`` has arrived (``by_source`` is not modified)."""
    updated = dict(by_source)
    key = source_key(record)
    updated[key] = latest_of_source(by_source[key], record) if key in by_source else record
    return updated


def merge_sources(by_source: dict[str, dict]) -> dict:
    """One study from its records by source, merged field by field in the order they arrived.

    A single source's record is returned as it is (not copied).
    """
    records = iter(by_source.values())
    merged = next(records)
    for record in records:
        merged = merge_records(merged, record)
    return merged


def merge_records(old: dict, new: dict) -> dict:
    """Combine two records of the same study. Neither input is modified."""
    old_version, new_version = plausible_version(old.get("pmid_version")), plausible_version(new.get("pmid_version"))
    if old_version and new_version and old_version != new_version:
        winner = new if new_version > old_version else old
        merged = copy.deepcopy(winner)
        merged["sources"] = _union(old.get("sources", []), new.get("sources", []), lambda v: v)
        return merged
    merged = copy.deepcopy(old)
    merged["pmid_version"] = old_version or new_version
    for name in TEXT_FIELDS:
        merged[name] = _richer_text(old.get(name), new.get(name))
    for name in ID_FIELDS:
        merged[name] = old.get(name) or new.get(name)
    _merge_date(merged, old, new)
    entry_dates = [d for d in (old.get("entry_date"), new.get("entry_date")) if d]
    merged["entry_date"] = min(entry_dates) if entry_dates else None  # the first source to list it
    _merge_abstract(merged, old, new)
    for name, key in UNION_FIELDS.items():
        merged[name] = _union(old.get(name) or [], new.get(name) or [], key)
    merged["mesh"] = _merge_mesh(old.get("mesh") or [], new.get("mesh") or [])
    for name in ("is_open_access", "is_preprint"):
        if old.get(name) is not None or new.get(name) is not None:
            merged[name] = bool(old.get(name) or new.get(name))
    if old.get("cited_by_count") is not None or new.get("cited_by_count") is not None:
        merged["cited_by_count"] = max(old.get("cited_by_count") or 0, new.get("cited_by_count") or 0)
    merged["source_id"] = old.get("source_id") or new.get("source_id")
    merged["authors"] = _merge_authors(old.get("authors") or [], new.get("authors") or [])
    for name in set(new) - set(merged):
        merged[name] = copy.deepcopy(new[name])
    return merged


def _richer_text(a, b):
    a, b = a or "", b or ""
    return b if len(b) > len(a) else a or None if not a else a


def _merge_date(merged: dict, old: dict, new: dict) -> None:
    # A more precise date ("2019-05-04" over "2019") wins; the year travels with it.
    old_date, new_date = old.get("pub_date") or "", new.get("pub_date") or ""
    source = new if len(new_date) > len(old_date) else old
    merged["pub_date"] = source.get("pub_date") or old_date or new_date or None
    merged["year"] = source.get("year") or old.get("year") or new.get("year")


def _abstract_rank(record: dict) -> tuple[int, int, int]:
    sections = record.get("abstract_sections") or []
    labelled = sum(1 for s in sections if s.get("label"))
    categorised = sum(1 for s in sections if s.get("nlm_category"))
    return labelled + categorised, len(record.get("abstract") or ""), 0


def _merge_abstract(merged: dict, old: dict, new: dict) -> None:
    source = new if _abstract_rank(new) > _abstract_rank(old) else old
    merged["abstract"] = source.get("abstract") or ""
    merged["abstract_sections"] = copy.deepcopy(source.get("abstract_sections") or [])


def _fill(target: dict, other: dict) -> None:
    """Copy every value ``other`` has and ``target`` lacks."""
    for key, value in other.items():
        if target.get(key) in (None, "", [], False) and value not in (None, "", []):
            target[key] = copy.deepcopy(value)


def _union(first: list, second: list, key) -> list:
    out: list = []
    index: dict = {}
    for item in list(first) + list(second):
        k = key(item)
        if k in index:
            if isinstance(item, dict):
                _fill(out[index[k]], item)
            continue
        index[k] = len(out)
        out.append(copy.deepcopy(item))
    return out


def _merge_mesh(first: list[dict], second: list[dict]) -> list[dict]:
    out: list[dict] = []
    index: dict[str, int] = {}
    for heading in first + second:
        key = heading["descriptor"].lower()
        if key not in index:
            index[key] = len(out)
            out.append(copy.deepcopy(heading))
            continue
        target = out[index[key]]
        target["descriptor_ui"] = target.get("descriptor_ui") or heading.get("descriptor_ui")
        target["major"] = bool(target.get("major") or heading.get("major"))
        target["qualifiers"] = _union(
            target.get("qualifiers") or [], heading.get("qualifiers") or [], lambda q: q["name"].lower()
        )
        for qualifier in target["qualifiers"]:
            twin = next(
                (q for q in heading.get("qualifiers") or [] if q["name"].lower() == qualifier["name"].lower()),
                None,
            )
            if twin:
                qualifier["major"] = bool(qualifier.get("major") or twin.get("major"))
    return out


def _author_richness(authors: list[dict]) -> int:
    return sum(
        sum(1 for k, v in a.items() if v and k != "affiliations") + len(a.get("affiliations") or [])
        for a in authors
    )


def _merge_authors(first: list[dict], second: list[dict]) -> list[dict]:
    if len(first) != len(second):
        # Different author lists (one truncated, or "et al."): keep the fuller one whole.
        return copy.deepcopy(first if len(first) > len(second) else second)
    base, other = (first, second) if _author_richness(first) >= _author_richness(second) else (second, first)
    merged = copy.deepcopy(base)
    for mine, theirs in zip(merged, other, strict=True):
        _fill(mine, theirs)
        mine["affiliations"] = _union(mine.get("affiliations") or [], theirs.get("affiliations") or [], str.lower)
    return merged
