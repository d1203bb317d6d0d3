"""ClinicalTrials.gov: the API v2 ``/studies`` client (pageToken paging) and its JSON parser.

Fetching and parsing are kept apart: :class:`ClinicalTrialsClient` yields raw JSON pages,
:func:`parse_studies_page` turns one page into flat trial dicts and never touches the network.
Missing scalar values are ``None`` and missing lists ``[]``, whichever modules a study lacks.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..records import load_json_page
from ..records.text import as_dict, clean_ws, json_int, parse_id
from .http import FetchError, JsonApiClient, TransientBodyError, decode_json_body

DEFAULT_BASE_URL = "https://clinicaltrials.gov/api/v2/"
DEFAULT_INTERVENTION_QUERY = "ketamine OR esketamine OR arketamine"
MAX_PAGE_SIZE = 1000
# ClinicalTrials.gov documents a limit of about 50 requests per minute per IP.
DEFAULT_RATE = 50 / 60
SOURCE_NAME = "clinicaltrials"

_NCT_ID = re.compile(r"NCT[0-9]{8}")
_YEAR = re.compile(r"(\d{4})(?:-\d{2}){0,2}")
# Phase spellings met in exports and older records -> the API v2 enum.
_PHASE_ALIASES = {
    "NOTAPPLICABLE": "NA", "N/A": "NA", "NA": "NA",
    "EARLYPHASE1": "EARLY_PHASE1", "EARLY_PHASE1": "EARLY_PHASE1", "PHASE0": "EARLY_PHASE1",
}


@dataclass
class TrialsPage:
    trials: list[dict] = field(default_factory=list)
    next_page_token: str | None = None
    total_count: int | None = None
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- parsing


def parse_studies_page(data: bytes) -> TrialsPage:
    """Parse one ``/studies`` answer. A study without a valid NCT id is reported in ``errors``.

    Malformed JSON or a body without ``studies`` raises :class:`ParseError`.
    """
    payload = load_json_page(data, "ClinicalTrials.gov", "studies", list, "no studies list: not a /studies answer")
    page = TrialsPage(next_page_token=_text(payload.get("nextPageToken")),
                      total_count=json_int(payload.get("totalCount")))
    for number, study in enumerate(payload["studies"], 1):
        try:
            page.trials.append(parse_study(study))
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            page.errors.append(f"skipped study {number}: {exc}")
    return page


def parse_study(study: dict) -> dict:
    """One ``studies[]`` entry to a flat trial dict."""
    if not isinstance(study, dict):
        raise TypeError(f"study is a {type(study).__name__}, not an object")
    protocol = as_dict(study.get("protocolSection"))
    ident = as_dict(protocol.get("identificationModule"))
    nct_id = _text(ident.get("nctId")).upper().replace(" ", "") if ident.get("nctId") else None
    if not nct_id or not _NCT_ID.fullmatch(nct_id):
        raise ValueError(f"no valid NCT id ({ident.get('nctId')!r}, title {ident.get('briefTitle')!r})")
    status = as_dict(protocol.get("statusModule"))
    design = as_dict(protocol.get("designModule"))
    design_info = as_dict(design.get("designInfo"))
    sponsors = as_dict(protocol.get("sponsorCollaboratorsModule"))
    lead = as_dict(sponsors.get("leadSponsor"))
    conditions = as_dict(protocol.get("conditionsModule"))
    arms = as_dict(protocol.get("armsInterventionsModule"))
    outcomes = as_dict(protocol.get("outcomesModule"))
    description = as_dict(protocol.get("descriptionModule"))
    start_date = _text(as_dict(status.get("startDateStruct")).get("date"))
    enrollment = as_dict(design.get("enrollmentInfo"))
    return {
        "nct_id": nct_id,
        "title": _text(ident.get("briefTitle")),
        "official_title": _text(ident.get("officialTitle")),
        "acronym": _text(ident.get("acronym")),
        "brief_summary": _paragraphs(description.get("briefSummary")),
        "detailed_description": _paragraphs(description.get("detailedDescription")),
        "study_type": _text(design.get("studyType")),
        "phases": _phases(design.get("phases")),
        "overall_status": _text(status.get("overallStatus")),
        "start_date": start_date,
        "completion_date": _text(as_dict(status.get("completionDateStruct")).get("date")),
        "start_year": _year(start_date),
        "enrollment": json_int(enrollment.get("count")),
        "enrollment_type": _text(enrollment.get("type")),
        "conditions": _strings(conditions.get("conditions")),
        "keywords": _strings(conditions.get("keywords")),
        "interventions": [_intervention(i) for i in _dicts(arms.get("interventions"))],
        "arm_groups": [_arm_group(a) for a in _dicts(arms.get("armGroups"))],
        "sponsor": _text(lead.get("name")),
        "sponsor_class": _text(lead.get("class")),
        "collaborators": [n for n in (_text(c.get("name")) for c in _dicts(sponsors.get("collaborators"))) if n],
        "allocation": _text(design_info.get("allocation")),
        "masking": _text(as_dict(design_info.get("maskingInfo")).get("masking")),
        "intervention_model": _text(design_info.get("interventionModel")),
        "primary_purpose": _text(design_info.get("primaryPurpose")),
        "has_results": study.get("hasResults") is True,
        "primary_outcomes": [_outcome(o) for o in _dicts(outcomes.get("primaryOutcomes"))],
        "secondary_outcomes": [_outcome(o) for o in _dicts(outcomes.get("secondaryOutcomes"))],
        "references": [_reference(r) for r in _dicts(as_dict(protocol.get("referencesModule")).get("references"))],
        "countries": _countries(protocol),
        "source": SOURCE_NAME,
    }


def _phases(value) -> list[str]:
    """Phases as the API v2 enum: "PHASE2", "EARLY_PHASE1", "NA" ("Not Applicable" in exports)."""
    phases: list[str] = []
    for raw in _strings(value):
        key = raw.upper().replace(" ", "")
        phase = _PHASE_ALIASES.get(key) or key
        if phase not in phases:
            phases.append(phase)
    return phases


def _intervention(item: dict) -> dict:
    return {
        "type": _text(item.get("type")),
        "name": _text(item.get("name")),
        "description": _paragraphs(item.get("description")),
        "other_names": _strings(item.get("otherNames")),
    }


def _arm_group(item: dict) -> dict:
    return {
        "label": _text(item.get("label")),
        "type": _text(item.get("type")),
        "description": _paragraphs(item.get("description")),
        "intervention_names": _strings(item.get("interventionNames")),
    }


def _outcome(item: dict) -> dict:
    return {
        "measure": _text(item.get("measure")),
        "time_frame": _text(item.get("timeFrame")),
        "description": _paragraphs(item.get("description")),
    }


def _reference(item: dict) -> dict:
    pmid = _text(item.get("pmid"))
    return {
        "pmid": parse_id(pmid),
        "type": _text(item.get("type")),
        "citation": _text(item.get("citation")),
    }


def _countries(protocol: dict) -> list[str]:
    locations = _dicts(as_dict(protocol.get("contactsLocationsModule")).get("locations"))
    return list(dict.fromkeys(c for c in (_text(loc.get("country")) for loc in locations) if c))


def _year(date: str | None) -> int | None:
    match = _YEAR.fullmatch(date or "")
    return int(match.group(1)) if match else None




def _dicts(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(value) -> list[str]:
    if not isinstance(value, list):
        return []
    return [t for t in (_text(v) for v in value) if t]


def _text(value) -> str | None:
    if value is None:
        return None
    return clean_ws(str(value)) or None


def _paragraphs(value) -> str | None:
    """Free text with its paragraph breaks kept (summaries are multi-paragraph)."""
    if value is None:
        return None
    lines = [clean_ws(line) for line in str(value).replace("\r\n", "\n").split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text or None




# --------------------------------------------------------------------------- fetching


def check_trials_body(content: bytes) -> dict:
    """The decoded page, or :class:`TransientBodyError` for an HTML page or broken JSON."""
    payload = decode_json_body(content, "ClinicalTrials.gov")
    if not isinstance(payload, dict) or not isinstance(payload.get("studies"), list):
        raise TransientBodyError("ClinicalTrials.gov answer has no studies list")
    return payload


def updated_since_filter(since: dt.date) -> str:
    """The v2 API's Essie filter for studies whose last update was posted on or after ``since``."""
    return f"AREA[LastUpdatePostDate]RANGE[{since.isoformat()},MAX]"


class ClinicalTrialsClient(JsonApiClient):
    """ClinicalTrials.gov API v2 client with retries, rate limiting and pageToken paging."""

    endpoint = "studies"
    default_rate = DEFAULT_RATE
    check_body = staticmethod(check_trials_body)

    def __init__(self, base_url: str = DEFAULT_BASE_URL, **options):
        super().__init__(base_url, **options)

    def count(self, query_intr: str = DEFAULT_INTERVENTION_QUERY, since: dt.date | None = None) -> int:
        """How many studies match (updated from ``since``): one page of one study."""
        params = {"query.intr": query_intr, "pageSize": 1, "format": "json", "countTotal": "true"}
        if since is not None:
            params["filter.advanced"] = updated_since_filter(since)
        _, page = self.get_page(params)
        return json_int(page.get("totalCount")) or 0

    def pages(self, query_intr: str = DEFAULT_INTERVENTION_QUERY, page_size: int = MAX_PAGE_SIZE,
              progress: bool = True, since: dt.date | None = None) -> Iterator[bytes]:
        """Yield raw JSON pages covering every study whose interventions match ``query_intr``.

        ``since``: only studies whose last update was posted from that day on (`kb update`).
        """
        from tqdm import tqdm

        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
        base = {"query.intr": query_intr, "pageSize": page_size, "format": "json"}
        if since is not None:
            base["filter.advanced"] = updated_since_filter(since)
        token: str | None = None
        followed: set[str] = set()
        with tqdm(total=0, unit="trial", desc="ClinicalTrials.gov", disable=not progress) as bar:
            while True:
                # The total is only counted once: it costs the server extra work on every page.
                params = {**base, "pageToken": token} if token else {**base, "countTotal": "true"}
                body, page = self.get_page(params)
                if token is None:
                    bar.total = json_int(page.get("totalCount")) or 0
                    bar.refresh()
                yield body
                bar.update(len(page["studies"]))
                next_token = _text(page.get("nextPageToken"))
                # A repeated token would loop forever; treat it as the end.
                if not next_token or next_token == token:
                    return
                if next_token in followed:
                    # A token leading back to an earlier page: following it would never end.
                    raise FetchError(f"ClinicalTrials.gov paging loops: page token {next_token[:40]!r} "
                                     "was already followed")
                followed.add(next_token)
                token = next_token
