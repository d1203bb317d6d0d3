"""The claim checker: a writer's claim in, the studies that bear on it out, best evidence first.

Stages of one check, one module each: :mod:`.understand` (the claim's words, tags and kind),
:mod:`.retrieve` (FTS5 and vector rankings from kb.db), :mod:`.score` (fusion and evidence
weights), :mod:`.summary` (evidence at a glance) and :mod:`.check` (the whole check).
:mod:`.term_stats` and :mod:`.embeddings` serve retrieval; :mod:`.cli` is ``kb check`` and ``kb embed``.
"""

from .check import check_claim
from .results import ClaimCheck, ClaimError, Sentence, StudyResult
from .summary import states_duration
from .understand import claim_intents, claim_tags, claim_terms, counter_query, fts_query, validate_claim

__all__ = ["ClaimCheck", "ClaimError", "Sentence", "StudyResult", "check_claim", "claim_intents", "claim_tags",
           "claim_terms", "counter_query", "fts_query", "states_duration", "validate_claim"]
