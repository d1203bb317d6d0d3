"""Researchers' own exports: PubMed's MEDLINE text format (.nbib / .txt) and RIS.

Pure functions: bytes in, record dicts (the shape :mod:`ingest.records` documents) out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from ..records import ParseResult, empty_record, join_sections, split_inline_sections
from ..records.text import (
    clean_ws,
    iso_date,
    nct_ids_in,
    normalise_doi,
    normalise_pmcid,
    parse_free_date,
    parse_id,
)

_MEDLINE_LINE = re.compile(r"^([A-Z][A-Z0-9]{1,3})\s*-\s?(.*)$")
_RIS_LINE = re.compile(r"^([A-Z][A-Z0-9])  -(?: (.*))?$")

# MEDLINE comment/correction tags -> the RefType used in PubMed XML.
COMMENT_TAGS = {
    "CIN": "CommentIn", "CON": "CommentOn", "EIN": "ErratumIn", "EFR": "ErratumFor",
    "RIN": "RetractionIn", "ROF": "RetractionOf", "UIN": "UpdateIn", "UOF": "UpdateOf",
    "ECI": "ExpressionOfConcernIn", "ECF": "ExpressionOfConcernFor", "RPI": "RepublishedIn",
    "RPF": "RepublishedFrom", "CRI": "CorrectedandRepublishedIn",
    "CRF": "CorrectedandRepublishedFrom", "SPIN": "SummaryForPatientsIn",
}


def sniff_format(data: bytes) -> str | None:
    """'xml', 'medline', 'ris' or None, from the first bytes of a file."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "xml"
    if head.startswith(b"{"):
        if b'"resultList"' in data[:65536] or b'"hitCount"' in head:
            return "europepmc"
        if b'"studies"' in data[:65536] or b'"protocolSection"' in data[:65536]:
            return "clinicaltrials"
        return "json"
    if re.match(rb"PMID\s*-", head) or re.search(rb"^PMID- ", head, re.MULTILINE):
        return "medline"
    if re.match(rb"TY  -", head) or re.search(rb"^TY  - ", head, re.MULTILINE):
        return "ris"
    return None


# Bytes that are not UTF-8 are kept through line splitting as lone surrogates (Python's
# "surrogateescape"), so that only the records holding them are read another way.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_DECODED_NON_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")


class ExportText(NamedTuple):
    text: str
    warning: str | None  # how the file was read, when it was not UTF-8 at all
    escaped: bool  # stray non-UTF-8 bytes remain escaped: see repair_fields


def decode_export(data: bytes) -> ExportText:
    """A MEDLINE or RIS export as text.

    A file with no valid UTF-8 beyond ASCII and some bytes that are not UTF-8 is in a legacy
    encoding: all of it is read as Windows-1252. Otherwise stray bytes stay escaped until
    :func:`repair_fields` mends the record they are in, leaving every other record as it is.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return ExportText(data.decode("utf-8"), None, False)
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
    if _DECODED_NON_ASCII.search(text):
        return ExportText(text, None, True)
    return ExportText(_legacy_text(data), "not UTF-8: read as Windows-1252", False)


def _legacy_text(raw: bytes) -> str:
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return raw.decode("latin-1")


def repair_fields(fields: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str | None]:
    """One record's fields with escaped bytes decoded, and a warning saying how.

    A record with no other non-ASCII text is in a legacy encoding ("Z\xfcrich" in Latin-1):
    read as Windows-1252. In a record that is otherwise UTF-8 the stray bytes become U+FFFD.
    """
    stray = sum(len(_ESCAPED_BYTE.findall(value)) for _, value in fields)
    if not stray:
        return fields, None
    legacy = not any(_DECODED_NON_ASCII.search(value) for _, value in fields)

    def mend(value: str) -> str:
        if not _ESCAPED_BYTE.search(value):
            return value
        raw = value.encode("utf-8", "surrogateescape")
        return _legacy_text(raw) if legacy else raw.decode("utf-8", "replace")

    fields = [(tag, mend(value)) for tag, value in fields]
    if legacy:
        return fields, "not UTF-8: read as Windows-1252"
    return fields, f"{stray} byte{'s' if stray > 1 else ''} not valid UTF-8 replaced with U+FFFD"


# --------------------------------------------------------------------------- MEDLINE


def parse_medline(data: bytes, on_record: Callable[[dict], None] | None = None) -> ParseResult:
    """Parse PubMed's MEDLINE text format: blank-line separated records of "TAG - value".

    ``on_record`` is called with each record as soon as it is parsed.
    """
    result = ParseResult(on_record=on_record)
    export = decode_export(data)
    if export.warning:
        result.errors.append(export.warning)
    for number, raw_fields in enumerate(_medline_records(export.text), 1):
        fields, warning = repair_fields(raw_fields) if export.escaped else (raw_fields, None)
        fields = [(tag, clean_ws(value)) for tag, value in fields]
        try:
            record = medline_record(fields)
        except ValueError as exc:
            result.errors.append(f"record {number}: {exc}")
            continue
        if warning:
            result.errors.append(f"record {number} (PMID {record['pmid']}): {warning}")
        result.add(record)
    return result


def _medline_records(text: str):
    """Yield each record as a list of (tag, value), continuation lines joined."""
    fields: list[tuple[str, list[str]]] = []  # each value as its lines: joined once, at the end
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            if fields:
                yield _joined(fields)
                fields = []
            continue
        match = _MEDLINE_LINE.match(line)
        if match and not raw.startswith(" "):
            tag, value = match.groups()
            if tag == "PMID" and fields:
                yield _joined(fields)
                fields = []
            fields.append((tag, [value]))
        elif fields:
            # Continuation lines are indented by six spaces; tolerate exports that lost it.
            fields[-1][1].append(line.strip())
    if fields:
        yield _joined(fields)


def _joined(fields: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    return [(tag, " ".join(lines)) for tag, lines in fields]


def medline_record(fields: list[tuple[str, str]]) -> dict:
    pmid = next((v for t, v in fields if t == "PMID"), "")
    if parse_id(pmid) is None:
        raise ValueError(f"no valid PMID (got {pmid[:20]!r})")
    record = empty_record(parse_id(pmid), "medline")
    author: dict | None = None
    for tag, value in fields:
        if tag == "TI":
            record["title"] = value
        elif tag == "AB":
            record["abstract_sections"] = split_inline_sections(value)
            record["abstract"] = join_sections(record["abstract_sections"])
        elif tag == "DP":
            record["year"], record["pub_date"] = parse_free_date(value)
            if not re.fullmatch(r"\d{4}( [A-Z][a-z]{2}( \d{1,2})?)?", value):
                record["medline_date"] = value
        elif tag == "EDAT":  # "2024/08/15 06:00": when the record entered PubMed
            day = re.match(r"(\d{4})/(\d{2})/(\d{2})", value)
            record["entry_date"] = "-".join(day.groups()) if day else None
        elif tag == "JT":
            record["journal"] = value
        elif tag == "TA":
            record["iso_abbrev"] = value
        elif tag == "IS" and not record["issn"]:
            record["issn"] = value.split(" ")[0]
        elif tag == "VI":
            record["volume"] = value
        elif tag == "IP":
            record["issue"] = value
        elif tag == "PG":
            record["pages"] = value
        elif tag == "LA":
            record["languages"].append(value)
        elif tag in ("LID", "AID"):
            _identifier(record, value)
        elif tag == "PMC":
            record["pmcid"] = normalise_pmcid(value)
        elif tag in ("FAU", "CN"):
            author = _medline_author(tag, value)
            record["authors"].append(author)
        elif tag == "AU" and (author is None or author.get("_has_au")):
            author = _medline_author("AU", value)
            record["authors"].append(author)
        elif tag == "AU":
            author["_has_au"] = True
            author["initials"] = author["initials"] or _name_suffix(value, after_initials=True)[0].rsplit(" ", 1)[-1]
        elif tag == "AD" and author is not None:
            author["affiliations"].append(value)
        elif tag == "AUID" and author is not None and "ORCID" in value:
            author["orcid"] = value.split(":", 1)[-1].strip().rsplit("/", 1)[-1]
        elif tag == "PT":
            record["publication_types"].append({"ui": None, "name": value})
        elif tag == "MH":
            record["mesh"].append(_medline_mesh(value))
        elif tag == "RN":
            record["chemicals"].append(_medline_chemical(value))
        elif tag in ("OT", "KW"):
            record["keywords"].append(value)
        elif tag == "SI":
            _secondary_source(record, value)
        elif tag in COMMENT_TAGS:
            record["comments_corrections"].append(_medline_comment(tag, value))
    for author in record["authors"]:
        author.pop("_has_au", None)
    record["nct_ids"] = [
        d["accession"] for d in record["databanks"] if d["name"].lower().startswith("clinicaltrials")
    ]
    return record


def _identifier(record: dict, value: str) -> None:
    kind = re.search(r"\[(\w+)\]\s*$", value)
    bare = re.sub(r"\s*\[\w+\]\s*$", "", value).strip()
    kind_name = kind.group(1).lower() if kind else ""
    if kind_name == "doi" and not record["doi"]:
        record["doi"] = normalise_doi(bare)
    elif kind_name == "pmc" and not record["pmcid"]:
        record["pmcid"] = normalise_pmcid(bare)


def _medline_author(tag: str, value: str) -> dict:
    author = {
        "last_name": None, "fore_name": None, "initials": None, "suffix": None,
        "collective_name": None, "orcid": None, "affiliations": [],
    }
    if tag == "CN":
        author["collective_name"] = value
        author["_has_au"] = True
    elif tag == "FAU":
        last, _, fore = value.partition(",")
        fore, author["suffix"] = _name_suffix(fore.strip())
        author["last_name"] = last.strip() or None
        author["fore_name"] = fore or None
    else:
        value, author["suffix"] = _name_suffix(value, after_initials=True)
        last, _, initials = value.rpartition(" ")
        author["last_name"] = last or value
        author["initials"] = initials if last else None
        author["_has_au"] = True
    return author


# A name's generational suffix as PubMed writes it at the end of FAU and AU ("Smith, John A Jr",
# "Smith JA Jr"). In AU a Roman numeral is a suffix only after initials ("Smith IV" is I. V. Smith).
_SUFFIX = re.compile(r"^(.*\S)[ ,]+(Jr|Sr|2nd|3rd|4th|II|III|IV)\.?$")


def _name_suffix(name: str, after_initials: bool = False) -> tuple[str, str | None]:
    match = _SUFFIX.match(name)
    if not match:
        return name, None
    rest, suffix = match.group(1).rstrip(","), match.group(2)
    if after_initials and suffix[0] == "I" and not re.search(r"\s[A-Z]+$", rest):
        return name, None
    return rest, suffix


def _medline_mesh(value: str) -> dict:
    parts = value.split("/")
    descriptor = parts[0]
    return {
        "descriptor_ui": None,
        "descriptor": descriptor.lstrip("*").strip(),
        "major": descriptor.startswith("*"),
        "qualifiers": [
            {"ui": None, "name": q.lstrip("*").strip(), "major": q.startswith("*")}
            for q in parts[1:] if q.strip("* ")
        ],
    }


def _medline_chemical(value: str) -> dict:
    match = re.match(r"^(\S+)\s+\((.*)\)$", value)
    if not match:
        return {"ui": None, "name": value, "registry_number": None}
    registry, name = match.groups()
    return {"ui": None, "name": name, "registry_number": None if registry == "0" else registry}


def _secondary_source(record: dict, value: str) -> None:
    name, _, accession = value.partition("/")
    if not accession:
        return
    if name.lower().startswith("clinicaltrials"):
        accession = accession.upper().replace(" ", "")
    record["databanks"].append({"name": name, "accession": accession})


def _medline_comment(tag: str, value: str) -> dict:
    pmid = re.search(r"PMID:\s*([0-9]+)", value)
    source = re.sub(r"\s*PMID:\s*\d+\s*$", "", value).strip() or None
    return {
        "ref_type": COMMENT_TAGS[tag],
        "pmid": parse_id(pmid.group(1)) if pmid else None,
        "source": source,
        "note": None,
    }


# --------------------------------------------------------------------------- RIS


def parse_ris(data: bytes) -> ParseResult:
    """Parse an RIS export (EndNote, Zotero, Rayyan, Covidence, ASReview...)."""
    result = ParseResult()
    export = decode_export(data)
    if export.warning:
        result.errors.append(export.warning)
    record_fields: list[tuple[str, list[str]]] = []  # each value as its lines: joined once, at the end
    number = 0
    for raw in export.text.splitlines():
        match = _RIS_LINE.match(raw.rstrip())
        if not match:
            if record_fields and raw.strip():
                record_fields[-1][1].append(raw.strip())
            continue
        tag, value = match.group(1), (match.group(2) or "").strip()
        if tag == "TY":
            record_fields = [(tag, [value])]
        elif tag == "ER":
            number += 1
            _add_ris(result, _joined(record_fields), number, export.escaped)
            record_fields = []
        elif record_fields:
            record_fields.append((tag, [value]))
    if record_fields:
        result.errors.append(f"record {number + 1}: no closing 'ER  -' line")
    return result


def _add_ris(result: ParseResult, fields: list[tuple[str, str]], number: int, escaped: bool) -> None:
    fields, warning = repair_fields(fields) if escaped else (fields, None)
    try:
        record = ris_record(fields)
    except ValueError as exc:
        result.errors.append(f"record {number}: {exc}")
        return
    if warning:
        name = f"PMID {record['pmid']}" if record["pmid"] else f"DOI {record['doi']}"
        result.errors.append(f"record {number} ({name}): {warning}")
    result.add(record)


def ris_record(fields: list[tuple[str, str]]) -> dict:
    pmid = _ris_pmid(fields)
    record = empty_record(pmid, "ris")
    end_pages = ""
    for tag, value in fields:
        if not value:
            continue
        if tag in ("TI", "T1") and not record["title"]:
            record["title"] = clean_ws(value)
        elif tag in ("AB", "N2") and len(value) > len(record["abstract"]):
            record["abstract_sections"] = split_inline_sections(value)
            record["abstract"] = join_sections(record["abstract_sections"])
        elif tag in ("AU", "A1"):
            # RIS names are "Last, First, Suffix".
            last, _, fore = value.partition(",")
            fore, _, suffix = fore.partition(",")
            record["authors"].append({
                "last_name": last.strip() or None, "fore_name": fore.strip() or None,
                "initials": None, "suffix": suffix.strip() or None, "collective_name": None, "orcid": None,
                "affiliations": [],
            })
        elif tag in ("PY", "Y1", "DA"):
            year, pub_date = _ris_date(value)
            # The most precise of PY, Y1 and DA (Zotero writes "PY - 2024" and "DA - 2024/08/15/").
            if year is not None and (record["year"] is None or (
                    year == record["year"] and len(pub_date or "") > len(record["pub_date"] or ""))):
                record["year"], record["pub_date"] = year, pub_date
        elif tag in ("JF", "JO", "T2") and not record["journal"]:
            record["journal"] = clean_ws(value)
        elif tag in ("JA", "J2") and not record["iso_abbrev"]:
            record["iso_abbrev"] = clean_ws(value)
        elif tag == "VL":
            record["volume"] = value
        elif tag == "IS":
            record["issue"] = value
        elif tag == "SP":
            record["pages"] = value
        elif tag == "EP" and value.strip():
            end_pages = value.strip()
        elif tag == "SN" and not record["issn"]:
            record["issn"] = value.split(" ")[0]
        elif tag == "DO" or (tag in ("UR", "L3") and "doi" in value.lower()):
            record["doi"] = record["doi"] or normalise_doi(value)
        elif tag == "KW":
            record["keywords"].extend(k.strip() for k in re.split(r";\s*", value) if k.strip())
        elif tag == "LA":
            record["languages"].append(value)
        elif tag == "C1" and record["authors"]:
            record["authors"][-1]["affiliations"].append(value)
    if end_pages and record["pages"] and "-" not in record["pages"] and end_pages != record["pages"]:
        record["pages"] = f"{record['pages']}-{end_pages}"
    record["nct_ids"] = nct_ids_in(" ".join(v for t, v in fields if t in ("N1", "M3", "AN")))
    record["databanks"] = [{"name": "ClinicalTrials.gov", "accession": n} for n in record["nct_ids"]]
    if record["pmid"] is None and not record["doi"]:
        raise ValueError(f"neither a PMID nor a DOI ({record['title'][:60]!r})")
    return record


def _ris_date(value: str) -> tuple[int | None, str | None]:
    """Year and partial ISO date of an RIS date: "2024/08/15/", "2024///", "2021 Mar" or free text."""
    match = re.fullmatch(r"\s*([0-9]{4})(?:/([0-9]{1,2})?(?:/([0-9]{1,2})?(?:/.*)?)?)?\s*", value)
    if match:
        return iso_date(*match.groups())
    return parse_free_date(value.replace("/", " "))


def _ris_pmid(fields: list[tuple[str, str]]) -> int | None:
    for tag, value in fields:
        if tag in ("AN", "PM", "C2", "ID", "M1") and re.fullmatch(r"\s*[0-9]{1,9}\s*", value):
            if (tag != "ID" or len(value.strip()) >= 6) and parse_id(value):
                return parse_id(value)
        if tag in ("UR", "L2", "N1"):
            match = re.search(r"(?:pubmed\.ncbi\.nlm\.nih\.gov/|PMID:\s*)([0-9]{1,9})(?![0-9])", value)
            if match and parse_id(match.group(1)):
                return parse_id(match.group(1))
    return None
