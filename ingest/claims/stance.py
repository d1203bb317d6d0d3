"""Stance: whether a study's own findings support or contradict a claim as worded, and a verdict.

A claim is read for what it asserts (stance_vocabulary.yaml): the outcomes it is about, whether it
asserts a benefit, a harm or an absence, and its qualifiers (how long, how soon, what share of
patients, a required route, a comparison). A study's findings (tagging/findings.py, from its result
sentences) are held against that: a null result on the claimed effect contradicts it, durations of
days contradict "up to four hours", efficacy by another route contradicts "must be given
intravenously". Every label keeps the one sentence that decides it. The verdict weighs the studies'
stances by evidence level and says ``insufficient`` rather than guess.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..tagging.findings import Finding, Quantity, extract_findings, load_findings_vocabulary
from ..tagging.sentences import Sentence, split_sentences
from .understand import claim_terms

STANCES = ("supports", "contradicts", "mixed", "neutral")
VERDICTS = ("supported", "contradicted", "mixed", "insufficient")
STANCE_VOCABULARY_PATH = Path(__file__).with_name("stance_vocabulary.yaml")
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "twenty-four": 24, "eight": 8, "ten": 10, "twelve": 12, "a few": 3, "several": 3}
_UNIT_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0, "week": 168.0, "month": 730.0, "year": 8760.0}
# Evidence weight per evidence level (1 = synthesis ... 6 = case report, preclinical, opinion).
LEVEL_WEIGHT = {1: 3.0, 2: 2.5, 3: 1.5, 4: 1.0, 5: 0.5, 6: 0.5}
ANIMAL_WEIGHT = 0.3
MIN_VERDICT_WEIGHT = 5.0  # less than this on either side together is "insufficient"
DOMINANCE = 2.0  # one side at least this many times the other decides the verdict


@dataclass(frozen=True)
class StanceVocabulary:
    lay_outcomes: dict[str, re.Pattern]
    efficacy: frozenset[str]
    harms: frozenset[str]
    absence: re.Pattern
    harm_words: re.Pattern
    duration_upper: tuple[re.Pattern, ...]
    duration_lower: tuple[re.Pattern, ...]
    permanent: re.Pattern
    onset_upper: tuple[re.Pattern, ...]
    onset_words: dict[str, float]
    onset_spans: dict[str, float]
    rates: tuple[dict, ...]
    rate_kinds: dict[str, re.Pattern]
    exclusive: re.Pattern
    better: re.Pattern
    prevents: re.Pattern
    equal: re.Pattern
    noninferior: re.Pattern
    worse: re.Pattern
    harm_as_indication: dict[str, frozenset[str]]
    relative_change: re.Pattern
    timepoint: re.Pattern
    early_words: re.Pattern
    favours: re.Pattern
    claim_timepoint: re.Pattern
    modifies_effect: re.Pattern
    effect_unchanged: re.Pattern
    effect_blocked: re.Pattern
    comparator_end: re.Pattern
    correlational: re.Pattern
    share_words: tuple[tuple[re.Pattern, float], ...]
    harm_reported: re.Pattern
    recreational_claim: re.Pattern
    mixed_evidence: re.Pattern
    recreational_study: re.Pattern
    comparative: dict[str, re.Pattern]


def _any(patterns: list[str]) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I)


@functools.lru_cache(maxsize=1)
def stance_vocabulary() -> StanceVocabulary:
    data = yaml.safe_load(STANCE_VOCABULARY_PATH.read_text(encoding="utf-8"))
    return StanceVocabulary(
        lay_outcomes={k: _any(v) for k, v in data["lay_outcomes"].items()},
        efficacy=frozenset(data["efficacy_outcomes"]), harms=frozenset(data["harm_outcomes"]),
        absence=_any(data["absence"]), harm_words=_any(data["harm_words"]),
        duration_upper=tuple(re.compile(p, re.I) for p in data["duration_upper"]),
        duration_lower=tuple(re.compile(p, re.I) for p in data["duration_lower"]),
        permanent=_any(data["permanent"]),
        onset_upper=tuple(re.compile(p, re.I) for p in data["onset_upper"]),
        onset_words={str(k): float(v) for k, v in data["onset_words"].items()},
        onset_spans={str(k): float(v) for k, v in data["onset_spans"].items()},
        rates=tuple({**r, "regex": re.compile(r["pattern"], re.I)} for r in data["rates"]),
        rate_kinds={k: _any(v) for k, v in data["rate_kinds"].items()},
        exclusive=re.compile(data["exclusive"], re.I), better=re.compile(data["better"], re.I),
        prevents=re.compile(data["prevents"], re.I),
        equal=re.compile(data["equal"], re.I), noninferior=re.compile(data["noninferior"], re.I),
        worse=re.compile(data["worse"], re.I),
        harm_as_indication={k: frozenset(v) for k, v in data["harm_as_indication"].items()},
        relative_change=re.compile(data["relative_change"], re.I), timepoint=re.compile(data["timepoint"], re.I),
        early_words=_any(data["early_words"]), favours=re.compile(data["favours"], re.I),
        claim_timepoint=re.compile(data["claim_timepoint"], re.I),
        modifies_effect=re.compile(data["modifies_effect"], re.I),
        effect_unchanged=re.compile(data["effect_unchanged"], re.I),
        effect_blocked=re.compile(data["effect_blocked"], re.I),
        comparator_end=re.compile(data["comparator_end"], re.I),
        correlational=re.compile(data["correlational"], re.I),
        share_words=tuple((re.compile(r["pattern"], re.I), float(r["value"])) for r in data["share_words"]),
        harm_reported=re.compile(data["harm_reported"], re.I),
        recreational_claim=re.compile(data["recreational_claim"], re.I),
        mixed_evidence=re.compile(data["mixed_evidence"], re.I),
        recreational_study=re.compile(data["recreational_study"], re.I),
        comparative={k: re.compile(v, re.I) for k, v in data["comparative"].items()},
    )


# --------------------------------------------------------------------------- the claim

@dataclass
class Assertion:
    """What a claim asserts, in the findings' terms."""

    outcomes: set[str]
    effect: str  # benefit | harm | absence
    duration_max_h: float | None = None
    duration_min_h: float | None = None
    permanent: bool = False
    onset_max_h: float | None = None
    rate: tuple[str, float, float] | None = None  # (kind, low %, high %)
    required_routes: list[str] = field(default_factory=list)
    comparison: str | None = None  # better | equal | noninferior | worse
    comparator_terms: list[str] = field(default_factory=list)
    comparator_text: str = ""  # what the claim compares with, as written ("an IV ketamine drip")
    routes: set[str] = field(default_factory=set)  # the routes the claim names (tag ids)
    recreational: bool = False  # the claim is about recreational or heavy non-medical use
    drugs: set[str] = field(default_factory=set)  # the drugs the claim names (tag ids)
    indications: set[str] = field(default_factory=set)
    populations: set[str] = field(default_factory=set)
    key_terms: list[str] = field(default_factory=list)  # what else the claim is about (a trial, a co-drug)
    timepoint_h: float | None = None  # the time the claim states its result at ("at day 7")
    modifier_terms: list[str] = field(default_factory=list)  # "naltrexone" in "naltrexone blocks the effect"
    # The modifier's words a result sentence may name it by ("opioid" for "opioid blockade with naltrexone").
    modifier_words: list[str] = field(default_factory=list)

    @property
    def quantitative(self) -> bool:
        return bool(self.duration_max_h or self.duration_min_h or self.permanent or self.onset_max_h or self.rate)


def read_claim(claim: str, tags: dict[str, list[str]] | None = None) -> Assertion:
    """The claim's outcomes, effect and qualifiers. ``tags``: the claim's tags (understand.claim_tags)."""
    vocab, findings_vocab = stance_vocabulary(), load_findings_vocabulary()
    tags = tags or {}
    lowered = claim.lower()
    outcomes = {o.id for o in findings_vocab.outcomes if o.regex.search(lowered)}
    outcomes |= {name for name, regex in vocab.lay_outcomes.items() if regex.search(claim)}
    harms = outcomes & vocab.harms
    if vocab.absence.search(claim):
        effect = "absence"
    elif harms and (vocab.harm_words.search(claim) or not outcomes & vocab.efficacy):
        effect = "harm"
    else:
        effect = "benefit"
    if effect == "benefit" and "relapse" in outcomes and not vocab.prevents.search(claim):
        # "Most who respond relapse within a month": relapse asserted to happen, a harm to weigh as one.
        effect, outcomes = "harm", {"relapse"}
    elif effect == "harm" or (effect == "absence" and harms):
        # "Doesn't raise your blood pressure": the harm it names, not every side effect ("safer").
        outcomes = (harms - {"adverse_events"}) or harms or outcomes
    elif effect == "benefit":
        outcomes = (outcomes & vocab.efficacy) or outcomes
    assertion = Assertion(outcomes=outcomes, effect=effect, drugs=set(tags.get("drug", [])),
                          indications=set(tags.get("indication", [])),
                          populations=set(tags.get("population", [])) - {"human"},
                          routes=set(tags.get("route", [])))
    assertion.recreational = bool(vocab.recreational_claim.search(claim))
    _read_times(claim, vocab, assertion)
    assertion.rate = _read_rate(claim, vocab, assertion)
    if tags.get("route") and vocab.exclusive.search(claim):
        assertion.required_routes = list(tags["route"])
    _read_comparison(claim, vocab, assertion)
    assertion.timepoint_h = _claim_timepoint(claim, vocab)
    assertion.modifier_terms = _modifier_terms(claim, vocab, assertion)
    assertion.key_terms = _key_terms(claim, assertion)
    return assertion


# Words a claim may use that say nothing about which studies bear on it.
_QUALIFIER_WORDS = frozenset("""
most majority half about around roughly nearly almost all every everyone always never often usually
typically commonly generally rarely rare few low high risk within hours minutes days weeks months years
hour minute day week month year last lasts lasting permanent permanently forever cure cures single dose
doses one two three four five six seven eight nine ten first new proven safe safely effective
effectively works work better worse than just only must can may might consistently significantly
clearly strongly quickly rapidly fast rapid immediate immediately long term short lead leads cause
causes produce produces show shows shown demonstrated demonstrates help helps treatment treatments
therapy therapies patients people adults use used using given give treat treats treated compared
""".split())


def _hours(number: str | None, unit: str | None) -> float | None:
    if not number or not unit:
        return None
    value = float(number) if number[0].isdigit() else _NUMBER_WORDS.get(number.lower())
    return value * _UNIT_HOURS[unit.lower().rstrip("s")] if value is not None else None


def _read_times(claim: str, vocab: StanceVocabulary, assertion: Assertion) -> None:
    for regex in vocab.duration_upper:
        match = regex.search(claim)
        if match:
            assertion.duration_max_h = _hours(match.group("n"), match.group("unit"))
            break
    for regex in vocab.duration_lower:
        match = regex.search(claim)
        if match:
            assertion.duration_min_h = _hours(match.group("n"), match.group("unit"))
            break
    assertion.permanent = bool(vocab.permanent.search(claim))
    for regex in vocab.onset_upper:
        match = regex.search(claim)
        if not match:
            continue
        groups = match.groupdict()
        if groups.get("span"):
            assertion.onset_max_h = vocab.onset_spans[groups["span"].lower()]
        elif groups.get("word"):
            word = groups["word"].lower()
            assertion.onset_max_h = vocab.onset_words.get(word, vocab.onset_words.get(word.rstrip("ly"), 24.0))
        elif assertion.duration_max_h is None or "within" in match.group(0).lower() or "in " in match.group(0).lower():
            assertion.onset_max_h = _hours(groups.get("n"), groups.get("unit"))
        break
    if assertion.onset_max_h and assertion.duration_max_h and assertion.onset_max_h == assertion.duration_max_h:
        assertion.onset_max_h = None  # one phrase read twice: "lasts up to four hours" is a duration


def _read_rate(claim: str, vocab: StanceVocabulary, assertion: Assertion) -> tuple[str, float, float] | None:
    for rule in vocab.rates:
        match = rule["regex"].search(claim)
        if not match or vocab.relative_change.search(claim[:match.start()]):
            continue  # "reduced the risk of relapse by approximately 50%": a relative change, not a rate
        value = float(match.group("value")) if "value" in match.groupdict() and match.group("value") else None
        if rule.get("low_from_value"):
            low, high = value, 100.0
        elif rule.get("high_from_value"):
            low, high = 0.0, value
        elif rule.get("around_value"):
            low, high = value - rule["around_value"], value + rule["around_value"]
        else:
            low, high = float(rule["low"]), float(rule["high"])
        if low is None or high is None:
            continue
        return _rate_kind(claim, vocab, assertion), max(0.0, low), min(100.0, high)
    return None


def _rate_kind(claim: str, vocab: StanceVocabulary, assertion: Assertion) -> str:
    if assertion.effect == "harm" and assertion.outcomes == {"relapse"}:
        return "relapse_rate"
    if assertion.effect == "harm" or (assertion.outcomes & vocab.harms and not assertion.outcomes & vocab.efficacy):
        return "incidence"
    for kind, regex in vocab.rate_kinds.items():
        if regex.search(claim):
            return kind
    return "response_rate"


def _read_comparison(claim: str, vocab: StanceVocabulary, assertion: Assertion) -> None:
    for name in ("noninferior", "better", "worse", "equal"):
        match = getattr(vocab, name).search(claim)
        if match:
            assertion.comparison = name
            # What it is compared with: the words after the comparison, as written (not their
            # expansions, and not qualifier words such as "well" or "drip").
            after = claim[match.end():]
            adjective = re.match(r"\s*(?:well|good|effective|efficacious|fast|quickly|safe|strong)\b", after, re.I)
            second_as = re.search(r"\bas\b", after[:SECOND_AS_WINDOW]) if name == "equal" and adjective else None
            if second_as:
                after = after[second_as.end():]  # "just as well for depression as | IV ketamine"
            assertion.comparator_text = _comparator_phrase(after, vocab)
            assertion.comparator_terms = _terms_of(assertion.comparator_text)
            return


SECOND_AS_WINDOW = 60  # "just as well (for depression) as X": the comparator follows the second "as"


def _terms_of(phrase: str) -> list[str]:
    """A phrase's words as written (not their expansions), without qualifier words ("well", "drip")."""
    lowered = phrase.lower()
    return [t for t in claim_terms(phrase) if t in lowered and t not in _QUALIFIER_WORDS][:6]


def _comparator_phrase(after: str, vocab: StanceVocabulary) -> str:
    """What a claim compares with: the words after the comparison, up to where the claim's setting
    begins ("than ECT | for severe depression", "as IV ketamine | given in a clinic")."""
    for end in vocab.comparator_end.finditer(after):
        if _terms_of(after[:end.start()]):
            return after[:end.start()].strip()
    return after.strip()


_NAME = re.compile(r"\b[A-Z][A-Za-z]*[A-Z0-9](?:[\w-]*[A-Za-z0-9])?\b")  # SUSTAIN-1, ESCAPE-TRD, KetECT, ASPIRE


_ASIDE = re.compile(r",\s*(?:while|whereas|unlike)\b")


def _key_terms(claim: str, assertion: Assertion) -> list[str]:
    """Names in the claim that are not vocabulary words (a trial's name: "TRANSFORM-2", "ASPIRE"):
    a study bears on such a claim only if it names them too."""
    findings_vocab = load_findings_vocabulary()
    tag_words = _tag_abbreviations()
    out = []
    # "..., while regular antidepressants like SSRIs take weeks": a contrast set beside the claim
    # names what the studies need not be about.
    aside = _ASIDE.search(claim)
    claim = claim[:aside.start()] if aside else claim
    for match in _NAME.finditer(claim):
        name = match.group(0).lower()
        if name in tag_words or any(o.regex.fullmatch(name) for o in findings_vocab.outcomes):
            continue
        if name not in out and name not in assertion.comparator_terms:
            out.append(name)
    return out


@functools.lru_cache(maxsize=1)
def _tag_abbreviations() -> frozenset[str]:
    """Short words the tag vocabulary knows (TRD, PTSD, IV, NMDA...): topics, not names."""
    from ..tagging.vocabulary import load_vocabulary

    words = set()
    for tag in load_vocabulary().tags.values():
        words |= {w.lower() for w in re.findall(r"[A-Za-z0-9-]+", tag.label) if len(w) <= 6}
        for pattern in tag.patterns:
            words |= {w for w in re.findall(r"[a-z0-9-]+", pattern) if len(w) <= 6}
    return frozenset(words | {"ect", "iv", "im", "mdd", "trd", "ptsd", "ocd", "madrs", "hamd", "bdnf", "nmda", "fda"})


# --------------------------------------------------------------------------- one study

@dataclass
class Stance:
    label: str
    sentence: str | None = None
    reason: str = ""
    values: list[dict[str, Any]] = field(default_factory=list)  # the quantities that bear on the claim


def study_findings(rows: list[dict]) -> tuple[list[Finding], list[Quantity]]:
    """Findings of a study from its stored sentences (position, section, section_kind, text)."""
    sentences = [Sentence(r["text"], r.get("section"), r.get("section_kind") or "abstract", int(r["position"]))
                 for r in sorted(rows, key=lambda r: int(r["position"]))]
    return extract_findings(sentences)


@dataclass
class StudyContext:
    """What a study is (its tags) and its text, to tell whether it bears on the claim at all."""

    drugs: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    indications: list[str] = field(default_factory=list)
    populations: list[str] = field(default_factory=list)
    text: str = ""  # title and abstract, lower-cased
    sentences: list[str] = field(default_factory=list)  # the abstract's sentences as written
    reported: list[str] = field(default_factory=list)  # its results and conclusions (or unstructured abstract)

    @classmethod
    def from_row(cls, row: dict | None) -> StudyContext:
        if not row:
            return cls()
        return cls(json_list(row.get("drugs")), json_list(row.get("routes")), json_list(row.get("indications")),
                   json_list(row.get("populations")), f"{row.get('title') or ''} {row.get('abstract') or ''}".lower(),
                   split_sentences(row.get("abstract") or ""))


STUDY_CONTEXT_COLUMNS = ("drugs", "routes", "indications", "populations", "title", "abstract", "evidence_level")
STUDY_CONTEXT_SQL = f"select {', '.join(STUDY_CONTEXT_COLUMNS)} from studies where id = ?"
SENTENCE_COLUMNS = ("position", "section", "section_kind", "text")
REPORTED_KINDS = ("results", "conclusions", "abstract")  # where a study states what it found


def judge_study(conn: Any, assertion: Assertion, study_id: str) -> tuple[Stance, int | None]:
    """One study's stance toward the claim, from its stored sentences and tags, and its evidence level.

    The one place both `kb check` and the stance evaluation read a study for its stance.
    """
    rows = [dict(zip(SENTENCE_COLUMNS, r, strict=True)) for r in conn.execute(
        f"select {', '.join(SENTENCE_COLUMNS)} from sentences_text where study_id = ?", (study_id,))]
    row = conn.execute(STUDY_CONTEXT_SQL, (study_id,)).fetchone()
    context_row = dict(zip(STUDY_CONTEXT_COLUMNS, row, strict=True)) if row else None
    findings, quantities = study_findings(rows)
    context = StudyContext.from_row(context_row)
    context.reported = [r["text"] for r in sorted(rows, key=lambda r: int(r["position"]))
                        if (r["section_kind"] or "abstract") in REPORTED_KINDS and r["text"]]
    stance = study_stance(assertion, findings, quantities, context)
    return stance, context_row["evidence_level"] if context_row else None
_DEPRESSIONS = frozenset({"mdd", "trd", "bipolar_depression", "postpartum_depression", "palliative_depression"})
KEY_TERM_SHARE = 0.5  # a study bears on a claim when its text has at least this share of the claim's key terms


RARE_SHARE = 0.05  # a claim word in fewer than this share of studies names the claim's subject
COMPARATOR_SHARE = 0.25  # a comparator's word in more studies than this says nothing about which side
# A result sentence names the modifier by any of its words rarer than this ("opioid", not "receptor").
MODIFIER_WORD_SHARE = 0.2


def keep_rare_terms(conn: Any, assertion: Assertion) -> Assertion:
    """Keep only the key terms that are rare in kb.db (a trial's name, a co-drug): common words
    ("reduces", "regular") say nothing about which studies bear on the claim. Of the modifier's
    words ("opioid receptor blockade with naltrexone") the rare ones, or else the rarest, are kept."""
    total = conn.execute("select count(*) from studies").fetchone()[0] or 1
    shares = {term: _share(conn, term, total)
              for term in {*assertion.key_terms, *assertion.modifier_terms, *assertion.comparator_terms}}
    # What a claim compares with is named by its uncommon words ("midazolam", not "infusion").
    named = [t for t in assertion.comparator_terms if shares[t] is not None and shares[t] < COMPARATOR_SHARE]
    if assertion.comparator_terms:
        known = sorted((t for t in assertion.comparator_terms if shares[t] is not None), key=lambda t: shares[t])
        assertion.comparator_terms = named or known[:1] or assertion.comparator_terms
    assertion.key_terms = [t for t in assertion.key_terms if shares[t] is not None and shares[t] < RARE_SHARE]
    known = [t for t in assertion.modifier_terms if shares[t] is not None]
    rare = [t for t in known if shares[t] < RARE_SHARE]
    assertion.modifier_terms = rare or sorted(known, key=lambda t: shares[t])[:1]
    assertion.modifier_words = [t for t in known if shares[t] < MODIFIER_WORD_SHARE] or assertion.modifier_terms
    return assertion


def _share(conn: Any, term: str, total: int) -> float | None:
    """The share of studies whose title or abstract has ``term``; None when FTS cannot parse it."""
    query = '"' + term.replace('"', '""') + '"'
    try:
        count = conn.execute("select count(*) from studies_fts where studies_fts match ?", (query,)).fetchone()[0]
    except Exception:  # noqa: BLE001 - a term FTS cannot parse is not a key term
        return None
    return count / total


def bears_on(assertion: Assertion, study: StudyContext) -> bool:
    """Whether the study is about what the claim is about: its drug, population, condition, key terms."""
    drugs = own_drugs(assertion) or assertion.drugs
    if drugs and not drugs & set(study.drugs):
        return False
    if assertion.populations and not assertion.populations & set(study.populations):
        return False
    claimed = assertion.indications
    # A study with no indication tag is not known to be about another condition.
    if claimed and study.indications and not (claimed & set(study.indications)
                        or (claimed & _DEPRESSIONS and _DEPRESSIONS & set(study.indications))):
        return False
    if assertion.recreational and study.text and not stance_vocabulary().recreational_study.search(study.text):
        return False
    if assertion.modifier_terms and study.text and not any(t in study.text for t in assertion.modifier_terms):
        return False
    if assertion.key_terms and study.text:
        present = sum(1 for term in assertion.key_terms
                      if re.search(r"(?<![a-z0-9])" + re.escape(term.split("-")[0]), study.text))
        if present < KEY_TERM_SHARE * len(assertion.key_terms):
            return False
    return True


def study_stance(assertion: Assertion, findings: list[Finding], quantities: list[Quantity],
                 study: StudyContext | None = None) -> Stance:
    """The study's stance toward the claim, with the sentence that decides it."""
    study = study or StudyContext()
    if not bears_on(assertion, study):
        return Stance("neutral", reason="not about the claim's drug, population, condition or subject")
    if _treats_the_harm(assertion, study):
        return Stance("neutral", reason="the claimed harm is the condition the study treats")
    if assertion.comparison and assertion.comparator_terms and all(_sides(assertion)):
        # The sides are known: only a sentence comparing them decides ("both improved" does not).
        compared = _comparison_stance(assertion, study.reported or list(dict.fromkeys(f.sentence for f in findings)))
        return compared or Stance("neutral", reason="no result compares the claim's two sides")
    if assertion.modifier_terms:
        return _modifier_stance(assertion, study)
    relevant = _relevant(assertion, findings)
    qualified = _qualifier_stance(assertion, relevant, findings, quantities, study.routes, study.reported)
    if qualified is not None:
        return qualified
    if assertion.quantitative:
        return Stance("neutral")  # the claim is about how long, how soon or how many: no numbers, no stance
    votes = [(vote, f) for f in relevant if (vote := _vote(assertion, f)) is not None]
    if assertion.effect == "absence":
        votes += [("-", f) for f in _harms_reported(assertion, study.reported)
                  if not any(f.sentence == g.sentence for _, g in votes)]
    votes += [("m", f) for f in _mixed_evidence(assertion, study.reported)
              if not any(f.sentence == g.sentence for _, g in votes)]
    if assertion.timepoint_h:
        votes = [(v, f) for v, f in votes if _near(assertion.timepoint_h, _timepoints(f.sentence, stance_vocabulary()))]
    if not votes:
        return Stance("neutral")
    if assertion.comparison:
        # A sentence naming what the claim compares with is a comparison ("superiority of ketamine
        # over ECT"), whether or not it uses a comparison word.
        votes = [(vote, f) for v, f in votes if _names_comparator(assertion, f.sentence)
                 and (vote := _against_comparator(assertion, v, f)) is not None]
        if not votes:
            return Stance("neutral")
    kinds = {v for v, _ in votes}
    best = max(votes, key=lambda vf: _strength(vf[1]))[1]
    if kinds == {"+"}:
        return Stance("supports", best.sentence, f"{_label(best)}")
    if kinds == {"-"}:
        return Stance("contradicts", best.sentence, f"{_label(best)}")
    return Stance("mixed", best.sentence, "results differ by outcome, time point or subgroup")


def _modifier_stance(assertion: Assertion, study: StudyContext) -> Stance:
    """ "Naltrexone abolishes ketamine's antidepressant effect": the study's sentences that name the
    modifier say whether the effect was blocked (supports) or left as it was (contradicts)."""
    vocab = stance_vocabulary()
    votes = []
    for sentence in study.sentences:
        lowered = sentence.lower()
        if not any(t in lowered for t in (assertion.modifier_words or assertion.modifier_terms)):
            continue
        if vocab.effect_unchanged.search(lowered):
            votes.append(("-", sentence))
        elif vocab.effect_blocked.search(lowered):
            votes.append(("+", sentence))
    if not votes:
        return Stance("neutral", reason="no result on what the modifier does")
    kinds = {v for v, _ in votes}
    # The last such sentence is the study's conclusion about it.
    sentence = votes[-1][1]
    if kinds == {"+"}:
        return Stance("supports", sentence, f"{assertion.modifier_terms[0]} changed the effect")
    if kinds == {"-"}:
        return Stance("contradicts", sentence, f"{assertion.modifier_terms[0]} did not change the effect")
    return Stance("mixed", sentence, "results differ by outcome or measure")


# --------------------------------------------------------------------------- comparisons

_FAMILY = ("ketamine", "esketamine", "arketamine")
# How a study's comparative reading ("drug" favoured, "comparator" favoured, "equal") bears on each
# kind of comparison claim: "as well as" is not contradicted by the drug doing better.
_COMPARISON_VOTES = {
    "better": {"drug": "+", "comparator": "-", "equal": "-"},
    "noninferior": {"drug": "+", "comparator": "-", "equal": "+"},
    "equal": {"drug": "+", "comparator": "-", "equal": "+"},
    "worse": {"drug": "-", "comparator": "+", "equal": "-"},
}


def _comparison_stance(assertion: Assertion, sentences: list[str]) -> Stance | None:
    """A comparison claim ("works better than ECT", "as well as IV ketamine") judged on the study's
    result sentences that name either side: which side each favours, or neither. None when no
    sentence compares them (the findings' votes decide then)."""
    drug_side, comparator_side = _sides(assertion)
    if not drug_side or not comparator_side:
        return None
    table = _COMPARISON_VOTES[assertion.comparison]
    both_named = any(p.search(s.lower()) for s in sentences for p in drug_side) and \
        any(p.search(s.lower()) for s in sentences for p in comparator_side)
    votes = [(table[reading], sentence) for sentence in sentences
             for reading in _comparative_readings(sentence, drug_side, comparator_side, both_named)]
    if not votes:
        return None
    plus = [s for v, s in votes if v == "+"]
    minus = [s for v, s in votes if v == "-"]
    # The last sentence of the side that decides: a study's conclusion comes after its results.
    # One side only a third of the other's sentences is a stray reading, not a mixed result.
    if len(plus) >= 3 * len(minus):
        return Stance("supports", plus[-1], "the comparison goes the claim's way")
    if len(minus) >= 3 * len(plus):
        return Stance("contradicts", minus[-1], "the comparison goes against the claim")
    return Stance("mixed", votes[-1][1], "the comparison differs by outcome or time point")


def own_drugs(assertion: Assertion) -> set[str]:
    """The drugs a claim is about, without those it compares them with ("Spravato is safer than
    regular ketamine": esketamine)."""
    phrase = assertion.comparator_text.lower()
    compared = {d for d, patterns in _tag_patterns("drug").items() if any(p.search(phrase) for p in patterns)}
    return assertion.drugs - compared


def _sides(assertion: Assertion) -> tuple[list[re.Pattern], list[re.Pattern]]:
    """Patterns naming the claim's side and what it is compared with: drugs ("IV ketamine" against
    "esketamine": esketamine against racemic ketamine), or routes when both sides are the same drug
    ("tablets at home as well as IV ketamine": oral and sublingual against intravenous)."""
    drugs, routes = _tag_patterns("drug"), _tag_patterns("route")
    phrase = assertion.comparator_text.lower()
    compared_drugs = {d for d, patterns in drugs.items() if any(p.search(phrase) for p in patterns)}
    own = (assertion.drugs or set(_FAMILY)) - compared_drugs
    if own:
        comparator_side = [p for d in sorted(compared_drugs) for p in drugs[d]]
        comparator_side += [re.compile(r"(?<![a-z0-9-])" + re.escape(t) + r"(?![a-z0-9])")
                            for t in assertion.comparator_terms
                            if not any(p.fullmatch(t) for d in compared_drugs for p in drugs[d])]
        return [p for d in sorted(own) for p in drugs.get(d, [])], comparator_side
    compared_routes = {r for r, patterns in routes.items() if any(p.search(phrase) for p in patterns)}
    own_routes = assertion.routes - compared_routes
    if not own_routes or not compared_routes:
        return [], []
    return ([p for r in sorted(own_routes) for p in routes[r]],
            [p for r in sorted(compared_routes) for p in routes[r]])


@functools.lru_cache(maxsize=4)
def _tag_patterns(kind: str) -> dict[str, list[re.Pattern]]:
    """Each tag's patterns of one kind (tag vocabulary), as whole words."""
    from ..tagging.vocabulary import load_vocabulary

    return {tag.id: [re.compile(r"(?<![a-z0-9])(?:" + p + r")(?![a-z0-9])") for p in tag.patterns]
            for tag in load_vocabulary().tags.values() if tag.kind == kind}


def _comparative_readings(sentence: str, drug_side: list[re.Pattern], comparator_side: list[re.Pattern],
                          both_named: bool = False) -> list[str]:
    """Which side each clause of a sentence favours: "drug", "comparator" or "equal". In a study
    naming both sides, "the two groups did not differ" is about them."""
    patterns = stance_vocabulary().comparative
    lowered = sentence.lower()
    groups = both_named and patterns["both_groups"].search(lowered)
    if not groups and not any(p.search(lowered) for p in comparator_side):
        return []  # "superior to placebo" says nothing on a claim against ECT
    readings = []
    for clause in patterns["clause_split"].split(lowered):
        if not patterns["efficacy_context"].search(clause):
            continue  # a side effect, a cost or the design, not the treatment effect
        if patterns["harm_context"].search(clause) and not _efficacy_compared(clause, patterns):
            continue
        reading = _clause_reading(clause, drug_side, comparator_side, patterns, bool(groups))
        if reading:
            readings.append(reading)
    return readings


def _efficacy_compared(clause: str, patterns: dict[str, re.Pattern]) -> bool:
    """A clause naming a side effect compares efficacy only if its comparison word is about efficacy
    ("greater reduction in depressive symptoms", not "greater dissociation")."""
    word = patterns["favour"].search(clause) or patterns["disfavour"].search(clause)
    return bool(word and patterns["efficacy_context"].search(clause[word.start():word.end() + 40])
                and not patterns["harm_context"].search(clause[word.start():word.end() + 40]))


def _clause_reading(clause: str, drug_side: list[re.Pattern], comparator_side: list[re.Pattern],
                    patterns: dict[str, re.Pattern], groups: bool = False) -> str | None:
    named = sorted([(m.start(), "drug") for p in drug_side for m in p.finditer(clause)]
                   + [(m.start(), "comparator") for p in comparator_side for m in p.finditer(clause)])

    def subject(at: int) -> str | None:
        """The side a comparison word at ``at`` is about: the last named before it, else the first after."""
        before = [side for start, side in named if start < at]
        after = [side for start, side in named if start > at]
        return before[-1] if before else (after[0] if after else None)

    other = {"drug": "comparator", "comparator": "drug"}
    failed = patterns["not_noninferior"].search(clause)
    if failed:
        side = subject(failed.start())
        return other[side] if side else None
    for name, flip in (("favour", False), ("disfavour", True)):
        word = patterns[name].search(clause)
        if not word:
            continue
        if patterns["negated_before"].search(clause[:word.start()]):
            return "equal" if named else None  # "was not superior to", "no worse than"
        side = subject(word.start())
        if side is None:
            return None
        return other[side] if flip else side
    if patterns["equal"].search(clause) and (named or groups):
        return "equal"
    return None


def _treats_the_harm(assertion: Assertion, study: StudyContext) -> bool:
    if assertion.effect not in ("harm", "absence"):
        return False
    treated = set(study.indications)
    return any(treated & stance_vocabulary().harm_as_indication.get(o, frozenset()) for o in assertion.outcomes)


def _against_comparator(assertion: Assertion, vote: str, finding: Finding) -> str | None:
    """A "better than" claim's vote from a sentence that names the comparator: for it only when the
    sentence favours the drug ("a greater reduction with ketamine than with ECT"), against it when it
    favours the comparator ("ECT demonstrated more robust effects compared to ketamine"); a sentence
    where both simply improved ("both ECT and ketamine reduced symptoms") is no vote."""
    if assertion.comparison != "better" or vote != "+":
        return vote
    lowered = finding.sentence.lower()
    favoured = stance_vocabulary().favours.search(lowered)
    if not favoured:
        return None
    before = lowered[:favoured.start()]
    comparator_first = [before.rfind(t) for t in assertion.comparator_terms if t in before]
    drug_first = [before.rfind(d) for d in assertion.drugs or {"ketamine"} if d in before]
    if comparator_first and max(comparator_first) > max(drug_first or [-1]):
        return "-"
    return vote


def _relevant(assertion: Assertion, findings: list[Finding]) -> list[Finding]:
    """The findings on the claim's outcomes that state the drug's effect (not an association)."""
    vocab = stance_vocabulary()
    wanted = assertion.outcomes or (vocab.efficacy if assertion.effect == "benefit" else vocab.harms)
    return [f for f in findings if f.outcome in wanted and not vocab.correlational.search(f.sentence)]


def _vote(assertion: Assertion, finding: Finding) -> str | None:
    """+ when the finding goes the claim's way, - against it, m when mixed."""
    direction = finding.direction
    if direction == "mixed":
        return "m"
    good = direction in ("improved",) or (direction == "decreased" and finding.outcome in stance_vocabulary().harms)
    bad_change = direction in ("worsened", "increased") and finding.outcome in stance_vocabulary().harms
    if assertion.comparison == "equal":
        return "+" if direction == "no_difference" else "-"
    if assertion.comparison == "noninferior":
        return "+" if direction in ("no_difference", "improved") else "-"
    if assertion.comparison == "worse":
        return "+" if direction == "worsened" else "-"
    if assertion.effect == "benefit":
        if direction == "improved":
            return "+"
        if direction in ("no_difference", "worsened"):
            return "-"
        return None
    if assertion.effect == "harm":
        if direction in ("increased", "worsened"):
            return "+"
        if direction in ("decreased", "improved"):
            return "-"
        # A null on a harm: no more of it than the comparison (against the claim that it causes it).
        return "-" if direction == "no_difference" else None
    # absence: "no side effects", "not addictive", "does not work"
    if finding.outcome in stance_vocabulary().harms:
        # "well tolerated", "fewer side effects": less of the harm, not none of it
        return "-" if bad_change else ("+" if direction == "no_difference" else None)
    return "+" if direction == "no_difference" else ("-" if good else None)


_NEGATED_HARM = re.compile(r"\b(?:no|not|none|without|neither|nor|absence of|free of)\b")
_LESS_OF = re.compile(r"\b(?:lower|less|fewer|reduced|decreased|lowest)\W+(?:\w+\W+)?$")  # "lower psychotic scores"
HARM_WINDOW = 60  # characters around "were reported" in which the harm must be named


def _harms_reported(assertion: Assertion, sentences: list[str]) -> list[Finding]:
    """Against "no side effects" / "does not damage the bladder": result sentences reporting the harm
    as occurring ("the most common adverse events were nausea and dissociation"), not as absent."""
    vocab, findings_vocab = stance_vocabulary(), load_findings_vocabulary()
    claimed = assertion.outcomes & vocab.harms
    if not claimed:
        return []
    # "Safe ... does not raise blood pressure": the harm it names, not every side effect.
    wanted = (claimed - {"adverse_events"}) or vocab.harms
    outcomes = [o for o in findings_vocab.outcomes if o.id in wanted]
    out = []
    for index, sentence in enumerate(sentences):
        lowered = sentence.lower()
        if _NEGATED_HARM.search(lowered):
            continue
        for reported in vocab.harm_reported.finditer(lowered):
            near = lowered[max(0, reported.start() - HARM_WINDOW):reported.end() + HARM_WINDOW]
            outcome = next((o for o in outcomes if (m := o.regex.search(near))
                            and not _LESS_OF.search(near[max(0, m.start() - 20):m.start()])), None)
            if outcome is not None:
                out.append(Finding(outcome.id, "increased", False, False, index, None, sentence))
                break
    return out


def _mixed_evidence(assertion: Assertion, sentences: list[str]) -> list[Finding]:
    """"Trials indicate antidepressant effects, but results are inconsistent": a study saying the
    evidence on the claim's outcome goes both ways."""
    vocab, findings_vocab = stance_vocabulary(), load_findings_vocabulary()
    outcomes = [o for o in findings_vocab.outcomes if o.id in assertion.outcomes]
    out = []
    for index, sentence in enumerate(sentences):
        lowered = sentence.lower()
        if not vocab.mixed_evidence.search(lowered):
            continue
        outcome = next((o for o in outcomes if o.regex.search(lowered)), None)
        if outcome is not None:
            out.append(Finding(outcome.id, "mixed", True, False, index, None, sentence))
    return out


def _strength(finding: Finding) -> tuple:
    """Which finding decides: stated plainly, against a control, earliest in the results."""
    return (not finding.hedged, finding.comparison, -finding.sentence_index)


def _label(finding: Finding) -> str:
    return f"{finding.outcome.replace('_', ' ')} {finding.direction.replace('_', ' ')}"


def _names_comparator(assertion: Assertion, sentence: str) -> bool:
    """The sentence names a comparator term as a word ("ketamine", not inside "esketamine")."""
    lowered = sentence.lower()
    return not assertion.comparator_terms or any(
        re.search(r"(?<![a-z0-9])" + re.escape(t) + r"(?![a-z0-9])", lowered) for t in assertion.comparator_terms)


def _qualifier_stance(assertion: Assertion, relevant: list[Finding], findings: list[Finding],
                      quantities: list[Quantity], study_routes: list[str],
                      reported: list[str] | None = None) -> Stance | None:
    """A stance from the claim's qualifiers, when the study states the numbers they are about."""
    quantities = [q for q in quantities if _about_the_claim(assertion, q, findings)]
    if assertion.required_routes and study_routes:
        effective = [f for f in relevant if f.direction == "improved"]
        if effective and not set(study_routes) & set(assertion.required_routes):
            best = max(effective, key=_strength)
            return Stance("contradicts", best.sentence, f"effective by another route ({', '.join(study_routes)})")
    if assertion.permanent:
        relapsed = [f for f in findings if f.outcome == "relapse" and f.direction in ("worsened", "increased")]
        rates = [q for q in quantities if q.type == "relapse_rate" and q.value > 0]
        durations = [q for q in quantities if q.type == "duration"]
        decisive = rates or durations
        if relapsed or decisive:
            sentence = (decisive[0].sentence if decisive else relapsed[0].sentence)
            return Stance("contradicts", sentence, "relapse or a limited duration reported",
                          [_value(q) for q in decisive])
    times = _time_stance(assertion, quantities)
    if times is not None:
        return times
    if assertion.onset_max_h:
        early = _early_finding(assertion, relevant)
        if early is not None:
            return early
    if assertion.rate:
        kind, low, high = assertion.rate
        rates = [q for q in quantities if q.type == kind] or _shares_in_words(kind, reported)
        if rates:
            inside = [q for q in rates if low <= q.value <= high]
            chosen = inside[0] if inside else rates[0]
            label = "supports" if inside else "contradicts"
            if inside and len(inside) < len(rates):
                label = "mixed" if len({q.sentence for q in rates}) > 1 else label
            return Stance(label, chosen.sentence, f"{kind.replace('_', ' ')} {chosen.text}",
                          [_value(q) for q in rates])
    return None


SHARE_WINDOW = 60  # characters after a share's words in which its outcome's word must come


def _shares_in_words(kind: str, sentences: list[str] | None) -> list[Quantity]:
    """Rates of ``kind`` a study states in words ("all but one responder relapsed within a month",
    "the majority remitted"), as quantities, when it gives no number."""
    vocab = stance_vocabulary()
    outcome_words = vocab.rate_kinds.get(kind)
    if outcome_words is None or not sentences:
        return []
    out = []
    for index, sentence in enumerate(sentences):
        for regex, value in vocab.share_words:
            match = regex.search(sentence)
            if match and outcome_words.search(sentence[match.start():match.end() + SHARE_WINDOW]):
                out.append(Quantity(kind, value, "%", match.group(0), index, None, sentence))
                break
    return out


def _about_the_claim(assertion: Assertion, quantity: Quantity, findings: list[Finding]) -> bool:
    """Whether a quantity measures the claimed effect: its sentence reports on one of the claim's
    outcomes ("the antidepressant effect lasted 7 days"), not on something else that lasted
    ("a plasticity window lasting 2-3 days", "neurophysiological changes emerged within 3-8 hours")."""
    if quantity.type in ("relapse_rate", "time_to_relapse", "remission_rate", "response_rate"):
        return True  # a rate names its own outcome
    if not assertion.outcomes:
        return True
    if any(f.sentence_index == quantity.sentence_index and f.outcome in assertion.outcomes for f in findings):
        return True
    lowered = quantity.sentence.lower()
    vocab = load_findings_vocabulary()
    return any(o.id in assertion.outcomes and o.regex.search(lowered) for o in vocab.outcomes)


def _time_stance(assertion: Assertion, quantities: list[Quantity]) -> Stance | None:
    checks = []
    if assertion.duration_max_h:
        checks.append(("duration", lambda v: v <= assertion.duration_max_h * 1.5))
    if assertion.duration_min_h:
        checks.append(("duration", lambda v: v >= assertion.duration_min_h / 1.5))
    if assertion.onset_max_h:
        checks.append(("onset", lambda v: v <= assertion.onset_max_h * 1.5))
    for kind, fits in checks:
        values = [q for q in quantities if q.type == kind]
        if not values:
            continue
        agree = [q for q in values if fits(q.value)]
        chosen = agree[0] if agree and len(agree) == len(values) else next(q for q in values if not fits(q.value))
        label = "supports" if len(agree) == len(values) else ("contradicts" if not agree else "mixed")
        return Stance(label, chosen.sentence, f"{kind} {chosen.text}", [_value(q) for q in values])
    return None


def _early_finding(assertion: Assertion, relevant: list[Finding]) -> Stance | None:
    """An onset claim ("within hours", "by the next day") supported by a result seen that early:
    an improvement at a time point within the claimed onset, or stated as rapid or immediate."""
    vocab = stance_vocabulary()
    limit = assertion.onset_max_h * 1.5
    for finding in sorted((f for f in relevant if f.direction == "improved"), key=_strength, reverse=True):
        times = _timepoints(finding.sentence, vocab)
        if any(t <= limit for t in times):
            when = min(times)
            return Stance("supports", finding.sentence, f"{_label(finding)} by {when:g} h",
                          [{"type": "onset", "value": when, "unit": "h", "text": f"{when:g} h"}])
        if not times and limit >= 24 and vocab.early_words.search(finding.sentence.lower()):
            return Stance("supports", finding.sentence, f"{_label(finding)}, stated as rapid")
    return None


def _modifier_terms(claim: str, vocab: StanceVocabulary, assertion: Assertion) -> list[str]:
    """The words naming what the claim says changes the drug's effect (before "blocks the ... effect")."""
    match = vocab.modifies_effect.search(claim)
    if not match:
        return []
    drug_words = {d.lower() for d in assertion.drugs} | {"ketamine", "esketamine", "arketamine"}
    return [t for t in claim_terms(claim[:match.start()]) if t in claim[:match.start()].lower()
            and t not in _QUALIFIER_WORDS and t not in drug_words and len(t) > 3][:4]


def _claim_timepoint(claim: str, vocab: StanceVocabulary) -> float | None:
    match = vocab.claim_timepoint.search(claim)
    if not match:
        return None
    if match.group("first"):
        unit = next(u for u in ("day", "week", "month") if u in match.group(0).lower())
        return float(match.group("first")) * _UNIT_HOURS[unit]
    return _hours(match.group("n"), match.group("unit"))


def _near(wanted_h: float, times: list[float]) -> bool:
    """A result reported within a factor of two of the claimed time point."""
    return any(wanted_h / 2 <= t <= wanted_h * 2 for t in times)


def _timepoints(sentence: str, vocab: StanceVocabulary) -> list[float]:
    """The times (hours) a sentence reports results at: "at 4 h", "on Day 2", "within 40 minutes"."""
    out = []
    for match in vocab.timepoint.finditer(sentence):
        if match.group("first"):
            unit = next((u for u in ("day", "week", "month") if u in match.group(0).lower()), "day")
            # "at postpartum days 14, 28, and 42": each day listed is a time point
            numbers = [match.group("first"), *re.findall(r"\d+", match.group("more") or "")]
            out += [float(n) * _UNIT_HOURS[unit] for n in numbers]
        elif match.group("n") and match.group("unit"):
            hours = _hours(match.group("n"), _unit_word(match.group("unit")))
            if hours is not None:
                out.append(hours)
    return out


def _unit_word(unit: str) -> str:
    unit = unit.lower()
    return {"h": "hour", "min": "minute", "d": "day", "wk": "week"}.get(unit, unit)


def _value(q: Quantity) -> dict[str, Any]:
    return {"type": q.type, "value": q.value, "unit": q.unit, "text": q.text}


# --------------------------------------------------------------------------- the verdict

@dataclass
class Verdict:
    label: str
    reasons: list[str]
    values: list[dict[str, Any]] = field(default_factory=list)  # the range the studies report
    weights: dict[str, float] = field(default_factory=dict)


def study_weight(evidence_level: int | None, population: str) -> float:
    weight = LEVEL_WEIGHT.get(evidence_level or 6, 0.5)
    return weight * (ANIMAL_WEIGHT if population in ("animal", "in_vitro") else 1.0)


def verdict(stances: list[tuple[Stance, int | None, str, list[str], str]], quantitative: bool = False) -> Verdict:
    """The claim's verdict from (stance, evidence level, population, designs, pmid) of its studies."""
    weights = {"supports": 0.0, "contradicts": 0.0, "mixed": 0.0}
    by_side: dict[str, list[tuple[Stance, list[str], str]]] = {"supports": [], "contradicts": [], "mixed": []}
    values: list[dict[str, Any]] = []
    for stance, level, population, designs, pmid in stances:
        if stance.label == "neutral":
            continue
        weights[stance.label] += study_weight(level, population)
        by_side[stance.label].append((stance, designs, pmid))
        values += [{**v, "pmid": pmid} for v in stance.values]
    support, against = weights["supports"] + weights["mixed"] / 2, weights["contradicts"] + weights["mixed"] / 2
    if support + against < MIN_VERDICT_WEIGHT:
        label = "insufficient"
    elif support >= DOMINANCE * against:
        label = "supported"
    elif against >= DOMINANCE * support:
        label = "contradicted"
    else:
        label = "mixed"
    reasons = [_side_reason(side, items) for side, items in by_side.items() if items]
    if label == "insufficient":
        reasons.insert(0, "too little evidence with a clear stance to decide")
    if quantitative and values:
        reasons.append(_range_reason(values))
    return Verdict(label, reasons, values, {k: round(v, 2) for k, v in weights.items()})


_DESIGN_WORDS = {"meta_analysis": "meta-analysis", "systematic_review": "systematic review", "rct": "RCT",
                 "nonrandomised_trial": "non-randomised trial", "single_arm_trial": "open-label trial",
                 "secondary_analysis": "secondary analysis", "cohort": "cohort study", "case_series": "case series",
                 "case_report": "case report", "cross_sectional": "cross-sectional study", "animal": "animal study",
                 "narrative_review": "narrative review", "case_control": "case-control study"}
_VERBS = {"supports": "support", "contradicts": "contradict", "mixed": "are mixed"}


def _side_reason(side: str, items: list[tuple[Stance, list[str], str]]) -> str:
    counts: dict[str, int] = {}
    for _, designs, _ in items:
        word = next((_DESIGN_WORDS[d] for d in designs if d in _DESIGN_WORDS), "study")
        counts[word] = counts.get(word, 0) + 1
    parts = [f"{n} {_plural(word) if n > 1 else word}" for word, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    verb = _VERBS[side] if len(items) > 1 else {"supports": "supports", "contradicts": "contradicts",
                                                "mixed": "is mixed"}[side]
    example = next((s.reason for s, _, _ in items if s.reason), "")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} {verb}" + (f": {example}" if example else "")


def _plural(word: str) -> str:
    """ "cohort study" -> "cohort studies", "meta-analysis" -> "meta-analyses", "case series" stays."""
    if word.endswith("study"):
        return word[:-1] + "ies"
    if word.endswith("analysis"):
        return word[:-2] + "es"
    return word if word.endswith("s") else word + "s"


def _range_reason(values: list[dict[str, Any]]) -> str:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for v in values:
        by_type.setdefault(v["type"], []).append(v)
    parts = []
    for kind, items in by_type.items():
        low, high = min(items, key=lambda v: v["value"]), max(items, key=lambda v: v["value"])
        name = kind.replace("_", " ")
        if low is high or low["value"] == high["value"]:
            parts.append(f"{name}: {low['text']} (PMID {low['pmid']})")
        else:
            parts.append(f"{name}s from {low['text']} (PMID {low['pmid']}) to {high['text']} (PMID {high['pmid']})")
    return "reported " + "; ".join(parts)


def json_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value or "[]")
    except (TypeError, ValueError):
        return []
    return parsed if isinstance(parsed, list) else []
