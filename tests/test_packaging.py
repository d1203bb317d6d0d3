"""Packaging and layout: a plain wheel serves the site, and the stages import only what they may."""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
INGEST = ROOT / "ingest"


# --------------------------------------------------------------------------- the import graph

# Which stage may import which (besides itself). Sources and tagging are pure; the database
# writes what they produce; the claim checker reads kb.db and tags claims; the site serves both.
ALLOWED = {
    "records": set(),
    "sources": {"records"},
    "tagging": {"records"},
    "db": {"records", "sources", "tagging"},
    "claims": {"records", "tagging"},
    "site": {"records", "tagging", "claims"},
}
SOURCE_MODULES = {"pubmed", "europepmc", "clinicaltrials", "files"}
SHARED_SOURCE_MODULES = {"http", "checkpoint"}


def ingest_imports(path: Path) -> set[str]:
    """Dotted ``ingest.*`` modules a file imports (relative imports resolved)."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = list(path.relative_to(ROOT).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ingest")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.startswith("ingest"):
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}
    return found


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def python_files() -> list[Path]:
    return sorted(INGEST.rglob("*.py"))


def test_ingest_is_organised_by_stage():
    top = {p.name for p in INGEST.iterdir() if not p.name.startswith("__")}
    assert top == {"cli.py", "records", "sources", "tagging", "db", "claims", "site"}


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(INGEST)))
def test_stages_import_only_what_they_may(path):
    own = stage_of("ingest." + ".".join(path.relative_to(INGEST).parts))
    if own is None:
        return  # ingest/cli.py registers every stage's commands
    used = {stage_of(m) for m in ingest_imports(path)} - {None, own}
    assert used <= ALLOWED[own], f"{path.relative_to(ROOT)} imports {sorted(used - ALLOWED[own])}"


@pytest.mark.parametrize("name", sorted(SOURCE_MODULES))
def test_a_source_never_imports_another(name):
    imported = {m.split(".")[2] for m in ingest_imports(INGEST / "sources" / f"{name}.py")
                if m.startswith("ingest.sources.")}
    assert imported <= SHARED_SOURCE_MODULES, f"sources/{name}.py imports {sorted(imported - SHARED_SOURCE_MODULES)}"


def test_the_import_checker_sees_relative_imports():
    # A guard for the guard: the checker must resolve `from ..records import x`.
    found = ingest_imports(INGEST / "sources" / "files.py")
    assert "ingest.records" in found and "ingest.records.text" in found


# --------------------------------------------------------------------------- a plain wheel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project (the checkout is left clean)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "metadata.yml"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(INGEST, source / "ingest", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(out), str(source)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("ketamine_kb-*.whl")
    return built


def test_wheel_carries_the_site_and_the_vocabularies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("ingest/site/metadata.yml")
    for needed in ("ingest/site/metadata.yml", "ingest/site/templates/row-kb-studies.html",
                   "ingest/site/plugins/kb_site.py", "ingest/tagging/vocabulary.yaml",
                   "ingest/claims/claim_vocabulary.yaml", "ingest/records/__init__.py"):
        assert needed in names, needed
    # The packaged metadata is the top-level file's content, not a dangling link.
    assert metadata == (ROOT / "metadata.yml").read_bytes()


def test_kb_serve_from_a_plain_wheel_in_a_fresh_venv(wheel, tmp_path, fixtures):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies come from this test run's environment (offline); ketamine-kb itself only from the
    # wheel: a path listed in a .pth file is not a site directory, so the editable install's own
    # .pth (which points at the checkout) is never read.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import ingest; print(ingest.__file__)"], cwd=elsewhere, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(site)), where
    kb = venv / "bin" / "kb"
    built = subprocess.run([str(kb), "build", "--from-dir", str(fixtures / "pubmed"), "--db", "kb.db",
                            "--no-progress"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    # The fixtures hold a malformed file and a record with no identifier on purpose: the build
    # writes the rest and says so with exit status 3 (EXIT_PROBLEMS).
    assert built.returncode == 3 and "studies in kb.db" in built.stderr, built.stderr
    port = free_port()
    process = subprocess.Popen([str(kb), "serve", "--db", "kb.db", "--port", str(port)], cwd=elsewhere, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        home = None
        for _ in range(150):
            try:
                home = requests.get(f"{base}/", timeout=2)
                break
            except requests.ConnectionError:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
        assert home is not None, process.stderr.read() if process.poll() is not None else "no answer"
        assert home.status_code == 200 and "ketamine-kb" in home.text
        # The packaged templates and plugins are in use: the study page is the site's own.
        study = requests.get(f"{base}/kb/studies.json?_shape=array&_size=1", timeout=5).json()[0]
        page = requests.get(f"{base}/kb/studies/{study['id']}", timeout=5)
        assert page.status_code == 200 and "kb-study" in page.text
    finally:
        process.terminate()
        process.wait(timeout=10)
