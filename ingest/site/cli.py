"""`kb serve`: kb.db read-only in Datasette, with this package's metadata, templates and plugins."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import click

from . import METADATA_PATH, PLUGINS_DIR, TEMPLATES_DIR

DEFAULT_DB = "kb.db"


def sql_threads(cpus: int | None = None) -> int:
    """Datasette's SQL thread pool for this machine: four per CPU, at least 8, at most 32.

    SQLite queries run in these threads. More threads than CPUs let a cheap page start while
    long queries are being stopped by the time limit; the guard plugin keeps two of them free
    of hand-written SQL (see plugins/guard.py).
    """
    cpus = cpus or os.cpu_count() or 1
    return min(32, max(8, 4 * cpus))


def serve_settings(cpus: int | None = None) -> dict[str, str]:
    """Datasette's settings for the site: what `kb serve` runs with and `kb package`/`kb publish` ship.

    ``cpus`` is the serving machine's (this one's when None): it sizes the SQL thread pool.
    """
    return {
        "num_sql_threads": str(sql_threads(cpus)),
        # A streamed CSV (`_stream=1`) stops here with a last line saying so (Datasette's limit).
        "max_csv_mb": "100",
        "sql_time_limit_ms": "1500",
        "max_returned_rows": "1000",
        "facet_time_limit_ms": "500",
        "default_page_size": "50",
        # Facet suggestions scan every column on every table page: seconds at 100k studies.
        "suggest_facets": "off",
        "truncate_cells_html": "300",
    }


def setting_options(settings: dict[str, str]) -> list[str]:
    """``--setting NAME VALUE`` for each setting, as `datasette serve` takes them."""
    return [part for name, value in settings.items() for part in ("--setting", name, value)]


def datasette_args(db_path: Path, host: str, port: int, metadata: Path | None) -> list[str]:
    args = [
        sys.executable, "-m", "datasette", "serve", "-i", str(db_path),
        "--host", host, "--port", str(port),
        *setting_options(serve_settings()),
        "--template-dir", str(TEMPLATES_DIR),
        "--plugins-dir", str(PLUGINS_DIR),
    ]
    if metadata:
        args += ["--metadata", str(metadata)]
    return args


def worker_args(host: str, port: int, workers: int) -> list[str]:
    """uvicorn serving the site's application factory (asgi.py) in ``workers`` processes."""
    return [sys.executable, "-m", "uvicorn", "ingest.site.asgi:app", "--factory", "--host", host,
            "--port", str(port), "--workers", str(workers)]


def served_path(db_path: Path) -> Path:
    """The database as Datasette must see it: named kb.db, so metadata.yml's `kb` section applies."""
    if db_path.name == "kb.db":
        return db_path
    import tempfile

    link = Path(tempfile.mkdtemp(prefix="kb-serve-")) / "kb.db"
    link.symlink_to(db_path.resolve())
    return link


def unservable(db_path: Path) -> str | None:
    """Why ``db_path`` cannot be served (not SQLite, cut short, not a kb database), else None.

    Cheap checks only (the header, the schema, the file's length against its page count):
    Datasette would otherwise start and answer 500s, or die with a traceback.
    """
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}
            pages, page_size = (conn.execute(f"pragma {name}").fetchone()[0] for name in ("page_count", "page_size"))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"not a readable SQLite database ({exc}); rebuild it with `kb build`"
    if db_path.stat().st_size < pages * page_size:
        return (f"damaged: the file is shorter ({db_path.stat().st_size:,} bytes) than its {pages:,} pages "
                "say; rebuild it with `kb build`")
    if "studies" not in tables:
        return "not a kb database (it has no studies table)"
    return None


@click.command()
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Database to serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("-p", "--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--metadata", type=click.Path(dir_okay=False, path_type=Path),
              default=lambda: str(METADATA_PATH), show_default="the packaged metadata.yml",
              help="Datasette metadata file.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes sharing the port (one per CPU serves the most pages: a page renders "
                   "in Python, one CPU per process).")
def serve(db_path, host, port, metadata, workers):
    """Serve kb.db read-only (immutable) with Datasette.

    \b
    Examples:
        kb serve
        kb serve --port 8080 --host 0.0.0.0
        kb serve --workers 2
    """
    if not db_path.exists():
        raise click.ClickException(f"{db_path}: no such database (run `kb build` first)")
    problem = unservable(db_path)
    if problem:
        raise click.ClickException(f"{db_path}: {problem}")
    if metadata and not Path(metadata).exists():
        raise click.ClickException(f"{metadata}: no such metadata file")
    served = served_path(db_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if workers == 1:
        args = datasette_args(served, host, port, metadata)
    else:
        args = worker_args(host, port, workers)
        env.update(KB_SERVE_DB=str(served), KB_SERVE_METADATA=str(metadata or ""))
    click.echo(f"Serving {db_path} read-only at http://{host}:{port}/"
               + (f" ({workers} processes)" if workers > 1 else ""), err=True)
    # Replace this process: signals sent to `kb serve` reach Datasette (or uvicorn's supervisor) itself.
    os.execve(args[0], args, env)
