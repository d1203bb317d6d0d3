"""What a person reads in place of stored names and codes: column headings, a table's default
columns, registry codes as words, 0/1 as yes/no, a title for a trial registered without one.

The words are data (``display.yaml`` beside this module); this module only looks them up. Exports
(CSV, JSON) never pass through here: they keep the stored names and values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import pycountry
import yaml

from ingest.records.text import json_list

DISPLAY_PATH = Path(__file__).resolve().with_name("display.yaml")
# ?_allcols=1 shows every column of a table that opens on its default columns (Datasette ignores
# unknown arguments starting with "_", and leaves them out of nothing: exports stay whole anyway).
ALL_COLUMNS = "_allcols"
# A trial registered without a title is shown by its NCT id and this many of its conditions.
TITLE_CONDITIONS = 3
_PHASE = re.compile(r"PHASE(\d)")


@lru_cache(maxsize=1)
def display() -> dict:
    """display.yaml, read once."""
    return yaml.safe_load(DISPLAY_PATH.read_text(encoding="utf-8")) or {}


def _table(table: str | None) -> dict:
    return (display().get("tables") or {}).get(table or "") or {}


def heading(table: str | None, column: str) -> str:
    """A column's heading on its table page (the stored name when display.yaml has none)."""
    return (_table(table).get("headings") or {}).get(column) or column


def default_columns(table: str | None) -> list[str] | None:
    """The columns a table page opens with, or None for every column."""
    return _table(table).get("default_columns")


def is_flag(table: str | None, column: str) -> bool:
    return column in (_table(table).get("flags") or ())


def yes_no(value) -> str | None:
    """0/1 (or "0"/"1") as "no"/"yes"; None for anything else."""
    return {0: "no", 1: "yes", "0": "no", "1": "yes"}.get(value)  # True and False hash as 1 and 0


def _codes(table: str | None, column: str) -> dict:
    return ((display().get("values") or {}).get(table or "") or {}).get(column) or {}


def code_label(table: str | None, column: str, code) -> str | None:
    """One stored code in words, or None when display.yaml does not word it."""
    return _codes(table, column).get(str(code)) if code is not None else None


def phase_label(phases: Iterable) -> str:
    """A trial's phases as a reader says them: ["PHASE1", "PHASE2"] is "Phase 1/2"."""
    phases = [str(p) for p in phases if p]
    numbers = [_PHASE.fullmatch(p) for p in phases]
    if len(phases) > 1 and all(numbers):
        return "Phase " + "/".join(m.group(1) for m in numbers)
    return ", ".join(code_label("trials", "phases", p) or p for p in phases)


@lru_cache(maxsize=512)
def language_name(code: str) -> str | None:
    """An ISO 639-2 code as PubMed stores it ("fre", "ger": the bibliographic codes) by its English name."""
    code = code.strip().lower()
    if not re.fullmatch(r"[a-z]{3}", code):
        return None
    found = pycountry.languages.get(bibliographic=code) or pycountry.languages.get(alpha_3=code)
    return found.name if found else None


def value_label(table: str | None, column: str, value) -> str | None:
    """A stored value in words where display.yaml words it (a flag, a code, a JSON array of phases,
    languages)."""
    if is_flag(table, column):
        return yes_no(value)
    if column in (_table(table).get("language_columns") or ()) and isinstance(value, str):
        codes = [str(c) for c in json_list(value)] if value.startswith("[") else [value]
        names = [language_name(c) or c for c in codes if c]
        return ", ".join(names) if names else None
    if table == "trials" and column == "phases":
        return phase_label(json_list(value)) if isinstance(value, str) and value.startswith("[") else \
            code_label(table, column, value)
    return code_label(table, column, value)


def trial_title(trial: Mapping) -> tuple[str, bool]:
    """What to call a trial: its brief or official title or acronym, else its NCT id and conditions.

    Returns the text and whether it is such a stand-in (a page marks it as not registered).
    """
    for key in ("title", "official_title", "acronym"):
        text = (trial.get(key) or "").strip()
        if text:
            return text, False
    conditions = [str(c) for c in json_list(trial.get("conditions")) if c]
    shown = ", ".join(conditions[:TITLE_CONDITIONS]) + (" …" if len(conditions) > TITLE_CONDITIONS else "")
    nct = trial.get("nct_id") or "Trial"
    return (f"{nct}: {shown}" if shown else str(nct)), True


def opens_on_default_columns(table: str | None, args: Mapping) -> bool:
    """Whether a table page shows its default columns: it has some, and the page asks neither for
    columns of its own (``_col``) nor for every column (``_allcols``)."""
    return bool(default_columns(table)) and "_col" not in args and not args.get(ALL_COLUMNS)


def selected_columns(table: str | None, columns: list[str], pks: list[str], args: Mapping,
                     keep: Iterable[str] = ()) -> list[str]:
    """The columns a table page selects: ``columns`` (Datasette's choice, ``_nocol`` applied) cut to
    the table's default columns in display.yaml's order, after the primary key and with ``keep``
    (the sort column, which Datasette's next-page link reads from the rows) where they are left out.
    ``columns`` unchanged when the page does not open on its default columns."""
    if not opens_on_default_columns(table, args):
        return list(columns)
    present = set(columns)
    chosen = list(dict.fromkeys([*pks, *(c for c in default_columns(table) if c in present),
                                 *(c for c in keep if c in present)]))
    return chosen
