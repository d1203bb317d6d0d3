"""The dashboard's counts, precomputed whenever kb.db is written (build, import, update).

Each chart of the overview dashboard (metadata.yml) counted on-topic studies by reading every
row's JSON tag columns: linear in the corpus (by-indication 130 ms at 40,000 studies, about 3 s
at a million). Here they are counted once per write, by publication year and by drug, into
``dashboard_counts`` (schema.py); a chart sums a few hundred of its rows, whatever the corpus's
size. The counts are additive over years and exact per drug, so the dashboard's filters (a drug,
a range of years) give the same numbers as counting the studies themselves would
(tests/test_aggregates.py checks it against the direct counts).

Rows: ``chart`` the count's kind, ``year`` (0: no publication year), ``drug`` ('' for every
drug, else a drug tag's id: the studies carrying it), ``value`` (the indication, design or side
effect counted; '' for none), ``finding`` ('reported' / 'reported as absent' for side effects,
else ''), ``studies`` (each study once per row).
"""

from __future__ import annotations

import sqlite_utils

from .schema import DASHBOARD_COUNTS_SQL, FACET_COLUMNS_SQL, FACET_COUNTS_SQL, FACET_PAIR_COUNTS_SQL, TAG_COLUMNS

# The human trials whose side effects the dashboard counts: randomised, non-randomised or single-arm.
TRIAL_DESIGNS = ("rct", "nonrandomised_trial", "single_arm_trial")

# Each on-topic study with drug '' and with each drug it carries (a drug repeated in its array: the
# counts below count each study once, count(distinct r)).
_STUDY_DRUGS = """
with base as (
  select s.rowid as r, coalesce(s.year, 0) as year, s.drugs, s.designs, s.indications, s.side_effects,
         s.side_effects_absent, s.populations
  from studies s where s.on_topic = 1
),
d as (
  select base.*, '' as drug from base
  union all
  select base.*, j.value as drug from base, json_each(base.drugs) j
)
"""

_HUMAN_TRIAL = ("exists (select 1 from json_each(d.populations) where value = 'human') "
                "and exists (select 1 from json_each(d.designs) where value in "
                f"({', '.join(repr(design) for design in TRIAL_DESIGNS)}))")

_COUNTS = {
    "studies": "select 'studies', year, drug, '', '', count(distinct r) from d group by year, drug",
    "rcts": ("select 'rcts', year, drug, '', '', count(distinct r) from d "
             "where exists (select 1 from json_each(d.designs) where value = 'rct') group by year, drug"),
    "indication": ("select 'indication', year, drug, j.value, '', count(distinct r) "
                   "from d, json_each(d.indications) j group by year, drug, j.value"),
    # A study without a design counts under '' (the chart's "Unclassified").
    "design": ("select 'design', year, drug, coalesce(j.value, ''), '', count(distinct r) from d "
               "left join json_each(case when d.designs in ('', '[]') or d.designs is null then '[null]' "
               "else d.designs end) j group by year, drug, coalesce(j.value, '')"),
    "side_effect": (
        "select 'side_effect', year, drug, value, finding, count(distinct r) from ("
        "select d.r, d.year, d.drug, j.value, 'reported' as finding from d, json_each(d.side_effects) j "
        f"where {_HUMAN_TRIAL} union all "
        "select d.r, d.year, d.drug, j.value, 'reported as absent' from d, json_each(d.side_effects_absent) j "
        f"where {_HUMAN_TRIAL}) group by year, drug, value, finding"),
}


def refresh_dashboard_counts(db: sqlite_utils.Database) -> int:
    """Count the dashboard's charts afresh from the studies; returns the rows written."""
    with db.atomic():
        db.execute(DASHBOARD_COUNTS_SQL)
        db.execute("delete from dashboard_counts")
        for sql in _COUNTS.values():
            db.execute(f"insert into dashboard_counts (chart, year, drug, value, finding, studies) "
                       f"{_STUDY_DRUGS} {sql}")
    return db.execute("select count(*) from dashboard_counts").fetchone()[0]


# The facet counts of the studies page with no filter (plugins/tag_facets.py reads them): its JSON
# array columns (each study once per value, as the array facet counts) and its plain columns (NULL
# left out, as the column facet counts).
FACET_SCOPES = {"on_topic": "where s.on_topic = 1", "all": ""}
ARRAY_FACETS = (*TAG_COLUMNS.values(), "side_effects_absent", "languages")
VALUE_FACETS = ("year", "journal", "is_open_access", "evidence_level_label")
# The facets whose values the on-topic page is also counted filtered on, one value at a time (the
# link a facet value is): a journal is left out, thousands of them would each need their counts.
PAIR_FILTERS = (*ARRAY_FACETS, "year", "is_open_access", "evidence_level_label")
PAIR_VALUES = 51  # the top values kept per filter and facet: Datasette's facet size up to 50, plus one


def refresh_facet_counts(db: sqlite_utils.Database) -> int:
    """Count the studies page's unfiltered and one-filter facets afresh; returns the rows written."""
    columns = set(db["studies"].columns_dict)
    arrays = [c for c in ARRAY_FACETS if c in columns]
    values = [c for c in VALUE_FACETS if c in columns]
    with db.atomic():
        for table in ("facet_counts", "facet_columns", "facet_pair_counts"):  # derived: made afresh
            db.execute(f"drop table if exists {table}")
        for sql in (FACET_COUNTS_SQL, FACET_COLUMNS_SQL, FACET_PAIR_COUNTS_SQL):
            db.execute(sql)
        _collect_facet_values(db, arrays, values)
        for scope, where in FACET_SCOPES.items():
            # each (study, facet, value) once: a study counted once per value, as the facets count
            db.execute("insert into facet_counts (scope, facet, value, studies) "
                       f"select ?, facet, value, count(*) from temp.facet_values s {where} group by facet, value",
                       [scope])
            for column in (*arrays, *values):
                top = PAIR_VALUES if scope == "on_topic" and column in PAIR_FILTERS else None
                db.execute("insert into facet_columns (scope, facet, is_array, distinct_values, filtered_top) "
                           "select ?, ?, ?, count(*), ? from facet_counts where scope = ? and facet = ?",
                           [scope, column, int(column in arrays), top, scope, column])
        _count_pairs(db, [c for c in PAIR_FILTERS if c in (*arrays, *values)])
        db.execute("drop table temp.facet_values")
    return db.execute("select (select count(*) from facet_counts) + (select count(*) from facet_pair_counts)"
                      ).fetchone()[0]


def _collect_facet_values(db: sqlite_utils.Database, arrays: list[str], values: list[str]) -> None:
    """temp.facet_values: every study's (facet, value) pairs, once each (NULL left out), with on_topic."""
    db.execute("drop table if exists temp.facet_values")
    db.execute("create temp table facet_values (r integer not null, facet text not null, value not null, "
               "on_topic integer, primary key (r, facet, value)) without rowid")
    for column in arrays:  # or ignore: a value twice in one array counts its study once
        db.execute("insert or ignore into temp.facet_values select s.rowid, ?, j.value, s.on_topic "
                   f"from studies s, json_each(s.[{column}]) j", [column])
    for column in values:
        db.execute(f"insert into temp.facet_values select s.rowid, ?, s.[{column}], s.on_topic from studies s "
                   f"where s.[{column}] is not null", [column])


def _count_pairs(db: sqlite_utils.Database, filters: list[str]) -> None:
    """facet_pair_counts: each filter value's on-topic studies counted by the other values they have."""
    marks = ", ".join("?" for _ in filters)
    db.execute(
        "insert into facet_pair_counts (filter_facet, filter_value, facet, rank, value, studies) "
        "select filter_facet, filter_value, facet, rank, value, studies from ("
        "  select filter_facet, filter_value, facet, value, studies, row_number() over "
        "    (partition by filter_facet, filter_value, facet order by studies desc, value) as rank from ("
        "    select a.facet as filter_facet, a.value as filter_value, b.facet, b.value, count(*) as studies "
        "    from temp.facet_values a join temp.facet_values b on b.r = a.r "
        f"    where a.on_topic = 1 and a.facet in ({marks}) group by a.facet, a.value, b.facet, b.value)"
        ") where rank <= ?", [*filters, PAIR_VALUES])
