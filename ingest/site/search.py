"""The search page's queries: studies ranked by relevance with facet counts, trials and sentences.

Pure SQL on a DB-API ``sqlite3`` connection: the ``search_page`` plugin runs it on Datasette's
read-only connection (``db.execute_fn``); tests and benchmarks call it directly.

How it stays fast as kb.db grows (docs/scaling.md):

* **A bounded match set.** At most :data:`MATCH_CAP` studies are ranked and counted: the newest
  matches (kb.db stores the newest studies first; ``ranked_range`` of the claim checker finds the
  cap's rowid by walking matches in rowid order, scoring none), plus every match among the rows
  imports appended since kb.db was last sorted (the tail, db/order.py: at most a few thousand).
  The page says when a search matched more.
* **No abstracts through sorts.** Ranking, sorting and facet counting read rowids, bm25 scores
  and the narrow tag columns of ``idx_studies_tag_columns``; titles, authors and snippets are
  read for the page's rows alone.
* **The matches read once.** One statement reads the narrow columns of every match (scanning the
  index when there are many, looking rows up when few); a second reads their bm25 scores when the
  order needs them. Every facet is counted from those rows in Python, each column's distinct
  arrays before their values (as the ``tags`` facet of ``plugins/tag_facets.py`` does in SQL), and
  the page's rows are the first of a partial sort (``heapq``). Open access is not in the index:
  the open-access rowids are read once per served kb.db (``open_access_rowids``).

Everything a page shows from the record is escaped here or by the template: snippets are built
by FTS5 with private-use markers, escaped, then marked (:func:`marked`), never stored HTML.
"""

from __future__ import annotations

import heapq
import math
import re
import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from datasette.utils import escape_fts
from markupsafe import Markup, escape

from ingest.claims.retrieve import NO_LIMIT, ranked_range, sorted_upto
from ingest.records.text import json_list
from ingest.site.display import language_name

MAX_QUERY_CHARS = 500
MAX_WORDS = 32
MAX_FILTER_VALUES = 20
MATCH_CAP = 20_000  # as the canned query `search`: the newest 20,000 matches are ranked
SENTENCE_CAP = 5_000  # matching sentences ranked (the newest studies' first), as the claim checker
COUNT_CAP = 10_000  # trials and sentences are counted up to this many ("10,000+")
PAGE_SIZE = 20
EXPORT_LIMIT = 1_000  # as a table page's _size=max
FEED_SIZE = 50
FACET_VALUES = 50  # values counted per facet (the page shows the first few, the rest on demand)
# bm25 weights: a title match weighs ten times an abstract match (as the canned query `search`).
STUDY_WEIGHTS = (10.0, 1.0)
# trials_fts columns: title, official_title, brief_summary, conditions, intervention_names.
TRIAL_WEIGHTS = (5.0, 3.0, 1.0, 3.0, 2.0)
# Above this many candidates the filtered rows are read by scanning idx_studies_tag_columns
# (about 150 bytes a study) instead of looking each row up in the table (kilobytes a study).
INDEX_SCAN_ABOVE = 3_000
TAG_INDEX = "idx_studies_tag_columns"
ON_TOPIC_INDEX = "idx_studies_on_topic"
# Snippet markers: private-use characters that PubMed text does not hold, replaced by <mark> after escaping.
OPEN, CLOSE = "\ue000", "\ue001"
SHOW_OFF_TOPIC = "_offtopic"  # as on the studies page: ?_offtopic=1 shows off-topic records too
TABS = ("studies", "trials", "sentences")
SORTS = {"best": "Best match", "newest": "Newest", "level": "Evidence level"}


class SearchError(ValueError):
    """A search that cannot be run as asked; the message says why in one line."""


@dataclass(frozen=True)
class Facet:
    key: str  # the URL argument (?design=rct)
    column: str  # the studies column it counts
    label: str
    kind: str  # "array" (a JSON array of tag ids: every value selected must be there), "level", "year", "flag"


FACETS = (
    Facet("design", "designs", "Design", "array"),
    Facet("level", "evidence_level_label", "Evidence level", "level"),
    Facet("year", "year", "Year", "year"),
    Facet("indication", "indications", "Indication", "array"),
    Facet("drug", "drugs", "Drug", "array"),
    Facet("route", "routes", "Route", "array"),
    Facet("population", "populations", "Population", "array"),
    Facet("language", "languages", "Language", "array"),
    Facet("oa", "is_open_access", "Open access", "flag"),
)
FACET_BY_KEY = {f.key: f for f in FACETS}
FLAG_LABELS = {"1": "Open access", "0": "Not known to be open access"}


# --------------------------------------------------------------------------- what was asked


@dataclass(frozen=True)
class SearchArgs:
    """One search as its URL says it: words, facet selections, author, journal, sort, page, tab."""

    q: str = ""
    filters: tuple[tuple[str, str], ...] = ()  # (facet key, value), in the order given
    author: str = ""
    journal: str = ""
    sort: str = "best"
    page: int = 1
    tab: str = "studies"
    off_topic: bool = False

    @property
    def fts(self) -> str:
        """The words as an FTS5 query: each word quoted (matched as typed), "quoted words" kept together."""
        return escape_fts(self.q) if self.q.strip() else ""

    def selected(self, key: str) -> list[str]:
        return [v for k, v in self.filters if k == key]

    def pairs(self) -> list[tuple[str, str]]:
        """The URL arguments of this search (defaults left out)."""
        out = [("q", self.q)] if self.q else []
        out += list(self.filters)
        out += [(k, v) for k, v in (("author", self.author), ("journal", self.journal)) if v]
        if self.sort != "best":
            out.append(("sort", self.sort))
        if self.tab != "studies":
            out.append(("tab", self.tab))
        if self.off_topic:
            out.append((SHOW_OFF_TOPIC, "1"))
        if self.page > 1:
            out.append(("page", str(self.page)))
        return out

    def url(self, path: str = "/-/search", **changes) -> str:
        """This search with ``changes`` (SearchArgs fields), back on page 1 unless a page is given."""
        changed = replace(self, **{"page": 1, **changes})
        query = urllib.parse.urlencode(changed.pairs())
        return f"{path}?{query}" if query else path

    def toggled(self, key: str, value: str, path: str = "/-/search") -> str:
        """The URL with this facet value added, or removed when it is selected."""
        pair = (key, str(value))
        filters = tuple(p for p in self.filters if p != pair) if pair in self.filters else self.filters + (pair,)
        return self.url(path, filters=filters)

    def without(self, key: str, path: str = "/-/search") -> str:
        """The URL with every value of this facet (or the author or journal) removed."""
        if key in ("author", "journal", "q"):
            return self.url(path, **{key: ""})
        return self.url(path, filters=tuple(p for p in self.filters if p[0] != key))


def _one(args: Mapping[str, list[str]], name: str) -> str:
    values = args.get(name) or []
    return (values[-1] if values else "").strip()


def parse_args(args: Mapping[str, list[str]]) -> SearchArgs:
    """A search from URL arguments (name -> values); SearchError for one that cannot be run."""
    q = " ".join(_one(args, "q").split())
    if len(q) > MAX_QUERY_CHARS:
        raise SearchError(f"the search is {len(q):,} characters long; at most {MAX_QUERY_CHARS} are searched")
    if q and len(escape_fts(q).split('" "')) > MAX_WORDS:
        raise SearchError(f"the search has more than {MAX_WORDS} words; leave some out")
    filters = []
    for facet in FACETS:
        for value in args.get(facet.key) or []:
            value = value.strip()
            if value:
                filters.append((facet.key, _checked(facet, value)))
    if len(filters) > MAX_FILTER_VALUES:
        raise SearchError(f"{len(filters)} filters were chosen; at most {MAX_FILTER_VALUES} apply at once")
    sort = _one(args, "sort") or "best"
    if sort not in SORTS:
        raise SearchError(f"unknown sort {sort[:40]!r}: use one of {', '.join(SORTS)}")
    tab = _one(args, "tab") or "studies"
    if tab not in TABS:
        raise SearchError(f"unknown tab {tab[:40]!r}: use one of {', '.join(TABS)}")
    page, last_page = _one(args, "page") or "1", max(1, MATCH_CAP // PAGE_SIZE)
    if not page.isdigit() or not 1 <= int(page) <= last_page:
        raise SearchError(f"page must be a number from 1 to {last_page}")
    author, journal = _one(args, "author"), _one(args, "journal")
    for name, value in (("author", author), ("journal", journal)):
        if len(value) > 300:
            raise SearchError(f"the {name} is {len(value):,} characters long; at most 300 are accepted")
    return SearchArgs(q=q, filters=tuple(filters), author=author, journal=journal, sort=sort, page=int(page),
                      tab=tab, off_topic=_one(args, SHOW_OFF_TOPIC) not in ("", "0"))


def _checked(facet: Facet, value: str) -> str:
    ok = {"array": lambda v: len(v) <= 100, "level": lambda v: v.isdigit() and 1 <= int(v) <= 9,
          "year": lambda v: v.isdigit() and len(v) == 4, "flag": lambda v: v in FLAG_LABELS}[facet.kind]
    if not ok(value):
        raise SearchError(f"{value[:40]!r} is not a value of the {facet.label.lower()} filter")
    return value


# --------------------------------------------------------------------------- the bounded match set


@dataclass
class Plan:
    """How the rows of one search are found: the bounded match set, and how to read its rows' columns.

    The set is the sorted prefix's part (``where`` and ``head``, then ``order_limit``) and, when
    ``tail``, every row past ``:tail_after`` meeting ``where`` (db/order.py): two rowid ranges, each
    walked by itself.
    """

    source: str  # FROM of the candidate rows: studies_fts, or studies through an index
    where: str
    order_limit: str  # "" for FTS matches (bounded by rowid), else the newest MATCH_CAP
    params: dict
    capped: bool  # more studies matched than were ranked
    index_scan: bool  # read the filtered rows from idx_studies_tag_columns
    head: str = ""  # the rowid bound of the sorted prefix's part
    tail: bool = False  # add the tail's rows

    def candidates(self, scored: bool = False) -> str:
        """SQL of (rowid, score) rows; bm25 computed only when the order needs it."""
        weights = ", ".join(str(w) for w in STUDY_WEIGHTS)
        score = f"bm25(studies_fts, {weights})" if scored and self.source == "studies_fts" else "0.0"
        select = f"select rowid, {score} as score from {self.source} where {self.where}"
        head = f"{select}{' and ' + self.head if self.head else ''}{self.order_limit}"
        if not self.tail:
            return head
        if self.order_limit:
            head = f"select * from ({head})"
        return f"{head} union all {select} and rowid > :tail_after"


def _author_sql(author: str, params: dict) -> str:
    """Studies by an author as their links name one: "Zarate CA" (surname, initials), or a group's name."""
    last, _, initials = author.rpartition(" ")
    params["author"] = author
    if last and re.fullmatch(r"[A-Z]{1,6}", initials):
        params["author_last"], params["author_initials"] = last, initials
        match = "((a.last_name = :author_last and a.initials = :author_initials) or a.collective_name = :author)"
    else:
        match = "(a.last_name = :author or a.collective_name = :author)"
    return f"select s.rowid from authors a join studies s on s.id = a.study_id where {match}"


def _indexes(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("select name from sqlite_master where type = 'index'")}


def plan(conn: sqlite3.Connection, args: SearchArgs) -> Plan:
    """The bounded match set of a search: FTS matches (the newest MATCH_CAP), an author's or a journal's
    studies, or, with neither words nor author nor journal, the newest on-topic studies."""
    params: dict = {}
    restrict = []
    if args.author:
        restrict.append(f"rowid in ({_author_sql(args.author, params)})")
    if args.journal:
        params["journal"] = args.journal
        restrict.append("rowid in (select rowid from studies where journal = :journal)")
    indexes = _indexes(conn)
    fts = args.fts
    if fts and args.author:  # an author's studies are few: rank them all
        params["fts"] = fts
        found = Plan("studies_fts", " and ".join(["studies_fts match :fts", *restrict]), "", params,
                     capped=False, index_scan=False)
    elif fts:  # the newest MATCH_CAP matches of the sorted prefix, and the tail's
        bounds = _ranked_range(conn, fts)
        params.update(fts=fts, **bounds.params)
        found = Plan("studies_fts", " and ".join(["studies_fts match :fts", *restrict]), "", params,
                     capped=False, index_scan=False, head="rowid <= :last", tail=bounds.tail_after != NO_LIMIT)
        found.capped = _run(conn, "select 1 from studies_fts where studies_fts match :fts and rowid > :last "
                                  "and rowid <= :tail_after limit 1", params) != []
    else:
        on_topic = not args.off_topic and ON_TOPIC_INDEX in indexes
        params.update(cap=MATCH_CAP, tail_after=_studies_sorted_upto(conn))
        tail = params["tail_after"] != NO_LIMIT
        found = Plan(f"studies indexed by {ON_TOPIC_INDEX}" if on_topic else "studies",
                     " and ".join((["on_topic = 1"] if on_topic else []) + restrict) or "1",
                     " order by rowid limit :cap", params, capped=False, index_scan=False,
                     head="rowid <= :tail_after" if tail else "", tail=tail)
        found.capped = _run(conn, f"select 1 from {found.source} where {found.where} and rowid <= :tail_after "
                                  "order by rowid limit 1 offset :cap", params) != []
    count = _run(conn, f"select count(*) from ({found.candidates()})", params)[0][0]
    found.index_scan = count > INDEX_SCAN_ABOVE and TAG_INDEX in indexes
    return found


def _ranked_range(conn: sqlite3.Connection, fts: str):
    try:
        return ranked_range(conn, "studies_fts", fts, MATCH_CAP)
    except sqlite3.OperationalError as exc:
        raise SearchError(f"the search could not be run ({exc})") from exc


def _studies_sorted_upto(conn: sqlite3.Connection) -> int:
    try:
        return sorted_upto(conn, "studies")
    except sqlite3.OperationalError as exc:
        raise SearchError(f"the search could not be run ({exc})") from exc


def _filters_sql(args: SearchArgs, params: dict) -> list[str]:
    """WHERE conditions of the facet selections the tag index can answer (arrays: all of them; levels,
    years: any of them). Open access and on-topic are applied to the rows read (:func:`select_rows`)."""
    conditions = []
    for facet in FACETS:
        values = args.selected(facet.key)
        if not values or facet.kind == "flag":
            continue
        names = []
        for i, value in enumerate(values):
            names.append(f":{facet.key}_{i}")
            params[f"{facet.key}_{i}"] = int(value) if facet.kind in ("level", "year") else value
        if facet.kind == "array":
            conditions += [f"exists (select 1 from json_each(s.{facet.column}) where value = {n})" for n in names]
        elif facet.kind == "level":
            conditions.append(f"cast(s.evidence_level_label as integer) in ({', '.join(names)})")
        else:
            conditions.append(f"s.year in ({', '.join(names)})")
    return conditions


# What is read for every match: all in idx_studies_tag_columns, so a scan of it never reads the table.
MATCH_COLUMNS = ("on_topic", "year", "evidence_level_label", "designs", "drugs", "indications", "routes",
                 "populations", "languages")
ROWID, ON_TOPIC, YEAR, LEVEL = range(4)  # positions in a match row; the tag columns follow
COLUMN_AT = {column: i + 1 for i, column in enumerate(MATCH_COLUMNS)}


def matches(conn: sqlite3.Connection, found: Plan, args: SearchArgs) -> list[tuple]:
    """(rowid, on_topic, year, level label, designs, drugs, ...) of each candidate passing the
    array, level and year filters: narrow columns, no abstract read or sorted.

    The columns and the bm25 scores are two statements joined here: SQLite's plan for joining the
    scored match set to the index scan looked the rows up one by one (much slower at 40,000 studies).
    """
    params = dict(found.params)
    source = f"studies s indexed by {TAG_INDEX}" if found.index_scan else "studies s"
    columns = ", ".join(f"s.{c}" for c in MATCH_COLUMNS)
    where = " and ".join(["s.rowid in (select rowid from m)", *_filters_sql(args, params)])
    return _run(conn, f"with m as materialized ({found.candidates()}) "
                      f"select s.rowid, {columns} from {source} where {where}", params)


def scores(conn: sqlite3.Connection, found: Plan) -> dict[int, float]:
    """bm25 of every candidate (lower is better); empty when the search has no words."""
    if found.source != "studies_fts":
        return {}
    return dict(_run(conn, found.candidates(scored=True), found.params))


def open_access_rowids(conn: sqlite3.Connection) -> frozenset[int]:
    """The rowids of the open-access studies (not in the tag index: read once per served kb.db by the plugin)."""
    return frozenset(r[0] for r in conn.execute("select rowid from studies where is_open_access = 1"))


@dataclass
class Selection:
    """The matches a search shows, and what was left out of them."""

    rows: list[tuple]  # match rows, every filter applied, in no particular order
    hidden_off_topic: int
    capped: bool
    open_access: frozenset[int]
    scores: dict[int, float]  # bm25 by rowid, when the order needs it

    def columns(self) -> list[tuple]:
        """The rows as columns (counted by Counter in C, not row by row in Python)."""
        return list(zip(*self.rows, strict=True)) if self.rows else [() for _ in range(len(MATCH_COLUMNS) + 1)]


def select_rows(conn: sqlite3.Connection, args: SearchArgs, scored: bool = False,
                open_access: frozenset[int] | None = None) -> Selection:
    """Every match of the search that its filters keep (off-topic ones left out unless asked for)."""
    found = plan(conn, args)
    rows = matches(conn, found, args)
    hidden = 0
    if not args.off_topic:
        kept = [r for r in rows if r[ON_TOPIC] != 0]
        hidden, rows = len(rows) - len(kept), kept
    if open_access is None:
        open_access = open_access_rowids(conn)
    wanted = args.selected("oa")
    if wanted:
        rows = [r for r in rows if (r[ROWID] in open_access) == (wanted[-1] == "1")]
    return Selection(rows, hidden, found.capped, open_access, scores(conn, found) if scored and rows else {})


# --------------------------------------------------------------------------- facets


@dataclass
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool
    url: str = ""


@dataclass
class FacetCounts:
    facet: Facet
    values: list[FacetValue]


def _counted(facet: Facet, columns: list[tuple], open_access: frozenset[int]) -> Counter:
    if facet.kind == "flag":
        opened = len(open_access.intersection(columns[ROWID]))
        return Counter({"1": opened, "0": len(columns[ROWID]) - opened})
    values = Counter(columns[COLUMN_AT[facet.column]])
    if facet.kind != "array":
        return Counter({v: n for v, n in values.items() if v is not None})
    # Each distinct array once (["rct"] stands for thousands of rows); a value once per row.
    counts: Counter = Counter()
    for array, n in values.items():
        for tag in {t for t in json_list(array) if isinstance(t, (str, int, float))}:
            counts[str(tag)] += n
    return counts


def _array_label(facet: Facet, value: str, labels: Mapping[str, str]) -> str:
    """A tag by its label, a language by its name, anything else as stored."""
    if facet.column == "languages":
        return language_name(value) or value
    return labels.get(value, value)


def facet_counts(selection: Selection, args: SearchArgs, labels: Mapping[str, str]) -> list[FacetCounts]:
    """Each facet's values over the selected matches: most frequent first (years newest first, evidence
    levels by level), at most FACET_VALUES; a selected value is always listed, to be removed."""
    out = []
    columns = selection.columns()
    for facet in FACETS:
        counts = _counted(facet, columns, selection.open_access)
        if facet.kind == "array":
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        elif facet.kind == "year":
            ordered = sorted(counts.items(), key=lambda kv: -kv[0])
        elif facet.kind == "level":
            ordered = sorted(((str(int(str(v).split(" ", 1)[0])), n, v) for v, n in counts.items()),
                             key=lambda item: int(item[0]))
        else:
            ordered = [(k, counts[k]) for k in ("1", "0") if counts[k]]
        values = []
        for item in ordered[:FACET_VALUES]:
            key, n = str(item[0]), item[1]
            label = {"array": _array_label(facet, key, labels), "level": item[-1],
                     "flag": FLAG_LABELS.get(key, key)}.get(facet.kind, key)
            values.append(FacetValue(key, str(label), n, key in args.selected(facet.key), args.toggled(facet.key, key)))
        for key in args.selected(facet.key):
            if key not in {v.value for v in values}:
                label = _array_label(facet, key, labels) if facet.kind == "array" else FLAG_LABELS.get(key, key)
                values.append(FacetValue(key, label, 0, True, args.toggled(facet.key, key)))
        out.append(FacetCounts(facet, values))
    return out


def _run(conn: sqlite3.Connection, sql: str, params) -> list[tuple]:
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise
        raise SearchError(f"the search could not be run ({exc})") from exc


# --------------------------------------------------------------------------- the page of studies


def _newest_first(row: tuple) -> tuple:
    return row[YEAR] is None, -(row[YEAR] or 0), row[ROWID]


def _order_key(sort: str, scores: dict[int, float]):
    if sort == "newest":
        return _newest_first
    if sort == "level":
        return lambda r: (r[LEVEL] is None, r[LEVEL] or "", scores.get(r[ROWID], 0.0), r[ROWID])
    if not scores:  # no words to rank by: newest first, as a fresh build stores them (the tail among them)
        return _newest_first
    return lambda r: (scores.get(r[ROWID], 0.0), r[ROWID])  # bm25: lower is better; ties newest first


def ordered_rowids(selection: Selection, sort: str, limit: int, offset: int = 0) -> list[int]:
    """One page of the selected matches' rowids in the chosen order."""
    rows = heapq.nsmallest(offset + limit, selection.rows, key=_order_key(sort, selection.scores))
    return [r[ROWID] for r in rows[offset:offset + limit]]


STUDY_COLUMNS = ("id", "pmid", "doi", "title", "journal", "year", "pub_date", "first_author", "author_count",
                 "designs", "drugs", "indications", "evidence_level", "evidence_level_label", "sample_size",
                 "studies_included", "participants_pooled", "is_open_access", "cited_by_count", "is_retracted",
                 "on_topic")
SNIPPET_TOKENS = 40


@dataclass
class Author:
    name: str  # as shown: "Zarate CA"
    query: str  # the author argument that finds their studies


@dataclass
class StudyHit:
    row: dict
    title: Markup
    snippet: Markup
    authors: list[Author]
    more_authors: int
    designs: list[dict]
    drugs: list[dict]
    indications: list[dict]


def study_hits(conn: sqlite3.Connection, rowids: Sequence[int], fts: str, labels: Mapping[str, str]) -> list[StudyHit]:
    """The page's studies in the given order: what a result shows, the title and snippet marked where they match."""
    if not rowids:
        return []
    available = {r[1] for r in conn.execute("pragma table_info(studies)")}
    columns = [c for c in STUDY_COLUMNS if c in available]
    marks = ", ".join("?" for _ in rowids)
    select = ", ".join(f"s.{c}" for c in columns)
    params: list = []
    if fts:
        select += (", (select highlight(studies_fts, 0, ?, ?) from studies_fts where studies_fts match ? "
                   "and studies_fts.rowid = s.rowid) as title_marked"
                   ", (select snippet(studies_fts, 1, ?, ?, ' … ', ?) from studies_fts where studies_fts match ? "
                   "and studies_fts.rowid = s.rowid) as snippet_marked")
        params += [OPEN, CLOSE, fts, OPEN, CLOSE, SNIPPET_TOKENS, fts]
    else:
        select += ", null as title_marked, substr(s.abstract, 1, 400) as snippet_marked"
    rows = _run(conn, f"select s.rowid, {select} from studies s where s.rowid in ({marks})", params + list(rowids))
    names = ["rowid", *columns, "title_marked", "snippet_marked"]
    by_rowid = {r[0]: dict(zip(names, r, strict=True)) for r in rows}
    authors = _authors(conn, [by_rowid[r]["id"] for r in rowids if r in by_rowid])
    hits = []
    for rowid in rowids:
        row = by_rowid.get(rowid)
        if row is None:
            continue
        listed, total = authors.get(row["id"], ([], 0))
        if not listed and row.get("first_author"):
            listed, total = [Author(row["first_author"], row["first_author"])], row.get("author_count") or 1
        snippet = row["snippet_marked"] or ""
        if not fts and len(snippet) >= 400:
            snippet = snippet.rsplit(" ", 1)[0] + " …"
        hits.append(StudyHit(
            row=row, title=marked(row["title_marked"] or row["title"] or row["id"]), snippet=marked(snippet),
            authors=listed, more_authors=max(0, total - len(listed)),
            designs=_labelled(row.get("designs"), labels), drugs=_labelled(row.get("drugs"), labels),
            indications=_labelled(row.get("indications"), labels)))
    return hits


AUTHORS_SHOWN = 3


def author_name(last_name: str | None, initials: str | None, fore_name: str | None = None,
                collective: str | None = None) -> str:
    """An author as PubMed lists them ("Zarate CA"); a group by its name."""
    if collective and not last_name:
        return collective
    if not initials and fore_name:
        initials = "".join(part[0] for part in re.split(r"[\s-]+", fore_name) if part)
    return f"{last_name} {initials}".strip() if last_name else (collective or "")


def _authors(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[list[Author], int]]:
    if not ids or not conn.execute("select 1 from sqlite_master where name = 'authors'").fetchone():
        return {}
    marks = ", ".join("?" for _ in ids)
    out: dict[str, tuple[list[Author], int]] = {}
    rows = conn.execute(f"select study_id, position, last_name, initials, fore_name, collective_name, "
                        f"count(*) over (partition by study_id) from authors where study_id in ({marks}) "
                        "order by study_id, position", ids).fetchall()
    for study_id, _, last, initials, fore, collective, total in rows:
        listed, _ = out.setdefault(study_id, ([], total))
        if len(listed) < AUTHORS_SHOWN:
            name = author_name(last, initials, fore, collective)
            if name:
                listed.append(Author(name, name))
    return out


def _labelled(value, labels: Mapping[str, str]) -> list[dict]:
    return [{"id": t, "label": labels.get(t, t)} for t in json_list(value) if isinstance(t, str)]


def marked(text: str | None) -> Markup:
    """Text with FTS5's match markers as <mark>: the text escaped first; an unpaired marker is dropped."""
    out, inside = [], False
    for piece in re.split(f"([{OPEN}{CLOSE}])", text or ""):
        if piece == OPEN and not inside:
            out.append(Markup('<mark class="kb-hit">'))
            inside = True
        elif piece == CLOSE and inside:
            out.append(Markup("</mark>"))
            inside = False
        elif piece not in (OPEN, CLOSE):
            out.append(escape(piece))
    if inside:
        out.append(Markup("</mark>"))
    return Markup("").join(out)


@dataclass
class StudyResults:
    total: int
    hidden_off_topic: int
    capped: bool
    facets: list[FacetCounts]
    hits: list[StudyHit]
    page: int
    pages: int


def _scored(args: SearchArgs) -> bool:
    return bool(args.fts) and args.sort != "newest"


def search_studies(conn: sqlite3.Connection, args: SearchArgs, labels: Mapping[str, str],
                   open_access: frozenset[int] | None = None, page_size: int = PAGE_SIZE) -> StudyResults:
    """One page of studies, with the counts and facets of all the matches the filters keep."""
    selection = select_rows(conn, args, scored=_scored(args), open_access=open_access)
    total = len(selection.rows)
    pages = max(1, math.ceil(total / page_size))
    page = min(args.page, pages)
    rowids = ordered_rowids(selection, args.sort, page_size, (page - 1) * page_size)
    return StudyResults(total=total, hidden_off_topic=selection.hidden_off_topic, capped=selection.capped,
                        facets=facet_counts(selection, args, labels), hits=study_hits(conn, rowids, args.fts, labels),
                        page=page, pages=pages)


def export_ids(conn: sqlite3.Connection, args: SearchArgs, limit: int = EXPORT_LIMIT,
               open_access: frozenset[int] | None = None) -> tuple[list[str], Selection]:
    """The study ids of the selected matches in the chosen order (at most ``limit``), and the selection."""
    selection = select_rows(conn, args, scored=_scored(args), open_access=open_access)
    rowids = ordered_rowids(selection, args.sort, limit)
    if not rowids:
        return [], selection
    marks = ", ".join("?" for _ in rowids)
    ids = dict(conn.execute(f"select rowid, id from studies where rowid in ({marks})", rowids).fetchall())
    return [ids[r] for r in rowids if r in ids], selection


# --------------------------------------------------------------------------- trials and sentences


def _bounded_count(conn: sqlite3.Connection, sql: str, params) -> int:
    return _run(conn, f"select count(*) from ({sql} limit {COUNT_CAP + 1})", params)[0][0]


def _has(conn: sqlite3.Connection, *names: str) -> bool:
    found = {r[0] for r in conn.execute(
        f"select name from sqlite_master where name in ({', '.join('?' for _ in names)})", names)}
    return found == set(names)


def count_trials(conn: sqlite3.Connection, fts: str) -> int:
    if not fts or not _has(conn, "trials", "trials_fts"):
        return 0
    return _bounded_count(conn, "select rowid from trials_fts where trials_fts match ?", [fts])


PHASE_WORDS = {"EARLY_PHASE1": "Early phase 1", "NA": "Not applicable"}


def phase_label(phases: Iterable) -> str:
    """["PHASE1", "PHASE2"] -> "Phase 1/2"."""
    phases = [str(p) for p in phases]
    numbers = [p.removeprefix("PHASE") for p in phases if re.fullmatch(r"PHASE\d", p)]
    words = [PHASE_WORDS.get(p, p.replace("_", " ").capitalize()) for p in phases if not re.fullmatch(r"PHASE\d", p)]
    return ", ".join(([f"Phase {'/'.join(numbers)}"] if numbers else []) + words)


def trial_title(row: Mapping) -> str:
    """A trial's title, else its official title, acronym, or NCT id with its first condition."""
    for key in ("title", "official_title", "acronym"):
        if (row.get(key) or "").strip():
            return row[key]
    conditions = [c for c in json_list(row.get("conditions")) if isinstance(c, str)]
    return f"{row['nct_id']}: {conditions[0]}" if conditions else row["nct_id"]


def search_trials(conn: sqlite3.Connection, fts: str, limit: int, offset: int) -> list[dict]:
    if not fts or not _has(conn, "trials", "trials_fts"):
        return []
    weights = ", ".join(str(w) for w in TRIAL_WEIGHTS)
    sql = (f"with top as (select rowid, bm25(trials_fts, {weights}) as score from trials_fts "
           "where trials_fts match :fts order by score limit :limit offset :offset) "
           "select t.nct_id, t.title, t.official_title, t.acronym, t.conditions, t.phases, t.overall_status, "
           "t.start_year, t.enrollment, t.has_results, "
           "(select snippet(trials_fts, 2, :open, :close, ' … ', 30) from trials_fts "
           " where trials_fts match :fts and trials_fts.rowid = top.rowid) as snippet "
           "from top join trials t on t.rowid = top.rowid order by top.score")
    rows = _run(conn, sql, {"fts": fts, "limit": limit, "offset": offset, "open": OPEN, "close": CLOSE})
    names = ["nct_id", "title", "official_title", "acronym", "conditions", "phases", "overall_status",
             "start_year", "enrollment", "has_results", "snippet"]
    out = []
    for row in rows:
        trial = dict(zip(names, row, strict=True))
        trial["display_title"] = trial_title(trial)
        trial["phase_label"] = phase_label(json_list(trial["phases"]))
        trial["conditions"] = [c for c in json_list(trial["conditions"]) if isinstance(c, str)]
        trial["snippet"] = marked(trial["snippet"])
        out.append(trial)
    return out


def _sentence_query(fts: str) -> str:
    # The sentence's own words, not the study context it is indexed with (title, tags, year).
    return f"text : ({fts})"


def _off_topic_clause(off_topic: bool) -> str:
    # The off-topic studies are few: their ids are read once (idx_studies_on_topic) and left out.
    return "" if off_topic else " and s.study_id not in (select id from studies where on_topic = 0)"


def count_sentences(conn: sqlite3.Connection, fts: str, off_topic: bool = False) -> int:
    if not fts or not _has(conn, "sentences", "sentences_fts"):
        return 0
    sql = ("select s.rowid from sentences_fts join sentences s on s.rowid = sentences_fts.rowid "
           "where sentences_fts match ?" + _off_topic_clause(off_topic))
    return _bounded_count(conn, sql, [_sentence_query(fts)])


def search_sentences(conn: sqlite3.Connection, fts: str, limit: int, offset: int,
                     off_topic: bool = False) -> list[dict]:
    """Sentences ranked by bm25 (of the newest SENTENCE_CAP matches), each with its study."""
    if not fts or not _has(conn, "sentences", "sentences_fts"):
        return []
    query = _sentence_query(fts)
    try:
        bounds = ranked_range(conn, "sentences_fts", query, SENTENCE_CAP)
    except sqlite3.OperationalError as exc:
        raise SearchError(f"the search could not be run ({exc})") from exc
    matching = ("select sentences_fts.rowid as rowid, bm25(sentences_fts, 1.0, 0.0) as score, "
                "highlight(sentences_fts, 0, :open, :close) as marked from sentences_fts "
                "join sentences s on s.rowid = sentences_fts.rowid "
                "where sentences_fts match :q" + _off_topic_clause(off_topic))
    sql = (f"with top as materialized ({bounds.union(matching, 'sentences_fts.rowid')} "
           "order by score limit :limit offset :offset) "
           "select s.study_id, s.section, s.section_kind, top.marked, st.title, st.year, st.journal "
           "from top join sentences s on s.rowid = top.rowid join studies st on st.id = s.study_id order by top.score")
    rows = _run(conn, sql, {"q": query, **bounds.params, "limit": limit, "offset": offset,
                            "open": OPEN, "close": CLOSE})
    return [{"study_id": r[0], "section": r[1], "section_kind": r[2], "text": marked(r[3]), "title": r[4],
             "year": r[5], "journal": r[6]} for r in rows]


# --------------------------------------------------------------------------- the whole page


@dataclass
class SearchPage:
    args: SearchArgs
    studies: StudyResults | None = None
    trials: list[dict] = field(default_factory=list)
    sentences: list[dict] = field(default_factory=list)
    tab_counts: dict[str, int] = field(default_factory=dict)
    tab_pages: int = 1


def search_page(conn: sqlite3.Connection, args: SearchArgs, labels: Mapping[str, str],
                open_access: frozenset[int] | None = None) -> SearchPage:
    """Everything the search page shows: the open tab's results, and every tab's count."""
    fts = args.fts
    out = SearchPage(args=args)
    offset = (args.page - 1) * PAGE_SIZE
    if args.tab == "studies":
        out.studies = search_studies(conn, args, labels, open_access)
        out.tab_counts["studies"] = out.studies.total
        out.tab_pages = out.studies.pages
    else:
        # Another tab: the studies' count under the same filters, without their facets or order.
        out.tab_counts["studies"] = len(select_rows(conn, args, open_access=open_access).rows)
    out.tab_counts["trials"] = count_trials(conn, fts)
    out.tab_counts["sentences"] = count_sentences(conn, fts, args.off_topic)
    if args.tab == "trials":
        out.trials = search_trials(conn, fts, PAGE_SIZE, offset)
    elif args.tab == "sentences":
        out.sentences = search_sentences(conn, fts, PAGE_SIZE, offset, args.off_topic)
    if args.tab != "studies":
        out.tab_pages = max(1, math.ceil(min(out.tab_counts[args.tab], COUNT_CAP) / PAGE_SIZE))
    return out
