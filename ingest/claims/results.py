"""What a claim check returns: the studies, their sentences, and why each ranks where it does."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..records.spreadsheet import spreadsheet_safe


class ClaimError(ValueError):
    """The claim cannot be checked (empty, nothing searchable, or kb.db lacks the sentence index)."""


@dataclass
class Sentence:
    rowid: int
    position: int
    section: str | None
    section_kind: str
    text: str
    context: str = ""  # the study's title, tags and year (indexed with the sentence)
    relevance: float = 0.0  # this sentence's textual relevance, 0..1, before the section weight
    weighted: float = 0.0  # relevance * section weight
    bm25: float | None = None
    cosine: float | None = None


@dataclass
class StudyResult:
    pmid: str
    citation: dict[str, Any]
    design: list[str]
    population: str  # human | animal | in_vitro | unclear
    n: int | None
    url: str
    sentences: list[dict[str, Any]]
    score: float
    components: dict[str, Any]
    retracted: bool = False
    rank: int | None = None
    stance: str = "neutral"  # supports | contradicts | mixed | neutral, toward the claim as worded
    stance_sentence: str | None = None  # the sentence that decides it
    stance_reason: str = ""


@dataclass
class ClaimCheck:
    claim: str
    mode: str  # fts | hybrid
    fts_query: str
    claim_tags: dict[str, list[str]]
    results: list[StudyResult]
    retracted: list[StudyResult]
    glance: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    verdict: dict[str, Any] = field(default_factory=dict)  # label, reasons, values (stance.Verdict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


NO_AUTHORS = "[No authors listed]"  # as PubMed cites a record without authors

# One row per study listed (kb check --csv and the claim-check page's CSV).
CSV_COLUMNS = ["claim", "mode", "verdict", "rank", "retracted", "stance", "stance_reason", "stance_sentence", "pmid",
               "first_author", "year", "title", "journal", "design", "population", "n", "score", "text_relevance",
               "evidence_weight", "section_weight", "tag_boost", "shared_tags", "section", "sentence", "url"]


def csv_rows(result: ClaimCheck) -> list[dict[str, Any]]:
    """One CSV row per study listed, every cell safe to open in a spreadsheet (no formulas run)."""
    return [{column: spreadsheet_safe(value) for column, value in _csv_row(result, study).items()}
            for study in [*result.results, *result.retracted]]


def _csv_row(result: ClaimCheck, study: StudyResult) -> dict[str, Any]:
    top = study.sentences[0] if study.sentences else {}
    c = study.components
    return {
        "claim": result.claim, "mode": result.mode, "verdict": result.verdict.get("label"),
        "rank": study.rank if not study.retracted else "", "retracted": int(study.retracted),
        "stance": study.stance if not study.retracted else "", "stance_reason": study.stance_reason,
        "stance_sentence": study.stance_sentence, "pmid": study.pmid,
        "first_author": study.citation.get("first_author") or NO_AUTHORS,
        "year": study.citation.get("year"), "title": study.citation.get("title"),
        "journal": study.citation.get("journal"), "design": ";".join(study.design), "population": study.population,
        "n": study.n, "score": study.score, "text_relevance": c["text_relevance"],
        "evidence_weight": c["evidence_weight"], "section_weight": c["section_weight"], "tag_boost": c["tag_boost"],
        "shared_tags": ";".join(c["shared_tags"]), "section": top.get("section_kind"), "sentence": top.get("text"),
        "url": study.url,
    }
