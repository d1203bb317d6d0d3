"""How strongly a tag's counted statements support it: in the title, in MeSH or publication
types, or in enough text sentences. Shared by the design rules and the other resolution rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tagger import Evidence

TEXT_SOURCES = ("title", "abstract")
STRUCTURED_SOURCES = ("mesh", "publication_type")


class Support:
    """Queries over one study's supported evidence, by tag id.

    ``by_sentence``: text support counts sentences, not matches ("network meta-analyses" holds two
    matches in one sentence). The design rules count that way; the other kinds' thresholds were set
    counting matches (an acronym beside its expansion counts twice).
    """

    def __init__(self, supported: dict[str, list[Evidence]], by_sentence: bool = False):
        self.supported = supported
        self.by_sentence = by_sentence

    def title(self, tag_id: str) -> bool:
        return any(e.source == "title" for e in self.supported.get(tag_id, []))

    def structured(self, tag_id: str) -> bool:
        return any(e.source in STRUCTURED_SOURCES for e in self.supported.get(tag_id, []))

    def text(self, tag_id: str, min_count: int = 1) -> bool:
        rows = [e for e in self.supported.get(tag_id, []) if e.source in TEXT_SOURCES]
        return len({e.sentence_index for e in rows} if self.by_sentence else rows) >= min_count
