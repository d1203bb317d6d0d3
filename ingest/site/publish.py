"""`kb package` and `kb publish`: the site exactly as `kb serve` runs it, in a container or on a host.

Both wrap Datasette's own packaging (`datasette package`, `datasette publish TARGET`): the same
Dockerfile, the same publishers (cloudrun, heroku; fly and vercel through their plugins), with what
`kb serve` adds put back in: kb.db immutable and named kb.db, metadata.yml, the templates, the
plugins, every setting of `serve_settings`, and this project installed from a wheel built here, so
the plugins' ``import ingest.*`` works in the image. The wheel travels inside the plugins directory
(Datasette loads only its ``*.py`` files), the one directory every publisher copies.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata as dist_metadata
from pathlib import Path

import click

from . import METADATA_PATH, PLUGINS_DIR, TEMPLATES_DIR
from .cli import DEFAULT_DB, serve_settings, served_path, setting_options, unservable

PROJECT = "ketamine-kb"
# Publishers that are Datasette plugins, not built in: what to install for each.
PUBLISHER_PLUGINS = {"fly": "datasette-publish-fly", "vercel": "datasette-publish-vercel",
                     "now": "datasette-publish-vercel"}
INSTALL_HINT = "pip install 'ketamine-kb[publish]'"
REQUIREMENTS = "requirements.txt"
# Relative to the bundle's root, where every publisher runs pip.
INSTALL_REQUIREMENTS = f"-r plugins/{REQUIREMENTS}"
# The CPUs of the machine that will serve the bundle: Cloud Run's default, Fly's smallest machine.
DEFAULT_CPUS = 1


# --------------------------------------------------------------------------- the project's wheel


def project_source() -> Path:
    """The checkout this package runs from (the directory holding pyproject.toml)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or f'name = "{PROJECT}"' not in pyproject.read_text(encoding="utf-8"):
        raise click.ClickException(
            f"the {PROJECT} source (pyproject.toml beside ingest/) is not at {root}: "
            "run kb package / kb publish from a checkout (pip install -e .)")
    return root


def build_wheel(out_dir: Path) -> Path:
    """A wheel of this project, built from a copy of the checkout (which is left clean), offline."""
    root = project_source()
    with tempfile.TemporaryDirectory(prefix="kb-wheel-") as work:
        source = Path(work)
        for name in ("pyproject.toml", "README.md", "metadata.yml"):
            shutil.copy2(root / name, source / name)
        # ingest/site/metadata.yml is a link to the top-level file: kept a link, copied into the wheel.
        shutil.copytree(root / "ingest", source / "ingest", symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "-w", str(out_dir), str(source)], capture_output=True, text=True)
    if built.returncode:
        last = (built.stderr.strip().splitlines() or ["no output"])[-1]
        raise click.ClickException(f"building the {PROJECT} wheel failed: {last}")
    (wheel,) = out_dir.glob("ketamine_kb-*.whl")
    return wheel


def require_build_tools() -> None:
    """A one-line error unless the wheel can be built here and its requirements pinned."""
    import importlib.util

    for needed in ("setuptools", "wheel", "packaging"):
        if importlib.util.find_spec(needed) is None:
            raise click.ClickException(f"kb package / kb publish need {needed}: {INSTALL_HINT}")


def pinned_requirements(project: str = PROJECT) -> list[str]:
    """``name==version`` for every package the project needs at run time, as installed here.

    The image then runs the versions this checkout was tested with, not whatever is newest.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    pending = [(project, frozenset())]
    seen = set(pending)  # (package, extras) already followed: dependency graphs may have cycles
    while pending:
        name, extras = pending.pop()
        for line in dist_metadata.requires(name) or []:
            requirement = Requirement(line)
            wanted = canonicalize_name(requirement.name)
            if requirement.marker and not any(requirement.marker.evaluate({"extra": extra})
                                              for extra in {"", *extras}):
                continue
            if wanted not in pins:
                try:
                    pins[wanted] = dist_metadata.version(wanted)
                except dist_metadata.PackageNotFoundError:
                    raise click.ClickException(
                        f"{wanted} (needed by {name}) is not installed: reinstall {project}") from None
            follow = (wanted, frozenset(requirement.extras))
            if follow not in seen:
                seen.add(follow)
                pending.append(follow)
    pins.pop(canonicalize_name(project), None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


# --------------------------------------------------------------------------- what is shipped


@dataclass(frozen=True)
class Staged:
    """Inputs for Datasette's packaging: the database (named kb.db) and the plugins directory."""

    db: Path
    plugins_dir: Path
    wheel: Path


def checked_db(db_path: Path) -> Path:
    """``db_path`` made absolute, or a one-line error if kb serve could not serve it."""
    if not db_path.exists():
        raise click.ClickException(f"{db_path}: no such database (run `kb build` first)")
    problem = unservable(db_path)
    if problem:
        raise click.ClickException(f"{db_path}: {problem}")
    return served_path(db_path.resolve())


def checked_metadata(metadata: Path) -> Path:
    if not metadata.is_file():
        raise click.ClickException(f"{metadata}: no such metadata file")
    return metadata.resolve()


def stage(db_path: Path, work: Path) -> Staged:
    """The plugins directory to ship: the site's plugins, the project's wheel and its requirements."""
    require_build_tools()
    plugins_dir = work / "plugins"
    plugins_dir.mkdir()
    for plugin in sorted(PLUGINS_DIR.glob("*.py")):
        shutil.copy2(plugin, plugins_dir / plugin.name)
    wheel = build_wheel(plugins_dir)
    # Paths in a requirements file are relative to where pip runs: the bundle's root.
    lines = [f"plugins/{wheel.name}", *pinned_requirements()]
    (plugins_dir / REQUIREMENTS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Staged(db=db_path, plugins_dir=plugins_dir, wheel=wheel)


@contextmanager
def docker_bundle(db_path: Path, metadata: Path, cpus: int, port: int,
                  install: tuple[str, ...] = (), version_note: str | None = None) -> Iterator[Path]:
    """The directory `datasette package` would build: Dockerfile, kb.db, metadata.json, templates,
    plugins (with the wheel and requirements). Removed on leaving; Datasette's own function makes it.
    """
    from datasette.utils import temporary_docker_directory

    with tempfile.TemporaryDirectory(prefix="kb-package-") as work:
        staged = stage(db_path, Path(work))
        secret = os.environ.get("DATASETTE_PUBLISH_SECRET") or os.urandom(32).hex()
        with metadata.open(encoding="utf-8") as metadata_file, temporary_docker_directory(
                [str(staged.db)], PROJECT, metadata=metadata_file,
                extra_options=" ".join(setting_options(serve_settings(cpus))), branch=None,
                template_dir=str(TEMPLATES_DIR), plugins_dir=str(staged.plugins_dir), static=[],
                install=[INSTALL_REQUIREMENTS, *install], spatialite=False, version_note=version_note,
                secret=secret, port=port) as bundle:
            yield Path(bundle)


def listing(root: Path) -> list[tuple[int, str]]:
    """(size in bytes, path relative to ``root``) of every file under it, in path order."""
    return [(path.stat().st_size, path.relative_to(root).as_posix())
            for path in sorted(root.rglob("*")) if path.is_file()]


def echo_listing(root: Path, db: Path | None = None) -> None:
    """The files, one a line with its size, then the total; ``db`` (shipped from elsewhere) first."""
    files = ([(db.stat().st_size, db.name)] if db else []) + listing(root)
    for size, name in files:
        click.echo(f"{size:>14,}  {name}")
    click.echo(f"{sum(size for size, _ in files):>14,}  total, {len(files)} files")


def checked_out_dir(out_dir: Path) -> Path:
    """``out_dir`` made absolute (Datasette's packaging changes directory), if new or empty."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise click.ClickException(f"{out_dir}: exists and is not an empty directory")
    return out_dir.resolve()


def copy_bundle(bundle: Path, out_dir: Path) -> None:
    """The bundle written to ``out_dir``, as files of its own (never hard links to kb.db)."""
    shutil.copytree(bundle, out_dir, dirs_exist_ok=True)


def docker_build(bundle: Path, tag: str) -> None:
    completed = subprocess.run(["docker", "build", "-t", tag, "."], cwd=bundle)
    if completed.returncode:
        raise click.ClickException(f"docker build failed (exit status {completed.returncode})")


def require_docker() -> None:
    """A one-line error unless docker is installed and its daemon answers."""
    if not shutil.which("docker"):
        raise click.ClickException("docker is not installed (not on PATH): install it, "
                                   "or write the bundle with `kb package --dir DIR`")
    answer = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True)
    if answer.returncode:
        raise click.ClickException("docker's daemon is not answering: start it, "
                                   "or write the bundle with `kb package --dir DIR`")


# --------------------------------------------------------------------------- the commands


def site_options(command):
    """--db, --metadata and --cpus: what both commands ship, and for which machine."""
    command = click.option(
        "--cpus", default=DEFAULT_CPUS, show_default=True, type=click.IntRange(1, 64),
        help="CPUs of the machine that will serve it (sizes num_sql_threads as kb serve does).")(command)
    command = click.option(
        "--metadata", type=click.Path(dir_okay=False, path_type=Path), default=lambda: str(METADATA_PATH),
        show_default="the packaged metadata.yml", help="Datasette metadata file.")(command)
    return click.option("--db", "db_path", default=DEFAULT_DB, show_default=True,
                        type=click.Path(dir_okay=False, path_type=Path), help="Database to ship.")(command)


@click.command()
@site_options
@click.option("--dir", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the bundle (Dockerfile and all it copies) to this new or empty directory; "
                   "no docker needed.")
@click.option("--dry-run", is_flag=True, help="Print the files the bundle would hold and its Dockerfile.")
@click.option("-t", "--tag", default=PROJECT, show_default=True, help="Name (name:tag) of the Docker image.")
@click.option("-p", "--port", default=8001, show_default=True, type=click.IntRange(1, 65535),
              help="Port the container listens on.")
@click.option("--install", multiple=True, help="Another package to install in the image (repeatable).")
@click.option("--version-note", help="A note shown on /-/versions.")
def package(db_path, metadata, cpus, out_dir, dry_run, tag, port, install, version_note):
    """Package kb.db and the site into a Docker image, as `kb serve` serves it.

    Datasette's `datasette package`, with metadata, templates, plugins, kb serve's settings and
    this project (a wheel built from the checkout) added.

    \b
    Examples:
        kb package --dry-run
        kb package --dir bundle/        # inspect it, or: cd bundle && docker build .
        kb package --tag ketamine-kb:latest && docker run -p 8001:8001 ketamine-kb:latest
    """
    db = checked_db(db_path)
    metadata = checked_metadata(metadata)
    out_dir = checked_out_dir(out_dir) if out_dir else None
    if not (out_dir or dry_run):
        require_docker()
    with docker_bundle(db, metadata, cpus, port, install, version_note) as bundle:
        if dry_run:
            echo_listing(bundle)
            click.echo((bundle / "Dockerfile").read_text(encoding="utf-8"))
        elif out_dir:
            copy_bundle(bundle, out_dir)
            click.echo(f"Wrote the bundle to {out_dir}:", err=True)
            echo_listing(out_dir)
        else:
            docker_build(bundle, tag)


def missing_publisher(target: str, available: set[str]) -> str | None:
    """Why Datasette cannot publish to ``target`` with the publishers ``available``, else None."""
    if target in available:
        return None
    if target in PUBLISHER_PLUGINS:
        return f"Datasette has no `{target}` publisher: install {PUBLISHER_PLUGINS[target]} ({INSTALL_HINT})"
    return f"Datasette has no `{target}` publisher (available: {', '.join(sorted(available))})"


def publishers() -> dict[str, click.Command]:
    """`datasette publish`'s targets: the built-in ones and those of installed plugins."""
    from datasette.cli import publish as publish_group

    return dict(publish_group.commands)


def publish_args(target: click.Command, staged: Staged, metadata: Path, cpus: int,
                 extra_options: str | None) -> list[str]:
    """The `datasette publish TARGET` arguments that ship the site as kb serve runs it."""
    args = [str(staged.db), "--metadata", str(metadata), "--template-dir", str(TEMPLATES_DIR),
            "--plugins-dir", str(staged.plugins_dir), "--install", INSTALL_REQUIREMENTS]
    settings = setting_options(serve_settings(cpus))
    if any(param.name == "settings" for param in target.params):
        # fly and vercel take --setting; vercel ignores --extra-options altogether.
        args += settings
        if extra_options:
            # A trailing space: fly appends its own options without one.
            args += ["--extra-options", extra_options + " "]
    else:
        args += ["--extra-options", " ".join([*settings, *([extra_options] if extra_options else [])])]
    return args


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@site_options
@click.option("--extra-options", help="More options for `datasette serve` (added to kb serve's).")
@click.option("--dry-run", is_flag=True, help="Print the `datasette publish` command and what it ships; run nothing.")
@click.argument("passthrough", nargs=-1, type=click.UNPROCESSED)
def publish(target, db_path, metadata, cpus, extra_options, dry_run, passthrough):
    """Publish kb.db and the site with `datasette publish TARGET` (cloudrun, fly, vercel, heroku).

    Any other option is passed to `datasette publish TARGET` as is (see `datasette publish TARGET
    --help`); metadata, templates, plugins, kb serve's settings and this project are added.

    \b
    Examples:
        kb publish cloudrun --service ketamine-kb
        kb publish fly --app ketamine-kb
        kb publish fly --app ketamine-kb --generate-dir fly-app/   # write it, deploy nothing
        kb publish vercel --project ketamine-kb
    """
    db = checked_db(db_path)
    metadata = checked_metadata(metadata)
    targets = publishers()
    problem = missing_publisher(target, set(targets))
    if problem:
        raise click.ClickException(problem)
    with tempfile.TemporaryDirectory(prefix="kb-publish-") as work:
        staged = stage(db, Path(work))
        command = [sys.executable, "-m", "datasette", "publish", target,
                   *publish_args(targets[target], staged, metadata, cpus, extra_options), *passthrough]
        if dry_run:
            click.echo(shlex.join(command))
            echo_listing(Path(work), staged.db)
            return
        completed = subprocess.run(command)
    if completed.returncode:
        sys.exit(completed.returncode)
