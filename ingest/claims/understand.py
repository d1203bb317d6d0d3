"""Understanding a claim: its searchable words, the tags it names, and what kind of claim it is.

Lay words and their expansions are data (``claim_vocabulary.yaml``); the tags come from the
tagger's vocabulary, so a claim and a study are read with the same words.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from ..tagging.sentences import record_sentences
from ..tagging.tagger import find_mentions, tag_record
from ..tagging.vocabulary import load_vocabulary, read_vocabulary
from .results import ClaimError

MAX_CLAIM_CHARS = 2000
MAX_TERMS = 24
TAG_KINDS = {"drug": "drugs", "route": "routes", "indication": "indications", "mechanism": "mechanisms",
             "side_effect": "side_effects", "population": "populations"}

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
    named = set(tags.get("route", []))
    return [t.id for t in read_vocabulary().of_kind("route") if t.id not in named] if named else []


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


def counter_query(drugs: list[str], routes: list[str]) -> str:
    """FTS query for sentences naming one of the drugs and one of the routes ("oral esketamine"); "" without both."""
    if not drugs or not routes:
        return ""
    drug_words, route_words = [tag_word(d) for d in drugs], [tag_word(r) for r in routes]
    return f"({terms_query(drug_words)}) AND ({terms_query(route_words)})"


def tag_word(tag_id: str) -> str:
    """The word abstracts use for a drug or route: its label's first word ("Ketamine (racemic)", "Oral")."""
    return read_vocabulary().tags[tag_id].label.split()[0].lower()
