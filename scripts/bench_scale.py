#!/usr/bin/env python3
"""Scale benchmark: synthetic corpora of 10k and 40k studies (100k optional), built and served.

Usage: python scripts/bench_scale.py [--sizes 10000,40000] [--variants before,after] [--repeat 20]
                                     [--corpus ../shared/corpus] [--work /tmp/kb-scale] [--keep]
                                     [--reuse] [--sizes-only] [--no-references]

For each size it writes a corpus of PubMed efetch XML (the real efetch articles of the shared
corpus as templates, with the real titles, abstracts, years' shape, MeSH headings, publication
types and keywords of ``literature.jsonl`` swapped in; every article with a fresh PMID and DOI;
the corpus's ClinicalTrials.gov page alongside), runs ``kb build --from-dir`` on it under
``/usr/bin/time -v`` (wall time, peak RSS of the largest process), and reports the db size per
study. Then it serves the database with ``kb serve`` once per variant:

- ``before``: metadata.yml as it is, on a copy of the database without the indexes issue 18
  added (ISSUE18_INDEXES): the site as it was;
- ``uncached``: the issue-18 indexes, and metadata.yml with the studies table's array facets
  switched to the ``tags`` facet (plugins/tag_facets.py; the change is written out in
  /tmp/issue18_metadata_patch.md), its cache of counts off (KB_FACET_CACHE=0): every page
  counted afresh;
- ``after``: the same with the cache on, as ``kb serve`` runs it.

A metadata.yml that already has the change is served as it is in every variant but ``before``,
where its tags facets are switched back to array facets.

Each page is timed one request after another (median and p95 of --repeat requests after one
warm-up, whose time is reported apart for the studies page): the studies page with its default
facets (and how many of them were shown, not timed out), a filtered view, the table search,
ranked search, a study page, a claim check, and each dashboard chart's query; then the studies
page at 8 concurrent clients (requests/s). In the same run, on the same database, the reference
points: Datasette's own array-facet SQL, a plain json_each group-by, the study_tags count and the
tags facet's query, for the five array facets of the studies page.

Prints one table: a row per measurement, a column per size and variant, then kb.db's bytes per study
by table and index (SQLite's dbstat: pages, free space in them included). ``--sizes-only`` builds and
prints the sizes without serving. Only 127.0.0.1 is ever contacted; the corpora are written under
--work (deleted afterwards unless --keep).
"""

from __future__ import annotations

import argparse
import copy
import html
import importlib.util
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from urllib.parse import quote_plus

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
KB = str(Path(sys.executable).with_name("kb"))
METADATA = ROOT / "metadata.yml"
TIME = "/usr/bin/time"
ARTICLES_PER_FILE = 2500
PMID_BASE = 80_000_000
# The studies table's array facets that the tags facet serves (plugins/tag_facets.py).
TAG_FACET_COLUMNS = ("designs", "drugs", "indications", "side_effects", "routes", "populations", "mechanisms")
SEARCH_TERMS = ["esketamine dissociation", "suicidal ideation", "cystitis", "bdnf", "remission", "infusion"]
CLAIMS = ["esketamine causes dissociation", "ketamine relief can be permanent", "ketamine increases blood pressure"]
TABLE_SEARCH = ["dissociation", "esketamine", "anxiety", "remission"]
# The indexes issue 18 added to ingest/db/schema.py, dropped for the "before" variant.
ISSUE18_INDEXES = ("idx_studies_tag_columns",)
VARIANTS = ("before", "uncached", "after")


# --------------------------------------------------------------------------- the synthetic corpus


def _templates(corpus: Path) -> list[str]:
    """The real efetch articles, stripped of what must not be copied (ids, indexing, references)."""
    out = []
    for path in sorted((corpus / "pubmed" / "efetch").glob("*.xml")):
        for article in re.findall(r"<PubmedArticle>.*?</PubmedArticle>", path.read_text(), re.S):
            if "<Abstract>" not in article:
                continue
            for element in ("ReferenceList", "CommentsCorrectionsList", "ChemicalList", "MeshHeadingList",
                            "KeywordList", "PublicationTypeList", "DataBankList", "ArticleDate", "OtherAbstract",
                            "SupplMeshList", "ArticleIdList"):
                article = re.sub(rf"<{element}\b[^>]*>.*?</{element}>", "", article, flags=re.S)
            article = re.sub(r"<ELocationID\b[^>]*>.*?</ELocationID>", "", article, flags=re.S)
            out.append(article)
    if not out:
        raise SystemExit(f"no efetch articles with an abstract under {corpus / 'pubmed' / 'efetch'}")
    return out


def _literature(corpus: Path) -> list[dict]:
    records = [json.loads(line) for line in (corpus / "literature.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if (r.get("abstract") or "").strip() and (r.get("title") or "").strip()]


def _year(rng: random.Random) -> int:
    """Publication years shaped like PubMed's ketamine literature: few in the 1970s, most since 2015."""
    while True:
        year = 2026 - int(rng.expovariate(1 / 9))
        if year >= 1966:
            return year


def _mesh_xml(headings: list[str]) -> str:
    parts = []
    for heading in headings:
        descriptor, *qualifiers = heading.split("/")
        if not descriptor.strip():
            continue
        parts.append(f'<MeshHeading><DescriptorName MajorTopicYN="N">{html.escape(descriptor.strip())}'
                     "</DescriptorName>"
                     + "".join(f'<QualifierName MajorTopicYN="N">{html.escape(q.strip())}</QualifierName>'
                               for q in qualifiers if q.strip())
                     + "</MeshHeading>")
    return f"<MeshHeadingList>{''.join(parts)}</MeshHeadingList>" if parts else ""


def synthetic_article(template: str, record: dict, pmid: int, year: int) -> str:
    """One PubmedArticle: the template's structure, the record's text and indexing, a fresh PMID and DOI."""
    doi = f"10.5555/kb-scale.{pmid}"
    article = re.sub(r'(<PMID Version="\d+">)\d+(</PMID>)', rf"\g<1>{pmid}\g<2>", template, count=1)
    article = re.sub(r"<ArticleTitle>.*?</ArticleTitle>",
                     lambda _: f"<ArticleTitle>{html.escape(record['title'], quote=False)}</ArticleTitle>",
                     article, count=1, flags=re.S)
    abstract = (f"<Abstract><AbstractText>{html.escape(record['abstract'], quote=False)}</AbstractText></Abstract>"
                f'<ELocationID EIdType="doi" ValidYN="Y">{doi}</ELocationID>')
    article = re.sub(r"<Abstract>.*?</Abstract>", lambda _: abstract, article, count=1, flags=re.S)
    article = re.sub(r"<PubDate>.*?</PubDate>", f"<PubDate><Year>{year}</Year></PubDate>", article, count=1,
                     flags=re.S)
    pubtypes = record.get("pubtypes") or ["Journal Article"]
    article = article.replace("</Article>", "<PublicationTypeList>" + "".join(
        f"<PublicationType>{html.escape(p)}</PublicationType>" for p in pubtypes) + "</PublicationTypeList></Article>",
        1)
    keywords = "".join(f'<Keyword MajorTopicYN="N">{html.escape(k)}</Keyword>' for k in record.get("keywords") or [])
    indexing = _mesh_xml(record.get("mesh") or []) + (f'<KeywordList Owner="NOTNLM">{keywords}</KeywordList>'
                                                      if keywords else "")
    article = article.replace("</MedlineCitation>", indexing + "</MedlineCitation>", 1)
    ids = (f'<ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId>'
           f'<ArticleId IdType="doi">{doi}</ArticleId></ArticleIdList>')
    if "</PubmedData>" in article:
        article = article.replace("</PubmedData>", ids + "</PubmedData>", 1)
    else:
        article = article.replace("</MedlineCitation>", f"</MedlineCitation><PubmedData>{ids}</PubmedData>", 1)
    return article


def write_corpus(folder: Path, studies: int, corpus: Path, seed: int = 18) -> Path:
    """``studies`` synthetic PubMed articles in files of ARTICLES_PER_FILE, plus the corpus's trials."""
    rng = random.Random(seed)
    templates, literature = _templates(corpus), _literature(corpus)
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, studies, ARTICLES_PER_FILE):
        with (folder / f"pubmed-{start // ARTICLES_PER_FILE:04d}.xml").open("w") as out:
            out.write('<?xml version="1.0" ?>\n<PubmedArticleSet>\n')
            for n in range(start, min(studies, start + ARTICLES_PER_FILE)):
                record = literature[rng.randrange(len(literature))]
                out.write(synthetic_article(templates[n % len(templates)], record, PMID_BASE + n, _year(rng)))
                out.write("\n")
            out.write("</PubmedArticleSet>\n")
    for trials in (corpus / "clinicaltrials").glob("*.json"):
        shutil.copyfile(trials, folder / trials.name)
    return folder


# --------------------------------------------------------------------------- build


def this_checkout() -> dict[str, str]:
    """The environment for `kb`: this checkout's code, whichever checkout the venv was installed from."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def build(folder: Path, db: Path) -> dict:
    """`kb build --from-dir` under /usr/bin/time -v: wall seconds, peak RSS (MiB), db bytes and studies."""
    command = [TIME, "-v", KB, "build", "--from-dir", str(folder), "--db", str(db), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=this_checkout())
    if done.returncode != 0:
        raise SystemExit(f"kb build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    seconds = 0.0
    for part in wall.split(":"):
        seconds = seconds * 60 + float(part)
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    count = conn.execute("select count(*) from studies").fetchone()[0]
    conn.close()
    return {"wall": seconds, "rss_mib": rss_kib / 1024, "bytes": db.stat().st_size, "studies": count,
            "tables": table_bytes(db)}


def table_bytes(db: Path) -> dict[str, int]:
    """Bytes of each table and index of ``db`` (its pages, their free space included), largest first."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("select name, sum(pgsize) from dbstat group by name order by 2 desc").fetchall())


BREAKDOWN_ROWS = 24  # tables and indexes shown by name; the rest summed as "other"


def print_breakdown(builds: dict[int, dict]) -> None:
    """kb.db's bytes per study by table and index, a column per size."""
    sizes = list(builds)
    first = builds[sizes[0]]["tables"]
    names = list(first)[:BREAKDOWN_ROWS]
    width = max([len(n) for n in names] + [len("total (file size)")])
    print()
    print("kb.db bytes per study by table and index (dbstat)")
    print("| " + "table or index".ljust(width) + " | " + " | ".join(f"{size // 1000}k".rjust(8) for size in sizes)
          + " |")
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * 10 for _ in sizes) + "|")

    def cell(size: int, value: float) -> str:
        return f"{value / max(1, builds[size]['studies']):,.0f}".rjust(8)

    for name in names:
        print("| " + name.ljust(width) + " | " + " | ".join(cell(s, builds[s]["tables"].get(name, 0)) for s in sizes)
              + " |")
    other = {s: sum(v for n, v in builds[s]["tables"].items() if n not in names) for s in sizes}
    print("| " + "other".ljust(width) + " | " + " | ".join(cell(s, other[s]) for s in sizes) + " |")
    print("| " + "total (file size)".ljust(width) + " | " + " | ".join(cell(s, builds[s]["bytes"]) for s in sizes)
          + " |")


# --------------------------------------------------------------------------- metadata variants


def patched_metadata(metadata: dict) -> dict:
    """metadata.yml with the studies table's array facets served by the tags facet (issue 18)."""
    patched = copy.deepcopy(metadata)
    studies = patched["databases"]["kb"]["tables"]["studies"]
    studies["facets"] = [{"tags": f["array"]} if isinstance(f, dict) and f.get("array") in TAG_FACET_COLUMNS else f
                         for f in studies["facets"]]
    return patched


def original_metadata(metadata: dict) -> dict:
    """metadata.yml with any tags facet back on Datasette's array facet and any counted facet on its
    column facet (the site before issue 18)."""
    original = copy.deepcopy(metadata)
    studies = original["databases"]["kb"]["tables"]["studies"]
    studies["facets"] = [{"array": f["tags"]} if isinstance(f, dict) and "tags" in f
                         else f["counted"] if isinstance(f, dict) and "counted" in f else f
                         for f in studies["facets"]]
    return original


def without_issue18_indexes(db: Path, work: Path) -> Path:
    """A copy of ``db`` without the indexes issue 18 added."""
    copy_path = work / f"{db.stem}-before.db"
    shutil.copyfile(db, copy_path)
    conn = sqlite3.connect(copy_path)
    for name in ISSUE18_INDEXES:
        conn.execute(f"drop index if exists [{name}]")
    conn.commit()
    conn.close()
    return copy_path


def studies_facets(metadata: dict) -> list:
    return metadata["databases"]["kb"]["tables"]["studies"]["facets"]


def facet_names(metadata: dict) -> list[str]:
    return [f if isinstance(f, str) else next(iter(f.values())) for f in studies_facets(metadata)]


def chart_queries(metadata: dict) -> dict[str, str]:
    """Each dashboard chart's SQL with its optional [[ ... ]] filters left out (no filter chosen)."""
    out = {}
    for dashboard in (metadata.get("plugins", {}).get("datasette-dashboards") or {}).values():
        for name, chart in (dashboard.get("charts") or {}).items():
            if chart.get("db") == "kb" and chart.get("query"):
                out[name] = re.sub(r"\[\[.*?\]\]", "", chart["query"], flags=re.S)
    return out


# --------------------------------------------------------------------------- serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db: Path, metadata: Path, env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([KB, "serve", "--db", str(db), "--port", str(self.port),
                                         "--metadata", str(metadata)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**this_checkout(), **(env or {})})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                requests.get(self.base + "/-/versions.json", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.3)
        self.stop()
        raise SystemExit("kb serve did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def status_of(session: requests.Session, url: str) -> int | str:
    """The response's status, or "timeout" past 120 s (a page that slow is a figure, not a crash)."""
    try:
        return session.get(url, timeout=120).status_code
    except requests.Timeout:
        return "timeout"


def timed(session: requests.Session, urls: list[str], repeat: int) -> tuple[float, float, set, float]:
    """(median ms, p95 ms, statuses, warm-up ms) of ``repeat`` sequential requests cycling through ``urls``."""
    started = time.perf_counter()
    status_of(session, urls[0])  # warm-up
    first = (time.perf_counter() - started) * 1000
    latencies, statuses = [], set()
    for i in range(repeat):
        started = time.perf_counter()
        statuses.add(status_of(session, urls[i % len(urls)]))
        latencies.append((time.perf_counter() - started) * 1000)
    ordered = sorted(latencies)
    return statistics.median(ordered), percentile(ordered, 0.95), statuses, first


def concurrent_rps(url: str, clients: int, total: int) -> float:
    sessions = [requests.Session() for _ in range(clients)]

    def one(i: int) -> int:
        return sessions[i % clients].get(url, timeout=120).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(total)))
    return total / (time.perf_counter() - started)


def serve_figures(db: Path, metadata: dict, work: Path, repeat: int, label: str,
                  env: dict | None = None) -> dict[str, str]:
    path = work / f"metadata-{label}.yml"
    path.write_text(yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    ids = [r[0] for r in conn.execute("select id from studies where on_topic = 1 order by rowid limit 200")]
    conn.close()
    server = Server(db, path, env)
    base = server.base
    out: dict[str, str] = {}
    session = requests.Session()
    try:
        studies = base + "/kb/studies?on_topic=1"
        started = time.perf_counter()
        data = session.get(studies.replace("/kb/studies?", "/kb/studies.json?"), timeout=120).json()
        out["studies page, first request (ms)"] = f"{(time.perf_counter() - started) * 1000:,.0f}"
        wanted = facet_names(metadata)
        shown = [name for name in wanted if name in (data.get("facet_results") or {})]
        out["facets shown (studies page)"] = f"{len(shown)} of {len(wanted)}"
        pages = {
            "studies page (default facets)": [studies],
            "filtered: indications__arraycontains=trd": [studies + "&indications__arraycontains=trd"],
            "table search (_search=, faceted)": [studies + f"&_search={quote_plus(t)}" for t in TABLE_SEARCH],
            "ranked search (/kb/search?q=)": [base + f"/kb/search?q={quote_plus(t)}" for t in SEARCH_TERMS],
            "study page": [base + f"/kb/studies/{i}" for i in ids[::10]],
            "claim check (JSON)": [base + f"/-/claim-check?claim={quote_plus(c)}&_format=json" for c in CLAIMS],
        }
        filtered = session.get(pages["filtered: indications__arraycontains=trd"][0].replace(
            "/kb/studies?", "/kb/studies.json?"), timeout=120).json()
        out["facets shown (filtered view)"] = (
            f"{sum(n in (filtered.get('facet_results') or {}) for n in wanted)} of {len(wanted)}")
        for chart, sql in chart_queries(metadata).items():
            pages[f"chart: {chart}"] = [base + "/kb.json?_shape=array&sql=" + quote_plus(sql)]
        for name, urls in pages.items():
            median, p95, statuses, _ = timed(session, urls, repeat)
            bad = "" if statuses <= {200} else f" (HTTP {sorted(map(str, statuses))})"
            out[name] = f"{median:,.0f} / {p95:,.0f}{bad}"
        out["studies page, 8 clients (req/s)"] = f"{concurrent_rps(studies, 8, max(16, repeat * 2)):.1f}"
    finally:
        server.stop()
    return out


# --------------------------------------------------------------------------- reference points


def reference_points(db: Path, repeat: int) -> dict[str, str]:
    """Median ms, summed over the studies page's array facets, of three ways to count them."""
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    columns = [r[1] for r in conn.execute("pragma table_info(studies)")]
    inner = f"select {', '.join(f'[{c}]' for c in columns)} from [studies] where on_topic = 1"
    kinds = {"designs": "design", "drugs": "drug", "indications": "indication", "side_effects": "side_effect",
             "routes": "route", "populations": "population", "mechanisms": "mechanism"}
    facets = ("designs", "drugs", "indications", "side_effects", "routes")
    ways = {
        "ref: Datasette ArrayFacet SQL (5 array facets)": lambda col: f"""
            with inner as ({inner}),
            deduped_array_items as (select distinct j.value, inner.* from json_each([inner].{col}) j join inner)
            select value, count(*) from deduped_array_items group by value order by count(*) desc, value limit 31""",
        "ref: plain json_each group-by (5 array facets)": lambda col: f"""
            select j.value, count(*) from (select [{col}] as c from ({inner})) i, json_each(i.c) j
            group by j.value order by count(*) desc, j.value limit 31""",
        "ref: study_tags count (5 array facets)": lambda col: f"""
            select st.tag_id, count(distinct st.study_id) from study_tags st
            where st.kind = '{kinds[col]}' and st.negated = 0 and st.study_id in (select id from ({inner}))
            group by st.tag_id order by count(distinct st.study_id) desc, st.tag_id limit 31""",
    }
    tags_facet = ROOT / "ingest" / "site" / "plugins" / "tag_facets.py"
    spec = importlib.util.spec_from_file_location("kb_bench_tag_facets", tags_facet)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    one_query = module.counts_sql(inner, list(facets), 31)
    out = {}
    for name, sql in ways.items():
        times = []
        for _ in range(max(3, repeat // 4)):
            started = time.perf_counter()
            for col in facets:
                conn.execute(sql(col)).fetchall()
            times.append((time.perf_counter() - started) * 1000)
        out[name] = f"{statistics.median(times):,.0f}"
    times = []
    for _ in range(max(3, repeat // 4)):
        started = time.perf_counter()
        conn.execute(one_query).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    out["ref: tags facet, one query (5 array facets)"] = f"{statistics.median(times):,.0f}"
    conn.close()
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,40000", help="comma-separated study counts")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per page")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kb-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the corpora and databases under --work")
    parser.add_argument("--reuse", action="store_true", help="reuse a database already built under --work")
    parser.add_argument("--sizes-only", action="store_true", help="build and print kb.db's sizes, serve nothing")
    parser.add_argument("--no-references", action="store_true",
                        help="skip the in-process reference points (Datasette's array-facet SQL takes minutes at 1M)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    variants = [] if args.sizes_only else [v.strip() for v in args.variants.split(",") if v.strip()]
    metadata = yaml.safe_load(METADATA.read_text())
    choices = {"before": (original_metadata(metadata), {}), "uncached": (patched_metadata(metadata),
               {"KB_FACET_CACHE": "0"}), "after": (patched_metadata(metadata), {})}
    unknown = set(variants) - set(choices)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    args.work.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    builds: dict[int, dict] = {}
    for size in sizes:
        folder, db = args.work / f"corpus-{size}", args.work / f"kb-{size}.db"
        if not (args.reuse and db.exists()):
            shutil.rmtree(folder, ignore_errors=True)
            print(f"{size:,}: writing the corpus...", file=sys.stderr, flush=True)
            write_corpus(folder, size, args.corpus)
            print(f"{size:,}: kb build --from-dir...", file=sys.stderr, flush=True)
            figures = build(folder, db)
            (args.work / f"kb-{size}.build.json").write_text(json.dumps(figures))
        else:
            figures = json.loads((args.work / f"kb-{size}.build.json").read_text())
            figures.setdefault("tables", table_bytes(db))
        builds[size] = figures
        built = {"studies in kb.db": f"{figures['studies']:,}",
                 "build wall (s)": f"{figures['wall']:.0f}",
                 "build peak RSS (MiB)": f"{figures['rss_mib']:,.0f}",
                 "db size (MB)": f"{figures['bytes'] / 1e6:,.0f}",
                 "db bytes per study (KB)": f"{figures['bytes'] / max(1, figures['studies']) / 1000:.1f}"}
        if not variants:
            column = f"{size // 1000}k"
            columns.append(column)
            for row, value in built.items():
                table.setdefault(row, {})[column] = value
        before_db = without_issue18_indexes(db, args.work) if "before" in variants else None
        for variant in variants:
            column = f"{size // 1000}k {variant}"
            columns.append(column)
            print(f"{size:,}: serving ({variant})...", file=sys.stderr, flush=True)
            served = before_db if variant == "before" else db
            meta, env = choices[variant]
            cells = {**built, **serve_figures(served, meta, args.work, args.repeat, variant, env)}
            if not args.no_references:
                cells.update(reference_points(served, args.repeat))
            for row, value in cells.items():
                table.setdefault(row, {})[column] = value
        if before_db:
            before_db.unlink(missing_ok=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            db.unlink(missing_ok=True)
    width = max(len(r) for r in table)
    print(f"median / p95 ms over {args.repeat} sequential requests unless stated; "
          "ref rows: median ms in-process on the variant's database, the five array facets summed")
    print("| " + "measurement".ljust(width) + " | " + " | ".join(c.rjust(13) for c in columns) + " |")
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * 15 for _ in columns) + "|")
    for row, cells in table.items():
        print("| " + row.ljust(width) + " | " + " | ".join(cells.get(c, "").rjust(13) for c in columns) + " |")
    print_breakdown(builds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
