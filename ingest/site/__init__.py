"""The site: Datasette plugins, templates and metadata that serve kb.db to people.

Everything ``kb serve`` needs is inside this package, so a plain ``pip install`` serves the
same site as a checkout. ``metadata.yml`` here is the repository's top-level ``metadata.yml``
(a symbolic link in the checkout, a copy in a built wheel): edit the top-level file.
"""

from __future__ import annotations

from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent
METADATA_PATH = SITE_DIR / "metadata.yml"
TEMPLATES_DIR = SITE_DIR / "templates"
PLUGINS_DIR = SITE_DIR / "plugins"


def served_database(datasette, name: str = "kb"):
    """The kb database Datasette serves: ``name``, else (served under another file name) the first
    real database, else None."""
    try:
        return datasette.get_database(name)
    except KeyError:
        names = [n for n in datasette.databases if not n.startswith("_")]
        return datasette.get_database(names[0]) if names else None
