"""Citations: studies of kb.db as RIS, BibTeX, CSL-JSON and MEDLINE, formatted references
(Vancouver/NLM and APA), Highwire Press ``citation_*`` meta tags and a COinS ContextObject.

Used by the site's output renderers (``/kb/studies.ris`` ...), the study page's Cite box and
Atom feeds, and by ``kb check --ris/--bibtex``. :func:`read_studies` reads the records from
kb.db through plain SQL on any DB-API connection (the site's read-only Datasette connection,
the claim checker's ``sqlite3`` one); everything else is pure: record dicts in, text out.

A record here has the keys of :mod:`ingest.records` (``title``, ``authors``, ``mesh``...) plus
``id`` (the study id), ``is_retracted`` and ``row`` (the whole ``studies`` row).

What each format keeps, read back by ``kb import``:

* **MEDLINE** (``.nbib``, PubMed's own format): all of it, MeSH qualifiers, chemicals, data
  banks and correction links included. A study without a PMID gets no ``PMID-`` line (the
  format has no other key): import such a study from RIS.
* **RIS**: title, authors (no initials: RIS has none), journal and its abbreviation, dates,
  volume, issue, pages, DOI, PMID (``AN``), ISSN, abstract, keywords and MeSH terms (both as
  ``KW``, as reference managers keep them), language, NCT ids (``N1``).
* Both carry a structured abstract inline (``BACKGROUND: ... METHODS: ...``) as PubMed does: an
  unlabelled paragraph between labelled sections comes back joined to the section before it.

Text is flattened to one line per field (no record can break out of its field), control
characters are dropped, and BibTeX's special characters are escaped.
"""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import join_sections
from .text import MONTHS, json_list

# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class ExportFormat:
    name: str  # the URL extension: /kb/studies.ris
    label: str  # what a link says
    suffix: str  # the downloaded file's ending
    content_type: str


FORMATS = {
    "ris": ExportFormat("ris", "RIS", ".ris", "application/x-research-info-systems; charset=utf-8"),
    "bibtex": ExportFormat("bibtex", "BibTeX", ".bib", "application/x-bibtex; charset=utf-8"),
    "csljson": ExportFormat("csljson", "CSL-JSON", ".csl.json",
                            "application/vnd.citationstyles.csl+json; charset=utf-8"),
    "nbib": ExportFormat("nbib", "MEDLINE", ".nbib", "application/x-medline; charset=utf-8"),
}


def export(records: Sequence[dict], fmt: str) -> str:
    """``records`` in one of :data:`FORMATS` (``ris``, ``bibtex``, ``csljson``, ``nbib``)."""
    writers = {"ris": to_ris, "bibtex": to_bibtex, "csljson": to_csl_json, "nbib": to_medline}
    if fmt not in writers:
        raise ValueError(f"unknown citation format {fmt!r}: one of {', '.join(writers)}")
    return writers[fmt](records)


def export_studies(conn, study_ids: Iterable[str], fmt: str) -> str:
    """The studies of kb.db with these ids (in this order) in one of :data:`FORMATS`."""
    return export(read_studies(conn, study_ids), fmt)


def file_name(base: str, fmt: str) -> str:
    """A safe download name: ``kb-studies.ris``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "studies"
    return stem[:80] + FORMATS[fmt].suffix


# --------------------------------------------------------------------------- reading kb.db

_CHILD_SQL = {
    "authors": "select study_id, last_name, fore_name, initials, suffix, collective_name, orcid, affiliations "
               "from authors where study_id in (select value from json_each(?)) order by study_id, position",
    # abstract_sections_text: the sections with their text (kb.db stores a section's text once, in the
    # abstract); an older kb.db's abstract_sections hold it themselves.
    "abstract_sections": "select study_id, label, nlm_category, text from {table} "
                         "where study_id in (select value from json_each(?)) order by study_id, position",
    "mesh_headings": "select study_id, position, descriptor_ui, descriptor, major_topic from mesh_headings "
                     "where study_id in (select value from json_each(?)) order by study_id, position",
    "mesh_qualifiers": "select study_id, heading_position, qualifier_ui, qualifier, major_topic from mesh_qualifiers "
                       "where study_id in (select value from json_each(?)) "
                       "order by study_id, heading_position, position",
    "publication_types": "select study_id, ui, name from publication_types "
                         "where study_id in (select value from json_each(?)) order by study_id, position",
    "chemicals": "select study_id, ui, name, registry_number from chemicals "
                 "where study_id in (select value from json_each(?)) order by study_id, position",
    "study_links": "select study_id, ref_type, ref_pmid, ref_source, note from study_links "
                   "where study_id in (select value from json_each(?)) order by study_id, position",
}


def _dicts(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, tuple(row), strict=True)) for row in cursor.fetchall()]


def read_studies(conn, ids: Iterable, by: str = "id") -> list[dict]:
    """The records of the studies whose ``id`` (or, with ``by="pmid"``, PMID) is in ``ids``.

    In the order of ``ids``, each study once; ids that are not in kb.db are left out. Tables an
    older kb.db lacks are read as empty.
    """
    if by not in ("id", "pmid"):
        raise ValueError("by is 'id' or 'pmid'")
    wanted: list = []
    for value in ids:
        if isinstance(value, dict):  # a Datasette cell expanded with its label
            value = value.get("value")
        if value is None or value == "":
            continue
        if by == "pmid":
            try:
                value = int(value)
            except (TypeError, ValueError):
                continue
        else:
            value = str(value)
        if value not in wanted:
            wanted.append(value)
    if not wanted:
        return []
    key = "pmid" if by == "pmid" else "id"
    rows = _dicts(conn.execute(
        f"select s.* from json_each(?) j join studies s on s.{key} = j.value order by j.key", [json.dumps(wanted)]))
    seen: set[str] = set()
    rows = [r for r in rows if not (r["id"] in seen or seen.add(r["id"]))]
    if not rows:
        return []
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view')")}
    study_ids = json.dumps([r["id"] for r in rows])
    children: dict[str, dict[str, list[dict]]] = {}
    for table, sql in _CHILD_SQL.items():
        grouped: dict[str, list[dict]] = {}
        if table in tables:
            sql = sql.format(table=f"{table}_text" if f"{table}_text" in tables else table)
            for child in _dicts(conn.execute(sql, [study_ids])):
                grouped.setdefault(child.pop("study_id"), []).append(child)
        children[table] = grouped
    return [_record(row, {t: c.get(row["id"], []) for t, c in children.items()}) for row in rows]


def _record(row: dict, children: dict[str, list[dict]]) -> dict:
    qualifiers: dict[int, list[dict]] = {}
    for q in children["mesh_qualifiers"]:
        qualifiers.setdefault(q["heading_position"], []).append(
            {"ui": q["qualifier_ui"], "name": q["qualifier"], "major": bool(q["major_topic"])})
    sections = [{"label": s["label"], "nlm_category": s["nlm_category"], "text": s["text"] or ""}
                for s in children["abstract_sections"]]
    return {
        "id": row["id"], "row": row, "is_retracted": bool(row.get("is_retracted")),
        "pmid": row.get("pmid"), "doi": row.get("doi"), "pmcid": row.get("pmcid"),
        "title": row.get("title") or "", "abstract": row.get("abstract") or join_sections(sections),
        "abstract_sections": sections,
        **{k: row.get(k) or "" for k in ("journal", "iso_abbrev", "issn", "volume", "issue", "pages")},
        "year": row.get("year"), "pub_date": row.get("pub_date"), "medline_date": row.get("medline_date"),
        "languages": _strings(row.get("languages")), "keywords": _strings(row.get("keywords")),
        "nct_ids": _strings(row.get("nct_ids")),
        "databanks": [d for d in json_list(row.get("databanks")) if isinstance(d, dict)],
        "mesh_terms": _strings(row.get("mesh_terms")),
        "authors": [{**a, "affiliations": _strings(a.get("affiliations"))} for a in children["authors"]],
        "mesh": [{"descriptor_ui": m["descriptor_ui"], "descriptor": m["descriptor"], "major": bool(m["major_topic"]),
                  "qualifiers": qualifiers.get(m["position"], [])} for m in children["mesh_headings"]],
        "publication_types": [{"ui": p["ui"], "name": p["name"]} for p in children["publication_types"]]
        or [{"ui": None, "name": n} for n in _strings(row.get("publication_type_names"))],
        "chemicals": children["chemicals"],
        "comments_corrections": [{"ref_type": c["ref_type"], "pmid": c["ref_pmid"], "source": c["ref_source"],
                                  "note": c["note"]} for c in children["study_links"]],
    }


def _strings(value) -> list[str]:
    return [v for v in json_list(value) if isinstance(v, str) and v.strip()]


# --------------------------------------------------------------------------- shared pieces

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def one_line(value) -> str:
    """A value as one line of text: runs of whitespace (newlines too) one space, control characters gone."""
    if value is None:
        return ""
    return " ".join(_CONTROL.sub("", str(value)).split())


def inline_abstract(record: dict) -> str:
    """The abstract on one line, labelled sections as ``LABEL: text`` (as PubMed's MEDLINE writes it)."""
    sections = record.get("abstract_sections") or []
    if sections:
        return one_line(" ".join(f"{s['label']}: {s['text']}" if s.get("label") else s["text"] for s in sections))
    return one_line(record.get("abstract"))


def date_parts(record: dict) -> list[int]:
    """[year, month, day] as far as the record knows them (from ``pub_date``, else ``year``)."""
    match = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", record.get("pub_date") or "")
    if match:
        return [int(p) for p in match.groups() if p]
    return [int(record["year"])] if record.get("year") else []


MONTH_ABBREVIATIONS = [m.capitalize() for m in MONTHS]  # Jan ... Dec


def split_pages(pages: str | None) -> tuple[str, str]:
    """First and last page: "1401-1410" -> ("1401", "1410"); PubMed's "401-5" -> ("401", "405")."""
    pages = one_line(pages)
    if not pages:
        return "", ""
    first, _, last = re.split(r"[,;]", pages)[0].partition("-")
    first, last = first.strip(), last.strip()
    if first.isdigit() and last.isdigit() and len(last) < len(first):
        last = first[: len(first) - len(last)] + last
    return first, last


def author_initials(author: dict) -> str:
    """Initials without periods ("TM"): the stored ones, else from the fore name."""
    if author.get("initials"):
        return re.sub(r"[^\w]", "", author["initials"])
    fore = author.get("fore_name") or ""
    return "".join(part[0] for part in re.split(r"[\s.\-]+", fore) if part and part[0].isalpha())


def display_name(author: dict) -> str:
    """"Last, Fore" (or the group's name): how an author is shown and exported to RIS and BibTeX."""
    if author.get("collective_name"):
        return one_line(author["collective_name"])
    last = one_line(author.get("last_name"))
    fore = one_line(author.get("fore_name") or author.get("initials"))
    suffix = one_line(author.get("suffix"))
    name = f"{last}, {fore}" if last and fore else last or fore
    return f"{name}, {suffix}" if suffix and name else name


def named_authors(record: dict) -> list[dict]:
    return [a for a in record.get("authors") or [] if a.get("collective_name") or a.get("last_name")
            or a.get("fore_name")]


def pubmed_url(record: dict) -> str | None:
    return f"https://pubmed.ncbi.nlm.nih.gov/{record['pmid']}/" if record.get("pmid") else None


def doi_url(record: dict) -> str | None:
    doi = one_line(record.get("doi"))
    return "https://doi.org/" + urllib.parse.quote(doi, safe="/:;()._-") if doi.startswith("10.") else None


def journal_name(record: dict) -> str:
    return one_line(record.get("journal") or record.get("iso_abbrev"))


# --------------------------------------------------------------------------- RIS (rispy)

# ISO 639-2 (PubMed) -> ISO 639-1 for CSL; other languages are left out of CSL-JSON.
LANGUAGES = {"eng": "en", "fre": "fr", "ger": "de", "spa": "es", "ita": "it", "por": "pt", "dut": "nl",
             "rus": "ru", "chi": "zh", "jpn": "ja", "kor": "ko", "pol": "pl", "tur": "tr", "swe": "sv",
             "dan": "da", "nor": "no", "fin": "fi", "cze": "cs", "hun": "hu", "gre": "el", "heb": "he",
             "per": "fa", "ara": "ar", "ukr": "uk", "rum": "ro", "hrv": "hr", "srp": "sr", "slv": "sl"}


def ris_entry(record: dict) -> dict:
    """One record as a rispy entry (rispy's field names, in the order they are written)."""
    first, last = split_pages(record.get("pages"))
    parts = date_parts(record)
    entry: dict = {"type_of_reference": "JOUR", "title": one_line(record.get("title")),
                   "authors": [display_name(a) for a in named_authors(record)]}
    optional = {
        "secondary_title": journal_name(record),  # T2: Zotero's journal title
        "alternate_title1": one_line(record.get("iso_abbrev")),  # J2: the journal's abbreviation
        "date": "/".join(f"{p:02d}" if i else str(p) for i, p in enumerate(parts)) + "/" * (4 - len(parts))
        if parts else "",
        "year": str(parts[0]) if parts else "",
        "volume": one_line(record.get("volume")),
        "number": one_line(record.get("issue")),
        "start_page": first, "end_page": last,
        "issn": one_line(record.get("issn")),
        "doi": one_line(record.get("doi")),
        "accession_number": str(record["pmid"]) if record.get("pmid") else "",
        "name_of_database": "PubMed" if record.get("pmid") else "",
        "database_provider": "National Library of Medicine" if record.get("pmid") else "",
        "urls": [u for u in (pubmed_url(record), doi_url(record)) if u],
        "abstract": inline_abstract(record),
        "keywords": _unique(one_line(k) for k in [*record.get("keywords", []), *_mesh_names(record)]),
        "language": one_line((record.get("languages") or [""])[0]),
        "notes": [f"ClinicalTrials.gov: {one_line(n)}" for n in record.get("nct_ids") or []]
        + (["Retracted: PubMed lists this article as retracted."] if record.get("is_retracted") else []),
    }
    entry.update({k: v for k, v in optional.items() if v})
    if entry.get("end_page") and entry["end_page"] == entry.get("start_page"):
        del entry["end_page"]
    return entry


def _mesh_names(record: dict) -> list[str]:
    return [m["descriptor"] for m in record.get("mesh") or [] if m.get("descriptor")] or record.get("mesh_terms", [])


def _unique(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        if value and value.lower() not in {o.lower() for o in out}:
            out.append(value)
    return out


def to_ris(records: Sequence[dict]) -> str:
    """RIS, written by rispy (no numbered header lines)."""
    import rispy

    class Writer(rispy.RisWriter):
        def set_header(self, count):
            return ""

    if not records:
        return ""
    return rispy.dumps([ris_entry(r) for r in records], implementation=Writer)


# --------------------------------------------------------------------------- MEDLINE


def _medline_lines(tag: str, value: str, width: int = 88) -> list[str]:
    """One field as PubMed writes it: the tag padded to four, "- ", continued lines indented six."""
    value = one_line(value)
    if not value:
        return []
    lines, line = [], f"{tag:<4}- "
    for word in value.split(" "):
        if len(line) + len(word) > width and line.strip() and not line.endswith("- "):
            lines.append(line.rstrip())
            line = " " * 6
        line += word + " "
    lines.append(line.rstrip())
    return lines


COMMENT_TAGS = {"CommentIn": "CIN", "CommentOn": "CON", "ErratumIn": "EIN", "ErratumFor": "EFR",
                "RetractionIn": "RIN", "RetractionOf": "ROF", "UpdateIn": "UIN", "UpdateOf": "UOF",
                "ExpressionOfConcernIn": "ECI", "ExpressionOfConcernFor": "ECF", "RepublishedIn": "RPI",
                "RepublishedFrom": "RPF", "CorrectedandRepublishedIn": "CRI",
                "CorrectedandRepublishedFrom": "CRF", "SummaryForPatientsIn": "SPIN"}


def medline_date(record: dict) -> str:
    """PubMed's DP: "2024 Aug 15", "2024 Aug", "2024", or the MedlineDate as written."""
    if record.get("medline_date"):
        return one_line(record["medline_date"])
    parts = date_parts(record)
    out = [str(parts[0])] if parts else []
    if len(parts) > 1:
        out.append(MONTH_ABBREVIATIONS[parts[1] - 1])
    if len(parts) > 2:
        out.append(str(parts[2]))
    return " ".join(out)


def medline_record(record: dict) -> str:
    fields: list[tuple[str, str]] = []
    add = fields.append
    if record.get("pmid"):
        add(("PMID", str(record["pmid"])))
    add(("DP", medline_date(record)))
    add(("TI", record.get("title")))
    add(("PG", record.get("pages")))
    if record.get("doi"):
        add(("LID", f"{one_line(record['doi'])} [doi]"))
    add(("AB", inline_abstract(record)))
    for author in named_authors(record):
        if author.get("collective_name"):
            add(("CN", author["collective_name"]))
            continue
        last, suffix = one_line(author.get("last_name")), one_line(author.get("suffix"))
        fore = " ".join(p for p in (one_line(author.get("fore_name")), suffix) if p)
        add(("FAU", f"{last}, {fore}" if last and fore else last or fore))
        initials = author_initials(author)
        add(("AU", " ".join(p for p in (last, initials, suffix) if p)))
        if author.get("orcid"):
            add(("AUID", f"ORCID: {one_line(author['orcid'])}"))
        for affiliation in author.get("affiliations") or []:
            add(("AD", affiliation))
    for language in record.get("languages") or []:
        add(("LA", language))
    for bank in record.get("databanks") or []:
        if bank.get("name") and bank.get("accession"):
            add(("SI", f"{one_line(bank['name'])}/{one_line(bank['accession'])}"))
    if not record.get("databanks"):
        for nct in record.get("nct_ids") or []:
            add(("SI", f"ClinicalTrials.gov/{nct}"))
    for ptype in record.get("publication_types") or []:
        add(("PT", ptype.get("name")))
    add(("TA", record.get("iso_abbrev")))
    add(("JT", record.get("journal")))
    add(("IS", record.get("issn")))
    add(("VI", record.get("volume")))
    add(("IP", record.get("issue")))
    for chemical in record.get("chemicals") or []:
        if chemical.get("name"):
            add(("RN", f"{one_line(chemical.get('registry_number')) or '0'} ({one_line(chemical['name'])})"))
    for heading in record.get("mesh") or []:
        if not heading.get("descriptor"):
            continue
        value = ("*" if heading.get("major") else "") + one_line(heading["descriptor"]).replace("/", " ")
        for q in heading.get("qualifiers") or []:
            value += "/" + ("*" if q.get("major") else "") + one_line(q.get("name")).replace("/", " ")
        add(("MH", value))
    for keyword in record.get("keywords") or []:
        add(("OT", keyword))
    if record.get("pmcid"):
        add(("PMC", record["pmcid"]))
    for link in record.get("comments_corrections") or []:
        tag = COMMENT_TAGS.get(link.get("ref_type") or "")
        if tag:
            source = one_line(link.get("source"))
            pmid = f"PMID: {link['pmid']}" if link.get("pmid") else ""
            add((tag, " ".join(p for p in (source, pmid) if p)))
    if record.get("doi"):
        add(("AID", f"{one_line(record['doi'])} [doi]"))
    add(("SO", vancouver_source(record)))
    lines: list[str] = []
    for tag, value in fields:
        lines += _medline_lines(tag, value or "")
    return "\n".join(lines)


def to_medline(records: Sequence[dict]) -> str:
    """PubMed's MEDLINE text format (.nbib), records separated by a blank line."""
    return "".join("\n" + medline_record(r) + "\n" for r in records)


# --------------------------------------------------------------------------- BibTeX

_BIBTEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$",
                   "#": r"\#", "_": r"\_", "^": r"\^{}", "~": r"\~{}"}
_BIBTEX_SPECIAL_RE = re.compile(r"[\\{}&%$#_^~]")
BIBTEX_MONTHS = [m for m in MONTHS]  # jan ... dec: BibTeX's month macros


def bibtex_escape(text: str) -> str:
    """Text for a braced BibTeX value: LaTeX's special characters escaped, braces balanced."""
    return _BIBTEX_SPECIAL_RE.sub(lambda m: _BIBTEX_SPECIAL[m.group()], one_line(text))


def _bibtex_title(title: str) -> str:
    """The title escaped, words with capitals past their first letter (NMDA, MADRS) kept as written."""
    words = []
    for word in one_line(title).split(" "):
        escaped = bibtex_escape(word)
        words.append(f"{{{escaped}}}" if re.search(r"\w[A-Z]", word) and escaped == word else escaped)
    return " ".join(words)


def _bibtex_verbatim(text: str) -> str:
    """A DOI or URL for a braced value: characters that would break the entry percent-encoded."""
    return re.sub(r"[{}\\%\s]", lambda m: urllib.parse.quote(m.group()), one_line(text))


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii")


def bibtex_key(record: dict) -> str:
    """nguyen2024intranasal: first author's surname, year, first word of the title that is not small."""
    authors = named_authors(record)
    first = authors[0] if authors else {}
    surname = first.get("last_name") or first.get("collective_name") or "anon"
    surname = re.sub(r"[^a-z]", "", _ascii(surname.split(" ")[0] if first.get("collective_name") else surname).lower())
    words = [w for w in re.findall(r"[a-z]+", _ascii(record.get("title") or "").lower()) if w not in _SMALL_WORDS]
    return f"{surname or 'anon'}{record.get('year') or 'nd'}{words[0] if words else ''}"


def _bibtex_name(author: dict) -> str:
    """BibTeX's "Last, First" or "Last, Jr, First"; a group's name braced so it stays one name."""
    if author.get("collective_name"):
        return "{" + bibtex_escape(author["collective_name"]) + "}"
    last = bibtex_escape(author.get("last_name") or "")
    fore = bibtex_escape(author.get("fore_name") or author.get("initials") or "")
    suffix = bibtex_escape(author.get("suffix") or "")
    if not last:
        return "{" + fore + "}"
    if " and " in f" {last} {fore} ".lower():
        last = "{" + last + "}"
    return ", ".join(p for p in (last, suffix, fore) if p)


def bibtex_entry(record: dict, key: str) -> str:
    parts = date_parts(record)
    fields = [
        ("author", " and ".join(_bibtex_name(a) for a in named_authors(record))),
        ("title", _bibtex_title(record.get("title") or "")),
        ("journal", bibtex_escape(journal_name(record))),
        ("shortjournal", bibtex_escape(record.get("iso_abbrev") or "")),
        ("year", str(parts[0]) if parts else ""),
        ("volume", bibtex_escape(record.get("volume") or "")),
        ("number", bibtex_escape(record.get("issue") or "")),
        ("pages", bibtex_escape(one_line(record.get("pages")).replace("-", "--"))),
        ("issn", bibtex_escape(record.get("issn") or "")),
        ("doi", _bibtex_verbatim(record.get("doi") or "")),
        ("pmid", str(record["pmid"]) if record.get("pmid") else ""),
        ("pmcid", bibtex_escape(record.get("pmcid") or "")),
        ("eprint", str(record["pmid"]) if record.get("pmid") else ""),
        ("eprinttype", "pubmed" if record.get("pmid") else ""),
        ("url", _bibtex_verbatim(pubmed_url(record) or doi_url(record) or "")),
        ("abstract", bibtex_escape(inline_abstract(record))),
        ("keywords", bibtex_escape(", ".join(_unique([*record.get("keywords", []), *_mesh_names(record)])))),
        ("language", bibtex_escape((record.get("languages") or [""])[0])),
        ("note", "Retracted" if record.get("is_retracted") else ""),
    ]
    lines = [f"@article{{{key},"]
    if len(parts) > 1:
        lines.append(f"  month = {BIBTEX_MONTHS[parts[1] - 1]},")
    lines += [f"  {name} = {{{value}}}," for name, value in fields if value]
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


def to_bibtex(records: Sequence[dict]) -> str:
    """BibTeX (UTF-8, for BibLaTeX/biber, Zotero, JabRef): one @article per study, keys made unique."""
    used: dict[str, int] = {}
    out = []
    for record in records:
        key = bibtex_key(record)
        used[key] = used.get(key, 0) + 1
        if used[key] > 1:
            key = f"{key}{chr(ord('a') + min(used[key] - 2, 25))}{used[key] - 2 if used[key] > 27 else ''}"
        out.append(bibtex_entry(record, key))
    return "\n".join(out)


# --------------------------------------------------------------------------- CSL-JSON


def csl_item(record: dict) -> dict:
    """One record as a CSL-JSON item (the input format of citeproc processors, Zotero, Pandoc)."""
    item: dict = {"id": str(record.get("id") or record.get("pmid") or record.get("doi")), "type": "article-journal"}
    authors = []
    for author in named_authors(record):
        if author.get("collective_name"):
            authors.append({"literal": one_line(author["collective_name"])})
        else:
            name = {"family": one_line(author.get("last_name")),
                    "given": one_line(author.get("fore_name") or author.get("initials"))}
            if author.get("suffix"):
                name["suffix"] = one_line(author["suffix"])
            authors.append({k: v for k, v in name.items() if v})
    first, last = split_pages(record.get("pages"))
    values = {
        "title": one_line(record.get("title")),
        "author": authors,
        "container-title": journal_name(record),
        "container-title-short": one_line(record.get("iso_abbrev")),
        "issued": {"date-parts": [date_parts(record)]} if date_parts(record) else None,
        "volume": one_line(record.get("volume")),
        "issue": one_line(record.get("issue")),
        "page": one_line(record.get("pages")),
        "page-first": first,
        "ISSN": one_line(record.get("issn")),
        "DOI": one_line(record.get("doi")),
        "PMID": str(record["pmid"]) if record.get("pmid") else "",
        "PMCID": one_line(record.get("pmcid")),
        "URL": pubmed_url(record) or doi_url(record) or "",
        "abstract": inline_abstract(record),
        "keyword": ", ".join(_unique([*record.get("keywords", []), *_mesh_names(record)])),
        "language": LANGUAGES.get((record.get("languages") or [""])[0], ""),
        "note": "Retracted" if record.get("is_retracted") else "",
    }
    item.update({k: v for k, v in values.items() if v})
    return item


def to_csl_json(records: Sequence[dict]) -> str:
    return json.dumps([csl_item(r) for r in records], ensure_ascii=False, indent=2) + "\n"


# --------------------------------------------------------------------------- formatted references

# Words APA leaves lower case inside a title-cased journal name.
_SMALL_WORDS = {"a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "nor", "of", "on", "or",
                "the", "to", "via", "with", "und", "der", "die", "das", "de", "la", "le", "les", "et", "y"}


def _sentence(text: str) -> str:
    """Text ending with a full stop (or its own ? or !)."""
    text = one_line(text)
    return text if not text or text[-1] in ".?!" else text + "."


def vancouver_source(record: dict) -> str:
    """The journal part of an NLM citation: "Neuropsychopharmacology. 2024 Aug 15;49(9):1401-1410."."""
    journal = one_line(record.get("iso_abbrev") or record.get("journal"))
    date = medline_date(record)
    volume, issue, pages = (one_line(record.get(k)) for k in ("volume", "issue", "pages"))
    where = volume + (f"({issue})" if issue else "")
    where += f":{pages}" if pages else ""
    source = _sentence(journal) if journal else ""
    tail = date + (f";{where}" if where else "")
    return " ".join(p for p in (source, _sentence(tail) if tail else "") if p)


def vancouver(record: dict) -> str:
    """Vancouver (NLM, Citing Medicine): up to six authors then "et al.", journal abbreviation, doi, PMID."""
    authors = named_authors(record)
    names = []
    for author in authors[:6]:
        if author.get("collective_name"):
            names.append(one_line(author["collective_name"]))
        else:
            last, initials = one_line(author.get("last_name")), author_initials(author)
            names.append(" ".join(p for p in (last, initials) if p))
    parts = []
    if names:
        parts.append(", ".join(names) + (", et al." if len(authors) > 6 else "."))
    parts.append(_sentence(record.get("title") or ""))
    parts.append(vancouver_source(record))
    if record.get("doi"):
        parts.append(f"doi: {one_line(record['doi'])}.")
    ids = [f"PMID: {record['pmid']}"] if record.get("pmid") else []
    ids += [f"PMCID: {one_line(record['pmcid'])}"] if record.get("pmcid") else []
    if ids:
        parts.append("; ".join(ids) + ".")
    return " ".join(p for p in parts if p and p != ".")


def _apa_initials(author: dict) -> str:
    fore = one_line(author.get("fore_name"))
    if fore:
        out = []
        for word in fore.split(" "):
            pieces = [p for p in word.split("-") if p and p[0].isalpha()]
            if len(pieces) == 1 and len(pieces[0]) > 1 and pieces[0].isupper() and pieces[0].isalpha():
                out += [f"{c}." for c in pieces[0]]  # "JA" written as a fore name: initials
            elif pieces:
                out.append("-".join(f"{p[0]}." for p in pieces))
        return " ".join(out)
    return " ".join(f"{c}." for c in author_initials(author))


def _apa_name(author: dict) -> str:
    if author.get("collective_name"):
        return one_line(author["collective_name"])
    last, initials = one_line(author.get("last_name")), _apa_initials(author)
    return f"{last}, {initials}" if last and initials else last or initials


def apa_journal(name: str) -> str:
    """A journal's name for APA: the NLM subtitle (" : official publication of ...") dropped and
    lower-case words capitalised (NLM writes "Journal of psychoactive drugs")."""
    name = one_line(name).split(" : ")[0].strip()
    words = name.split(" ")
    return " ".join(w[:1].upper() + w[1:] if w[:1].islower() and (i == 0 or w.lower() not in _SMALL_WORDS) else w
                    for i, w in enumerate(words))


def apa_parts(record: dict) -> list[tuple[str, bool]]:
    """An APA 7 reference as (text, italic) pieces: the site italicises, plain text joins them."""
    names = [_apa_name(a) for a in named_authors(record)]
    if len(names) > 20:
        names_text = ", ".join(names[:19]) + ", … " + names[-1]
    elif len(names) > 1:
        names_text = ", ".join(names[:-1]) + ", & " + names[-1]
    else:
        names_text = names[0] if names else ""
    year = f"({record['year']})." if record.get("year") else "(n.d.)."
    title = _sentence(record.get("title") or "")
    journal = apa_journal(record.get("journal") or record.get("iso_abbrev") or "")
    volume, issue = one_line(record.get("volume")), one_line(record.get("issue"))
    pages = one_line(record.get("pages")).replace("-", "–")
    out: list[tuple[str, bool]] = []
    if names_text:
        out += [(_sentence(names_text) + " " + year + " " + title, False)]
    else:
        out += [(title + " " + year, False)]
    if journal:
        out += [(" ", False), (journal, True)]
        if volume:
            out += [(", ", False), (volume, True)]
        if issue:
            out += [(f"({issue})", False)]
        if pages:
            out += [(f", {pages}", False)]
        out += [(".", False)]
    url = doi_url(record)
    if url:
        out += [(" " + url, False)]
    return out


def apa(record: dict) -> str:
    """APA 7th edition reference, as plain text."""
    return "".join(text for text, _ in apa_parts(record))


# --------------------------------------------------------------------------- Highwire and COinS


def highwire_tags(record: dict, page_url: str | None = None) -> list[tuple[str, str]]:
    """Highwire Press ``citation_*`` (name, content) pairs: what Zotero, Mendeley and Google Scholar read."""
    parts = date_parts(record)
    first, last = split_pages(record.get("pages"))
    tags = [("citation_title", one_line(record.get("title")))]
    tags += [("citation_author", display_name(a)) for a in named_authors(record)]
    tags += [
        ("citation_journal_title", journal_name(record)),
        ("citation_journal_abbrev", one_line(record.get("iso_abbrev"))),
        ("citation_issn", one_line(record.get("issn"))),
        ("citation_publication_date", "/".join(f"{p:02d}" if i else str(p) for i, p in enumerate(parts))),
        ("citation_volume", one_line(record.get("volume"))),
        ("citation_issue", one_line(record.get("issue"))),
        ("citation_firstpage", first),
        ("citation_lastpage", last),
        ("citation_doi", one_line(record.get("doi"))),
        ("citation_pmid", str(record["pmid"]) if record.get("pmid") else ""),
        ("citation_language", one_line((record.get("languages") or [""])[0])),
        ("citation_abstract_html_url", page_url or ""),
    ]
    tags += [("citation_keywords", k) for k in _unique(one_line(k) for k in record.get("keywords") or [])]
    return [(name, value) for name, value in tags if value]


def coins(record: dict, page_url: str | None = None) -> str:
    """A COinS ContextObject (OpenURL 1.0 KEV, journal article): the ``title`` of a ``span.Z3988``."""
    parts = date_parts(record)
    first, last = split_pages(record.get("pages"))
    pairs = [("ctx_ver", "Z39.88-2004"), ("rft_val_fmt", "info:ofi/fmt:kev:mtx:journal"),
             ("rfr_id", "info:sid/ketamine-kb"), ("rft.genre", "article"),
             ("rft.atitle", one_line(record.get("title"))),
             ("rft.jtitle", journal_name(record)), ("rft.stitle", one_line(record.get("iso_abbrev"))),
             ("rft.date", "-".join(f"{p:02d}" if i else str(p) for i, p in enumerate(parts))),
             ("rft.volume", one_line(record.get("volume"))), ("rft.issue", one_line(record.get("issue"))),
             ("rft.spage", first), ("rft.epage", last), ("rft.pages", one_line(record.get("pages"))),
             ("rft.issn", one_line(record.get("issn")))]
    authors = named_authors(record)
    if authors and not authors[0].get("collective_name"):
        pairs += [("rft.aulast", one_line(authors[0].get("last_name"))),
                  ("rft.aufirst", one_line(authors[0].get("fore_name"))),
                  ("rft.auinit", author_initials(authors[0]))]
    pairs += [("rft.aucorp" if a.get("collective_name") else "rft.au", display_name(a)) for a in authors]
    if record.get("doi"):
        pairs.append(("rft_id", f"info:doi/{one_line(record['doi'])}"))
    if record.get("pmid"):
        pairs.append(("rft_id", f"info:pmid/{record['pmid']}"))
    if page_url:
        pairs.append(("rft_id", page_url))
    return urllib.parse.urlencode([(k, v) for k, v in pairs if v])
