"""The pages people browse: table pages in words, the tag pages, the database page's summary.

Used by plugins/kb_site.py (its template functions and its ``render_cell``). Every piece of record
text reaches the page escaped: markup is built here only with ``markupsafe`` around stored text.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

from datasette.utils import escape_sqlite, tilde_encode
from markupsafe import Markup, escape

from ingest.claims.retrieve import sorted_upto
from ingest.records.text import json_list

from . import display as words

# A tag kind -> the studies column holding its tags (ingest/db/schema.py's TAG_COLUMNS; the
# site may not import db, tests/test_browsing.py checks the two agree).
KIND_COLUMNS = {
    "indication": "indications", "mechanism": "mechanisms", "side_effect": "side_effects",
    "design": "designs", "drug": "drugs", "route": "routes", "population": "populations",
}
TRIAL_TAG_COLUMNS = ("indications", "drugs", "routes")
ABSENT_COLUMN = "side_effects_absent"
# Columns whose tag chips kb_site draws itself (labelled links to their facet).
TAG_CHIP_COLUMNS = set(KIND_COLUMNS.values()) | {ABSENT_COLUMN}
# Tables whose cells are worded here.
WORDED_TABLES = {"studies", "trials", "tags"}
CELL_CHARS = 300
NEWEST_TAGGED = 10
_USAGE_KEY = "_kb_tag_usage"


def row_url(datasette, database: str, table: str, pk) -> str:
    return datasette.urls.row(database, table, tilde_encode(str(pk)))


def tag_filter_url(datasette, database: str, table: str, column: str, tag_id: str) -> str:
    """The table page of the rows carrying a tag: the studies on topic, every trial."""
    query = f"{column}__arraycontains={urllib.parse.quote_plus(tag_id)}"
    if table == "studies":
        query += "&on_topic=1"
    return f"{datasette.urls.table(database, table)}?{query}"


# --------------------------------------------------------------------------- table pages


def table_view(table: str, args: Mapping, display_columns: list[dict], display_rows: list,
               all_columns: list | None = None, whole: bool = False) -> dict:
    """A table page's headings and cells, each column headed in words, and whether the page shows its
    default columns out of ``all_columns`` (plugins/default_columns.py selects them in SQL).

    ``whole`` is a row page showing its record. The cells are Datasette's own, rendered and escaped.
    """
    headings = [{**column, "label": words.heading(table, column["name"])} for column in display_columns]
    rows = [[{**cell, "label": heading["label"]} for cell, heading in zip(row, headings, strict=False)]
            for row in display_rows]
    total = len(all_columns or display_columns)
    default_view = not whole and words.opens_on_default_columns(table, args)
    return {"headings": headings, "rows": rows, "shown": len(headings), "total": total,
            "trimmed": default_view and len(headings) < total, "all_param": words.ALL_COLUMNS,
            "showing_all": not whole and bool(args.get(words.ALL_COLUMNS)) and bool(words.default_columns(table))}


def facet_value_label(table: str | None, column: str, value, label) -> str:
    """A facet value as a person reads it (a phase, yes/no), else the facet's own label."""
    worded = words.value_label(table, column, value)
    return worded if worded is not None else ("" if label is None else str(label))


def _joined(items: list) -> str:
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("name") or item.get("measure") or ""
        if item not in (None, ""):
            out.append(str(item))
    return "; ".join(out)


def _cut(text: str) -> Markup:
    if len(text) <= CELL_CHARS:
        return escape(text)
    return Markup('<span class="kb-cut">{}…</span>').format(text[:CELL_CHARS].rsplit(" ", 1)[0])


def _row_value(row, column: str):
    try:
        return row[column]
    except (IndexError, KeyError):  # a column the page left out (?_col=)
        return None


def cell_html(datasette, database: str, table: str | None, column: str, value, row) -> Markup | None:
    """A studies, trials or tags cell in words, or None to leave it to Datasette (and kb_site)."""
    if table not in WORDED_TABLES:
        return None
    if table == "studies" and column == "title" and value:
        study_id = _row_value(row, "id")
        if study_id is None:
            return None
        return Markup('<a class="kb-title-link" href="{}">{}</a>').format(
            row_url(datasette, database, "studies", study_id), _cut(str(value)))
    if table == "trials" and column == "title":
        return trial_title_html(datasette, database, row, value)
    if table == "tags":
        return _tag_cell(datasette, database, column, value, row)
    worded = words.value_label(table, column, value)
    if worded is not None:
        return Markup('<span class="kb-worded" title="{}">{}</span>').format(value, worded)
    if column not in TAG_CHIP_COLUMNS and isinstance(value, str) and value.startswith("["):
        items = json_list(value)
        if items and all(isinstance(i, (str, int, float, dict)) for i in items):
            return _cut(_joined(items)) or None
    return None


def trial_title_html(datasette, database: str, row, value) -> Markup:
    """A trial's title linked to its page; a trial registered without one by its NCT id and conditions."""
    trial = {"title": value, "nct_id": _row_value(row, "nct_id"), "conditions": _row_value(row, "conditions"),
             "official_title": _row_value(row, "official_title"), "acronym": _row_value(row, "acronym")}
    text, stand_in = words.trial_title(trial)
    css = "kb-title-link kb-untitled" if stand_in else "kb-title-link"
    tip = Markup(' title="No title registered"') if stand_in else Markup("")
    if not trial["nct_id"]:
        return Markup('<span class="{}"{}>{}</span>').format(css, tip, _cut(text))
    return Markup('<a class="{}"{} href="{}">{}</a>').format(
        css, tip, row_url(datasette, database, "trials", trial["nct_id"]), _cut(text))


def _tag_cell(datasette, database: str, column: str, value, row) -> Markup | None:
    if column == "label" and value:
        tag_id = _row_value(row, "id")
        return Markup('<a href="{}">{}</a>').format(row_url(datasette, database, "tags", tag_id), value) \
            if tag_id else None
    if column == "kind" and isinstance(value, dict):  # the kind expanded as a foreign key: its label
        kind = str(value.get("value") or "")
        return Markup('<a href="{}?kind={}">{}</a>').format(
            datasette.urls.table(database, "tags"), urllib.parse.quote_plus(kind), value.get("label") or kind)
    if column == "patterns":
        count = len(json_list(value))
        return Markup('<span class="kb-small">{}</span>').format(
            f"{count} text pattern{'s' if count != 1 else ''}" if count else "none")
    if isinstance(value, str) and value.startswith("["):
        return escape(_joined(json_list(value))) or Markup("&nbsp;")
    return None


# --------------------------------------------------------------------------- tag usage


def _distinct_values_sql(table: str, column: str, where: str) -> str:
    """(column, tag, rows): each value of a JSON-array column counted once per row carrying it."""
    col = escape_sqlite(column)
    return (f"select '{column}' as col, j.value as tag, sum(g.n) as n "
            f"from (select {col} as a, count(*) as n from {escape_sqlite(table)} "
            f"where json_valid({col}){where} group by {col}) g, json_each(g.a) j "
            "where not exists (select 1 from json_each(g.a) k where k.key < j.key and k.value is j.value) "
            "group by j.value")


async def tag_usage(datasette, database: str) -> dict[str, dict[str, int]]:
    """Tag id -> {column: rows carrying it}: studies on topic (``designs``...) and trials (``trials.drugs``...).

    Counted once per Database object in one query per table over the distinct arrays (kb.db's
    ``idx_studies_tag_columns`` holds them), so the tags page costs a dictionary look-up.
    """
    db = datasette.get_database(database)
    if _USAGE_KEY in db.__dict__:
        return db.__dict__[_USAGE_KEY]
    tables = set(await db.table_names())
    usage: dict[str, dict[str, int]] = {}
    if "studies" in tables:
        columns = set(await db.table_columns("studies"))
        where = " and on_topic = 1" if "on_topic" in columns else ""
        wanted = [c for c in (*KIND_COLUMNS.values(), ABSENT_COLUMN) if c in columns]
        if wanted:
            sql = " union all ".join(_distinct_values_sql("studies", c, where) for c in wanted)
            for row in (await db.execute(sql, custom_time_limit=5000)).rows:
                usage.setdefault(str(row["tag"]), {})[row["col"]] = row["n"]
    if "trials" in tables:
        columns = set(await db.table_columns("trials"))
        wanted = [c for c in TRIAL_TAG_COLUMNS if c in columns]
        if wanted:
            sql = " union all ".join(_distinct_values_sql("trials", c, "") for c in wanted)
            for row in (await db.execute(sql, custom_time_limit=5000)).rows:
                usage.setdefault(str(row["tag"]), {})["trials." + row["col"]] = row["n"]
    if not db.is_mutable:
        db.__dict__[_USAGE_KEY] = usage
    return usage


def tag_links(datasette, database: str, tag_id: str, kind: str | None, usage: dict) -> list[dict]:
    """Where a tag leads: the studies carrying it (and reporting it absent), the trials tagged with it."""
    column = KIND_COLUMNS.get(kind or "")
    counts = usage.get(tag_id) or {}
    links = []
    if column:
        links.append({"what": "studies", "label": "Studies", "count": counts.get(column, 0),
                      "url": tag_filter_url(datasette, database, "studies", column, tag_id)})
    if kind == "side_effect":
        links.append({"what": "absent", "label": "Studies reporting it absent", "count": counts.get(ABSENT_COLUMN, 0),
                      "url": tag_filter_url(datasette, database, "studies", ABSENT_COLUMN, tag_id)})
    if column in TRIAL_TAG_COLUMNS:
        links.append({"what": "trials", "label": "Registered trials", "count": counts.get("trials." + column, 0),
                      "url": tag_filter_url(datasette, database, "trials", column, tag_id)})
    return links


async def tag_table_links(datasette, database: str, rows: list) -> list[list[dict]]:
    """For each row of the tags table page, its studies and trials links (counts first)."""
    usage = await tag_usage(datasette, database)
    out = []
    for row in rows:
        try:
            tag_id, kind = row["id"], row["kind"]
        except KeyError:
            out.append([])
            continue
        if isinstance(kind, dict):  # kind expanded as a foreign key
            kind = kind.get("value")
        out.append(tag_links(datasette, database, str(tag_id), kind, usage))
    return out


async def tag_detail(datasette, database: str, tag_id: str) -> dict | None:
    """Everything a tag's page shows: what it means, how it is found, the studies and trials carrying it."""
    db = datasette.get_database(database)
    tables = set(await db.table_names())
    found = [dict(r) for r in (await db.execute("select * from tags where id = ?", [tag_id])).rows]
    if not found:
        return None
    tag = found[0]
    kind = {"id": tag.get("kind"), "label": (tag.get("kind") or "").replace("_", " ").capitalize(),
            "description": None}
    if "tag_kinds" in tables:
        for row in (await db.execute("select id, label, description from tag_kinds where id = ?", [tag["kind"]])).rows:
            kind = dict(row)
    level = None
    if tag.get("evidence_level") is not None and "evidence_levels" in tables:
        sql = "select level, label from evidence_levels where level = ?"
        rows = (await db.execute(sql, [tag["evidence_level"]])).rows
        level = dict(rows[0]) if rows else {"level": tag["evidence_level"], "label": None}
    usage = await tag_usage(datasette, database)
    return {
        "tag": tag, "kind": kind, "level": level,
        "links": tag_links(datasette, database, tag_id, tag.get("kind"), usage),
        "mesh": [str(name) for name in json_list(tag.get("mesh_names"))],
        "publication_types": [str(p) for p in json_list(tag.get("publication_types"))],
        "patterns": [str(p) for p in json_list(tag.get("patterns"))],
        "newest": await _newest_tagged(datasette, db, database, tag_id, tag.get("kind"), tables),
        "kind_url": f"{datasette.urls.table(database, 'tags')}?kind={urllib.parse.quote_plus(tag.get('kind') or '')}",
    }


async def _newest_tagged(datasette, db, database: str, tag_id: str, kind: str | None, tables: set[str]) -> list[dict]:
    """The newest on-topic studies carrying the tag: the first in rowid order of the sorted prefix (a
    fresh build's recency order), merged by year with the tail that imports appended (db/order.py)."""
    column = KIND_COLUMNS.get(kind or "")
    if not column or not {"study_tags", "studies"} <= tables:
        return []
    columns = set(await db.table_columns("studies"))
    on_topic = " and s.on_topic = 1" if "on_topic" in columns else ""
    sql = (f"select s.id, s.title, s.year, s.journal from studies s "
           f"where s.id in (select study_id from study_tags where tag_id = :tag and negated = 0){on_topic} "
           f"and exists (select 1 from json_each(s.{escape_sqlite(column)}) where value = :tag)")
    params = {"tag": tag_id, "upto": await db.execute_fn(lambda conn: sorted_upto(conn, "studies"))}
    head = (await db.execute(f"{sql} and s.rowid <= :upto order by s.rowid limit {NEWEST_TAGGED}", params)).rows
    tail = (await db.execute(f"{sql} and s.rowid > :upto", params)).rows
    merged = sorted([dict(r) for r in [*head, *tail]], key=lambda r: (r["year"] is None, -(r["year"] or 0)))
    rows = merged[:NEWEST_TAGGED]
    for row in rows:
        row["url"] = row_url(datasette, database, "studies", row["id"])
    return rows


# --------------------------------------------------------------------------- the database page


def _first_sentence(text: str | None) -> str:
    text = re.sub(r"\s+", " ", text or "").strip()
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


def schema_summary(datasette, database: str, tables: list[dict]) -> list[dict]:
    """The database page's summary: the main tables, what a row is, how many, and what each joins to."""
    config = words.display().get("database") or {}
    by_name = {t["name"]: t for t in tables}
    tag_columns = config.get("tag_columns") or {}
    out = []
    for name in config.get("summary_tables") or ():
        table = by_name.get(name)
        if table is None:
            continue
        meta = datasette.table_metadata(database, name) or {}
        joins = [{"column": fk["column"], "table": fk["other_table"], "other_column": fk["other_column"]}
                 for fk in (table.get("foreign_keys") or {}).get("outgoing", [])]
        if tag_columns.get(name):
            joins.append({"column": ", ".join(tag_columns[name]), "table": "tags", "other_column": "id",
                          "json": True})
        out.append({"name": name, "url": datasette.urls.table(database, name), "count": table.get("count"),
                    "summary": _first_sentence(meta.get("description")), "joins": joins})
    return out


def example_queries(datasette, database: str) -> dict:
    """The SQL box's first query and the further examples, each with the URL that runs it."""
    config = words.display().get("database") or {}
    base = datasette.urls.database(database)
    more = [{"title": q["title"], "url": f"{base}?{urllib.parse.urlencode({'sql': q['sql']})}"}
            for q in config.get("more_examples") or () if q.get("title") and q.get("sql")]
    return {"sql": config.get("example_sql") or "select count(*) from studies", "more": more}

