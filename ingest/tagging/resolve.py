"""Resolution rules: from every supported mention to the study's own tags.

A study names designs, indications and drugs it is not about (background, comparisons, what
is needed next); these rules keep the ones that describe the study itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .design import Design, resolve_designs
from .sentences import Sentence
from .support import Support
from .vocabulary import KINDS, Vocabulary

if TYPE_CHECKING:
    from .tagger import Evidence, Mention


def resolve(record: dict, supported: dict[str, list[Evidence]], mentions: list[Mention],
            sentences: list[Sentence], vocab: Vocabulary) -> tuple[list[str], Design]:
    """The study's own tags (in kind order) and its design."""
    present = set(supported)
    by_kind: dict[str, set[str]] = {k: set() for k in KINDS}
    for tag_id in present:
        by_kind[vocab.tags[tag_id].kind].add(tag_id)
    design = resolve_designs(record, supported, by_kind["design"], sentences, mentions, vocab,
                             by_kind["population"])
    designs = design.designs
    indications = _resolve_indications(supported, by_kind["indication"], record.get("title") or "", mentions)
    drugs = _resolve_drugs(supported, by_kind["drug"], mentions)
    populations = by_kind["population"]
    if "animal" in designs and "human" in populations and not Support(supported).text("human", min_count=2):
        populations.discard("human")
    routes = _resolve_routes(supported, by_kind["route"])
    keep = designs | indications | drugs | by_kind["mechanism"] | by_kind["side_effect"] | routes \
        | populations
    return sorted(keep, key=lambda t: (KINDS.index(vocab.tags[t].kind), t)), design


_STRONG_MDD = re.compile(r"major depress|\bMDD\b|unipolar|depressive disorder", re.I)
_QUALIFIED_DEPRESSION = re.compile(r"resistan|refractor|\bTRD\b|partum|natal|\bPPD\b|inadequate(?:ly)? respon|"
                                   r"non-?respon|failed (?:to respond|\w+ or more)", re.I)
_PRIMARY_OUTCOME = re.compile(r"primary (?:\w+ )?(?:outcome|end-?point)", re.I)
# A title about the anaesthetic use itself: emergence, induction, premedication, ECT anaesthesia.
_ANAESTHETIC_USE = re.compile(r"emergence|induction|premedication|intubation|electroconvulsive|\bECT\b|"
                              r"an(?:a)?esthetics?\b|an(?:a)?esthesia (?:with|using|in)\b|esketamine an(?:a)?esthesia|"
                              r"ketamine an(?:a)?esthesia", re.I)


def _resolve_indications(supported: dict[str, list[Evidence]], found: set[str], title: str,
                         mentions: list[Mention] = ()) -> set[str]:
    found = set(found)
    strong = Support(supported)
    # "Treatment-resistant major depression" is TRD, "perinatal depressive symptoms" postpartum
    # depression; MDD stays only when a major-depression population is named in its own right.
    if "mdd" in found and found & {"trd", "postpartum_depression"}:
        own = _own_mdd(supported, mentions)
        if len(own) < 2 and not any(m.sentence.section_kind == "title" for m in own):
            found.discard("mdd")
    # Comorbid substance use is not an indication for ketamine.
    if "substance_use" in found:
        own = [e for e in supported["substance_use"] if not re.search(r"comorbid|history of|use scale|related factors",
                                                                      e.evidence, re.I)]
        if not own or (len(own) < 2 and not strong.title("substance_use")):
            found.discard("substance_use")
    # Surgery is the setting of many studies of another condition (postoperative delirium, depression,
    # pain): anaesthesia is the indication only when no other condition is the study's named subject.
    if "anaesthesia" in found and any(strong.title(t) for t in found - {"anaesthesia"}) \
            and not _ANAESTHETIC_USE.search(title):
        found.discard("anaesthesia")
    # Postoperative pain and anxiety scores are routine secondary outcomes of studies named for another
    # condition: the indication only when the title or the primary outcome names them.
    for tag_id in ("acute_pain", "anxiety"):
        if tag_id in found and not strong.title(tag_id) and any(strong.title(t) for t in found - {tag_id}) \
                and not any(_PRIMARY_OUTCOME.search(e.evidence) for e in supported[tag_id]):
            found.discard(tag_id)
    # Weak indications need more than one passing mention.
    for tag_id in ("anaesthesia", "palliative_depression", "delirium", "agitation", "schizophrenia",
                   "fibromyalgia", "crps"):
        if tag_id in found and not (strong.title(tag_id) or strong.structured(tag_id)
                                    or strong.text(tag_id, min_count=2)):
            found.discard(tag_id)
    return found


# The rest of a mention's clause, up to a coordinated condition ("MDD or TRD" names two).
_CLAUSE = re.compile(r"(?:(?!\s(?:and|or|versus|vs)\s)[^,;.()/]){0,100}")


def _own_mdd(supported: dict[str, list[Evidence]], mentions: list[Mention]) -> list[Mention]:
    """Counted major-depression mentions not qualified as resistant or perinatal ("MDD and TRD"
    names both; "treatment-resistant MDD" names one)."""
    counted = {e.sentence_index for e in supported["mdd"] if e.source in ("title", "abstract")}
    own = []
    for m in mentions:
        if m.tag_id != "mdd" or m.negated or m.sentence.index not in counted:
            continue
        span = m.sentence.text[m.start:m.end]
        # What qualifies it: a few words before, and its own clause after ("MDD who failed 2 antidepressants").
        near = m.sentence.text[max(0, m.start - 30):m.end] + _CLAUSE.match(m.sentence.text, m.end).group()
        if _STRONG_MDD.search(span) and not _QUALIFIED_DEPRESSION.search(near):
            own.append(m)
    return own


_COMPARED = re.compile(r"\b(?:compared (?:to|with)|than|versus|vs\.?|unlike|relative to)\s", re.I)


def _resolve_drugs(supported: dict[str, list[Evidence]], found: set[str], mentions: list[Mention]) -> set[str]:
    found = set(found)
    strong = Support(supported)
    # Esketamine/arketamine papers name racemic ketamine as background ("the S-enantiomer of ketamine");
    # an article whose title names neither (a review of "ketamine, esketamine, LSD...") is about both.
    for enantiomer in ("esketamine", "arketamine"):
        if enantiomer in found and "ketamine" in found and not strong.title("ketamine") \
                and (strong.title(enantiomer) or strong.structured(enantiomer)):
            racemic = [e for e in supported["ketamine"] if e.source in ("title", "abstract")
                       and not re.search(r"enantiomer|isomer|racemic|derivative|metabolite", e.evidence, re.I)]
            if len(racemic) < 2:
                found.discard("ketamine")
    if "hnk" in found and not strong.title("hnk") and not strong.text("hnk", min_count=2):
        found.discard("hnk")
    # A title that names the form studied: another form named once ("fewer effects than esketamine")
    # or indexed only in MeSH is a comparison, not a study drug.
    titled = {d for d in found if strong.title(d)}
    if titled:
        for drug in found - titled:
            said = [e for e in supported.get(drug, []) if e.source == "abstract"]
            if not said or (len({e.sentence_index for e in said}) == 1 and _COMPARED.search(said[0].evidence)):
                found.discard(drug)
    return found


def _resolve_routes(supported: dict[str, list[Evidence]], found: set[str]) -> set[str]:
    """The text's routes when it names any: MeSH "Administration, Oral" on an esketamine nasal-spray
    trial indexes the oral antidepressant given with it, not the study drug."""
    stated = {r for r in found if Support(supported).text(r)}
    return stated or set(found)
