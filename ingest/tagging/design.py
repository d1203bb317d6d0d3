"""The study's own design, following PubMed's publication-type scope notes and Cochrane's definitions.

A design statement counts only where it describes this study: not in background, not in a
recommendation ("further RCTs are needed"), not as another study's design (a review's included
trials, a model's inputs, an emulated target trial, the parent trial of a secondary analysis).
Which words are which is data (``design_cues`` in vocabulary.yaml); the order in which designs
win over each other is here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sentences import Sentence
from .support import Support
from .vocabulary import Vocabulary

if TYPE_CHECKING:
    from .tagger import Evidence, Mention

# Trial designs: a mention of one in a sentence about other studies is that study's design.
TRIAL_DESIGNS = ("rct", "nonrandomised_trial", "single_arm_trial")
# A parent study's design, strongest first, for secondary analyses.
PARENT_ORDER = ("rct", "nonrandomised_trial", "single_arm_trial", "cohort", "case_control", "cross_sectional")
OBSERVATIONAL_ORDER = ("case_control", "cross_sectional", "cohort", "case_series", "case_report")
# A background-kind section that states this study's aim ("OBJECTIVE: ... 36 inpatients were enrolled").
OBJECTIVE_LABEL = re.compile(r"\s*(?:OBJECTIVES?|AIMS?|PURPOSE|GOALS?)\b", re.I)
# A trial-registration section names a registry and an identifier, not a design.
REGISTRATION_LABEL = re.compile(r"\bREGISTRATION\b|\bREGISTRY\b", re.I)
# A background sentence about this study ("The present secondary analysis examines...").
_OWN_VOICE = re.compile(r"\b(?:the present|this|our)\s+(?:[\w-]+\s+){0,3}(?:study|trial|analysis|review|report|work)\b|"
                        r"\bhere,? we\b|\bwe (?:conducted|performed|report|present|carried out|aimed)\b")
# Negation that reaches a design statement: next to it ("not randomised", "without randomisation").
NEAR_NEGATION = re.compile(r"(?:\bnot|\bno|\bwithout|\bnever|\bneither|\bnor|\bnon|\babsence of|\black of|\blacking|"
                           r"\babsent)\W+(?:\w+\W+)?$")
# Cohort evidence that makes a study observational even when its patients had open-label treatment.
_OBSERVATIONAL_WORDS = re.compile(r"retrospective|chart|registry|real-world|naturalistic|database|records|"
                                  r"claims data|observational|pharmacovigilance|emulat", re.I)


@dataclass
class Design:
    """The study's own designs, and for a secondary analysis its parent study's design."""

    designs: set[str]
    parent: str | None = None


def cue(vocab: Vocabulary, name: str, sentence: Sentence) -> bool:
    """Whether the sentence has one of the named design cues (each computed once per sentence)."""
    key = ("cue", name)
    if key not in sentence.memo:
        # One substring pass finds which cue patterns could match; only those run, each on its own.
        possible = _possible_cues(vocab, sentence)
        text = sentence.lower
        sentence.memo[key] = any(
            regex.search(text) for i, (anchors, regex) in enumerate(vocab.design_cues.get(name, ()))
            if anchors is None or (name, i) in possible)
    return sentence.memo[key]


def _possible_cues(vocab: Vocabulary, sentence: Sentence) -> set[tuple[str, int]]:
    key = ("possible cues",)
    if key not in sentence.memo:
        automaton = vocab.design_cue_automaton
        sentence.memo[key] = {k for _, keys in automaton.iter(sentence.lower) for k in keys} if automaton else set()
    return sentence.memo[key]


def counts(mention: Mention, vocab: Vocabulary) -> bool:
    """Whether a (non-negated) design mention describes this study's own design."""
    sentence = mention.sentence
    if REGISTRATION_LABEL.search(sentence.section or ""):
        return False  # "Japan Registry of Clinical Trials": where the trial is registered, not a registry study
    if sentence.section_kind == "background" and not (OBJECTIVE_LABEL.match(sentence.section or "")
                                                      or _OWN_VOICE.search(sentence.lower)):
        return False
    if cue(vocab, "future", sentence):
        return False
    if mention.tag_id in TRIAL_DESIGNS and (cue(vocab, "borrowed", sentence)
                                            or _secondary_sentence(sentence, vocab)):
        return False
    return True


def _secondary_sentence(sentence: Sentence, vocab: Vocabulary) -> bool:
    key = ("secondary",)
    if key not in sentence.memo:
        regex = vocab.tags["secondary_analysis"].regex if "secondary_analysis" in vocab.tags else None
        sentence.memo[key] = bool(regex and regex.search(sentence.lower))
    return sentence.memo[key]


def is_registration(record: dict, vocab: Vocabulary) -> bool:
    """A trial-registry record: two or more registry field labels, the first section among them."""
    hits = _label_hits(record, vocab, "registry_fields")
    return bool(hits) and hits[0] and sum(hits) >= 2


def _label_hits(record: dict, vocab: Vocabulary, cue_name: str) -> list[bool]:
    """Per abstract section, whether its label is one of the named cue list's labels."""
    patterns = [regex for _, regex in vocab.design_cues.get(cue_name, ())]
    labels = [(s.get("label") or "").strip().lower() for s in record.get("abstract_sections") or []]
    return [bool(label) and any(regex.fullmatch(label) for regex in patterns) for label in labels]


def resolve_designs(record: dict, supported: dict[str, list[Evidence]], found: set[str],
                    sentences: list[Sentence], mentions: list[Mention], vocab: Vocabulary,
                    populations: set[str] = frozenset()) -> Design:
    """The study's own design from the design statements that count (``supported``)."""
    if is_registration(record, vocab):
        return Design({"registration"})
    title = record.get("title") or ""
    strong = Support(supported, by_sentence=True)
    if "protocol" in found and (strong.title("protocol") or strong.structured("protocol")
                                or strong.text("protocol", 2)) and not _reports_results(sentences):
        return Design({"protocol"})
    def searched() -> bool:
        """A stated literature search (each sentence's cue is computed once)."""
        return any(cue(vocab, "literature_search", s) for s in sentences)

    synthesis = {d for d in ("meta_analysis", "systematic_review") if d in found
                 and (strong.title(d) or strong.structured(d) or strong.text(d, 2)
                      or (d == "systematic_review" and strong.text(d) and searched()))}
    if synthesis:
        if "meta_analysis" in synthesis and ("systematic_review" in found or searched()):
            synthesis.add("systematic_review")  # a meta-analysis of a stated search is a systematic review too
        if strong.title("rct"):
            synthesis.add("rct")  # "... a randomized controlled trial and meta-analysis": a trial reported with one
        return Design(synthesis)
    if "guideline" in found and (strong.title("guideline") or strong.structured("guideline")):
        return Design({"guideline"})
    for single in ("case_report", "case_series"):  # "A case report and literature review" reports a case
        if single in found and (strong.title(single) or strong.structured(single)):
            return Design({single})
    if _REVIEW_TITLE.search(title) and not _SYSTEMATIC_TITLE.search(title):
        return Design({"narrative_review"})
    if _review_article(record, supported, sentences, vocab):
        return Design({"narrative_review"})
    if "secondary_analysis" in found and strong.title("secondary_analysis"):
        return Design({"secondary_analysis"}, _parent_design(record, sentences, mentions, vocab))
    if "narrative_review" in found and (strong.structured("narrative_review") or strong.text("narrative_review")):
        primary = {"rct", "nonrandomised_trial", "single_arm_trial", "cohort", "case_report", "secondary_analysis",
                   "cross_sectional", "case_control", "case_series"}
        if not (primary & found and not strong.structured("narrative_review")):
            return Design({"narrative_review"})
    titled_trial = strong.title("rct") or strong.structured("rct")
    if "modelling" in found and (strong.title("modelling") or strong.structured("modelling")
                                 or _model_used(supported, sentences, vocab)
                                 or (strong.text("modelling", 2) and not titled_trial)):
        # Cost-effectiveness named only in the text of a randomised trial (so titled) is one of its outcomes.
        return Design({"modelling"})
    if "secondary_analysis" in found and (strong.title("secondary_analysis") or strong.text("secondary_analysis")):
        return Design({"secondary_analysis"}, _parent_design(record, sentences, mentions, vocab))
    animal = "animal" in found and (strong.title("animal") or strong.text("animal", 2) or strong.structured("animal"))
    if animal and ("human" not in populations or not ({"rct", "nonrandomised_trial", "single_arm_trial"} & found)):
        return Design({"animal"} | ({"in_vitro"} if "in_vitro" in found else set()))
    trial = _trial_design(record, supported, found, sentences, mentions, vocab)
    if trial:
        return Design({trial})
    for design in OBSERVATIONAL_ORDER:
        if design in found:
            return Design({design})
    if "in_vitro" in found:
        return Design({"in_vitro"})
    if _has_abstract(record) and not _clinical_trial_type(record) and _unstated_review(sentences, vocab):
        return Design({"narrative_review"})
    return Design(set())


# Designs of studies that collect their own data: a review article names them for the studies it covers.
_PRIMARY = ("rct", "nonrandomised_trial", "single_arm_trial", "cohort", "case_control", "cross_sectional",
            "case_series", "case_report", "secondary_analysis", "animal", "in_vitro")


def _review_article(record: dict, supported: dict[str, list[Evidence]], sentences: list[Sentence],
                    vocab: Vocabulary) -> bool:
    """A review-format abstract, or an article that says it is a letter, viewpoint or review, with
    no design of its own stated in its methods, results or its own voice."""
    if any(cue(vocab, "commentary_on", s) for s in sentences):
        return True
    voiced = any(_label_hits(record, vocab, "review_sections")) or any(
        cue(vocab, "article_voice", s) and not cue(vocab, "future", s) for s in sentences)
    if not voiced:
        return False
    return not any(e.source == "abstract" and e.sentence_index is not None
                   and _own_statement(sentences[e.sentence_index])
                   for tag_id in _PRIMARY for e in supported.get(tag_id, []))


# A count of people ("24 patients", "n = 24"): an article that has them reports a study of its own.
_PEOPLE_COUNT = re.compile(r"\bn\s*=\s*\d|\b(?:\d+|(?:twen|thir|for|fif|six|seven|eigh|nine)ty[\w-]*|hundred|"
                           r"two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen)\s+(?:[\w-]+\s+){0,3}"
                           r"(?:patients|participants|subjects|adults|individuals|volunteers|children|women|men|people|"
                           r"cases)\b")


def _unstated_review(sentences: list[Sentence], vocab: Vocabulary) -> bool:
    """No design stated anywhere, no methods or results, no participants counted: an article that
    discusses (the annotators' "best reading" of such abstracts is a narrative review)."""
    if any(s.section_kind in ("methods", "results") for s in sentences):
        return False
    return not any(_PEOPLE_COUNT.search(s.lower) or cue(vocab, "other_analysis", s) for s in sentences)


def _own_statement(sentence: Sentence) -> bool:
    """Whether a design statement comes from the study's methods or results, or speaks of this study."""
    return sentence.section_kind in ("methods", "results") or bool(_OWN_VOICE.search(sentence.lower))


def _trial_design(record: dict, supported: dict[str, list[Evidence]], found: set[str],
                  sentences: list[Sentence], mentions: list[Mention], vocab: Vocabulary) -> str | None:
    """rct, nonrandomised_trial or single_arm_trial when the study is interventional; else None."""
    if "rct" in found and _randomisation_stated(supported, mentions, sentences, vocab):
        return "rct"
    def stated(name: str, sections: tuple[str, ...] = ("background",)) -> bool:
        """A cue in a sentence about this study (the cue first: it is the rarer test to pass)."""
        return any(cue(vocab, name, s) and s.section_kind not in sections and not cue(vocab, "future", s)
                   and not cue(vocab, "borrowed", s) for s in sentences)

    blinded = stated("controlled")
    interventional = (blinded or bool({"nonrandomised_trial", "single_arm_trial"} & found)
                      or _clinical_trial_type(record) or stated("interventional", ("background", "title")))
    if not interventional:
        return None
    compared = stated("comparison")
    if "cohort" in found and not blinded and any(_OBSERVATIONAL_WORDS.search(e.evidence)
                                                 for e in supported.get("cohort", [])):
        return None  # patients treated in routine care, studied afterwards: observational
    single = [e for e in supported.get("single_arm_trial", []) if re.search(r"single|uncontrolled", e.evidence, re.I)]
    if single:
        return "single_arm_trial"
    if "nonrandomised_trial" in found or blinded or compared:
        return "nonrandomised_trial"
    if "single_arm_trial" in found or _clinical_trial_type(record):
        return "single_arm_trial"
    observational = {"cohort", "case_control", "cross_sectional", "case_series", "case_report", "in_vitro"}
    if not found & observational and (re.search(r"\btrial\b", record.get("title") or "", re.I) or stated(
            "interventional", ("background", "title", "abstract", "conclusions"))):
        # A treatment given and followed (its methods or results say so, or the title calls it a
        # trial), with nothing observational about it.
        return "single_arm_trial"
    return None


def _randomisation_stated(supported: dict[str, list[Evidence]], mentions: list[Mention], sentences: list[Sentence],
                          vocab: Vocabulary) -> bool:
    """Whether the study's randomisation stands. A publication type does not stand against an abstract
    that describes the control ("double-blind, placebo-controlled") and never says randomised: that is
    a controlled trial (the annotation guide, tests/gold/blind/GUIDE.md). An abstract silent on
    allocation leaves NLM's publication type (its indexers read the full text)."""
    if Support(supported, by_sentence=True).text("rct") or any(m.tag_id == "rct" and not m.negated for m in mentions):
        return True
    return not any(cue(vocab, "controlled", s) for s in sentences if s.section_kind != "title")


def _model_used(supported: dict[str, list[Evidence]], sentences: list[Sentence], vocab: Vocabulary) -> bool:
    """A modelling statement that says the model is this study's method ("a Markov model ... was used")."""
    return any(e.source == "abstract" and e.sentence_index is not None
               and cue(vocab, "model_used", sentences[e.sentence_index]) for e in supported.get("modelling", []))


def _reports_results(sentences: list[Sentence]) -> bool:
    """A RESULTS section: a protocol has none (NLM's "Clinical Trial Protocol" type is also given
    to some trial reports)."""
    return any(s.section_kind == "results" for s in sentences)


def _has_abstract(record: dict) -> bool:
    return bool(record.get("abstract") or record.get("abstract_sections"))


def _clinical_trial_type(record: dict) -> bool:
    return any((p.get("name") or "").lower().startswith("clinical trial")
               for p in record.get("publication_types") or [])


def _parent_design(record: dict, sentences: list[Sentence], mentions: list[Mention], vocab: Vocabulary) -> str | None:
    """The design of the study a secondary analysis re-uses, from the sentences that name it."""
    # In a secondary analysis every trial statement describes the parent study.
    named = {m.tag_id for m in mentions if not m.negated and m.tag_id in PARENT_ORDER
             and not cue(vocab, "future", m.sentence)}
    types = {(p.get("name") or "").lower() for p in record.get("publication_types") or []}
    if "randomized controlled trial" in types:
        named.add("rct")
    for design in PARENT_ORDER:
        if design in named:
            return design
    return None


def evidence_level(design: Design, vocab: Vocabulary) -> int | None:
    """The strongest (lowest) evidence level of the study's designs; None for protocols and registrations."""
    levels = []
    for tag_id in design.designs:
        tag = vocab.tags.get(tag_id)
        if tag is None:
            continue
        level = tag.evidence_level_if_parent.get(design.parent or "", tag.evidence_level)
        if level is not None:
            levels.append(level)
    return min(levels) if levels else None


_REVIEW_TITLE = re.compile(r"(?<!chart )(?<!record )(?<!records )(?<!case )(?<!file )\breview\b|\boverview\b|"
                           r"\bperspective\b|\bupdate on\b|\bcommentary\b", re.I)
_SYSTEMATIC_TITLE = re.compile(r"systematic|meta-?analy|scoping|umbrella", re.I)
