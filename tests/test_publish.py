"""kb package and kb publish: what the bundle ships, and that very bundle served as its Dockerfile says."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from datasette.utils import ValueAsBooleanError, value_as_boolean

from ingest.cli import cli
from ingest.site import METADATA_PATH, PLUGINS_DIR, TEMPLATES_DIR
from ingest.site import publish as publishing
from ingest.site.cli import datasette_args, serve_settings, setting_options

ROOT = Path(__file__).resolve().parent.parent


def kb(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


def settings_in(args: list[str]) -> dict[str, str]:
    """The ``--setting NAME VALUE`` pairs of a command line, on/off written one way (fly writes False)."""
    return {args[i + 1]: as_datasette_reads(args[i + 2]) for i, arg in enumerate(args) if arg == "--setting"}


def as_datasette_reads(value: str) -> str:
    try:
        return "on" if value_as_boolean(value) else "off"
    except ValueAsBooleanError:
        return value


# --------------------------------------------------------------------------- the bundle


@pytest.fixture(scope="module")
def bundle(site_kb, tmp_path_factory) -> Path:
    """`kb package --dir` of the site fixtures' kb.db, sized for this machine as kb serve sizes it."""
    out = tmp_path_factory.mktemp("bundle") / "kb-site"
    result = kb("package", "--db", str(site_kb), "--dir", str(out), "--cpus", str(os.cpu_count() or 1))
    assert result.exit_code == 0, result.output
    assert "kb.db" in result.stdout and "plugins/requirements.txt" in result.stdout
    return out


def dockerfile(bundle: Path) -> dict:
    """The Dockerfile's ENV values, RUN command lines and CMD, as the shell would split them."""
    steps = {"env": {}, "run": [], "cmd": None}
    for line in (bundle / "Dockerfile").read_text(encoding="utf-8").splitlines():
        instruction, _, rest = line.partition(" ")
        if instruction == "ENV":
            name, value = shlex.split(rest)
            steps["env"][name] = value
        elif instruction == "RUN":
            steps["run"].append(shlex.split(rest))
        elif instruction == "CMD":
            steps["cmd"] = shlex.split(rest)
    return steps


def template_files(folder: Path) -> dict[str, bytes]:
    """Every template under ``folder`` (pages/ included), by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.html")}


def test_the_bundle_holds_the_database_metadata_templates_and_plugins(bundle, site_kb):
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"Dockerfile", "kb.db", "metadata.json", "plugins/requirements.txt"} <= names
    assert (bundle / "kb.db").read_bytes() == site_kb.read_bytes()
    assert not (bundle / "kb.db").samefile(site_kb)  # a copy of its own, not a link to the served file
    assert json.loads((bundle / "metadata.json").read_text()) == yaml.safe_load(METADATA_PATH.read_text())
    for source, shipped in ((TEMPLATES_DIR, "templates"), (PLUGINS_DIR, "plugins")):
        for path in source.iterdir():
            if path.suffix in (".html", ".py"):
                assert (bundle / shipped / path.name).read_bytes() == path.read_bytes(), path.name
    assert template_files(bundle / "templates") == template_files(TEMPLATES_DIR)


def test_the_requirements_install_the_wheel_and_the_versions_tested_here(bundle):
    from importlib.metadata import version

    lines = (bundle / "plugins" / "requirements.txt").read_text().splitlines()
    (wheel,) = (bundle / "plugins").glob("ketamine_kb-*.whl")
    assert lines[0] == f"plugins/{wheel.name}"
    pins = dict(line.split("==") for line in lines[1:])
    for needed in ("datasette", "datasette-dashboards", "datasette-block-robots", "pyyaml", "rispy", "lxml"):
        assert pins[needed] == version(needed), needed
    assert "ketamine-kb" not in pins and "pytest" not in pins  # its own wheel; no test-only packages
    run = dockerfile(bundle)["run"]
    assert ["pip", "install", "-U", "datasette", "-r", "plugins/requirements.txt"] in run


def test_the_wheel_carries_ingest_with_its_yaml_data(bundle):
    (wheel,) = (bundle / "plugins").glob("ketamine_kb-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("ingest/site/metadata.yml") == METADATA_PATH.read_bytes()
    data = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ingest").rglob("*.yaml")}
    assert data and data <= names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ingest").rglob("*.py")}
    assert modules <= names


def test_the_dockerfile_serves_kb_db_immutable_with_every_kb_serve_setting(bundle):
    cmd = dockerfile(bundle)["cmd"]
    assert cmd[:3] == ["datasette", "serve", "--host"]
    assert cmd[cmd.index("-i") + 1] == "kb.db"
    for option, value in (("--metadata", "metadata.json"), ("--template-dir", "templates/"),
                          ("--plugins-dir", "plugins/")):
        assert cmd[cmd.index(option) + 1] == value, option
    # The very settings kb serve starts Datasette with, read from its own command line.
    served = settings_in(datasette_args(Path("kb.db"), "127.0.0.1", 8001, METADATA_PATH))
    assert settings_in(cmd) == served and len(served) >= 8


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundle_venv(tmp_path: Path) -> Path:
    """A fresh venv whose ingest package can only come from the bundle's wheel.

    Its other packages are this run's (a .pth file, offline). A path listed in a .pth file is not a
    site directory, so the editable install's own .pth, which points at the checkout, is never read.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def run_step(python: Path, args: list[str], bundle: Path, env: dict) -> None:
    """One RUN line of the Dockerfile, with this venv's python; pip offline, from what is installed."""
    if args[:2] == ["pip", "install"]:
        args = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
                *args[2:]]
    elif args[0] == "datasette":
        args = [str(python), "-m", "datasette", *args[1:]]
    else:
        raise AssertionError(f"a Dockerfile step this test does not know: {args}")
    done = subprocess.run(args, cwd=bundle, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def served_bundle(bundle, tmp_path_factory):
    """The bundle's Dockerfile carried out here: its RUN steps, then its CMD on a loopback port."""
    tmp_path = tmp_path_factory.mktemp("served")
    python = bundle_venv(tmp_path)
    steps = dockerfile(bundle)
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}, **steps["env"]}
    for args in steps["run"]:
        run_step(python, args, bundle, env)
    port = free_port()
    cmd = [str(python), "-m", *steps["cmd"]]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("$PORT")] = str(port)
    process = subprocess.Popen(cmd, cwd=bundle, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/-/versions.json", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the bundle did not start: {process.communicate()[1][-2000:]}")
            time.sleep(0.1)
        yield {"base": base, "python": python, "env": env}
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()


def test_the_served_bundle_imports_ingest_from_its_wheel_not_the_checkout(served_bundle, tmp_path):
    where = subprocess.run([str(served_bundle["python"]), "-c", "import ingest; print(ingest.__file__)"],
                           cwd=tmp_path, env=served_bundle["env"], check=True, capture_output=True,
                           text=True).stdout.strip()
    assert not where.startswith(str(ROOT)) and Path(where).is_relative_to(served_bundle["python"].parent.parent)


def test_the_served_bundle_is_the_site_with_its_plugins_templates_and_settings(served_bundle, site_kb):
    base = served_bundle["base"]
    home = requests.get(f"{base}/", timeout=10)
    assert home.status_code == 200 and "ketamine-kb" in home.text  # metadata.json's title
    studies = requests.get(f"{base}/kb/studies", timeout=10)
    # kb_site.py's render_cell: tag ids shown as chips with the labels of kb.db's tags table.
    with sqlite3.connect(site_kb) as conn:
        design = conn.execute("select d.value from studies, json_each(studies.designs) d "
                              "where on_topic = 1 limit 1").fetchone()[0]  # the default view: on topic
        label = conn.execute("select label from tags where id = ?", (design,)).fetchone()[0]
        study_id = conn.execute("select id from studies limit 1").fetchone()[0]
    assert studies.status_code == 200 and 'class="kb-chip"' in studies.text and f">{label}</a>" in studies.text
    page = requests.get(f"{base}/kb/studies/{study_id}", timeout=10)
    # The study template with the citations plugin's Cite box.
    assert page.status_code == 200 and 'id="kb-cite"' in page.text and "kb-study" in page.text
    settings = requests.get(f"{base}/-/settings.json", timeout=10).json()
    for name, value in serve_settings().items():
        assert settings[name] == (value_as_boolean(value) if isinstance(settings[name], bool) else int(value)), name
    (db,) = requests.get(f"{base}/-/databases.json", timeout=10).json()
    assert db["name"] == "kb" and db["is_mutable"] is False


# --------------------------------------------------------------------------- kb publish


def test_kb_publish_fly_generate_dir_ships_the_same_site(site_kb, tmp_path):
    out = tmp_path / "fly-app"
    result = kb("publish", "fly", "--db", str(site_kb), "--app", "kb-test", "--generate-dir", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "fly.toml").is_file() and (out / "kb.db").read_bytes() == site_kb.read_bytes()
    assert json.loads((out / "metadata.json").read_text()) == yaml.safe_load(METADATA_PATH.read_text())
    assert template_files(out / "templates") == template_files(TEMPLATES_DIR)
    assert list((out / "plugins").glob("ketamine_kb-*.whl")) and (out / "plugins" / "kb_site.py").is_file()
    steps = dockerfile(out)
    assert ["pip", "install", "-U", "datasette", "-r", "plugins/requirements.txt"] in steps["run"]
    cmd = steps["cmd"]
    assert cmd[cmd.index("-i") + 1] == "kb.db" and cmd[cmd.index("--plugins-dir") + 1] == "plugins/"
    assert settings_in(cmd) == settings_in(setting_options(serve_settings(publishing.DEFAULT_CPUS)))


def staged(tmp_path: Path) -> publishing.Staged:
    return publishing.Staged(db=tmp_path / "kb.db", plugins_dir=tmp_path / "plugins",
                             wheel=tmp_path / "plugins" / "ketamine_kb-0.1.0-py3-none-any.whl")


@pytest.mark.parametrize("target", ["cloudrun", "heroku"])
def test_docker_publishers_get_the_settings_as_extra_options(target, tmp_path):
    command = publishing.publishers()[target]
    args = publishing.publish_args(command, staged(tmp_path), METADATA_PATH, 4, "--crossdb")
    extra = shlex.split(args[args.index("--extra-options") + 1])
    assert settings_in(extra) == settings_in(setting_options(serve_settings(4))) and extra[-1] == "--crossdb"
    assert serve_settings(4)["num_sql_threads"] == "16"
    assert args[args.index("--install") + 1] == "-r plugins/requirements.txt"
    assert args[args.index("--plugins-dir") + 1] == str(tmp_path / "plugins")


def test_vercel_gets_the_settings_as_its_own_setting_options(tmp_path):
    # datasette-publish-vercel ignores --extra-options: it writes the settings into its index.py.
    args = publishing.publish_args(publishing.publishers()["vercel"], staged(tmp_path), METADATA_PATH, 1, None)
    assert settings_in(args) == settings_in(setting_options(serve_settings(1))) and "--extra-options" not in args


def test_a_publisher_plugin_that_is_absent_is_named():
    assert publishing.missing_publisher("cloudrun", {"cloudrun", "heroku"}) is None
    assert "install datasette-publish-fly" in publishing.missing_publisher("fly", {"cloudrun", "heroku"})
    assert "available: cloudrun, heroku" in publishing.missing_publisher("nowhere", {"cloudrun", "heroku"})


def test_kb_publish_to_an_unknown_target_is_one_line(site_kb):
    line = one_line_error(kb("publish", "nowhere", "--db", str(site_kb)))
    assert "no `nowhere` publisher" in line and "cloudrun" in line


# --------------------------------------------------------------------------- what cannot be shipped


@pytest.mark.parametrize("command", ["package", "publish"])
def test_a_missing_or_foreign_database_is_one_line(command, tmp_path):
    target = ["cloudrun"] if command == "publish" else ["--dry-run"]
    missing = one_line_error(kb(command, *target, "--db", str(tmp_path / "kb.db")))
    assert "no such database" in missing
    foreign = tmp_path / "kb.db"
    foreign.write_text("not a database")
    assert "not a readable SQLite database" in one_line_error(kb(command, *target, "--db", str(foreign)))


def test_kb_package_without_docker_is_one_line(site_kb, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker on it
    line = one_line_error(kb("package", "--db", str(site_kb)))
    assert "docker is not installed" in line and "--dir" in line


def test_kb_package_into_a_non_empty_directory_is_one_line(site_kb, tmp_path):
    (tmp_path / "something").write_text("kept")
    assert "not an empty directory" in one_line_error(kb("package", "--db", str(site_kb), "--dir", str(tmp_path)))
    assert [p.name for p in tmp_path.iterdir()] == ["something"]
