"""Trials in kb.db: writing ClinicalTrials.gov trials (tagged) and linking them to studies."""

from __future__ import annotations

import json
from collections.abc import Iterable

import sqlite_utils

from ..records.text import nct_ids_in
from ..tagging import Vocabulary, load_vocabulary, tag_record
from .schema import TRIALS

LINK_METHODS = ("databank", "abstract", "trial_reference")


def trial_as_record(trial: dict) -> dict:
    """A trial in the shape the tagger reads: its text in labelled sections."""
    interventions = "; ".join(
        " ".join(x for x in (i.get("name"), i.get("description")) if x) for i in trial.get("interventions") or []
    )
    sections = [
        ("CONDITIONS", ", ".join(trial.get("conditions") or [])),
        ("INTERVENTIONS", interventions),
        ("SUMMARY", " ".join(x for x in (trial.get("official_title"), trial.get("brief_summary")) if x)),
        ("KEYWORDS", ", ".join(trial.get("keywords") or [])),
    ]
    return {
        "title": trial.get("title") or trial.get("official_title") or "",
        "abstract_sections": [{"label": label, "nlm_category": None, "text": text} for label, text in sections if text],
    }


def trial_row(trial: dict, tags: dict[str, list[str]]) -> dict:
    def js(value) -> str:
        return json.dumps(value or [], ensure_ascii=False)

    row = {
        **{k: trial.get(k) for k in (
            "nct_id", "title", "official_title", "acronym", "brief_summary", "detailed_description", "study_type",
            "overall_status", "start_date", "start_year", "completion_date", "enrollment", "enrollment_type",
            "sponsor", "sponsor_class", "allocation", "masking", "intervention_model", "primary_purpose")},
        "phases": js(trial.get("phases")),
        "conditions": js(trial.get("conditions")),
        "keywords": js(trial.get("keywords")),
        "interventions": js(trial.get("interventions")),
        "intervention_names": "; ".join(i.get("name") or "" for i in trial.get("interventions") or []) or None,
        "collaborators": js(trial.get("collaborators")),
        "has_results": int(bool(trial.get("has_results"))),
        "primary_outcomes": js(trial.get("primary_outcomes")),
        "secondary_outcomes": js(trial.get("secondary_outcomes")),
        "countries": js(trial.get("countries")),
        "reference_pmids": js(sorted({r["pmid"] for r in trial.get("references") or [] if r.get("pmid")})),
        "indications": js(tags.get("indication")),
        "drugs": js(tags.get("drug")),
        "routes": js(tags.get("route")),
        "sources": js([trial.get("source") or "clinicaltrials"]),
    }
    return {k: row.get(k) for k in TRIALS}


def trial_tags(trial: dict, vocab: Vocabulary) -> dict[str, list[str]]:
    """A trial's tags (the trials table keeps its indications, drugs and routes)."""
    return tag_record(trial_as_record(trial), vocab, sample_size=False).tags


def write_trials(db: sqlite_utils.Database, trials: Iterable[dict], tags: list[dict] | None = None,
                 tagged: bool = True) -> int:
    """Insert or replace every trial, with its indications, drugs and routes.

    ``tags``: each trial's tags, in order, if already computed; else they are computed here
    (unless not ``tagged``).
    """
    trials = list(trials)
    if tags is None:
        vocab = load_vocabulary() if tagged else None
        tags = [trial_tags(trial, vocab) if vocab else {} for trial in trials]
    rows = [trial_row(trial, its_tags) for trial, its_tags in zip(trials, tags, strict=True)]
    if rows:
        with db.atomic():
            db["trials"].insert_all(rows, pk="nct_id", replace=True)
    return len(rows)


def link_studies_to_trials(db: sqlite_utils.Database) -> dict[str, int]:
    """Recompute study_trials from every source of evidence; returns the count per method."""
    known = {row[0] for row in db.execute("select nct_id from trials")}
    links: set[tuple[str, str, str]] = set()
    for study_id, nct_json, title, abstract in db.execute("select id, nct_ids, title, abstract from studies"):
        for nct in json.loads(nct_json or "[]"):
            if nct in known:
                links.add((study_id, nct, "databank"))
        for nct in nct_ids_in(f"{title or ''} {abstract or ''}"):
            if nct in known:
                links.add((study_id, nct, "abstract"))
    by_pmid = {pmid: study_id for study_id, pmid in db.execute("select id, pmid from studies where pmid is not null")}
    for nct, refs in db.execute("select nct_id, reference_pmids from trials"):
        for pmid in json.loads(refs or "[]"):
            if int(pmid) in by_pmid:
                links.add((by_pmid[int(pmid)], nct, "trial_reference"))
    with db.atomic():
        db.execute("delete from study_trials")
        db.conn.executemany("insert into study_trials (study_id, nct_id, how) values (?, ?, ?)", sorted(links))
    return {method: sum(1 for link in links if link[2] == method) for method in LINK_METHODS}
