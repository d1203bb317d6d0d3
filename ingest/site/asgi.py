"""`kb serve --workers N`: the site as an ASGI application factory, for uvicorn's worker processes.

`kb serve` runs one `datasette serve` process by default. A table page spends most of its time
rendering in Python, on one event loop under the GIL, so one process uses about one CPU however
many clients wait (docs/scaling.md). With ``--workers N`` uvicorn starts N processes sharing the
listening socket, each building this same Datasette: the database immutable, the packaged
metadata, templates and plugins, and :func:`ingest.site.cli.serve_settings`. What a process keeps
(facet counts, vectors) is its own; the database is read-only, so nothing needs sharing.

The environment carries what `kb serve` was given: ``KB_SERVE_DB`` (the database file, named
kb.db) and ``KB_SERVE_METADATA`` (a metadata file, or empty for none).
"""

from __future__ import annotations

import os
from pathlib import Path

from datasette.app import DEFAULT_SETTINGS, Datasette
from datasette.utils import parse_metadata, value_as_boolean

from . import PLUGINS_DIR, TEMPLATES_DIR
from .cli import serve_settings

DB_VARIABLE = "KB_SERVE_DB"
METADATA_VARIABLE = "KB_SERVE_METADATA"


def typed_settings(settings: dict[str, str]) -> dict:
    """`kb serve`'s settings (strings, as `datasette serve --setting` takes them) as Datasette's types."""
    typed: dict = {}
    for name, value in settings.items():
        default = DEFAULT_SETTINGS[name]
        if isinstance(default, bool):
            typed[name] = value_as_boolean(value)
        elif isinstance(default, int):
            typed[name] = int(value)
        else:
            typed[name] = value
    return typed


def build_datasette(db_path: Path, metadata_path: Path | None) -> Datasette:
    """The Datasette `kb serve` runs, as one object."""
    metadata = parse_metadata(metadata_path.read_text(encoding="utf-8")) if metadata_path else None
    return Datasette(immutables=[str(db_path)], metadata=metadata, template_dir=str(TEMPLATES_DIR),
                     plugins_dir=str(PLUGINS_DIR), settings=typed_settings(serve_settings()))


def app():
    """uvicorn's factory (``ingest.site.asgi:app --factory``): the site's ASGI application."""
    metadata = os.environ.get(METADATA_VARIABLE) or None
    return build_datasette(Path(os.environ[DB_VARIABLE]), Path(metadata) if metadata else None).app()
