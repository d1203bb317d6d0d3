"""Claim check: a writer's claim in, the studies that bear on it out, best evidence first.

Pure apart from reading kb.db: ``check_claim(conn, claim)`` takes a sqlite3 connection (or a
sqlite_utils Database) and returns a :class:`ClaimCheck`. Textual relevance comes from FTS5
bm25 over ``sentences_fts`` (and ``studies_fts`` for the abstract as a whole) and, when a
vector index is given, from cosine similarity, fused by reciprocal rank fusion. Sentences are
weighted by section, studies by design and population and by the tags they share with the
claim. Retracted studies are listed apart and never ranked as evidence.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .term_stats import costly_terms
from .text import json_list

if TYPE_CHECKING:
    from .embeddings import VectorIndex

PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{}/"
MAX_CLAIM_CHARS = 2000
MAX_TERMS = 24
FTS_CANDIDATES = 400  # sentences read from each ranking before grouping by study
SENTENCES_SHOWN = 2
MATCH_FLOOR = 0.5  # a study "matches" (evidence at a glance) at half the best study's relevance
GLANCE_CAP = 100
RRF_K = 30  # the top of each ranking matters more than its tail
ABSTRACT_SIGNAL_WEIGHT = 1.5  # whole-abstract bm25 against each sentence ranking: is the study about the claim?
SECOND_SENTENCE = 0.15  # a second matching sentence adds this share of its relevance
TITLE_WEIGHT = 2.0  # bm25 weight of the title against the abstract in the whole-abstract ranking
CONTEXT_WEIGHT = 1.0  # bm25 weight of the study context column (title, tags, year): the topic counts as much

# Evidence strength by design, 0..1. Protocols report no results; reviews without a method
# are opinion; laboratory studies are not evidence about people.
DESIGN_WEIGHT = {
    "meta_analysis": 1.0, "systematic_review": 0.95, "guideline": 0.85, "rct": 0.85,
    "nonrandomised_trial": 0.7, "cohort": 0.7, "case_control": 0.65, "cross_sectional": 0.6,
    "case_series": 0.55, "case_report": 0.45, "narrative_review": 0.45, "protocol": 0.35,
    "animal": 0.4, "in_vitro": 0.35,
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
TAG_KINDS = {"drug": "drugs", "route": "routes", "indication": "indications", "mechanism": "mechanisms",
             "side_effect": "side_effects", "population": "populations"}
KETAMINE_FAMILY = {"ketamine", "esketamine", "arketamine", "hnk"}
SYNTHESIS = ("meta_analysis", "systematic_review")
DESIGN_ORDER = ("meta_analysis", "systematic_review", "guideline", "rct", "nonrandomised_trial", "cohort",
                "case_control", "cross_sectional", "case_series", "case_report", "narrative_review",
                "protocol", "animal", "in_vitro")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren as at be because been before being below
between both but by can cannot could did didn do does doesn doing don down during each either else ever
every few for from further get gets getting given had hasn has have haven having he her here hers herself
him himself his how however i if in into is isn it its itself just least less let like make makes may me
might more most much must mustn my myself no nor not now of off on once one only or other ought our ours
ourselves out over own people person really same shall she should so some such than that the their theirs
them themselves then there these they thing things this those though through thus to too truly under until
up upon us very was wasn we were weren what when where whether which while who whom whose why will with
within without would wouldn yet you your yours yourself yourselves s t ll re ve d m
""".split())

CLAIM_VOCABULARY_PATH = Path(__file__).with_name("claim_vocabulary.yaml")


@dataclass(frozen=True)
class ClaimVocabulary:
    """claim_vocabulary.yaml: lay words, filler words, lay wording of tags, kinds of claim."""

    lay_terms: dict[str, tuple[str, ...]]  # a lay word also searches for these
    filler: frozenset[str]  # words with no topic ("works", "people")
    lay_tags: tuple[tuple[re.Pattern, tuple[str, ...], frozenset[str]], ...]  # lay wording -> tags, unless tags
    intents: dict[str, re.Pattern]  # kind of claim -> how to recognise it


@functools.lru_cache(maxsize=1)
def claim_vocabulary() -> ClaimVocabulary:
    import yaml

    data = yaml.safe_load(CLAIM_VOCABULARY_PATH.read_text(encoding="utf-8"))
    return ClaimVocabulary(
        lay_terms={str(word): tuple(str(x) for x in more) for word, more in data["lay_terms"].items()},
        filler=frozenset(str(word) for word in data["filler"]),
        lay_tags=tuple((re.compile(item["pattern"], re.I), tuple(item["tags"]), frozenset(item.get("unless") or ()))
                       for item in data["lay_tags"]),
        intents={name: re.compile(pattern, re.I) for name, pattern in data["intents"].items()},
    )


# British spellings a writer may use, and the American ones most abstracts use.
_SPELLING = [(re.compile(p), r) for p, r in (
    (r"aes", "es"), (r"aem", "em"), (r"aet", "et"), (r"oes", "es"), (r"oed", "ed"), (r"paed", "ped"),
    (r"isation", "ization"), (r"ise$", "ize"), (r"ised$", "ized"), (r"our$", "or"),
)]
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)


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


# --------------------------------------------------------------------------- the query


def claim_terms(claim: str) -> list[str]:
    """Searchable words of a claim: lower-cased, stopwords dropped, de-duplicated, in order."""
    terms: list[str] = []
    for token in _TOKEN.findall(claim.lower()):
        token = token.replace("’", "'")
        if token.endswith("'s"):
            token = token[:-2]
        token = token.replace("'", "")
        if not token or token in STOPWORDS or (len(token) == 1 and not token.isdigit()):
            continue
        lay = claim_vocabulary()
        kept = () if token in lay.filler else (token, *_spellings(token))
        for variant in (*kept, *lay.lay_terms.get(token, ())):
            if variant not in terms:
                terms.append(variant)
    return terms[:MAX_TERMS]


def _spellings(token: str) -> list[str]:
    out = []
    for pattern, replacement in _SPELLING:
        changed = pattern.sub(replacement, token)
        if changed != token and changed not in out:
            out.append(changed)
    return out


def fts_query(claim: str, common: dict[str, float] | None = None, extra: list[str] | None = None) -> str:
    """An FTS5 query from a claim: every term double-quoted (so FTS operators are plain words), OR-ed.

    Words in ``common`` (share of sentences containing them) are left out: they match most of
    the index and carry no ranking signal. If every word is common, the rarest one is kept.
    ``extra``: more words to search for (the routes an exclusive claim leaves out).
    """
    return terms_query(list(dict.fromkeys(claim_terms(claim) + (extra or []))), common)


def terms_query(terms: list[str], common: dict[str, float] | None = None) -> str:
    """fts_query for terms already worked out from the claim."""
    if common:
        rare = [t for t in terms if t not in common]
        terms = rare or sorted(terms, key=lambda t: common.get(t, 0.0))[:1]
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def claim_tags(claim: str) -> dict[str, list[str]]:
    """The drugs, routes, indications, mechanisms, side effects and populations a claim names.

    Mentions count as well as accepted tags: "ketamine can cause psychosis" is about psychosis
    although the tagger would not accept that hedged wording as a study's own finding. The
    claim's lay words count through their expansions ("detached": dissociation) and the lay
    wording of claim_vocabulary.yaml ("raises blood pressure").
    """
    from .sentences import record_sentences
    from .tagger import find_mentions, load_vocabulary, tag_record

    vocab = load_vocabulary()
    expansions = [t for t in claim_terms(claim) if t.lower() not in claim.lower()]
    record = {"title": claim + (". " + ", ".join(expansions) if expansions else ""), "abstract": ""}
    found = {tag_id for ids in tag_record(record, vocab).tags.values() for tag_id in ids}
    found |= {m.tag_id for m in find_mentions(record_sentences(record), vocab)}
    named = set(found)
    for pattern, tag_ids, unless in claim_vocabulary().lay_tags:
        if pattern.search(claim) and not unless & named:
            found |= {t for t in tag_ids if t in vocab.tags}
    tags: dict[str, list[str]] = {}
    for tag_id in sorted(found):
        kind = vocab.tags[tag_id].kind
        if kind in TAG_KINDS and tag_id != "human":
            tags.setdefault(kind, []).append(tag_id)
    return tags


def claim_intents(claim: str) -> set[str]:
    """The kinds of claim (claim_vocabulary.yaml) this one is: duration, exclusive..."""
    return {name for name, pattern in claim_vocabulary().intents.items() if pattern.search(claim)}


def other_routes(tags: dict[str, list[str]]) -> list[str]:
    """For "must be given intranasally": every route the claim does not name."""
    from .tagger import read_vocabulary

    named = set(tags.get("route", []))
    return [t.id for t in read_vocabulary().of_kind("route") if t.id not in named] if named else []


# --------------------------------------------------------------------------- ranking


def validate_claim(claim: str | None) -> str:
    """The claim with its whitespace tidied; ClaimError when there is nothing to search for."""
    claim = " ".join((claim or "").split())
    if not claim:
        raise ClaimError("empty claim")
    if len(claim) > MAX_CLAIM_CHARS:
        raise ClaimError(f"claim longer than {MAX_CLAIM_CHARS} characters")
    if not claim_terms(claim):
        raise ClaimError("the claim has no searchable words")
    return claim


def check_claim(conn: Any, claim: str, limit: int = 10, vectors: VectorIndex | None = None) -> ClaimCheck:
    """Rank the studies bearing on ``claim``; hybrid when ``vectors`` is given, full-text otherwise."""
    conn = getattr(conn, "conn", conn)  # a sqlite_utils Database works too
    claim = validate_claim(claim)
    tables = _require_sentences(conn)
    intents = claim_intents(claim)
    tags = claim_tags(claim)
    boosted = dict(tags)
    extra: list[str] = []
    others = other_routes(tags) if "exclusive" in intents else []
    if others:
        # "Must be given intranasally": the studies that gave it another way are the test of it.
        boosted["route"] = others
        extra = [_tag_word(route) for route in others]
    terms = list(dict.fromkeys(claim_terms(claim) + extra))
    costly = costly_terms(conn, terms)
    query = terms_query(terms, costly)
    ranked = any(t not in costly for t in terms)
    bonus = _sentence_bonus([t for t in terms if t in costly], "duration" in intents)
    rankings = [_relative(_fts_ranking(conn, query, ranked), "bm25", bonus)]
    counter = counter_query(tags.get("drug", []), others)
    if counter:
        # The other routes OR-ed into the main query match any sentence naming a route; the
        # counter-evidence is a sentence naming the drug and another route together.
        rankings.append(_relative(_fts_ranking(conn, counter), "bm25", bonus))
    if vectors is not None:
        rankings.append(_relative(_vector_ranking(conn, vectors, claim), "cosine", bonus))
    studies = _score_studies(conn, rankings, boosted, _abstract_ranking(conn, query, tables) if ranked else {})
    ranked = [s for s in studies if not s.retracted]
    for number, study in enumerate(ranked, 1):
        study.rank = number
    return ClaimCheck(
        claim=claim, mode="hybrid" if vectors is not None else "fts", fts_query=query, claim_tags=tags,
        results=ranked[:limit], retracted=[s for s in studies if s.retracted],
        glance=evidence_at_a_glance(conn, ranked, limit),
    )


def counter_query(drugs: list[str], routes: list[str]) -> str:
    """FTS query for sentences naming one of the drugs and one of the routes ("oral esketamine"); "" without both."""
    if not drugs or not routes:
        return ""
    drug_words, route_words = [_tag_word(d) for d in drugs], [_tag_word(r) for r in routes]
    return f"({terms_query(drug_words)}) AND ({terms_query(route_words)})"


def _tag_word(tag_id: str) -> str:
    """The word abstracts use for a drug or route: its label's first word ("Ketamine (racemic)", "Oral")."""
    from .tagger import read_vocabulary

    return read_vocabulary().tags[tag_id].label.split()[0].lower()


DURATION_BONUS = 0.5  # a duration claim: a sentence stating how long something lasted counts this much more
COMMON_BONUS = 0.5  # a sentence with every common claim word (left out of the query) counts this much more


def _sentence_bonus(common: list[str], duration: bool) -> Callable[[list[Sentence]], dict[int, float]]:
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


def _require_sentences(conn: sqlite3.Connection) -> set[str]:
    """kb.db's table and view names; ClaimError when the sentence index is missing."""
    names = {r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view')")}
    if not {"sentences", "sentences_fts", "studies"} <= names:
        raise ClaimError("this database has no sentence index (rebuild it with `kb build`)")
    return names


RANKED_SENTENCES_CAP = 5_000  # at most this many matching sentences are scored, the newest studies' first
RANKED_STUDIES_CAP = 5_000  # the same for whole abstracts


def last_rowid_ranked(conn: sqlite3.Connection, fts_table: str, query: str, cap: int) -> int:
    """The rowid up to which matches are ranked: that of the cap-th match, in rowid order.

    BM25 must score every row it sorts; past a few thousand matches that is most of the time a
    query takes. kb.db stores the newest studies first (lowest rowids), so capping by rowid ranks
    the newest matches. The cap-th match is cheap to find: FTS5 walks matches in rowid order.
    """
    row = conn.execute(f"select rowid from {fts_table} where {fts_table} match ? order by rowid limit 1 offset ?",
                       (query, cap - 1)).fetchone()
    return row[0] if row else 2**63 - 1


def _fts_ranking(conn: sqlite3.Connection, query: str, ranked: bool = True) -> list[tuple[str, Sentence]]:
    # Unranked (newest sentences first) when every word is too common to rank cheaply: FTS5
    # can stop after the limit in rowid order, but must score every match to sort by bm25.
    order = "score" if ranked else "sentences_fts.rowid"
    sql = (
        "select s.rowid, s.study_id, s.position, s.section, s.section_kind, s.text, s.context, "
        f"bm25(sentences_fts, 1.0, {CONTEXT_WEIGHT}) as score "
        "from sentences_fts join sentences s on s.rowid = sentences_fts.rowid "
        f"where sentences_fts match ? and sentences_fts.rowid <= ? order by {order} limit ?"
    )
    try:
        last = last_rowid_ranked(conn, "sentences_fts", query, RANKED_SENTENCES_CAP) if ranked else 2**63 - 1
        rows = conn.execute(sql, (query, last, FTS_CANDIDATES)).fetchall()
    except sqlite3.OperationalError as exc:  # a query FTS5 still rejects: report, never crash
        raise ClaimError(f"full-text search failed ({exc})") from exc
    return [_sentence(row, bm25=row[7]) for row in rows]


def _vector_ranking(conn: sqlite3.Connection, vectors: VectorIndex, claim: str) -> list[tuple[str, Sentence]]:
    hits = dict(vectors.search(claim, FTS_CANDIDATES))
    rows: list[tuple] = []
    rowids = list(hits)
    for start in range(0, len(rowids), 500):  # keep well under SQLite's bound-parameter limit
        chunk = rowids[start:start + 500]
        rows += conn.execute("select rowid, study_id, position, section, section_kind, text, context from sentences "
                             f"where rowid in ({', '.join('?' for _ in chunk)})", chunk).fetchall()
    out = [_sentence(row, cosine=hits[row[0]]) for row in rows]
    return sorted(out, key=lambda pair: -(pair[1].cosine or 0))


def _sentence(row: tuple, bm25: float | None = None, cosine: float | None = None) -> tuple[str, Sentence]:
    return row[1], Sentence(rowid=row[0], position=row[2], section=row[3], section_kind=row[4] or "abstract",
                            text=row[5], context=row[6] or "", bm25=bm25, cosine=cosine)


def _relative(ranking: list[tuple[str, Sentence]], measure: str,
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


STUDY_COLUMNS = tuple(dict.fromkeys(("id", "title", "year", "journal", "first_author", "doi", "designs",
                                     "populations", "sample_size", "is_retracted", *TAG_KINDS.values())))


def _study_rows(conn: sqlite3.Connection, ids: list[str]) -> dict[str, dict]:
    available = {r[1] for r in conn.execute("pragma table_info(studies)")}
    columns = [c for c in STUDY_COLUMNS if c in available]
    out: dict[str, dict] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        sql = (f"select {', '.join(columns)} from studies "
               f"where id in ({', '.join('?' for _ in chunk)})")
        for row in conn.execute(sql, chunk):
            out[row[0]] = dict(zip(columns, row, strict=True))
    return out


def _abstract_ranking(conn: sqlite3.Connection, query: str, tables: set[str]) -> dict[str, float]:
    """Whole-abstract bm25 (studies_fts) as a share of the best: is the study about the claim at all?"""
    if "studies_fts" not in tables:
        return {}
    try:
        last = last_rowid_ranked(conn, "studies_fts", query, RANKED_STUDIES_CAP)
        rows = conn.execute(
            f"select s.id, bm25(studies_fts, {TITLE_WEIGHT}, 1.0) as score from studies_fts "
            "join studies s on s.rowid = studies_fts.rowid where studies_fts match ? and studies_fts.rowid <= ? "
            "order by score limit ?", (query, last, FTS_CANDIDATES)).fetchall()
    except sqlite3.OperationalError:  # a studies_fts of another shape: the sentences still rank
        return {}
    best = rows[0][1] if rows else 0.0
    return {sid: score / best for sid, score in rows} if best else {}


def _score_studies(conn: sqlite3.Connection, rankings: list[list[tuple[str, Sentence]]],
                   tags: dict[str, list[str]], abstracts: dict[str, float] | None = None) -> list[StudyResult]:
    """Each study's relevance from every signal, fused; then weighted by evidence and shared tags.

    Signals: the sentence bm25 ranking, the vector ranking (hybrid), and whole-abstract bm25 (is
    the study about the claim at all?). Each ranks studies (sentence signals by a study's best
    sentences); reciprocal rank fusion adds them up, so a study whose words match in one sentence
    and whose meaning matches in another is reinforced, not split.
    """
    per_list = [_group(ranking) for ranking in rankings]
    ids = list(dict.fromkeys(sid for groups in per_list for sid in groups))
    rows = _study_rows(conn, ids)
    ids = [sid for sid in ids if sid in rows]
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


# --------------------------------------------------------------------------- evidence at a glance

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
        f"select study_id, position, section, section_kind, text from sentences where study_id in ({marks}) "
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


# --------------------------------------------------------------------------- measuring quality


def load_gold(path: Any) -> list[dict[str, Any]]:
    """Claims with the PMIDs a careful reader would cite: {"claim": ..., "pmids": [...]} per line.

    A pooled set also lists every PMID judged for the claim ("judged") and those judged on topic
    but not evidence ("related"); see tests/gold/GUIDE.md.
    """
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def recall_at_k(ranked: list[str], gold: list[str], k: int = 10) -> float:
    """Share of the gold studies in the top k; out of k when there are more than k gold studies."""
    if not gold:
        return 0.0
    return len(set(ranked[:k]) & set(gold)) / min(len(gold), k)


def ndcg_at_k(ranked: list[str], gold: list[str], k: int = 10) -> float:
    """Binary-relevance nDCG: gold studies near the top count more."""
    import math

    wanted = set(gold)
    dcg = sum(1 / math.log2(i + 2) for i, pmid in enumerate(ranked[:k]) if pmid in wanted)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(wanted), k)))
    return dcg / ideal if ideal else 0.0


def evaluate(conn: Any, gold: list[dict[str, Any]], k: int = 10,
             vectors: VectorIndex | None = None) -> dict[str, Any]:
    """Mean recall@k and nDCG@k over gold claims, with each claim's figures."""
    per_claim = []
    for item in gold:
        ranked = [s.pmid for s in check_claim(conn, item["claim"], limit=k, vectors=vectors).results]
        judged = set(item.get("judged") or ()) | set(item["pmids"])
        per_claim.append({"claim": item["claim"], "recall": recall_at_k(ranked, item["pmids"], k),
                          "ndcg": ndcg_at_k(ranked, item["pmids"], k), "ranked": ranked,
                          "judged": sum(p in judged for p in ranked) / (len(ranked) or 1)})
    count = len(per_claim) or 1
    return {"recall": sum(c["recall"] for c in per_claim) / count,
            "ndcg": sum(c["ndcg"] for c in per_claim) / count,
            "judged": sum(c["judged"] for c in per_claim) / count, "claims": per_claim}
