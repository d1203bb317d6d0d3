"""`kb serve`: kb.db read-only in Datasette, with this package's metadata, templates and plugins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import METADATA_PATH, PLUGINS_DIR, TEMPLATES_DIR

DEFAULT_DB = "kb.db"


def datasette_args(db_path: Path, host: str, port: int, metadata: Path | None) -> list[str]:
    args = [
        sys.executable, "-m", "datasette", "serve", "-i", str(db_path),
        "--host", host, "--port", str(port),
        "--setting", "sql_time_limit_ms", "1500",
        "--setting", "max_returned_rows", "1000",
        "--setting", "facet_time_limit_ms", "500",
        "--setting", "default_page_size", "50",
        # Facet suggestions scan every column on every table page: seconds at 100k studies.
        "--setting", "suggest_facets", "off",
        "--setting", "truncate_cells_html", "300",
        "--template-dir", str(TEMPLATES_DIR),
        "--plugins-dir", str(PLUGINS_DIR),
    ]
    if metadata:
        args += ["--metadata", str(metadata)]
    return args


def served_path(db_path: Path) -> Path:
    """The database as Datasette must see it: named kb.db, so metadata.yml's `kb` section applies."""
    if db_path.name == "kb.db":
        return db_path
    import tempfile

    link = Path(tempfile.mkdtemp(prefix="kb-serve-")) / "kb.db"
    link.symlink_to(db_path.resolve())
    return link


@click.command()
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Database to serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("-p", "--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--metadata", type=click.Path(dir_okay=False, path_type=Path),
              default=lambda: str(METADATA_PATH), show_default="the packaged metadata.yml",
              help="Datasette metadata file.")
def serve(db_path, host, port, metadata):
    """Serve kb.db read-only (immutable) with Datasette.

    \b
    Examples:
        kb serve
        kb serve --port 8080 --host 0.0.0.0
    """
    if not db_path.exists():
        raise click.ClickException(f"{db_path}: no such database (run `kb build` first)")
    if metadata and not Path(metadata).exists():
        raise click.ClickException(f"{metadata}: no such metadata file")
    args = datasette_args(served_path(db_path), host, port, metadata)
    click.echo(f"Serving {db_path} read-only at http://{host}:{port}/", err=True)
    # Replace this process: signals sent to `kb serve` reach Datasette itself.
    os.execve(args[0], args, {**os.environ, "PYTHONUNBUFFERED": "1"})
