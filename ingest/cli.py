"""The `kb` command line."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from .db import build as builder
from .db.atomic import DEFAULT_LOCK_WAIT, BuildError
from .db.collect import Collected, collect_file, collect_pages
from .records import ParseError
from .sources import clinicaltrials, europepmc
from .sources.checkpoint import PageCache
from .sources.formats import FORMAT_NAMES, SOURCES
from .sources.http import FetchError, make_session
from .sources.pubmed import DEFAULT_BASE_URL, DEFAULT_QUERY, NCBIError, PubMedClient

DEFAULT_DB = "kb.db"


# Exit statuses: 0 done; 1 failed (kb.db unchanged); 2 bad usage; 3 done, but some input was
# rejected or changed (each problem printed as a Warning line, and kept in ingest_runs.errors);
# 130 interrupted (Ctrl-C; kb.db unchanged).
EXIT_PROBLEMS = 3
EXIT_INTERRUPTED = 130


def fail(message: str) -> None:
    """One clear line on stderr, exit status 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def interrupted(message: str = "interrupted") -> None:
    """Ctrl-C: one line on stderr, exit status 130 (the shell's 128 + SIGINT)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_INTERRUPTED)


@contextmanager
def failures_reported(target: Path) -> Iterator[None]:
    """A failed fetch, parse or write as one `Error:` line (exit 1); Ctrl-C as exit 130. kb.db is unchanged."""
    try:
        yield
    except (BuildError, FetchError, NCBIError, ParseError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        interrupted(f"interrupted; {target} is left as it was")


def report(stats: dict) -> None:
    """The run's warnings and totals; exit status 3 when it had problems (see EXIT_PROBLEMS)."""
    import json

    errors = json.loads(stats["errors"])
    for error in errors:
        click.echo(f"Warning: {error}", err=True)
    click.echo(
        f"{stats['studies_total']} studies in kb.db "
        f"({stats['records_parsed']} records parsed, {stats['studies_written']} written, "
        f"{stats['studies_deleted']} deleted citations, {len(errors)} problems)",
        err=True,
    )
    if errors:
        sys.exit(EXIT_PROBLEMS)


def writer_options(command):
    """--no-wait and --lock-timeout: what a writer does while another build or import holds kb.db."""
    command = click.option(
        "--lock-timeout", default=DEFAULT_LOCK_WAIT, show_default=True, type=click.FloatRange(0, 86400),
        help="Seconds to wait for another kb build or import writing the same database to finish.")(command)
    return click.option(
        "--no-wait", is_flag=True,
        help="Fail at once (exit status 1) if another kb build or import is writing the database.")(command)


def network_options(command):
    """What `kb build` and `kb update` share: which sources, the PubMed search, and how to fetch."""
    options = [
        click.option("--source", "sources", multiple=True, type=click.Choice(SOURCES),
                     help="Source to ingest (repeatable). Default: all three."),
        click.option("--query", default=DEFAULT_QUERY, show_default=True, help="PubMed search to run."),
        click.option("--api-key", envvar="NCBI_API_KEY",
                     help="NCBI API key (10 requests/s instead of 3). Env: NCBI_API_KEY."),
        click.option("--email", envvar="NCBI_EMAIL", help="Contact e-mail sent to NCBI. Env: NCBI_EMAIL."),
        click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True, help="E-utilities base URL."),
        click.option("--europepmc-url", default=europepmc.DEFAULT_BASE_URL, show_default=True,
                     help="Europe PMC REST base URL."),
        click.option("--clinicaltrials-url", default=clinicaltrials.DEFAULT_BASE_URL, show_default=True,
                     help="ClinicalTrials.gov API v2 base URL."),
        click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000),
                     help="Records per efetch request."),
        click.option("--retries", default=5, show_default=True, type=click.IntRange(0, 20),
                     help="Retries per request on 429/5xx, timeouts, dropped connections and bad answers "
                          "(at most 2 when no connection can be made). Each retry is announced on stderr."),
        click.option("--backoff", default=1.0, show_default=True, type=click.FloatRange(0, 60),
                     help="Back-off factor in seconds between retries."),
        click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(0.1, 600),
                     help="Deadline in seconds of one request, from connecting to the last byte of the answer."),
        click.option("--rate", type=click.FloatRange(0.01, 1000),
                     help="Requests per second per source (default: each API's published limit)."),
        click.option("--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Where fetched pages are kept until the build succeeds (default: .kb-checkpoint "
                          "beside the database). An interrupted network build resumes from them."),
        click.option("--no-resume", is_flag=True, help="Discard pages kept by an interrupted build and start over."),
        click.option("--no-progress", is_flag=True, help="Hide progress bars."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class OneLineErrors(click.Group):
    """Usage errors as one line on stderr (exit 2) instead of a usage block."""

    def main(self, args=None, prog_name=None, **kwargs):
        if kwargs.get("standalone_mode", True) is False:
            return super().main(args, prog_name, **kwargs)
        try:
            result = super().main(args, prog_name or "kb", standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "kb"
            click.echo(f"Error: {exc.format_message()} (see '{command} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                interrupted()
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            interrupted()
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ketamine-kb")
def cli() -> None:
    """ketamine-kb: a knowledge base of ketamine, esketamine and arketamine studies.

    \b
    Typical use:
        kb build                 # fetch from PubMed, build kb.db
        kb build --from-dir DIR  # build offline from saved files
        kb serve                 # browse kb.db in Datasette
    """


@cli.command()
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False),
              help="Database file to (re)build.")
@click.option("--from-dir", type=click.Path(path_type=Path),
              help=f"Build offline from every file under DIR: {FORMAT_NAMES}.")
@network_options
@writer_options
def build(db_path, from_dir, sources, query, api_key, email, base_url, europepmc_url, clinicaltrials_url,
          batch_size, retries, backoff, timeout, rate, checkpoint_dir, no_resume, no_progress, no_wait, lock_timeout):
    """Build kb.db from scratch: PubMed, Europe PMC and ClinicalTrials.gov, or saved files.

    Records found in several sources are merged (by PMID, then DOI); trials are linked to
    the papers that report them. The new database is written beside the old one and
    renamed over it only when complete: a failed build leaves the existing kb.db untouched.
    One build or import writes a database at a time; another waits (--lock-timeout) or,
    with --no-wait, fails. Exit status 3: built, but some input was rejected (see the warnings).

    \b
    Examples:
        kb build
        kb build --source pubmed --api-key $NCBI_API_KEY --email me@example.org
        kb build --from-dir ../shared/corpus
        kb build --from-dir exports/ --db review.db
    """
    progress = not no_progress
    target = Path(db_path)
    sources = sources or SOURCES
    wait = 0 if no_wait else lock_timeout
    with failures_reported(target):
        if from_dir is not None:
            stats = builder.build_from_dir(target, from_dir, sources, progress, wait=wait)
        else:
            cache = PageCache(checkpoint_dir or target.resolve().parent / ".kb-checkpoint")
            if no_resume:
                cache.clear()
            elif cache.pages():
                click.echo(f"Resuming: {cache.pages()} pages kept in {cache.directory}", err=True)
            try:
                options = {"retries": retries, "backoff": backoff, "timeout": timeout, "rate": rate}
                with builder.staged(target) as staged:  # the records on disk, not in memory
                    collected = fetch_sources(sources, query, api_key, email, base_url, europepmc_url,
                                              clinicaltrials_url, batch_size, options, progress, cache,
                                              collected=staged)
                    stats = builder.build(target, collected, ",".join(sources), "network", query=query,
                                          progress=progress, wait=wait)
            except (BuildError, FetchError, NCBIError, ParseError) as exc:
                if cache.pages():
                    raise type(exc)(f"{exc} ({cache.pages()} pages kept in {cache.directory}: "
                                    "run again to resume)") from exc
                raise
            cache.clear()
    report(stats)


def fetch_sources(sources, query, api_key, email, base_url, europepmc_url, clinicaltrials_url,
                  batch_size, options: dict, progress, cache: PageCache | None = None,
                  since: dict[str, dt.date] | None = None, collected: Collected | None = None) -> Collected:
    """Every record of every selected source (changed since ``since[source]``), merged as it arrives
    into ``collected`` (by default a new one, in memory).

    ``options``: retries, backoff, timeout and rate, shared by the three clients.
    """
    collected = Collected() if collected is None else collected
    since = since or {}
    clients = source_clients(sources, api_key, email, base_url, europepmc_url, clinicaltrials_url, options, cache)
    if "pubmed" in clients:
        pages = clients["pubmed"].fetch_batches(query, batch_size, progress, since=since.get("pubmed"))
        collect_pages(pages, "pubmed", collected)
    if "europepmc" in clients:
        pages = clients["europepmc"].search_pages(progress=progress, since=since.get("europepmc"))
        collect_pages(pages, "europepmc", collected)
    if "clinicaltrials" in clients:
        pages = clients["clinicaltrials"].pages(progress=progress, since=since.get("clinicaltrials"))
        collect_pages(pages, "clinicaltrials", collected)
    return collected


def source_clients(sources, api_key, email, base_url, europepmc_url, clinicaltrials_url, options: dict,
                   cache: PageCache | None = None) -> dict:
    """One client per selected source, each with its own session (the clients do every retry)."""

    def client_options() -> dict:
        session = make_session()  # no retries of its own: the clients' retry policy does them all
        session.kb_cache = cache
        return {**options, "session": session}

    clients: dict = {}
    if "pubmed" in sources:
        clients["pubmed"] = PubMedClient(base_url=base_url, api_key=api_key, email=email, **client_options())
    if "europepmc" in sources:
        clients["europepmc"] = europepmc.EuropePMCClient(base_url=europepmc_url, **client_options())
    if "clinicaltrials" in sources:
        clients["clinicaltrials"] = clinicaltrials.ClinicalTrialsClient(base_url=clinicaltrials_url,
                                                                        **client_options())
    return clients


@cli.command()
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False),
              help="Existing database to bring up to date.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Fetch what changed from this day on (YYYY-MM-DD), instead of from the last "
                   "successful build or update recorded in ingest_runs.")
@click.option("--dry-run", is_flag=True, help="Only print how many records each source has changed; write nothing.")
@network_options
@writer_options
def update(db_path, since, dry_run, sources, query, api_key, email, base_url, europepmc_url, clinicaltrials_url,
           batch_size, retries, backoff, timeout, rate, checkpoint_dir, no_resume, no_progress, no_wait,
           lock_timeout):
    """Fetch only what changed since the last run and merge it into kb.db.

    PubMed: records entered (edat) or revised (mdat) since then; Europe PMC: first indexed or
    updated since then; ClinicalTrials.gov: studies whose last update was posted since then.
    Changes are merged into a copy of kb.db, retagged, trials relinked, and the copy renamed
    over kb.db, as imports are; every study keeps the first_seen it had. The window starts a day
    before the last run began (the APIs filter by day; the overlap merges away).

    \b
    Examples:
        kb update
        kb update --dry-run
        kb update --since 2026-11-01 --source pubmed
    """
    progress = not no_progress
    target = Path(db_path)
    sources = sources or SOURCES
    if not target.exists():
        fail(f"{target}: no such database (run `kb build` first)")
    windows = update_windows(target, sources, since.date() if since else None)
    options = {"retries": retries, "backoff": backoff, "timeout": timeout, "rate": rate}
    with failures_reported(target):
        if dry_run:
            clients = source_clients(sources, api_key, email, base_url, europepmc_url, clinicaltrials_url, options)
            for source, count in changed_counts(clients, query, windows).items():
                click.echo(f"{source}: {count} changed since {windows[source].isoformat()}")
            return
        cache = PageCache(checkpoint_dir or target.resolve().parent / ".kb-checkpoint")
        if no_resume:
            cache.clear()
        collected = fetch_sources(sources, query, api_key, email, base_url, europepmc_url, clinicaltrials_url,
                                  batch_size, options, progress, cache, since=windows)
        stats = builder.import_into(target, collected, ",".join(sources), collected.files,
                                    wait=0 if no_wait else lock_timeout, progress=progress, mode="update",
                                    since=min(windows.values()), query=query if "pubmed" in sources else None)
        cache.clear()
    report(stats)


def update_windows(target: Path, sources, since: dt.date | None) -> dict[str, dt.date]:
    """The day each source's changes are fetched from: ``since``, else a day before its last fetch."""
    if since is not None:
        return dict.fromkeys(sources, since)
    last = builder.last_fetched(target, sources)
    never = [source for source, day in last.items() if day is None]
    if never:
        fail(f"{target}: no successful network build or update of {', '.join(never)} in ingest_runs; "
             "pass --since YYYY-MM-DD (or --source for the others)")
    return {source: day - dt.timedelta(days=1) for source, day in last.items()}


def changed_counts(clients: dict, query: str, windows: dict[str, dt.date]) -> dict[str, str]:
    """How many records each source would send (one small request per source and date kind)."""
    counts: dict[str, str] = {}
    if "pubmed" in clients:
        by_kind = clients["pubmed"].count_changes(query, windows["pubmed"])
        counts["pubmed"] = ", ".join(f"{n} {label}" for label, n in by_kind.items())
    if "europepmc" in clients:
        counts["europepmc"] = str(clients["europepmc"].count(since=windows["europepmc"]))
    if "clinicaltrials" in clients:
        counts["clinicaltrials"] = str(clients["clinicaltrials"].count(since=windows["clinicaltrials"]))
    return counts


@cli.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False),
              help="Existing database to add to.")
@writer_options
@click.option("--no-progress", is_flag=True, help="Hide the progress bar (shown when stderr is a terminal).")
def import_(file, db_path, no_wait, lock_timeout, no_progress):
    """Add one file to an existing kb.db: PubMed XML (.xml, .xml.gz), MEDLINE (.nbib, .txt,
    .medline), RIS (.ris), Europe PMC search JSON or ClinicalTrials.gov v2 /studies JSON (.json, .json.gz).

    The format is recognised from the content, not the name.

    Records already in kb.db from other sources are merged field by field (nothing is
    lost, the richer value wins); a later record from the same source (a corrected PubMed
    record, even with the same version) replaces that source's earlier record whole, and a
    newer PubMed version the older one; DeleteCitation entries remove studies.

    One build or import writes a database at a time; another waits (--lock-timeout) or,
    with --no-wait, fails. Exit status 3: imported, but some input was rejected (see the warnings).

    \b
    Examples:
        kb import pubmed-ketamine-set.nbib
        kb import screening-export.ris --db review.db
        kb import pubmed24n1219.xml.gz
    """
    target = Path(db_path)
    if not file.exists():
        fail(f"{file}: no such file")
    if not file.is_file():
        fail(f"{file}: not a regular file")
    collected = Collected()
    collect_file(collected, file)
    if not collected.files:
        fail(collected.errors[0] if collected.errors else f"{file}: nothing to import")
    try:
        stats = builder.import_into(target, collected, "file", [str(file)], wait=0 if no_wait else lock_timeout,
                                    progress=not no_progress)
    except BuildError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        interrupted(f"interrupted; {target} is left as it was")
    report(stats)


def _record_from_json(item: dict) -> tuple[dict, list[str]]:
    """A tagger record from a user's JSON object (title, abstract, optional MeSH and types), capped
    like an ingested record, and what the caps cut. ValueError names what is wrong with the object."""
    from .records import cap_record, split_inline_sections

    if not isinstance(item, dict):
        raise ValueError("each line must be a JSON object")
    title, abstract = item.get("title") or "", item.get("abstract") or ""
    if not isinstance(title, str) or not isinstance(abstract, str):
        raise ValueError("title and abstract must be strings")
    if not title and not abstract:
        raise ValueError("needs a title or an abstract")
    record = {"title": title, "abstract": abstract,
              "mesh": [_mesh_heading(m) for m in _json_list(item, "mesh")],
              "publication_types": [{"name": _json_name(p, "name", "publication_types")}
                                    for p in _json_list(item, "publication_types")]}
    cut = cap_record(record)
    record["abstract_sections"] = split_inline_sections(record["abstract"])
    return record, cut


def _json_list(item: dict, key: str) -> list:
    value = item.get(key) or []
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list of names, not {type(value).__name__}")
    return value


def _json_name(value, key: str, where: str) -> str:
    """A name given as a string or as an object's ``key``."""
    name = value.get(key) if isinstance(value, dict) else value
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where} entries must be names or objects with a {key!r} string")
    return name


def _mesh_heading(value) -> dict:
    """A MeSH heading from "Descriptor/qualifier" (a "*" marks major) or {"descriptor", "qualifiers"}."""
    if isinstance(value, dict):
        qualifiers = value.get("qualifiers") or []
        if not isinstance(qualifiers, list):
            raise ValueError("mesh qualifiers must be a list")
        return {"descriptor": _json_name(value, "descriptor", "mesh"),
                "qualifiers": [{"name": _json_name(q, "name", "mesh qualifiers")} for q in qualifiers]}
    return {"descriptor": _json_name(value, "descriptor", "mesh").split("/")[0].lstrip("*"), "qualifiers": []}


def _json_line(item: dict) -> str:
    """``item`` as one line of JSON; escaped to ASCII if it holds a lone surrogate ("\\ud800")."""
    import json

    text = json.dumps(item, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(item)
    return text + "\n"


@cli.command(name="tag-text")
@click.argument("input", type=click.File("rb"), default="-")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-",
              help="Where to write the tagged JSON lines (default: stdout).")
def tag_text(input, output):
    """Tag your own abstracts: JSON lines in, the same lines with tags out.

    Each input line is an object with "title" and/or "abstract" (optionally "mesh" and
    "publication_types" as lists of names). Each output line is that object plus "tags":
    indication, mechanism, side_effect (and side_effect_absent), design (the study's own;
    parent_design for a secondary analysis), evidence_level (1-6), drug, route, population,
    sample_size (or, for a synthesis, studies_included and participants_pooled), on_topic,
    and the evidence sentence (with its negation flag) for each tag and count.

    A line that cannot be read is reported on stderr with its number and skipped; the others
    are still tagged, and the exit status is 1. Titles and abstracts over the ingest caps
    (ingest.records) are cut for tagging, with a warning.

    \b
    Examples:
        kb tag-text my-abstracts.jsonl > tagged.jsonl
        echo '{"title": "Intranasal esketamine in TRD"}' | kb tag-text
    """
    import json

    from .tagging import load_vocabulary, tag_record

    vocab = load_vocabulary()
    problems = 0
    for number, raw in enumerate(input, 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            item = json.loads(line)
            record, cut = _record_from_json(item)
            item["tags"] = tag_record(record, vocab).as_dict()
            text = _json_line(item)
        except UnicodeDecodeError as exc:
            click.echo(f"Error: line {number}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})",
                       err=True)
            problems += 1
            continue
        except (ValueError, RecursionError) as exc:  # JSONDecodeError; nesting too deep to read or write
            message = "nested too deeply" if isinstance(exc, RecursionError) else exc
            click.echo(f"Error: line {number}: {message}", err=True)
            problems += 1
            continue
        for change in cut:
            click.echo(f"Warning: line {number}: {change} for tagging", err=True)
        output.write(text)
    if problems:
        sys.exit(1)


# Subcommands that live beside their stage.
from .claims.cli import check, embed  # noqa: E402
from .db.cli import compact  # noqa: E402
from .site.cli import serve  # noqa: E402
from .site.publish import package, publish  # noqa: E402

for command in (check, embed, serve, package, publish, compact):
    cli.add_command(command)
