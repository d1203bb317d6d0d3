"""Claim check: a writer's claim in, the studies that bear on it out, best evidence first.

Pure apart from reading kb.db: ``check_claim(conn, claim)`` takes a sqlite3 connection (or a
sqlite_utils Database) and returns a :class:`ClaimCheck`. Textual relevance comes from FTS5
bm25 over ``sentences_fts`` (and ``studies_fts`` for the abstract as a whole) and, when a
vector index is given, from cosine similarity, fused by reciprocal rank fusion. Sentences are
weighted by section, studies by design and population and by the tags they share with the
claim. Retracted studies are listed apart and never ranked as evidence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .results import ClaimCheck, StudyResult
from .retrieve import abstract_ranking, fts_ranking, require_sentences, vector_ranking
from .score import relative, score_studies, sentence_bonus
from .stance import (
    judge_study,
    keep_rare_terms,
    read_claim,
    verdict,
)
from .summary import evidence_at_a_glance
from .term_stats import costly_terms
from .understand import (
    claim_intents,
    claim_tags,
    claim_terms,
    counter_query,
    other_routes,
    tag_word,
    terms_query,
    validate_claim,
)

if TYPE_CHECKING:
    from .embeddings import VectorIndex


def check_claim(conn: Any, claim: str, limit: int = 10, vectors: VectorIndex | None = None) -> ClaimCheck:
    """Rank the studies bearing on ``claim``; hybrid when ``vectors`` is given, full-text otherwise."""
    conn = getattr(conn, "conn", conn)  # a sqlite_utils Database works too
    claim = validate_claim(claim)
    tables = require_sentences(conn)
    intents = claim_intents(claim)
    tags = claim_tags(claim)
    boosted = dict(tags)
    extra: list[str] = []
    others = other_routes(tags) if "exclusive" in intents else []
    if others:
        # "Must be given intranasally": the studies that gave it another way are the test of it.
        boosted["route"] = others
        extra = [tag_word(route) for route in others]
    terms = list(dict.fromkeys(claim_terms(claim) + extra))
    costly = costly_terms(conn, terms)
    query = terms_query(terms, costly)
    ranked = any(t not in costly for t in terms)
    bonus = sentence_bonus([t for t in terms if t in costly], "duration" in intents)
    rankings = [relative(fts_ranking(conn, query, ranked), "bm25", bonus)]
    counter = counter_query(tags.get("drug", []), others)
    if counter:
        # The other routes OR-ed into the main query match any sentence naming a route; the
        # counter-evidence is a sentence naming the drug and another route together.
        rankings.append(relative(fts_ranking(conn, counter), "bm25", bonus))
    if vectors is not None:
        rankings.append(relative(vector_ranking(conn, vectors, claim), "cosine", bonus))
    studies = score_studies(conn, rankings, boosted, abstract_ranking(conn, query, tables) if ranked else {})
    ranked = [s for s in studies if not s.retracted]
    for number, study in enumerate(ranked, 1):
        study.rank = number
    judged = ranked[:max(limit, VERDICT_STUDIES)]
    return ClaimCheck(
        claim=claim, mode="hybrid" if vectors is not None else "fts", fts_query=query, claim_tags=tags,
        results=ranked[:limit], retracted=[s for s in studies if s.retracted],
        glance=evidence_at_a_glance(conn, ranked, limit),
        verdict=_judge(conn, claim, tags, judged),
    )


VERDICT_STUDIES = 20  # the verdict weighs at least this many of the best-ranked studies


def _judge(conn: Any, claim: str, tags: dict[str, list[str]], studies: list[StudyResult]) -> dict[str, Any]:
    """Each study's stance toward the claim (set on the study) and the claim's verdict."""
    assertion = keep_rare_terms(conn, read_claim(claim, tags))
    stances = []
    for study in studies:
        stance, level = judge_study(conn, assertion, study.pmid)
        study.stance, study.stance_sentence, study.stance_reason = stance.label, stance.sentence, stance.reason
        stances.append((stance, level, study.population, study.design, study.pmid))
    result = verdict(stances, assertion.quantitative)
    return {"label": result.label, "reasons": result.reasons, "values": result.values, "weights": result.weights}
