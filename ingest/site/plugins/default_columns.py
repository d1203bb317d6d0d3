"""A table page opens on its default columns (``ingest/site/display.yaml``), selected in SQL.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. Datasette 0.65 has no per-table
default column list: a page shows every column unless its URL names some (``?_col=``), and then its
JSON and CSV links name them too. Here the HTML table page alone (no ``.json``, ``.csv`` or other
format in the path) selects the table's default columns, as if the URL said ``?_col=...``, while
its URL, its links and its exports stay as they are: ``/kb/studies.json`` and ``.csv`` keep every
column, ``?_allcols=1`` shows every column, ``?_col=`` is Datasette's own choice, ``?_nocol=``
hides a default column. Selecting them in SQL, not only showing them, matters: rendering 50 rows ×
50 columns through every plugin's ``render_cell`` was most of the studies page's time (docs/scaling.md),
and a filtered view sorts the selected rows whole, abstracts and all.

How: ``TableView.columns_to_select`` (the one place Datasette turns ``_col`` / ``_nocol`` into the
SELECT list) is wrapped once, at startup.
"""

from __future__ import annotations

from datasette import hookimpl
from datasette.utils import tilde_decode
from datasette.views.table import TableView

from ingest.site import display as words

_ORIGINAL = "_kb_original_columns_to_select"


def sort_columns(datasette, request) -> list[str]:
    """The page's sort column (from its URL, else the table's metadata): the next-page link reads it."""
    named = [request.args.get("_sort"), request.args.get("_sort_desc")]
    try:
        database = datasette.get_database(route=tilde_decode(request.url_vars["database"])).name
        meta = datasette.table_metadata(database, tilde_decode(request.url_vars["table"])) or {}
    except KeyError:
        meta = {}
    return [c for c in (*named, meta.get("sort"), meta.get("sort_desc")) if c]


def install() -> bool:
    """Wrap TableView.columns_to_select once; False when already wrapped."""
    if getattr(TableView, _ORIGINAL, None) is not None:
        return False
    original = TableView.columns_to_select

    async def columns_to_select(self, table_columns, pks, request):
        columns = await original(self, table_columns, pks, request)
        if request.url_vars.get("format") is not None:  # .json, .csv, .atom...: every column asked for
            return columns
        table = tilde_decode(request.url_vars.get("table") or "")
        return words.selected_columns(table, columns, pks, request.args, sort_columns(self.ds, request))

    setattr(TableView, _ORIGINAL, original)
    TableView.columns_to_select = columns_to_select
    return True


@hookimpl
def startup(datasette):
    install()
