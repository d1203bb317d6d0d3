"""ketamine-kb's Datasette pages: study and trial details, tag labels, links, robots header.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. Templates get two async
functions, ``kb_study(database, id)`` and ``kb_trial(database, nct_id)``, returning everything a
study or trial page shows, plus ``kb_home(database)`` for the home page. Every piece of record
text reaches the page escaped: the only markup this module produces is built with
``markupsafe.escape`` around the stored text (``<mark>`` for a matched phrase, ``<a>`` for ids).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from functools import lru_cache

from datasette import hookimpl
from datasette.utils import tilde_encode
from markupsafe import Markup, escape

from ingest.records.text import json_list
from ingest.site import browse
from ingest.site import display as words

# The order kinds are shown in on a study page.
KIND_ORDER = ("design", "indication", "drug", "route", "population", "mechanism", "side_effect")
# JSON arrays of tag ids, shown as labelled links to the matching array facet.
TAG_ARRAY_COLUMNS = {"indications", "mechanisms", "side_effects", "side_effects_absent", "designs", "drugs",
                     "routes", "populations"}
TAGGED_TABLES = {"studies", "trials"}
# Long text shown cut short in table listings (the study and trial pages show it whole).
LONG_TEXT = {("studies", "abstract"), ("studies", "sample_size_evidence"), ("trials", "brief_summary"),
             ("trials", "detailed_description"), ("trials", "official_title")}
CELL_CHARS = 300
# Views without foreign keys whose study_id should still link to the study page.
TAG_VIEWS = {f"{kind}_tags" for kind in KIND_ORDER}
LINK_ORDER = {"RetractionIn": 0, "RetractionOf": 1, "ExpressionOfConcernIn": 2, "ErratumIn": 3, "UpdateIn": 4}
_NCT = re.compile(r"NCT\d{8}")
_PMID = re.compile(r"\d{1,9}")


# --------------------------------------------------------------------------- highlighting


@lru_cache(maxsize=1)
def _vocabulary():
    try:
        from ingest.tagging import load_vocabulary

        return load_vocabulary()
    except Exception:  # pragma: no cover - the package is always importable under `kb serve`
        return None


@lru_cache(maxsize=512)
def _fallback_regexes(patterns_json: str) -> tuple[re.Pattern, ...]:
    """A tag's patterns as stored in kb.db (case-insensitive), for tags the vocabulary no longer has."""
    out = []
    try:
        patterns = json.loads(patterns_json or "[]")
    except ValueError:
        return ()
    for pattern in patterns if isinstance(patterns, list) else ():
        try:
            out.append(re.compile(f"(?:{pattern})(?![\\w])", re.IGNORECASE))
        except (re.error, TypeError):
            continue
    return tuple(out)


def _left_boundary(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "-_")


def match_spans(text: str, tag_id: str, source: str | None = None,
                patterns_json: str | None = None) -> list[tuple[int, int]]:
    """Where a tag's phrase occurs in its evidence text: sorted, non-overlapping (start, end) pairs.

    A MeSH heading ("Descriptor/qualifier") marks its descriptor, a publication type itself; a
    sentence is searched with the tag's patterns from the vocabulary the tagger used (those
    stored in kb.db when the vocabulary no longer has the tag).
    """
    if not text:
        return []
    if source == "publication_type":
        return [(0, len(text))]
    if source == "mesh":
        descriptor = text.split("/", 1)[0]
        return [(0, len(descriptor))] if descriptor else []
    regexes: list[re.Pattern] = []
    vocab = _vocabulary()
    tag = vocab.tags.get(tag_id) if vocab else None
    if tag is not None:
        regexes = [r for r in (tag.slow_regex, tag.case_regex) if r is not None]
    elif patterns_json:
        regexes = list(_fallback_regexes(patterns_json))
    spans = []
    for regex in regexes:
        for m in regex.finditer(text):
            if m.end() > m.start() and _left_boundary(text, m.start()):
                spans.append((m.start(), m.end()))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str | None, spans: list[tuple[int, int]]) -> Markup:
    """The text escaped, with each span wrapped in <mark> (escape first, then mark)."""
    text = text or ""
    out, position = [], 0
    for start, end in spans:
        out.append(escape(text[position:start]))
        out.append(Markup("<mark>") + escape(text[start:end]) + Markup("</mark>"))
        position = end
    out.append(escape(text[position:]))
    return Markup("").join(out)


# --------------------------------------------------------------------------- data for templates




async def _tables(db) -> set[str]:
    return set(await db.table_names()) | set(await db.view_names())


def _with_text(tables: set[str], table: str) -> str:
    """The view that reads ``table`` with its text (db/schema.py TEXT_VIEWS: kb.db stores each text
    once); the table itself in a kb.db older than the views, whose rows hold their text."""
    return f"{table}_text" if f"{table}_text" in tables else table


async def _rows(db, sql: str, params) -> list[dict]:
    return [dict(r) for r in (await db.execute(sql, params)).rows]


async def tag_labels(datasette, database: str) -> dict[str, dict]:
    """Every tag's id -> {label, kind, definition}, read once per database (kb.db is immutable).

    Kept on the Database object: when a replaced kb.db is reopened (reopen.py) it is read again.
    """
    db = datasette.get_database(database)
    if "_kb_tag_labels" not in db.__dict__:
        labels = {}
        if "tags" in await db.table_names():
            for row in await _rows(db, "select id, kind, label, definition from tags", []):
                labels[row["id"]] = row
        db.__dict__["_kb_tag_labels"] = labels
    return db.__dict__["_kb_tag_labels"]


def pubmed_url(pmid) -> str | None:
    return f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/" if pmid and _PMID.fullmatch(str(pmid)) else None


def doi_url(doi: str | None) -> str | None:
    # DOIs are arbitrary text: the template escapes the URL; here only the scheme is fixed.
    return f"https://doi.org/{doi}" if doi and doi.startswith("10.") else None


def pmc_url(pmcid: str | None) -> str | None:
    return f"https://pmc.ncbi.nlm.nih.gov/articles/{pmcid}/" if pmcid and re.fullmatch(r"PMC\d+", pmcid) else None


def trial_url(nct_id: str | None) -> str | None:
    return f"https://clinicaltrials.gov/study/{nct_id}" if nct_id and _NCT.fullmatch(nct_id) else None


def trial_results_url(nct_id: str | None) -> str | None:
    """The registry record's results tab (only worth linking when results are posted)."""
    url = trial_url(nct_id)
    return f"{url}?tab=results" if url else None


def tag_label(labels: dict, tag_id: str) -> str:
    """A tag's label (the id itself when the vocabulary lacks it)."""
    return (labels.get(tag_id) or {}).get("label") or tag_id


def labelled_tags(value, labels: dict) -> list[dict]:
    """A JSON array of tag ids as [{id, label}]."""
    return [{"id": t, "label": tag_label(labels, t)} for t in json_list(value)]


async def study_detail(datasette, database: str, study_id: str) -> dict | None:
    db = datasette.get_database(database)
    tables = await _tables(db)
    found = await _rows(db, "select * from studies where id = ?", [study_id])
    if not found:
        return None
    study = found[0]
    labels = await tag_labels(datasette, database)

    def labelled(column: str) -> list[dict]:
        return labelled_tags(study.get(column), labels)

    detail = {
        "study": study,
        "parent_design_label": tag_label(labels, study["parent_design"]) if study.get("parent_design") else None,
        "designs": labelled("designs"), "drugs": labelled("drugs"), "routes": labelled("routes"),
        "indications": labelled("indications"), "populations": labelled("populations"),
        "mesh_terms": json_list(study.get("mesh_terms")), "keywords": json_list(study.get("keywords")),
        "publication_types": json_list(study.get("publication_type_names")),
        "links": {"pubmed": pubmed_url(study.get("pmid")), "doi": doi_url(study.get("doi")),
                  "pmc": pmc_url(study.get("pmcid"))},
        "sections": [], "authors": [], "tag_groups": [], "trials": [], "corrections": [], "findings": [],
    }
    if "abstract_sections" in tables:
        detail["sections"] = await _rows(
            db, f"select label, nlm_category, text from {_with_text(tables, 'abstract_sections')} "
                "where study_id = ? order by position", [study_id])
    if "authors" in tables:
        detail["authors"] = await _rows(
            db, "select last_name, fore_name, initials, collective_name, orcid from authors "
                "where study_id = ? order by position", [study_id])
    if "study_links" in tables:
        links = await _rows(db, "select ref_type, ref_pmid, ref_source, note from study_links "
                                "where study_id = ? order by position", [study_id])
        for link in links:
            link["url"] = pubmed_url(link["ref_pmid"])
        detail["corrections"] = sorted(links, key=lambda r: LINK_ORDER.get(r["ref_type"], 9))
    if {"study_tags", "tags"} <= tables:
        detail["tag_groups"] = await _tag_groups(db, study_id, tables)
    detail["findings"] = await _findings(db, study_id, tables)
    detail["trials"] = await _study_trials(db, study, tables)
    for trial in detail["trials"]:
        trial["url"] = row_url(datasette, database, "trials", trial["nct_id"]) if trial["in_kb"] else None
    return detail


async def _tag_groups(db, study_id: str, tables: set[str]) -> list[dict]:
    kinds = {}
    if "tag_kinds" in tables:
        kinds = {r["id"]: r for r in await _rows(db, "select id, label, description from tag_kinds", [])}
    rows = await _rows(
        db,
        "select st.tag_id, st.kind, st.source, st.evidence, st.section, st.negated, t.label, t.definition, "
        f"t.patterns from {_with_text(tables, 'study_tags')} st join tags t on t.id = st.tag_id "
        "where st.study_id = ? order by st.kind, t.label, st.position",
        [study_id],
    )
    groups: dict[str, dict] = {}
    for row in rows:
        kind = row["kind"]
        group = groups.setdefault(kind, {
            "kind": kind, "label": (kinds.get(kind) or {}).get("label") or kind.replace("_", " ").capitalize(),
            "description": (kinds.get(kind) or {}).get("description"), "tags": {},
        })
        tag = group["tags"].setdefault(row["tag_id"], {
            "id": row["tag_id"], "label": row["label"] or row["tag_id"], "definition": row["definition"],
            "evidence": [], "reported": False, "absent": False,
        })
        if row["negated"]:
            tag["absent"] = True
        else:
            tag["reported"] = True
        spans = match_spans(row["evidence"] or "", row["tag_id"], row["source"], row["patterns"])
        tag["evidence"].append({
            "source": row["source"], "section": row["section"], "negated": bool(row["negated"]),
            "html": highlight(row["evidence"], spans), "matched": bool(spans),
        })
    ordered = sorted(groups.values(), key=lambda g: KIND_ORDER.index(g["kind"]) if g["kind"] in KIND_ORDER else 99)
    for group in ordered:
        group["tags"] = list(group["tags"].values())
    return ordered


DIRECTION_WORDS = {"improved": "improved", "worsened": "worsened", "no_difference": "no difference",
                   "increased": "increased", "decreased": "decreased", "mixed": "mixed"}


async def _findings(db, study_id: str, tables: set[str]) -> list[dict]:
    """One entry per result sentence: its outcomes with the way each went, and its quantities."""
    if not {"findings", "finding_quantities"} <= tables:
        return []
    by_sentence: dict[int, dict] = {}

    def entry(row: dict) -> dict:
        return by_sentence.setdefault(row["sentence_index"], {
            "sentence": row["sentence"], "section": row["section"], "outcomes": [], "quantities": []})

    for row in await _rows(db, "select sentence_index, section, sentence, outcome_label, direction, hedged, "
                               f"comparison from {_with_text(tables, 'findings')} where study_id = ? "
                               "order by position", [study_id]):
        entry(row)["outcomes"].append({
            "label": row["outcome_label"], "direction": row["direction"],
            "direction_label": DIRECTION_WORDS.get(row["direction"], row["direction"]),
            "hedged": bool(row["hedged"]), "comparison": bool(row["comparison"])})
    for row in await _rows(db, "select sentence_index, section, sentence, type, value, unit, text, denominator "
                               f"from {_with_text(tables, 'finding_quantities')} where study_id = ? "
                               "order by position", [study_id]):
        entry(row)["quantities"].append({"type": row["type"].replace("_", " "), "text": row["text"],
                                         "value": row["value"], "unit": row["unit"],
                                         "denominator": row["denominator"]})
    return [by_sentence[index] for index in sorted(by_sentence)]


async def _study_trials(db, study: dict, tables: set[str]) -> list[dict]:
    trials: dict[str, dict] = {}
    if {"study_trials", "trials"} <= tables:
        for row in await _rows(
            db,
            "select st.nct_id, group_concat(st.how, ', ') as how, t.title, t.official_title, t.acronym, "
            "t.conditions, t.overall_status, t.phases, t.start_year, t.nct_id is not null as in_kb "
            "from study_trials st left join trials t on t.nct_id = st.nct_id where st.study_id = ? "
            "group by st.nct_id order by st.nct_id",
            [study["id"]],
        ):
            row["in_kb"] = bool(row["in_kb"])
            row["phases"] = json_list(row["phases"])
            row["phase_label"] = words.phase_label(row["phases"])
            if row["in_kb"]:
                row["title"] = words.trial_title(row)[0]
            trials[row["nct_id"]] = row
    known: set[str] = set()
    extra = [n for n in json_list(study.get("nct_ids")) if isinstance(n, str) and n not in trials]
    if extra and "trials" in tables:
        marks = ", ".join("?" for _ in extra)
        known = {r["nct_id"] for r in await _rows(db, f"select nct_id from trials where nct_id in ({marks})", extra)}
    for nct in extra:
        trials[nct] = {"nct_id": nct, "how": "registry number in the record", "title": None,
                       "overall_status": None, "phases": [], "phase_label": "", "start_year": None,
                       "in_kb": nct in known}
    for row in trials.values():
        row["registry_url"] = trial_url(row["nct_id"])
    return list(trials.values())


async def trial_detail(datasette, database: str, nct_id: str) -> dict | None:
    db = datasette.get_database(database)
    tables = await _tables(db)
    found = await _rows(db, "select * from trials where nct_id = ?", [nct_id])
    if not found:
        return None
    trial = found[0]
    labels = await tag_labels(datasette, database)

    def labelled(column: str) -> list[dict]:
        return labelled_tags(trial.get(column), labels)

    interventions = [i for i in json_list(trial.get("interventions")) if isinstance(i, dict)]
    title, stand_in = words.trial_title(trial)
    detail = {
        "trial": trial,
        "title": title, "title_is_stand_in": stand_in,
        "phases": [str(p) for p in json_list(trial.get("phases"))],
        "phase_label": words.phase_label(json_list(trial.get("phases"))),
        "status_label": words.code_label("trials", "overall_status", trial.get("overall_status")),
        "study_type_label": words.code_label("trials", "study_type", trial.get("study_type")),
        "allocation_label": words.code_label("trials", "allocation", trial.get("allocation")),
        "enrollment_type_label": words.code_label("trials", "enrollment_type", trial.get("enrollment_type")),
        "results_url": trial_results_url(trial["nct_id"]) if trial.get("has_results") else None,
        "conditions": json_list(trial.get("conditions")), "keywords": json_list(trial.get("keywords")),
        "interventions": interventions, "collaborators": json_list(trial.get("collaborators")),
        "countries": json_list(trial.get("countries")),
        "primary_outcomes": [o for o in json_list(trial.get("primary_outcomes")) if isinstance(o, dict)],
        "indications": labelled("indications"), "drugs": labelled("drugs"), "routes": labelled("routes"),
        "registry_url": trial_url(trial["nct_id"]), "papers": [], "other_references": [],
    }
    linked: set[int] = set()
    if "study_trials" in tables:
        papers = await _rows(
            db,
            "select s.id, s.pmid, s.title, s.journal, s.year, s.designs, s.is_retracted, group_concat(st.how, ', ') "
            "as how from study_trials st join studies s on s.id = st.study_id where st.nct_id = ? "
            "group by s.id order by s.year, s.id",
            [nct_id],
        )
        for paper in papers:
            paper["designs"] = [tag_label(labels, d) for d in json_list(paper["designs"])]
            paper["pubmed_url"] = pubmed_url(paper["pmid"])
            paper["url"] = row_url(datasette, database, "studies", paper["id"])
            if paper["pmid"]:
                linked.add(int(paper["pmid"]))
        detail["papers"] = papers
    for pmid in json_list(trial.get("reference_pmids")):
        try:
            number = int(pmid)
        except (TypeError, ValueError):
            continue
        if number not in linked:
            detail["other_references"].append({"pmid": number, "url": pubmed_url(number)})
    return detail


async def home_detail(datasette, database: str) -> dict:
    """Counts and canned queries for the home page."""
    try:
        db = datasette.get_database(database)
    except KeyError:
        return {"database": None, "queries": [], "counts": {}}
    tables = await _tables(db)
    counts = {}
    for table in ("studies", "trials", "study_tags"):
        if table in tables:
            counts[table] = (await db.execute(f"select count(*) from [{table}]")).first()[0]
    queries = await datasette.get_canned_queries(database, None)
    return {
        "database": database,
        "counts": counts,
        "queries": [{"name": name, "title": q.get("title") or name, "description": q.get("description")}
                    for name, q in queries.items()],
    }


SOURCE_LABELS = {"pubmed": "PubMed", "medline": "MEDLINE files", "ris": "RIS files", "europepmc": "Europe PMC",
                 "clinicaltrials": "ClinicalTrials.gov"}
RUN_LABELS = {"network": "full build", "from-dir": "build from files", "import": "import", "update": "update"}


async def freshness(datasette, database: str) -> dict | None:
    """How current kb.db is: the last run (when it finished, what kind) and what it read per source."""
    try:
        db = datasette.get_database(database)
    except KeyError:
        return None
    if "ingest_runs" not in await _tables(db):
        return None
    columns = {c.name for c in await db.table_column_details("ingest_runs")}
    extra = ", ".join(c for c in ("source_counts", "since") if c in columns)
    rows = await _rows(db, f"select id, mode, finished, studies_total{', ' + extra if extra else ''} "
                           "from ingest_runs order by id desc limit 1", [])
    if not rows:
        return None
    run = rows[0]
    try:
        counts = json.loads(run.get("source_counts") or "{}")
    except ValueError:
        counts = {}
    return {
        "run_id": run["id"],
        "finished": (run["finished"] or "")[:16].replace("T", " "),
        "finished_iso": run["finished"],
        "kind": RUN_LABELS.get(run["mode"], run["mode"]),
        "since": run.get("since"),
        "studies_total": run["studies_total"],
        "counts": [(SOURCE_LABELS.get(name, name), count) for name, count in counts.items()
                   if isinstance(count, int)],
    }


@hookimpl
def extra_template_vars(datasette):
    # One page render calls these more than once (the <title> and the body): read once.
    cache: dict[tuple, dict | None] = {}

    async def kb_study(database, study_id):
        key = ("study", database, str(study_id))
        if key not in cache:
            cache[key] = await study_detail(datasette, database, str(study_id))
        return cache[key]

    async def kb_trial(database, nct_id):
        key = ("trial", database, str(nct_id))
        if key not in cache:
            cache[key] = await trial_detail(datasette, database, str(nct_id))
        return cache[key]

    async def kb_home(database="kb"):
        return await home_detail(datasette, database)

    async def kb_off_topic(database="kb"):
        key = ("off_topic", database)
        if key not in cache:
            cache[key] = await off_topic_count(datasette, database)
        return cache[key]

    async def kb_freshness(database="kb"):
        key = ("freshness", database)
        if key not in cache:
            cache[key] = await freshness(datasette, database)
        return cache[key]

    async def kb_tag(database, tag_id):
        key = ("tag", database, str(tag_id))
        if key not in cache:
            cache[key] = await browse.tag_detail(datasette, database, str(tag_id))
        return cache[key]

    def kb_table(table, request, display_columns, display_rows, all_columns=None, whole=False):
        return browse.table_view(table, request.args, display_columns, display_rows, all_columns, whole)

    async def kb_tag_links(database, rows):
        return await browse.tag_table_links(datasette, database, rows)

    def kb_schema(database, tables):
        return browse.schema_summary(datasette, database, tables)

    def kb_examples(database):
        return browse.example_queries(datasette, database)

    return {"kb_study": kb_study, "kb_trial": kb_trial, "kb_home": kb_home, "kb_off_topic": kb_off_topic,
            "kb_freshness": kb_freshness, "kb_tag": kb_tag, "kb_table": kb_table, "kb_tag_links": kb_tag_links,
            "kb_schema": kb_schema, "kb_examples": kb_examples, "kb_heading": words.heading,
            "kb_facet_label": browse.facet_value_label}


async def off_topic_count(datasette, database: str) -> int:
    """Studies flagged off topic (0 for a kb.db built before the flag existed)."""
    db = datasette.get_database(database)
    columns = {r[1] for r in (await db.execute("pragma table_info(studies)")).rows}
    if "on_topic" not in columns:
        return 0
    return (await db.execute("select count(*) from studies where on_topic = 0")).first()[0]


# --------------------------------------------------------------------------- cells


def _chips(datasette, database: str, table: str, column: str, ids: list, labels: dict) -> Markup:
    base = datasette.urls.table(database, table)
    parts = []
    for tag_id in ids:
        if not isinstance(tag_id, str):
            return None
        label = tag_label(labels, tag_id)
        href = f"{base}?{column}__arraycontains={urllib.parse.quote_plus(tag_id)}"
        parts.append(Markup('<a class="kb-chip" href="{}" title="{}">{}</a>').format(href, tag_id, label))
    return Markup(" ").join(parts)


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    """Tag-id arrays as labelled links; study_id / nct_id in query results as links to their pages;
    studies, trials and tags cells in words (browse.cell_html)."""
    if (table, column) in LONG_TEXT and isinstance(value, str) and len(value) > CELL_CHARS:
        cut = value[:CELL_CHARS].rsplit(" ", 1)[0]
        return Markup('<span class="kb-cut">{}…</span>').format(cut)
    if table in TAGGED_TABLES and column in TAG_ARRAY_COLUMNS and isinstance(value, str) and value.startswith("["):
        ids = json_list(value)

        async def chips():
            if not ids:  # an empty array: a blank cell, not "[]"
                return Markup("&nbsp;")
            return _chips(datasette, database, table, column, ids, await tag_labels(datasette, database))

        return chips()
    worded = browse.cell_html(datasette, database, table, column, value, row)
    if worded is not None:
        return worded
    if (table is None or table in TAG_VIEWS) and isinstance(value, str) and value:
        target = {"study_id": "studies", "nct_id": "trials"}.get(column)
        if target is None or (target == "trials" and not _NCT.fullmatch(value)):
            return None

        async def link():
            if target not in await table_names(datasette, database):
                return None
            return Markup('<a href="{}">{}</a>').format(row_url(datasette, database, target, value), value)

        return link()
    return None


async def table_names(datasette, database: str) -> set[str]:
    """The tables of a database, read once per Database object (kb.db is immutable; see tag_labels)."""
    db = datasette.get_database(database)
    if "_kb_table_names" not in db.__dict__:
        db.__dict__["_kb_table_names"] = set(await db.table_names())
    return db.__dict__["_kb_table_names"]


def row_url(datasette, database: str, table: str, pk: str) -> str:
    return datasette.urls.row(database, table, tilde_encode(str(pk)))


# --------------------------------------------------------------------------- robots


def robots_blocked(config: dict | None) -> bool:
    """True unless datasette-block-robots is configured to let crawlers in somewhere."""
    config = config or {}
    if config.get("literal"):
        return False
    disallow = config.get("disallow")
    if isinstance(disallow, str):
        disallow = [disallow]
    if config.get("allow_only_index"):
        return False
    return not disallow or "/" in disallow


# --------------------------------------------------------------------------- off-topic studies

STUDIES_PATH = "/kb/studies"
SHOW_OFF_TOPIC = "_offtopic"  # ?_offtopic=1 shows every study (Datasette ignores unknown _ arguments)


def on_topic_redirect(scope) -> str | None:
    """The studies page without an on_topic choice opens on the on-topic studies: where to send it."""
    if scope.get("method") not in ("GET", "HEAD") or scope.get("path") != STUDIES_PATH:
        return None
    query = scope.get("query_string", b"").decode("latin-1")
    keys = {urllib.parse.unquote_plus(pair.split("=", 1)[0]) for pair in query.split("&") if pair}
    if SHOW_OFF_TOPIC in keys or any(k == "on_topic" or k.startswith("on_topic__") for k in keys):
        return None
    return f"{STUDIES_PATH}?{query + '&' if query else ''}on_topic=1"


async def _redirect(send, location: str) -> None:
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", location.encode("latin-1")), (b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b""})


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def add_header(scope, receive, send):
            location = on_topic_redirect(scope) if scope["type"] == "http" else None
            if location:
                await _redirect(send, location)
                return
            if scope["type"] != "http" or not robots_blocked(datasette.plugin_config("datasette-block-robots")):
                await app(scope, receive, send)
                return

            async def send_with_header(event):
                if event["type"] == "http.response.start":
                    headers = [h for h in event.get("headers", []) if h[0].lower() != b"x-robots-tag"]
                    event = {**event, "headers": headers + [(b"x-robots-tag", b"noindex, nofollow")]}
                await send(event)

            await app(scope, receive, send_with_header)

        return add_header

    return wrap


