"""What a claim check returns: the studies, their sentences, and why each ranks where it does."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
