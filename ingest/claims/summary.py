"""Evidence at a glance: how many matching studies of each design and population, the newest
synthesis, and the sentences that say how long effects lasted."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from typing import Any

from .results import StudyResult

MATCH_FLOOR = 0.5  # a study "matches" (evidence at a glance) at half the best study's relevance
GLANCE_CAP = 100
SYNTHESIS = ("meta_analysis", "systematic_review")
DESIGN_ORDER = ("meta_analysis", "systematic_review", "guideline", "rct", "nonrandomised_trial", "cohort",
                "secondary_analysis", "case_control", "single_arm_trial", "cross_sectional", "case_series",
                "case_report", "modelling", "narrative_review", "protocol", "registration", "animal", "in_vitro")

_NUMBER = (r"(?:\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
           r"fourteen|eighteen|twenty|thirty|several|a few)")
_UNIT = r"(?:min(?:ute)?s?|h|hrs?|hours?|days?|weeks?|wks?|months?|years?)"
_QUANTITY = rf"{_NUMBER}(?:\s*(?:-|–|to|or)\s*{_NUMBER})?[\s-]*{_UNIT}\b"
_TIMED = re.compile(
    rf"\b(?:for|up to|lasting|lasted|through|throughout|over|after|until|beyond|within|at|persist\w* for)\s+"
    rf"(?:about |approximately |at least |the (?:first |next )?)?{_QUANTITY}"
    rf"|\b{_QUANTITY}\s+(?:follow-?up|after|post-?(?:infusion|treatment|dose|injection|surgery|operative))",
    re.IGNORECASE,
)
_LASTING = re.compile(r"\b(?:sustained|lasted|long-lasting|persist(?:ed|ent|ing|s)?|durab(?:le|ility)|relapse\w*|"
                      r"transient|maintained)\b", re.IGNORECASE)


def states_duration(text: str) -> bool:
    """Whether a sentence says how long something lasted or how long people were followed."""
    return bool(_TIMED.search(text) or _LASTING.search(text))


DURATION_SECTIONS = ("results", "conclusions", "abstract", "methods")
DURATION_SHOWN = 8


def evidence_at_a_glance(conn: sqlite3.Connection, ranked: list[StudyResult], limit: int) -> dict[str, Any]:
    """How many matching studies of each design and population, the newest synthesis, and durations.

    "Matching" means a text relevance at least MATCH_FLOOR of the best study's (at most GLANCE_CAP):
    the studies that really share the claim's wording or meaning, not every study naming ketamine.
    """
    pool = [s for s in ranked if s.components["text_relevance"] >= MATCH_FLOOR][:GLANCE_CAP]
    designs = Counter(d for s in pool for d in (s.design or ["unclassified"]))
    populations = Counter(s.population for s in pool)
    syntheses = [s for s in pool if set(s.design) & set(SYNTHESIS)]
    newest = max(syntheses, key=lambda s: (s.citation.get("year") or 0, -(s.rank or 0)), default=None)
    return {
        "matching_studies": len(pool),
        "by_design": {d: designs[d] for d in sorted(designs, key=_design_order)},
        "by_population": dict(populations.most_common()),
        "latest_synthesis": None if newest is None else {
            "pmid": newest.pmid, "citation": newest.citation, "design": newest.design, "url": newest.url,
            "rank": newest.rank},
        "durations": duration_sentences(conn, ranked[:max(limit, 1)]),
    }


def _design_order(design: str) -> int:
    return DESIGN_ORDER.index(design) if design in DESIGN_ORDER else len(DESIGN_ORDER)


def duration_sentences(conn: sqlite3.Connection, studies: list[StudyResult]) -> list[dict[str, Any]]:
    """Sentences of the top studies stating how long an effect lasted or how long patients were followed."""
    if not studies:
        return []
    order = {s.pmid: s for s in studies}
    marks = ", ".join("?" for _ in order)
    rows = conn.execute(
        f"select study_id, position, section, section_kind, text from sentences_text where study_id in ({marks}) "
        "order by study_id, position", list(order)).fetchall()
    found = []
    for study_id, position, section, kind, text in rows:
        if kind in DURATION_SECTIONS and states_duration(text or ""):
            study = order[study_id]
            found.append((study.rank or 0, _duration_priority(kind), position, {
                "pmid": study_id, "first_author": study.citation.get("first_author"),
                "year": study.citation.get("year"), "section": section, "section_kind": kind, "text": text,
                "url": study.url}))
    found.sort(key=lambda f: f[:3])
    per_study: Counter = Counter()
    out = []
    for *_, item in found:
        if per_study[item["pmid"]] < 2:
            per_study[item["pmid"]] += 1
            out.append(item)
        if len(out) == DURATION_SHOWN:
            break
    return out


def _duration_priority(kind: str) -> int:
    return {"results": 0, "conclusions": 1, "abstract": 2}.get(kind, 3)
