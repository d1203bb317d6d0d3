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
    indications = _resolve_indications(supported, by_kind["indication"], record.get("title") or "")
    drugs = _resolve_drugs(supported, by_kind["drug"], mentions)
    populations = by_kind["population"]
    if "animal" in designs and "human" in populations and not Support(supported).text("human", min_count=2):
        populations.discard("human")
    routes = _resolve_routes(supported, by_kind["route"])
    keep = designs | indications | drugs | by_kind["mechanism"] | by_kind["side_effect"] | routes \
        | populations
    return sorted(keep, key=lambda t: (KINDS.index(vocab.tags[t].kind), t)), design


_STRONG_MDD = re.compile(r"major depress|\bMDD\b|unipolar|depressive disorder", re.I)
_TRD_WORDS = re.compile(r"resistan|refractor|\bTRD\b|inadequate(?:ly)? respon|non-?respon|"
                        r"failed (?:to respond|\w+ or more)", re.I)
_PRIMARY_OUTCOME = re.compile(r"primary (?:\w+ )?(?:outcome|end-?point)", re.I)
# A title about the anaesthetic use itself: emergence, induction, premedication, ECT anaesthesia.
_ANAESTHETIC_USE = re.compile(r"emergence|induction|premedication|intubation|electroconvulsive|\bECT\b|"
                              r"an(?:a)?esthetics?\b|an(?:a)?esthesia (?:with|using|in)\b|esketamine an(?:a)?esthesia|"
                              r"ketamine an(?:a)?esthesia", re.I)


def _resolve_indications(supported: dict[str, list[Evidence]], found: set[str], title: str) -> set[str]:
    found = set(found)
    strong = Support(supported)
    # "Treatment-resistant major depression" is TRD; MDD stays only when a non-resistant
    # major-depression population is named in its own right.
    if "trd" in found and "mdd" in found:
        own = [e for e in supported["mdd"] if e.source in ("title", "abstract")
               and _STRONG_MDD.search(e.evidence) and not _TRD_WORDS.search(e.evidence)]
        if len(own) < 2 and not any(e.source == "title" for e in own):
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


def _resolve_drugs(supported: dict[str, list[Evidence]], found: set[str], mentions: list[Mention]) -> set[str]:
    found = set(found)
    strong = Support(supported)
    # Esketamine/arketamine papers name racemic ketamine as background ("the S-enantiomer of ketamine").
    for enantiomer in ("esketamine", "arketamine"):
        if enantiomer in found and "ketamine" in found and not strong.title("ketamine"):
            racemic = [e for e in supported["ketamine"] if e.source in ("title", "abstract")
                       and not re.search(r"enantiomer|isomer|racemic|derivative|metabolite", e.evidence, re.I)]
            if len(racemic) < 2:
                found.discard("ketamine")
    if "hnk" in found and not strong.title("hnk") and not strong.text("hnk", min_count=2):
        found.discard("hnk")
    return found


def _resolve_routes(supported: dict[str, list[Evidence]], found: set[str]) -> set[str]:
    """The text's routes when it names any: MeSH "Administration, Oral" on an esketamine nasal-spray
    trial indexes the oral antidepressant given with it, not the study drug."""
    stated = {r for r in found if Support(supported).text(r)}
    return stated or set(found)
