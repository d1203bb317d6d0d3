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

from .schema import DASHBOARD_COUNTS_SQL, FACET_COLUMNS_SQL, FACET_COUNTS_SQL, TAG_COLUMNS

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


def refresh_facet_counts(db: sqlite_utils.Database) -> int:
    """Count the studies page's unfiltered facets afresh; returns the rows written."""
    columns = set(db["studies"].columns_dict)
    with db.atomic():
        db.execute(FACET_COUNTS_SQL)
        db.execute(FACET_COLUMNS_SQL)
        db.execute("delete from facet_counts")
        db.execute("delete from facet_columns")
        for scope, where in FACET_SCOPES.items():
            for column in (c for c in ARRAY_FACETS if c in columns):
                db.execute("insert into facet_counts (scope, facet, value, studies) "
                           f"select ?, ?, j.value, count(distinct s.rowid) from studies s, json_each(s.[{column}]) j "
                           f"{where} group by j.value", [scope, column])
            for column in (c for c in VALUE_FACETS if c in columns):
                db.execute("insert into facet_counts (scope, facet, value, studies) "
                           f"select ?, ?, s.[{column}], count(*) from studies s "
                           f"{where} {'and' if where else 'where'} s.[{column}] is not null group by s.[{column}]",
                           [scope, column])
            for column in (c for c in (*ARRAY_FACETS, *VALUE_FACETS) if c in columns):
                db.execute("insert into facet_columns (scope, facet, distinct_values) select ?, ?, count(*) "
                           "from facet_counts where scope = ? and facet = ?", [scope, column, scope, column])
    return db.execute("select count(*) from facet_counts").fetchone()[0]
