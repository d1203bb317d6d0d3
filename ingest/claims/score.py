"""Scoring studies for a claim: relevance from every ranking fused, then weighed as evidence.

Sentences are weighted by section, studies by design and population and by the tags they share
with the claim; reciprocal rank fusion adds up the rankings.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..records.text import json_list
from .results import Sentence, StudyResult
from .retrieve import study_rows
from .summary import states_duration
from .understand import TAG_KINDS

PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{}/"
SENTENCES_SHOWN = 2
RRF_K = 30  # the top of each ranking matters more than its tail
ABSTRACT_SIGNAL_WEIGHT = 1.5  # whole-abstract bm25 against each sentence ranking: is the study about the claim?
SECOND_SENTENCE = 0.15  # a second matching sentence adds this share of its relevance

# Evidence strength by design, 0..1. Protocols report no results; reviews without a method
# are opinion; laboratory studies are not evidence about people.
DESIGN_WEIGHT = {
    "meta_analysis": 1.0, "systematic_review": 0.95, "guideline": 0.85, "rct": 0.85,
    "nonrandomised_trial": 0.7, "cohort": 0.7, "secondary_analysis": 0.65, "case_control": 0.65,
    "single_arm_trial": 0.6, "cross_sectional": 0.6, "case_series": 0.55, "modelling": 0.5, "case_report": 0.45,
    "narrative_review": 0.45, "protocol": 0.35, "registration": 0.3, "animal": 0.4, "in_vitro": 0.35,
}
UNKNOWN_DESIGN_WEIGHT = 0.55
NON_HUMAN_FACTOR = 0.7  # animals only, whatever the design
EVIDENCE_SHARE = 0.5  # final = relevance * (1 - share + share * evidence)

# Results and conclusions report what the study found; background restates what others said.
SECTION_WEIGHT = {
    "results": 1.0, "conclusions": 1.0, "title": 1.5, "abstract": 0.9, "methods": 0.7, "background": 0.6,
}
TAG_BOOST = 0.3  # per shared tag
TAG_BOOST_CAP = 3
KETAMINE_FAMILY = {"ketamine", "esketamine", "arketamine", "hnk"}
DURATION_BONUS = 0.5  # a duration claim: a sentence stating how long something lasted counts this much more
COMMON_BONUS = 0.5  # a sentence with every common claim word (left out of the query) counts this much more


def sentence_bonus(common: list[str], duration: bool) -> Callable[[list[Sentence]], dict[int, float]]:
    """A factor per candidate sentence for what the FTS query could not weigh.

    The claim's common words ("ketamine", "depression") are left out of the query to keep it
    cheap, but a sentence (or its study's context) that has them is more on topic; and for a
    claim about how long something lasts, a sentence that states a duration bears on it.
    """
    def bonus(candidates: list[Sentence]) -> dict[int, float]:
        shares = _common_share(candidates, common) if common else {}
        return {
            s.rowid: (1.0 + COMMON_BONUS * shares.get(s.rowid, 0.0))
            * (1.0 + DURATION_BONUS * (duration and states_duration(s.text)))
            for s in candidates
        }
    return bonus


def _common_share(candidates: list[Sentence], words: list[str]) -> dict[int, float]:
    """Share of ``words`` each sentence (with its context) contains, matched as FTS5 porter matches them."""
    memory = sqlite3.connect(":memory:")
    try:
        memory.execute("create virtual table t using fts5(x, tokenize='porter')")
        memory.executemany("insert into t (rowid, x) values (?, ?)",
                           [(s.rowid, f"{s.text} {s.context}") for s in candidates])
        found: Counter = Counter()
        for word in words:
            phrase = '"' + word.replace('"', '""') + '"'
            found.update(row[0] for row in memory.execute("select rowid from t where t match ?", [phrase]))
        return {rowid: count / len(words) for rowid, count in found.items()}
    finally:
        memory.close()


def relative(ranking: list[tuple[str, Sentence]], measure: str,
              bonus: Callable[[list[Sentence]], dict[int, float]] | None = None) -> list[tuple[str, Sentence]]:
    """Each sentence's relevance in 0..1 within its ranking, then weighted by its section (and ``bonus``).

    bm25 (negative: lower is better) as a share of the best sentence's; cosine rescaled from the
    weakest candidate (0) to the best (1), since raw cosines of one model crowd into a narrow band.
    """
    values = [getattr(s, measure) for _, s in ranking if getattr(s, measure) is not None] or [0.0]
    low, high = min(values), max(values)
    if measure == "bm25":
        scale = (lambda v: v / low) if low else (lambda v: 0.0)
    else:
        scale = (lambda v: (v - low) / (high - low)) if high > low else (lambda v: 1.0)
    factors = bonus([s for _, s in ranking]) if bonus else {}
    for _, sentence in ranking:
        value = getattr(sentence, measure)
        sentence.relevance = scale(value) if value is not None else 0.0
        sentence.weighted = (sentence.relevance * SECTION_WEIGHT.get(sentence.section_kind, 0.9)
                             * factors.get(sentence.rowid, 1.0))
    return ranking


def score_studies(conn: sqlite3.Connection, rankings: list[list[tuple[str, Sentence]]],
                   tags: dict[str, list[str]], abstracts: dict[str, float] | None = None) -> list[StudyResult]:
    """Each study's relevance from every signal, fused; then weighted by evidence and shared tags.

    Signals: the sentence bm25 ranking, the vector ranking (hybrid), and whole-abstract bm25 (is
    the study about the claim at all?). Each ranks studies (sentence signals by a study's best
    sentences); reciprocal rank fusion adds them up, so a study whose words match in one sentence
    and whose meaning matches in another is reinforced, not split.
    """
    per_list = [_group(ranking) for ranking in rankings]
    ids = list(dict.fromkeys(sid for groups in per_list for sid in groups))
    rows = study_rows(conn, ids)
    # Off-topic records (ketamine named in passing) are no evidence about a ketamine claim.
    ids = [sid for sid in ids if sid in rows and rows[sid].get("on_topic") != 0]
    evidence_ids = [sid for sid in ids if not rows[sid].get("is_retracted")]
    signals = [({sid: _raw_relevance(groups[sid]) for sid in ids if sid in groups}, 1.0) for groups in per_list]
    if abstracts:
        signals.append(({sid: abstracts[sid] for sid in ids if sid in abstracts}, ABSTRACT_SIGNAL_WEIGHT))
    raw = _rrf(signals, ids) if len(signals) > 1 else signals[0][0]
    # Relative to the best study that counts as evidence: a retracted one sets no standard.
    best = max((raw[sid] for sid in evidence_ids), default=0.0) or 1.0
    studies = [_score_study(rows[sid], _merged(sid, per_list), tags, raw[sid] / best) for sid in ids]
    return sorted(studies, key=lambda s: (-s.score, -(s.citation.get("year") or 0), s.pmid))


def _rrf(signals: list[tuple[dict[str, float], float]], ids: list[str]) -> dict[str, float]:
    """Reciprocal rank fusion: each (signal, weight) ranks the studies it scored; a study sums weight / (k + rank)."""
    fused = {sid: 0.0 for sid in ids}
    for signal, weight in signals:
        for rank, sid in enumerate(sorted(signal, key=lambda x: -signal[x]), 1):
            fused[sid] += weight / (RRF_K + rank)
    return fused


def _group(ranking: list[tuple[str, Sentence]]) -> dict[str, list[Sentence]]:
    groups: dict[str, list[Sentence]] = {}
    for study_id, sentence in ranking:
        groups.setdefault(study_id, []).append(sentence)
    for group in groups.values():
        group.sort(key=lambda s: (-s.weighted, s.position))
    return groups


def _merged(study_id: str, per_list: list[dict[str, list[Sentence]]]) -> list[Sentence]:
    """The study's matching sentences from every ranking, best first, each sentence once."""
    seen: dict[int, Sentence] = {}
    for groups in per_list:
        for sentence in groups.get(study_id, []):
            kept = seen.get(sentence.rowid)
            if kept is None:
                seen[sentence.rowid] = sentence
                continue
            kept.bm25 = kept.bm25 if kept.bm25 is not None else sentence.bm25
            kept.cosine = kept.cosine if kept.cosine is not None else sentence.cosine
            if sentence.weighted > kept.weighted:
                kept.relevance, kept.weighted = sentence.relevance, sentence.weighted
    return sorted(seen.values(), key=lambda s: (-s.weighted, s.position))


def _raw_relevance(group: list[Sentence]) -> float:
    """The best sentence (groups are sorted), plus a little for a second: the study says it more than once."""
    return group[0].weighted + SECOND_SENTENCE * (group[1].weighted if len(group) > 1 else 0.0)


def _score_study(row: dict, group: list[Sentence], tags: dict[str, list[str]], relevance: float) -> StudyResult:
    top = group[0]
    designs = _json_list(row.get("designs"))
    population = population_of(designs, _json_list(row.get("populations")))
    evidence = evidence_weight(designs, population)
    shared = shared_tags(row, tags)
    boost = 1.0 + TAG_BOOST * min(len(shared), TAG_BOOST_CAP)
    factor = 1.0 - EVIDENCE_SHARE + EVIDENCE_SHARE * evidence
    score = relevance * factor * boost
    pmid = row["id"]
    return StudyResult(
        pmid=pmid,
        citation={"first_author": row.get("first_author"), "year": row.get("year"), "title": row.get("title"),
                  "journal": row.get("journal"), "doi": row.get("doi")},
        design=designs, population=population, n=row.get("sample_size"),
        url=PUBMED_URL.format(pmid) if pmid.isdigit() else (f"https://doi.org/{row['doi']}" if row.get("doi") else ""),
        sentences=[_shown(s) for s in group[:SENTENCES_SHOWN]],
        score=round(score, 4),
        components={
            "text_relevance": round(relevance, 4), "best_sentence_relevance": round(top.relevance, 4),
            "section_weight": SECTION_WEIGHT.get(top.section_kind, 0.9), "evidence_weight": round(evidence, 3),
            "evidence_factor": round(factor, 3),
            "tag_boost": round(boost, 2), "shared_tags": shared,
            "bm25": None if top.bm25 is None else round(top.bm25, 3),
            "cosine": None if top.cosine is None else round(top.cosine, 4),
            "matching_sentences": len(group),
        },
        retracted=bool(row.get("is_retracted")),
    )


def _shown(sentence: Sentence) -> dict[str, Any]:
    return {"text": sentence.text, "section": sentence.section, "section_kind": sentence.section_kind,
            "position": sentence.position, "relevance": round(sentence.relevance, 4)}




def _json_list(value: Any) -> list[str]:
    return [str(v) for v in json_list(value)]


def population_of(designs: list[str], populations: list[str]) -> str:
    """human | animal | in_vitro | unclear, from the design and population tags."""
    if "animal" in designs or ("animals" in populations and "human" not in populations):
        return "animal"
    if "in_vitro" in designs and "human" not in populations:
        return "in_vitro"
    if "human" in populations or set(designs) - {"animal", "in_vitro"}:
        return "human"
    return "unclear"


def evidence_weight(designs: list[str], population: str) -> float:
    """The strongest of the study's designs, discounted when no humans were studied."""
    weight = max((DESIGN_WEIGHT.get(d, UNKNOWN_DESIGN_WEIGHT) for d in designs), default=UNKNOWN_DESIGN_WEIGHT)
    if population in ("animal", "in_vitro"):
        weight = min(weight * NON_HUMAN_FACTOR, DESIGN_WEIGHT["animal"])
    return weight


def shared_tags(row: dict, tags: dict[str, list[str]]) -> list[str]:
    """The claim's tags this study carries too ("ketamine" stands for the whole family)."""
    shared = []
    for kind, tag_ids in tags.items():
        column = TAG_KINDS.get(kind)
        have = set(_json_list(row.get(column))) if column else set()
        for tag_id in tag_ids:
            if tag_id in have or (kind == "drug" and tag_id == "ketamine" and have & KETAMINE_FAMILY):
                shared.append(tag_id)
    return shared
