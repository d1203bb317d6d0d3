"""`kb compact`: renumber kb.db's studies and sentences into recency order (see db/order.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .atomic import DEFAULT_LOCK_WAIT, BuildError, atomic_database
from .order import renumber


@click.command()
@click.option("--db", "db_path", default="kb.db", show_default=True, type=click.Path(dir_okay=False),
              help="Database to renumber.")
@click.option("--lock-timeout", default=DEFAULT_LOCK_WAIT, show_default=True, type=click.FloatRange(0, 86400),
              help="Seconds to wait for another kb build or import writing the same database to finish.")
def compact(db_path: str, lock_timeout: float) -> None:
    """Sort the studies and sentences imported since the last build back into recency order.

    Searches that rank only the newest matches read rowid order as recency order; `kb import`
    and `kb update` append rows, and do this themselves once the appended rows are many. Written
    to a copy renamed over the database, as imports are.
    """
    target = Path(db_path)
    if not target.is_file():
        click.echo(f"Error: {target}: no such database (run `kb build` first)", err=True)
        sys.exit(1)
    try:
        with atomic_database(target, copy_existing=True, wait=lock_timeout) as db:
            done = renumber(db)
            studies, sentences = (db.execute(f"select count(*) from {table}").fetchone()[0]
                                  for table in ("studies", "sentences"))
    except BuildError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    tails = ", ".join(f"{table} {'(order unknown)' if size is None else f'{size:,}'}"
                      for table, size in done["tails"].items())
    click.echo(f"{target}: {studies:,} studies and {sentences:,} sentences renumbered in {done['seconds']:.1f} s "
               f"(rows appended since the last sort: {tails})", err=True)
