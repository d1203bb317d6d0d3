"""What a study found: per result sentence, the outcomes it reports on and which way each went, and
the quantities writers check (response, remission and relapse rates, incidence, onset, duration,
time to relapse, follow-up), normalised to one unit (percent, hours) with the text as written.

Pure: sentences in, findings out. The words are data (findings.yaml); the labels follow
tests/gold/findings/GUIDE.md. A finding is the study's own result: sentences about other studies'
results are not read, nor, in a structured abstract, sections other than results and conclusions,
nor, in an unstructured one, its opening background and sentences stating the aim or the methods.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .sentences import Sentence

FINDINGS_FILE = Path(__file__).with_name("findings.yaml")
RESULT_SECTIONS = ("results", "conclusions")
DIRECTIONS = ("improved", "worsened", "increased", "decreased", "no_difference", "mixed")
QUANTITY_TYPES = ("response_rate", "remission_rate", "relapse_rate", "incidence", "onset", "duration",
                  "time_to_relapse", "follow_up")
# A sentence describing what was done (not what was found), and the marks of a result.
_METHOD = re.compile(r"\b(?:were|was) (?:\w+ )?(?:randomi[sz]ed|assigned|allocated|enrolled|recruited|assessed|"
                     r"measured|evaluated|collected|screened|included|administered|given)\b|"
                     r"\bwe (?:searched|recruited|enrolled)\b")
_RESULT_MARKERS = re.compile(r"\bp\s*[<=>≤]|significant|\b\d+(?:\.\d+)?\s?%|\b95%\s*ci\b|\bcompared (?:with|to)\b|"
                             r"\bresulted in\b|\b(?:improved|reduced|increased|decreased|higher|lower)\b")
# A sentence stating what the study set out to do reports no result.
_AIM = re.compile(r"^(?:methods?|background|objectives?|aims?|design|setting|participants)\s*:|"
                  r"\b(?:we aimed|this study aimed|the aim|aims? (?:of|to|was)|objectives? (?:of|was|were)|purpose|"
                  r"we hypothesi[sz]ed?\b|hypothesi[sz]ed that|we (?:expect|anticipate|predict) that|"
                  r"(?:was|were|is) (?:designed|conducted|performed) to|sought to|to (?:evaluate|assess|investigate|"
                  r"examine|determine|compare|explore|test) (?:the|whether|if)|"
                  r"(?:this|the present|the current|our) (?:paper|review|article|study|report) "
                  r"(?:assesses|examines|evaluates|explores|investigates|describes|discusses|summari[sz]es|reviews)|"
                  r"we (?:synthesi[sz]ed|summari[sz]ed|reviewed|review|discuss|describe|examined whether))\b")
_LEFT = r"(?<![a-z0-9])"  # patterns start at a word start
MAX_SENTENCE = 2_000  # longer "sentences" are splitting failures (tables, lists): not read


@dataclass
class Finding:
    outcome: str
    direction: str
    hedged: bool
    comparison: bool
    sentence_index: int
    section: str | None
    sentence: str
    outcome_tag: str | None = None


@dataclass
class Quantity:
    type: str
    value: float
    unit: str  # "%" or "h"
    text: str
    sentence_index: int
    section: str | None
    sentence: str
    denominator: int | None = None


@dataclass(frozen=True)
class Outcome:
    id: str
    label: str
    polarity: str  # lower_better | higher_better | measure
    tag: str | None
    regex: re.Pattern


@dataclass(frozen=True)
class FindingsVocabulary:
    outcomes: tuple[Outcome, ...]
    directions: dict[str, re.Pattern]
    not_own_result: re.Pattern
    time_units: dict[str, float]
    rate_words: dict[str, re.Pattern]
    time_kinds: dict[str, re.Pattern]
    incidence_outcomes: frozenset[str] = frozenset()
    well_tolerated: re.Pattern | None = None

    def outcome(self, outcome_id: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.id == outcome_id), None)


def _alternation(patterns: list[str]) -> re.Pattern:
    return re.compile(_LEFT + "(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")


@functools.lru_cache(maxsize=4)
def load_findings_vocabulary(path: Path = FINDINGS_FILE) -> FindingsVocabulary:
    """The outcome, direction and quantity words (findings.yaml), compiled once."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    outcomes = tuple(Outcome(str(o["id"]), str(o["label"]), str(o["polarity"]), o.get("tag"),
                             _alternation([str(p) for p in o["patterns"]])) for o in data["outcomes"])
    bad = [o.id for o in outcomes if o.polarity not in ("lower_better", "higher_better", "measure")]
    if bad:
        raise ValueError(f"{path}: unknown polarity for outcomes {bad}")
    return FindingsVocabulary(
        outcomes=outcomes,
        directions={name: _alternation(patterns) for name, patterns in data["directions"].items()},
        not_own_result=_alternation(data["not_own_result"]),
        time_units={str(k): float(v) for k, v in data["time_units"].items()},
        rate_words={name: _alternation(patterns) for name, patterns in data["rate_words"].items()},
        time_kinds={name: _alternation(patterns) for name, patterns in data["time_kinds"].items()},
        incidence_outcomes=frozenset(str(o) for o in data.get("incidence_outcomes") or ()),
        well_tolerated=_alternation(data["well_tolerated"]) if data.get("well_tolerated") else None,
    )


def result_sentences(sentences: list[Sentence]) -> list[Sentence]:
    """The sentences that report this study's results."""
    body = [s for s in sentences if s.section_kind != "title"]
    structured = any(s.section_kind in RESULT_SECTIONS for s in body)
    if structured:
        return [s for s in body if s.section_kind in RESULT_SECTIONS]
    # Unstructured: every sentence after the opening background, except those stating the aim or
    # describing the methods without a result.
    return [s for s in body if s.section_kind != "background" and not _AIM.search(s.lower)
            and not (_METHOD.search(s.lower) and not _RESULT_MARKERS.search(s.lower))]


def extract_findings(sentences: list[Sentence], vocab: FindingsVocabulary | None = None
                     ) -> tuple[list[Finding], list[Quantity]]:
    """Every finding and quantity in the study's result sentences."""
    vocab = vocab or load_findings_vocabulary()
    findings: list[Finding] = []
    quantities: list[Quantity] = []
    for sentence in result_sentences(sentences):
        if len(sentence.text) > MAX_SENTENCE or vocab.not_own_result.search(sentence.lower):
            continue
        found = sentence_quantities(sentence, vocab)
        findings += sentence_findings(sentence, vocab, found)
        quantities += found
    return findings, quantities


# --------------------------------------------------------------------------- directions

# ("vs. ", "e.g. " and "et al. " end no clause)
_CLAUSE_BREAK = re.compile(r";|,?\s+\b(?:but|whereas|while|although|though|however|yet)\b,?|"
                           r"(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)(?<!\bal)\.\s")


def _clauses(text: str) -> list[tuple[int, str]]:
    """(offset, clause) pieces of a lower-cased sentence, split where a contrast starts."""
    out, start = [], 0
    for match in _CLAUSE_BREAK.finditer(text):
        out.append((start, text[start:match.start()]))
        start = match.end()
    out.append((start, text[start:]))
    return [(offset, clause) for offset, clause in out if clause.strip()]


def sentence_findings(sentence: Sentence, vocab: FindingsVocabulary,
                      quantities: list[Quantity] | None = None) -> list[Finding]:
    """One finding per outcome the sentence reports a result on (mixed when its clauses disagree).
    ``quantities``: the sentence's own (sentence_quantities), when the caller has them already."""
    text = sentence.lower
    hedged = bool(vocab.directions["hedge"].search(text))
    comparison = bool(vocab.directions["comparison"].search(text))
    directions: dict[str, list[str]] = {}
    previous: list[tuple[Outcome, int]] = []
    for _, clause in _clauses(text):
        cues = _direction_cues(clause, vocab)
        mentions = _outcome_mentions(clause, vocab)
        if not mentions:
            # "..., but there was no difference at day 7": the clause speaks of the last clause's outcomes.
            mentions = [(outcome, len(clause)) for outcome, _ in previous]
        previous = mentions or previous
        if not cues:
            # "PPD occurred in 18.8% in the esketamine group and 39.3% in the control group (P = 0.004)"
            cues = _rate_comparison_cues(clause, text)
        if not cues:
            continue
        flipped = _control_group_first(clause, cues)
        for outcome, position in mentions:
            direction = _direction_for(outcome, position, cues)
            if direction:
                directions.setdefault(outcome.id, []).append(_FLIPPED.get(direction, direction) if flipped
                                                            else direction)
    if vocab.well_tolerated is not None and "adverse_events" not in directions \
            and vocab.well_tolerated.search(text):
        directions["adverse_events"] = ["decreased"]
    if quantities is None:
        quantities = sentence_quantities(sentence, vocab)
    for outcome_id in _rates_stated(text, vocab, {q.type for q in quantities}):
        directions.setdefault(outcome_id, ["improved"])
    out = []
    for outcome_id, found in directions.items():
        outcome = vocab.outcome(outcome_id)
        distinct = set(found)
        direction = found[0] if len(distinct) == 1 else _combine(distinct)
        out.append(Finding(outcome_id, direction, hedged, comparison, sentence.index, sentence.section,
                           sentence.text, outcome.tag if outcome else None))
    return out


def _rates_stated(text: str, vocab: FindingsVocabulary, kinds: set[str]) -> list[str]:
    """ "25% of the sample met criteria for response": a response or remission rate the study
    reports is a result on that outcome (improved: patients responded), unless the sentence
    says they did not."""
    if vocab.directions["no_difference"].search(text) or re.search(r"\bnon-?\s?(?:responders?|remitters?)\b", text):
        return []
    return [outcome for kind, outcome in (("response_rate", "response"), ("remission_rate", "remission"))
            if kind in kinds]


_CONTROL_ARM = re.compile(r"\b(?:control|placebo|saline|sham|usual[- ]care|standard[- ]care)(?: \w+)? "
                          r"(?:group|arm|condition|cohort)s?\b")
_DRUG_ARM = re.compile(r"\b(?:(?:es|ar)?ketamine|[sr]-ketamine|intervention|treatment|experimental|active) "
                       r"(?:group|arm|condition|cohort)s?\b")
_FLIPPED = {"improved": "worsened", "worsened": "improved", "increased": "decreased", "decreased": "increased"}


_SIGNIFICANT = re.compile(r"\bp\s*(?:<|≤|=)\s*0?\.0(?:[0-4]\d*|5\b(?=\s*\)|\s*,|\s*;))|\bp\s*<\s*0?\.05\b|"
                          r"(?<!not )(?<!non-)(?<!non)\bsignificant(?:ly)?\b")
_NOT_SIGNIFICANT = re.compile(r"\bp\s*(?:=|>|≥)\s*0?\.(?:[1-9]|0[5-9]\d)|\b(?:not|non-?)\s*significant|\bn\.?s\.?\b")
ARM_WINDOW = 60  # characters between a rate and the arm it is the rate of


def _rate_comparison_cues(clause: str, sentence: str) -> list[tuple[int, int, str]]:
    """A direction from two arms' rates: the drug arm's rate lower than the control arm's is a
    decrease, higher an increase; when the sentence says the difference is not significant, no
    difference. Nothing when it gives no significance either way (a numeric gap alone is not a
    result)."""
    tokens = sorted([(m.start(), m.end(), "rate", float(m.group(1))) for m in _PERCENT.finditer(clause)
                     if not re.match(r"\s*(?:ci\b|confidence|credible)", clause[m.end():])]
                    + [(m.start(), m.end(), "drug", None) for m in _DRUG_ARM.finditer(clause)]
                    + [(m.start(), m.end(), "control", None) for m in _CONTROL_ARM.finditer(clause)])
    rates: dict[str, tuple[int, float]] = {}
    for i, (start, end, kind, value) in enumerate(tokens):
        if kind != "rate":
            continue
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        before = tokens[i - 1] if i else None
        if after and after[2] != "rate" and after[0] - end <= ARM_WINDOW:
            arm = after[2]
        elif before and before[2] != "rate" and start - before[1] <= ARM_WINDOW // 2:
            arm = before[2]
        else:
            continue
        rates.setdefault(arm, (start, value))
    if len(rates) < 2 or rates["drug"][1] == rates["control"][1]:
        return []
    start = min(rates["drug"][0], rates["control"][0])
    if _NOT_SIGNIFICANT.search(sentence):
        return [(start, start + 1, "no_difference")]
    if not _SIGNIFICANT.search(sentence):
        return []
    return [(start, start + 1, "decrease" if rates["drug"][1] < rates["control"][1] else "increase")]


def _control_group_first(clause: str, cues: list[tuple[int, int, str]]) -> bool:
    """The clause says how the control arm fared against the drug's ("depression in the control group
    was higher compared to the esketamine group"): its change words are the drug's, turned round."""
    control, drug = _CONTROL_ARM.search(clause), _DRUG_ARM.search(clause)
    if not control or not drug or control.start() > drug.start():
        return False
    changes = [c for c in cues if c[2] != "no_difference" and control.end() <= c[0] < drug.start()]
    return bool(changes)


def _combine(directions: set[str]) -> str:
    """Two clauses on one outcome: a benefit and a null (or harm) is mixed; agreeing changes stay."""
    if directions <= {"improved", "decreased"} or directions <= {"worsened", "increased"}:
        return sorted(directions)[0]
    return "mixed"


def _outcome_mentions(clause: str, vocab: FindingsVocabulary) -> list[tuple[Outcome, int]]:
    """The first mention of each outcome in the clause; a mention inside a longer one is dropped."""
    spans: list[tuple[int, int, Outcome]] = []
    for outcome in vocab.outcomes:
        match = outcome.regex.search(clause)
        if match:
            spans.append((match.start(), match.end(), outcome))
    kept = [s for s in spans if not any(o is not s and o[0] <= s[0] and s[1] <= o[1] and (o[1] - o[0]) > (s[1] - s[0])
                                        for o in spans)]
    return [(outcome, start) for start, _, outcome in kept]


def _direction_cues(clause: str, vocab: FindingsVocabulary) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each direction word; change words inside a "no difference" phrase drop out."""
    opening_null = vocab.directions["clause_null"].match(clause)
    if opening_null:  # the whole clause: every change word in it is part of the "no ..." it opens with
        return [(0, len(clause), "no_difference")]
    nulls = [(m.start(), m.end(), "no_difference") for m in vocab.directions["no_difference"].finditer(clause)]
    nulls += [(m.start(), m.end(), "no_difference") for m in _WITHOUT_CHANGE.finditer(clause)]
    changes = [(m.start(), m.end(), kind) for kind in ("decrease", "increase", "improve", "worsen")
               for m in vocab.directions[kind].finditer(clause)]
    changes = [c for c in changes if not any(n[0] <= c[0] < n[1] for n in nulls)]
    return sorted(nulls + changes)


_WITHOUT_CHANGE = re.compile(r"\bwithout (?:\w+ ){0,2}(?:increas\w*|caus\w*|induc\w*|worsen\w*|affect\w*|"
                             r"significant\w*|chang\w*|alter\w*)\b")


def _direction_for(outcome: Outcome, position: int, cues: list[tuple[int, int, str]]) -> str | None:
    """The direction the nearest cue gives this outcome (a null cue anywhere before it wins ties)."""
    def distance(cue: tuple[int, int, str]) -> int:
        start, end, _ = cue
        return position - end if end <= position else start - position

    for _, _, kind in sorted(cues, key=lambda c: (distance(c), c[2] != "no_difference")):
        direction = _DIRECTION_BY_POLARITY[outcome.polarity].get(kind)
        if direction:
            return direction
    return None


_DIRECTION_BY_POLARITY = {
    "lower_better": {"decrease": "improved", "increase": "worsened", "improve": "improved", "worsen": "worsened",
                     "no_difference": "no_difference"},
    "higher_better": {"decrease": "worsened", "increase": "improved", "improve": "improved", "worsen": "worsened",
                      "no_difference": "no_difference"},
    "measure": {"decrease": "decreased", "increase": "increased", "worsen": "increased",
                "no_difference": "no_difference"},
}


# --------------------------------------------------------------------------- quantities

_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?(?:%|per ?cent\b)")
_NOT_A_RATE_AFTER = re.compile(r"[\s-]*(?:ci\b|confidence|credible|reduction|decrease|improvement|increase|change|"
                               r"or more|greater|of the (?:variance|total)|power|agreement|"
                               # "197 (66.3%) female": who the patients were, not a rate of anything
                               r"[)\]]?\s*(?:were |was )?(?:female|male|women|men|white|black|caucasian|asian|"
                               r"hispanic|married|employed|smokers?|of (?:the )?(?:sample|participants|patients) "
                               r"(?:were|was) (?:female|male|women|men)))")
_NOT_A_RATE_BEFORE = re.compile(r"(?:95|90|99)\s?%?\s*$|≥\s*$|>=\s*$|at least\s*$|\bby\s*$|"
                                r"\b(?:reduction|decrease|improvement|change|drop|fall) (?:of|by|in \w+ of)\s*$|"
                                r"\b(?:exceeded|above|over|below|under)\s*$")
_DENOMINATOR_AFTER = re.compile(r"\s*\(?\s*(?:n\s*=\s*)?(\d{1,6})\s*/\s*(\d{1,6})\s*\)?")
_DENOMINATOR_BEFORE = re.compile(r"(\d{1,6})\s*(?:/|of|out of)\s*(\d{1,6})\s*(?:\w+\s+){0,2}\(?\s*$")
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14, "twenty-four": 24, "thirty": 30, "a": 1,
                 "an": 1, "several": None, "few": None}
_NUM = r"(\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fourteen|twenty-four|thirty|an?)"
_TIME = re.compile(
    rf"(?<![\w/.-]){_NUM}(?:\s*(?:-|–|—|to|and)\s*(\d+(?:\.\d+)?))?[\s-]*"
    r"(seconds?|secs?|minutes?|mins?|hours?|hrs?|h|days?|d|weeks?|wks?|months?|mo|years?|yrs?)(?![\w/])")
_AGE_AFTER = re.compile(r"[\s-]*(?:old|of age)\b")
_TIMEPOINT_BEFORE = re.compile(r"(?:\bat|\bon|\bafter|\bpost|\bbaseline (?:to|and)|\bfrom|\bbetween|\bper|\bevery|"
                               r"\beach|\bdaily for|\bover)\s*$")


def sentence_quantities(sentence: Sentence, vocab: FindingsVocabulary) -> list[Quantity]:
    text = sentence.lower
    out = []
    for offset, clause in _clauses(text):
        out += [_quantity(sentence, offset, q) for q in _rates(clause, vocab)]
        out += [_quantity(sentence, offset, q) for q in _fractions(clause, vocab)]
        out += [_quantity(sentence, offset, q) for q in _times(clause, vocab)]
    return out


def _quantity(sentence: Sentence, offset: int, found: tuple) -> Quantity:
    kind, value, unit, start, end, denominator = found
    return Quantity(kind, round(value, 4), unit, sentence.text[offset + start:offset + end], sentence.index,
                    sentence.section, sentence.text, denominator)


def _rates(clause: str, vocab: FindingsVocabulary) -> list[tuple]:
    out = []
    matches = [m for m in _PERCENT.finditer(clause) if not _not_a_rate(clause, m)]
    listed = _respectively(clause, matches, vocab)
    previous: tuple[int, str] | None = None  # (end, kind) of the last rate found
    for i, match in enumerate(matches):
        before, after = clause[max(0, match.start() - 60):match.start()], clause[match.end():match.end() + 40]
        kind = (listed[i] if listed else None) or _rate_kind(clause, match, vocab, previous)
        if kind is None:
            continue
        value = float(match.group(1))
        if value > 100:
            continue
        previous = (match.end(), kind)
        denominator = None
        start, end = match.start(), match.end()
        following = _DENOMINATOR_AFTER.match(after)
        preceding = _DENOMINATOR_BEFORE.search(before)
        if following and int(following.group(2)) >= int(following.group(1)):
            denominator, end = int(following.group(2)), match.end() + following.end()
        elif preceding and int(preceding.group(2)) >= int(preceding.group(1)):
            denominator, start = int(preceding.group(2)), match.start() - (len(before) - preceding.start())
        out.append((kind, value, "%", start, end, denominator))
    return out


def _not_a_rate(clause: str, match: re.Match) -> bool:
    """A confidence level, a change ("a 50% reduction", "a reduction of 50%"), a threshold."""
    before, after = clause[max(0, match.start() - 60):match.start()], clause[match.end():match.end() + 40]
    return bool(_NOT_A_RATE_AFTER.match(after) or _NOT_A_RATE_BEFORE.search(before))


# "achieved response", "met criteria for remission": the verb after a percentage names its outcome.
_RATE_VERB_AFTER = re.compile(r"\s*(?:\(\s*\d+\s*/\s*\d+\s*\)\s*)?(?:of (?:the )?(?:\w+ ){0,2})?(?:achieved|attained|"
                              r"met (?:the )?criteria for|reached|were in|showed|had|experienced|maintain\w*)\s+"
                              r"(?:a |an |full |sustained |stable )?")
# "18.3% vs. 10.6%", "(65% vs 41%)", "the tramadol group (23.3%) compared to the ketamine group (36.7%)"
_SAME_KIND_BETWEEN = re.compile(r"^(?:vs\.|[^.;%]){0,45}$")
_PAIRING_WORD = re.compile(r"\b(?:vs\.?|versus|compared (?:with|to)|than|and|or)\b|,")
_RESPECTIVELY = re.compile(r"\brespectively\b")


def _rate_kind(clause: str, match: re.Match, vocab: FindingsVocabulary, previous: tuple[int, str] | None
               ) -> str | None:
    """Which rate a percentage is: the verb right after it, else the nearest rate word, else the
    outcome the clause ends on, else the outcome named right before it, else the kind of the rate
    it is set against."""
    verb = _RATE_VERB_AFTER.match(clause, match.end())
    if verb:
        bound = _nearest_kind(_outcome_rate_words(vocab), clause, verb.end(), verb.end(), before_window=0,
                              after_window=1)
        if bound:
            return bound
    kind = _nearest_kind(vocab.rate_words, clause, match.start(), match.end(), before_window=60, after_window=40)
    if kind is None:
        # "24 (26.7%) in the esketamine group and 39 (45.3%) in the placebo group experienced
        # relapse": the outcome the clause ends on, when it is a rate's own outcome.
        kind = _nearest_kind(_outcome_rate_words(vocab), clause, match.start(), match.end(), before_window=0,
                             after_window=len(clause))
    if kind is None and _named_harm_before(clause, match.start(), vocab):
        kind = "incidence"  # "nausea (31.6%)"
    if kind is None and previous is not None:
        between = clause[previous[0]:match.start()]
        if _SAME_KIND_BETWEEN.match(between) and _PAIRING_WORD.search(between):
            kind = previous[1]
    if kind is None and re.search(r"\bvs\.?|\bversus\b", clause[match.end():match.end() + 20]):
        # the first of "A% vs B%": its rate word may sit further back ("the prevalence of ... was lower (23.0% vs")
        kind = _nearest_kind(vocab.rate_words, clause, match.start(), match.end(), before_window=140, after_window=0)
    return kind


def _named_harm_before(clause: str, start: int, vocab: FindingsVocabulary) -> bool:
    window = clause[max(0, start - 30):start]
    if not re.search(r"\(\s*$", window):
        return False
    return any(o.id in vocab.incidence_outcomes and o.regex.search(window) for o in vocab.outcomes)


def _respectively(clause: str, matches: list[re.Match], vocab: FindingsVocabulary) -> list[str | None] | None:
    """ "Response and remission rates were 67% and 58%, respectively": the kinds named before the
    percentages, in order, one per percentage before "respectively" (None for those after it);
    None when the clause is not such a list."""
    said = _RESPECTIVELY.search(clause, matches[0].end()) if matches else None
    if not said:
        return None
    listed = [m for m in matches if m.end() <= said.start()]
    head = clause[:matches[0].start()]
    found = sorted((m.start(), kind) for kind, regex in _outcome_rate_words(vocab).items()
                   for m in regex.finditer(head))
    kinds = [kind for _, kind in found]
    kinds = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    if len(kinds) != len(listed) or len(set(kinds)) != len(kinds):
        return None
    return kinds + [None] * (len(matches) - len(listed))


def _outcome_rate_words(vocab: FindingsVocabulary) -> dict[str, re.Pattern]:
    return {k: v for k, v in vocab.rate_words.items() if k in ("remission_rate", "response_rate", "relapse_rate")}


def _fractions(clause: str, vocab: FindingsVocabulary) -> list[tuple]:
    """ "only 1/25 ... were responders": a rate stated as a fraction, with its denominator."""
    out = []
    for match in _FRACTION.finditer(clause):
        part, whole = int(match.group(1)), int(match.group(2))
        if not 0 < whole or part > whole or _BESIDE_A_PERCENT.search(clause[max(0, match.start() - 12):match.start()]) \
                or _PERCENT_AFTER.match(clause, match.end()):
            continue  # "46% (44/96)", "44/96 (46%)": the percentage is the rate, this its denominator
        kind = _nearest_kind(_outcome_rate_words(vocab), clause, match.start(), match.end(), before_window=40,
                             after_window=60)
        if kind:
            out.append((kind, round(100 * part / whole, 1), "%", match.start(), match.end(), whole))
    return out


_BESIDE_A_PERCENT = re.compile(r"%\s*[(\[]?\s*(?:n\s*=\s*)?$")
_PERCENT_AFTER = re.compile(r"\s*[(\[,]?\s*\d{1,3}(?:\.\d+)?\s?%")
_FRACTION = re.compile(r"(?<![\d./])(\d{1,5})\s*/\s*(\d{1,5})(?![\d./%])(?!\s*(?:mg|kg|ml|min|h|d)\b)")


def _nearest_kind(words: dict[str, re.Pattern], clause: str, start: int, end: int, before_window: int,
                  after_window: int) -> str | None:
    """The kind whose word sits nearest the number (before it within before_window, after it within
    after_window); earlier kinds in the file win ties."""
    best: tuple[int, int, str] | None = None
    window_start = max(0, start - before_window)
    window_end = min(len(clause), end + after_window)
    for order, (kind, regex) in enumerate(words.items()):
        # Searched from the window's start to the clause's end, so a lookahead sees past the window.
        for match in regex.finditer(clause, window_start):
            if match.start() >= window_end:
                break
            if match.end() <= start:
                distance = start - match.end()
            elif match.start() >= end:
                distance = match.start() - end + 5  # a word after the number is a weaker sign
            else:
                continue
            if best is None or (distance, order) < best[:2]:
                best = (distance, order, kind)
    return best[2] if best else None


def _times(clause: str, vocab: FindingsVocabulary) -> list[tuple]:
    out = []
    for match in _TIME.finditer(clause):
        unit = match.group(3)
        if len(unit) <= 2 and not match.group(1)[0].isdigit():
            continue  # "a d", "an h": single-letter units only after digits
        if _AGE_AFTER.match(clause, match.end()) or "-year-old" in clause[match.start():match.end() + 5]:
            continue
        before = clause[max(0, match.start() - 50):match.start()]
        if _NOT_AN_EFFECT_TIME.search(before) or _AGO_AFTER.match(clause, match.end()):
            continue  # "within the past five years", "20 years ago", "duration of depression < 2 years"
        kind = _time_kind(vocab, clause, match.start(), match.end())
        if kind is None or (kind in ("onset", "duration") and _TIMEPOINT_BEFORE.search(before)
                            and not vocab.time_kinds[kind].search(before[-20:])):
            continue
        first = _to_number(match.group(1))
        if first is None:
            continue
        second = float(match.group(2)) if match.group(2) else None
        value = (second if second is not None and kind != "onset" else first) * _unit_hours(vocab, unit)
        cue_start = _cue_start(vocab.time_kinds[kind], clause, match.start())
        out.append((kind, value, "h", cue_start, match.end(), None))
    return out


_NOT_AN_EFFECT_TIME = re.compile(r"(?:\b(?:the )?(?:past|last|previous|preceding)\s*|"
                                 r"\b(?:duration|length|history) of (?:\w+ ){0,2}(?:illness|depression|disease|"
                                 r"episode|pain|symptoms|use|disorder|treatment|therapy|exposure|infusions?|"
                                 r"anesthesia|anaesthesia|surgery|stay)\s*\(?\s*(?:was|were|of|:)?\s*"
                                 r"(?:(?:a |the )?(?:mean|median|average)\s*(?:of\s*)?)?[<>≤≥]?\s*)$")
_AGO_AFTER = re.compile(r"\s+(?:ago|earlier|before (?:the )?(?:study|enrol\w*|inclusion|admission))\b")


# "over a 48-hour period", "during the 12-week observation window": the length of the observation.
_PERIOD_AFTER = re.compile(r"[\s-]*(?:observation |study |follow-?up )?(?:period|window)\b")


# "at 3-month and 1-year follow-ups": the times listed before the word it is said of
_MORE_TIMES_AFTER = re.compile(r"^(?:\s*(?:,|and|or)\s*\d+(?:\.\d+)?[\s-]*(?:days?|weeks?|months?|years?))+")


def _time_kind(vocab: FindingsVocabulary, clause: str, start: int, end: int) -> str | None:
    """Which time it is, from the phrase right before it (or "follow-up" right after it)."""
    after = _MORE_TIMES_AFTER.sub("", clause[end:end + 60], count=1)[:25]
    if vocab.time_kinds["follow_up"].match(after.lstrip(" -")) or _PERIOD_AFTER.match(after):
        return "follow_up"
    return _nearest_kind(vocab.time_kinds, clause, start, end, before_window=45, after_window=0)


def _cue_start(regex: re.Pattern, clause: str, start: int) -> int:
    """Where the phrase naming the time starts, so the text as written reads "lasted up to 7 days"."""
    window = max(0, start - 45)
    matches = list(regex.finditer(clause, window, start))
    return matches[-1].start() if matches else start


def _to_number(token: str) -> float | None:
    if token[0].isdigit():
        return float(token)
    value = _NUMBER_WORDS.get(token)
    return float(value) if value is not None else None


def _unit_hours(vocab: FindingsVocabulary, unit: str) -> float:
    unit = unit.rstrip("s") if len(unit) > 2 else unit
    return vocab.time_units.get(unit, vocab.time_units.get(unit + "s", 1.0))
